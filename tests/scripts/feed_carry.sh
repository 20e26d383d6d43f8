#!/usr/bin/env bash
# The count that a feed note carries (0.11.0). Where the library is
# preloaded and its worker ticks the feed in the database, an append
# writes no tally row: its note in feed_appends carries the count of its
# entries (counted = false) until the tick that moves it adds that to
# tallies, or forget_agent removes it and adds it itself; a render adds
# the notes still waiting. Deterministic: the worker ticks once an hour
# here (agent_journal.feed_tick_interval = 1h), so the notes wait until a
# read_feed outside a transaction block ticks. Checked at every step:
# agent_journal_appended_entries_total is the journal's count (the agents'
# latest sequences plus the forgotten agents'), whether the count is in
# notes, in tallies, or lost with an emptied feed_appends (an operator's
# TRUNCATE, as a crash empties it) and made up by the rebuilding tick.
source "$(dirname "$0")/lib.bash"
PORT=${AJ_CARRY_PGPORT:-54394}
CLUSTER_DIR=/tmp/aj_feed_carry.$PORT
DB=postgres
A=00000000-0000-0000-0000-0000000ca00a
B=00000000-0000-0000-0000-0000000ca00b
cleanup() {
  local st=$?
  if [ $st -ne 0 ] && [ -f "$CLUSTER_DIR/server.log" ]; then
    echo "--- server log (tail)"; tail -20 "$CLUSTER_DIR/server.log"
  fi
  AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" stop >/dev/null 2>&1 || true
  exit $st
}
trap cleanup EXIT
AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR AJ_PG_CONF="shared_preload_libraries = 'agent_journal'
agent_journal.feed_tick_interval = '1h'
agent_journal.retention_interval = 0
agent_journal.export_interval = 86400" \
  "$AJ_ROOT/scripts/cluster" start >/dev/null || fail "could not start the preloaded cluster"
eval "$(AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" env)"
export PGHOST PGPORT PGUSER PGDATABASE
q $DB "CREATE EXTENSION agent_journal" >/dev/null
worker_in() { [ "$(q $DB "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'agent_journal exporter' AND datname = '$DB'")" = 1 ]; }
wait_for 20 "the worker is connected to $DB" worker_in
# its first tick (at its start) has run: the marker is there
marker() { [ "$(q $DB "SELECT count(*) FROM agent_journal.feed_appends WHERE first_sequence = 0")" = 1 ]; }
wait_for 10 "feed_appends has its marker" marker

APPENDED="SELECT value::bigint FROM agent_journal.metric_samples WHERE name = 'agent_journal_appended_entries_total'"
JOURNAL="SELECT (SELECT coalesce(sum(latest_sequence), 0) FROM agent_journal.agents)
  + (SELECT coalesce(sum(value), 0) FROM agent_journal.tallies WHERE name = 'forgotten_appended_entries')"
TALLIED="SELECT coalesce(sum(value), 0) FROM agent_journal.tallies WHERE name = 'journal_appended'"
NOTES="SELECT coalesce(string_agg(first_sequence || '-' || last_sequence || ' ' || counted, ',' ORDER BY agent_id, first_sequence), '')
  FROM agent_journal.feed_appends WHERE first_sequence <> 0"
counted_right() {  # counted_right WHAT WANT
  expect_eq "$1: the journal's count" "$(q $DB "$JOURNAL")" "$2"
  expect_eq "$1: agent_journal_appended_entries_total" "$(q $DB "$APPENDED")" "$2"
}

for i in 1 2 3; do q $DB "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')" >/dev/null; done
q $DB "SELECT agent_journal.append_batch('$B', 0, ARRAY['{\"type\": \"Step\"}', '{\"type\": \"Step\"}']::jsonb[])" >/dev/null
expect_eq "the notes carry their counts (counted = false)" "$(q $DB "$NOTES")" "1-1 false,2-2 false,3-3 false,1-2 false"
expect_eq "the appends wrote no tally row" \
  "$(q $DB "$TALLIED") $(q $DB "SELECT count(*) FROM agent_journal.tally_deltas")" "0 0"
counted_right "five appended, all in notes" 5

expect_eq "A forgotten" "$(q $DB "SELECT agent_journal.forget_agent('$A')")" "3"
expect_eq "forget_agent took A's notes and added what they carried" "$(q $DB "$NOTES") | $(q $DB "$TALLIED")" "1-2 false | 3"
counted_right "after forget_agent" 5

q $DB "SELECT agent_journal.subscribe('carry', true)" >/dev/null
expect_eq "a read outside a transaction block ticks: B's entries in the feed" \
  "$(q $DB "SELECT string_agg(sequence::text, ',' ORDER BY position) FROM agent_journal.read_feed('carry') WHERE kind <> 'gap'")" "1,2"
expect_eq "the tick moved B's note and added what it carried" "$(q $DB "$NOTES") | $(q $DB "$TALLIED")" " | 5"
counted_right "after the tick" 5

# feed_appends emptied with a carrying note in it (its marker goes too):
# the render counts from the journal, a note written since carries its
# count, and the rebuilding tick adds what was lost, once
q $DB "SELECT agent_journal.append('$B', 0, '{\"type\": \"Step\"}')" >/dev/null
expect_eq "B's third append waits in a note" "$(q $DB "$NOTES")" "3-3 false"
q $DB "TRUNCATE agent_journal.feed_appends" >/dev/null
counted_right "feed_appends emptied" 6
q $DB "SELECT agent_journal.append('$B', 0, '{\"type\": \"Step\"}')" >/dev/null
expect_eq "a note written after the TRUNCATE carries its count" "$(q $DB "$NOTES")" "4-4 false"
counted_right "one more append" 7
q $DB "SELECT FROM agent_journal.read_feed('carry', 0)" >/dev/null
expect_eq "the rebuilding tick put the marker back and moved the note" \
  "$(q $DB "SELECT count(*) FROM agent_journal.feed_appends WHERE first_sequence = 0") | $(q $DB "$NOTES")" "1 | "
expect_eq "tallies hold the count: 5, the lost note's 1, the new note's 1" "$(q $DB "$TALLIED")" "7"
counted_right "after the rebuild" 7
expect_eq "the consumer reads B 3 and 4 once" \
  "$(q $DB "SELECT string_agg(sequence::text, ',' ORDER BY position) FROM agent_journal.read_feed('carry') WHERE kind <> 'gap' AND sequence > 2")" "3,4"

# an operator's column on feed_appends: the note goes in by SQL instead of
# a direct insert, and still carries its count
q $DB "ALTER TABLE agent_journal.feed_appends ADD COLUMN operator_note text" >/dev/null
q $DB "SELECT agent_journal.append('$B', 0, '{\"type\": \"Step\"}')" >/dev/null
expect_eq "through SQL the note carries its count too" "$(q $DB "$NOTES") | $(q $DB "$TALLIED")" "5-5 false | 7"
counted_right "a note written by SQL" 8
q $DB "ALTER TABLE agent_journal.feed_appends DROP COLUMN operator_note" >/dev/null
q $DB "SELECT FROM agent_journal.read_feed('carry', 0)" >/dev/null
expect_eq "the tick moved it and added its count" "$(q $DB "$NOTES") | $(q $DB "$TALLIED")" " | 8"

# where the worker does not tick (feed_tick_interval = 0), the writers
# count themselves again, in tallies
q $DB "ALTER SYSTEM SET agent_journal.feed_tick_interval = 0" >/dev/null
q $DB "SELECT pg_reload_conf()" >/dev/null
interval_zero() { [ "$(q $DB "SHOW agent_journal.feed_tick_interval")" = 0 ]; }
wait_for 10 "the reload took effect" interval_zero
q $DB "SELECT agent_journal.append('$B', 0, '{\"type\": \"Step\"}')" >/dev/null
expect_eq "without a ticking worker a note carries nothing and the writer counted" \
  "$(q $DB "$NOTES") | $(q $DB "$TALLIED")" "6-6 true | 9"
counted_right "counted by the writer" 9
echo "feed_carry: all checks passed"
