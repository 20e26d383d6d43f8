#!/usr/bin/env bash
# examples/feed_consumer (the change feed's example client) against a real
# server. In the runner's cluster (no background worker: the consumer
# ticks the feed itself with read_feed outside a transaction block):
#  (1) a first run subscribes "timeline" at the feed's end and prints
#      nothing;
#  (2) after appends to two agents (separate transactions, a batch, a
#      rolled-back append), --once prints every committed entry exactly
#      once: per agent, the lines are the agent's entries in sequence order
#      (number, iteration, kind, as the journal has them); positions
#      increase; the consumer's stored position is the last one printed;
#  (3) a second run prints nothing: the ack was stored;
#  (4) with --max 2 (several read/ack transactions) the next appends come
#      out complete and in order, nothing old repeated;
#  (5) compacting entries the consumer already read changes nothing; entries
#      compacted before it read them come out as one gap row, then the rest;
#      forget_agent with unread entries gives a 'forgotten' gap row, and the
#      agent's new life (from #1) follows it;
#  (6) a transaction that commits late (open while the consumer runs) is
#      not skipped: the next run prints it;
#  (7) a new consumer with --from-beginning prints every live entry;
#  (8) a consumer left running (no --once, --poll-ms 200) prints appends as
#      they come, stops on SIGTERM with exit 0, and its ack is stored;
#  (9) errors: exit 2 with the server's message (no such database, no
#      extension), exit 1 on bad usage.
# Then, in a cluster of its own that preloads the library (the background
# worker ticks the feed and NOTIFYs agent_journal_feed):
# (10) a consumer that would poll only every 10 minutes prints a new entry
#      within seconds: the notification woke it.
# To see it fail: drop the ack_feed call in examples/feed_consumer.cpp ((3)
# fails), or the LISTEN ((10) times out).
source "$(dirname "$0")/lib.bash"
DB=aj_feed_example
BIN=$AJ_ROOT/build/feed_consumer
T0=$SECONDS
WPORT=${AJ_FEED_PGPORT:-54385}
WCLUSTER_DIR=/tmp/aj_feed_worker.$WPORT
WDB=aj_feed_worker

# The runner's cmake step builds it; standalone runs build it here.
if [ ! -x "$BIN" ] || [ "$AJ_ROOT/examples/feed_consumer.cpp" -nt "$BIN" ]; then
  { cmake -S "$AJ_ROOT" -B "$AJ_ROOT/build" && cmake --build "$AJ_ROOT/build" --target feed_consumer; } \
    >"$TMPD/build.log" 2>&1 || { cat "$TMPD/build.log"; fail "cannot build $BIN"; }
fi

PIDS=()
WORKER_CLUSTER=""
cleanup() {
  local st=$?
  for p in "${PIDS[@]}"; do { kill -KILL "$p" && wait "$p"; } 2>/dev/null || true; done
  if [ -n "$WORKER_CLUSTER" ]; then
    [ $st -ne 0 ] && [ -f "$WCLUSTER_DIR/server.log" ] && { echo "--- server log (tail)"; tail -15 "$WCLUSTER_DIR/server.log"; }
    AJ_PGPORT=$WPORT AJ_CLUSTER_DIR=$WCLUSTER_DIR "$AJ_ROOT/scripts/cluster" stop >/dev/null 2>&1
  fi
  rm -rf "$TMPD"
  exit $st
}
trap cleanup EXIT

A=aaaaaaaa-0000-4000-8000-00000000000a
B=bbbbbbbb-0000-4000-8000-00000000000b
C=cccccccc-0000-4000-8000-00000000000c
RUN=0
# consume [OPTION...]: one `feed_consumer --once` against $DB; its output
# goes to $OUT (the file is named after the run, kept for failures).
consume() {
  RUN=$((RUN + 1))
  OUT=$TMPD/run$RUN.out
  local rc=0
  "$BIN" --conninfo "dbname=$DB" --once "$@" >"$OUT" 2>"$TMPD/run$RUN.err" || rc=$?
  [ $rc -eq 0 ] || { cat "$TMPD/run$RUN.err"; fail "feed_consumer --once $* exited with $rc"; }
}
# lines_of AGENT FILE: what FILE shows of AGENT, in order, one row per
# line: "#3 it=1 ToolCall" for an entry, "gap #4..#9 (compacted)" for a gap.
lines_of() {
  awk -v a="${1:0:8}]" '$2 == "[agent" && $3 == a {
    if ($4 == "~~") print "gap " $6 " " $7; else print $4 " " $5 " " $6 }' "$2"
}
# journal_of AGENT AFTER: the agent's live entries after sequence AFTER, as lines_of prints them.
journal_of() {
  q $DB "SELECT '#' || sequence || ' it=' || iteration || ' ' || kind FROM agent_journal.entries
         WHERE agent_id = '$1' AND sequence > $2 ORDER BY sequence"
}
# expect_timeline WHAT AGENT WANT: the last run printed exactly WANT for AGENT
expect_timeline() {
  local got
  got=$(lines_of "$2" "$OUT")
  [ "$got" == "$3" ] || { echo "--- output"; cat "$OUT"; echo "--- want for $2"; echo "$3"; fail "$1"; }
  ok "$1 ($(printf '%s' "$3" | grep -c '^') rows)"
}
# positions_increase: the last run's positions are strictly increasing
positions_increase() {
  awk '{ p = substr($1, 2) + 0; if (NR > 1 && p <= last) exit 1; last = p }' "$OUT" \
    || { cat "$OUT"; fail "positions do not increase"; }
}
stored_position() {
  q $DB "SELECT position FROM agent_journal.feed_consumers WHERE consumer = '${1:-timeline}'"
}
last_printed() { tail -n 1 "$OUT" | awk '{ print substr($1, 2) }'; }
append() {  # append AGENT ITERATION TYPE
  q $DB "SELECT agent_journal.append('$1', $2, jsonb_build_object('type', '$3'))" >/dev/null
}

fresh_db $DB

# (1) subscribing at the feed's end
append $C 0 Before  # journaled before the consumer exists: not its business
consume
expect_eq "(1) first run prints nothing" "$(wc -l <"$OUT")" 0
grep -q 'consumer "timeline" at position' "$TMPD/run$RUN.err" || fail "(1) no start-up line"
expect_eq "(1) consumer created at the feed's end" "$(stored_position)" \
  "$(q $DB "SELECT last_position FROM agent_journal.feed_state")"

# (2) two agents, interleaved transactions; one append rolled back
append $A 0 Started
append $B 0 Started
q $DB "SELECT agent_journal.append_batch('$A', 1,
         ARRAY['{\"type\": \"Thought\"}', '{\"ToolCall\": {\"name\": \"grep\"}}', '{\"type\": \"Observation\"}']::jsonb[])" >/dev/null
append $B 1 ToolCall
psql -X -q -v ON_ERROR_STOP=1 -d $DB >/dev/null <<SQL
BEGIN;
SELECT agent_journal.append('$A', 1, '{"type": "RolledBack"}');
ROLLBACK;
SQL
append $A 1 IterationCompleted
append $B 1 IterationCompleted
consume
expect_timeline "(2) agent A: every entry, in order" $A "$(journal_of $A 0)"
expect_timeline "(2) agent B: every entry, in order" $B "$(journal_of $B 0)"
expect_eq "(2) rows printed" "$(wc -l <"$OUT")" 8
grep -q RolledBack "$OUT" && fail "(2) a rolled-back append was printed"
positions_increase
expect_eq "(2) ack stored: the consumer's position is the last one printed" "$(stored_position)" "$(last_printed)"

# (3) nothing again
P=$(stored_position)
consume
expect_eq "(3) second run prints nothing (nothing repeated)" "$(wc -l <"$OUT")" 0
expect_eq "(3) position unchanged" "$(stored_position)" "$P"

# (4) small batches
for i in 1 2 3 4; do append $A 2 "Step$i"; done
for i in 1 2 3; do append $B 2 "Step$i"; done
consume --max 2
expect_timeline "(4) --max 2: agent A's new entries, in order" $A "$(journal_of $A 5)"
expect_timeline "(4) --max 2: agent B's new entries, in order" $B "$(journal_of $B 3)"
expect_eq "(4) rows printed" "$(wc -l <"$OUT")" 7
positions_increase
expect_eq "(4) ack stored" "$(stored_position)" "$(last_printed)"

# (5) compaction behind and ahead of the consumer; forget_agent
q $DB "SELECT agent_journal.compact('$A')" >/dev/null  # all of it, read already
consume
expect_eq "(5) compacting what was read prints nothing" "$(wc -l <"$OUT")" 0
for i in 1 2 3; do append $A 3 "Late$i"; done  # #10, #11, #12
q $DB "SELECT agent_journal.compact('$A', 11)" >/dev/null
append $B 3 Doomed1
append $B 3 Doomed2  # #7, #8
q $DB "SELECT agent_journal.forget_agent('$B')" >/dev/null
append $B 0 Reborn  # a new life: #1
consume
expect_timeline "(5) agent A: a gap for #10..#11, then #12" $A "gap #10..#11 (compacted)
#12 it=3 Late3"
expect_timeline "(5) agent B: a forgotten gap, then its new #1" $B "gap #7..#8 (forgotten)
#1 it=0 Reborn"
positions_increase
expect_eq "(5) ack stored" "$(stored_position)" "$(last_printed)"

# (6) a late commit: A's append is open while B's commits and the consumer runs
psql -X -q -v ON_ERROR_STOP=1 -d $DB -c "BEGIN; SELECT agent_journal.append('$A', 4, '{\"type\": \"CommittedLate\"}');
  SELECT pg_sleep(3); COMMIT;" >/dev/null 2>"$TMPD/late.err" &
LATE=$!
PIDS+=($LATE)
late_open() {
  [ "$(q $DB "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB' AND wait_event = 'PgSleep'")" = 1 ]
}
wait_for 10 "(6) a transaction holds an uncommitted append to A" late_open
append $B 1 WhileAWaits
consume
expect_timeline "(6) while it is open: B's entry" $B "#2 it=1 WhileAWaits"
expect_timeline "(6) while it is open: nothing of A" $A ""
wait $LATE || { cat "$TMPD/late.err"; fail "(6) the late transaction failed"; }
consume
expect_timeline "(6) after its commit: A's late entry" $A "#13 it=4 CommittedLate"
expect_eq "(6) and nothing else" "$(wc -l <"$OUT")" 1

# (7) another consumer, from the beginning: every live entry
consume --from-beginning replay
for a in $A $B $C; do
  got=$(lines_of $a "$OUT" | grep -v '^gap ') || true
  [ "$got" == "$(journal_of $a 0)" ] || { cat "$OUT"; fail "(7) $a: live entries differ"; }
done
ok "(7) --from-beginning: every agent's live entries, in order"
expect_eq "(7) its ack is its own" "$(stored_position replay)" "$(last_printed)"

# (8) following the feed
"$BIN" --conninfo "dbname=$DB" --poll-ms 200 >"$TMPD/live.out" 2>"$TMPD/live.err" &
LIVE=$!
PIDS+=($LIVE)
wait_for 10 "(8) the live consumer started" grep -q listening "$TMPD/live.err"
for i in 1 2 3; do append $A 5 "Live$i"; done
has_live3() { grep -q 'Live3' "$TMPD/live.out"; }
wait_for 10 "(8) the live consumer printed the new entries" has_live3
kill -TERM $LIVE
rc=0
wait $LIVE || rc=$?
expect_eq "(8) exit status after SIGTERM" "$rc" 0
OUT=$TMPD/live.out
expect_timeline "(8) live: A's new entries, in order" $A "$(journal_of $A 13)"
expect_eq "(8) ack stored by the live run" "$(stored_position)" "$(last_printed)"
consume
expect_eq "(8) a run after it prints nothing" "$(wc -l <"$OUT")" 0

# (9) errors
rc=0
"$BIN" --conninfo "dbname=${DB}_missing" --once >/dev/null 2>"$TMPD/err1" || rc=$?
expect_eq "(9) no such database: exit status" "$rc" 2
grep -q "database \"${DB}_missing\" does not exist" "$TMPD/err1" || { cat "$TMPD/err1"; fail "(9) message"; }
dropdb --if-exists ${DB}_bare >/dev/null 2>&1
createdb ${DB}_bare
rc=0
"$BIN" --conninfo "dbname=${DB}_bare" --once >/dev/null 2>"$TMPD/err2" || rc=$?
dropdb ${DB}_bare
expect_eq "(9) no extension: exit status" "$rc" 2
grep -q 'schema "agent_journal" does not exist (SQLSTATE 3F000)' "$TMPD/err2" || { cat "$TMPD/err2"; fail "(9) message"; }
rc=0
"$BIN" --max 0 >/dev/null 2>&1 || rc=$?
expect_eq "(9) bad usage: exit status" "$rc" 1

# (10) woken by the background worker's NOTIFY
WORKER_CLUSTER=1
AJ_PGPORT=$WPORT AJ_CLUSTER_DIR=$WCLUSTER_DIR AJ_PG_CONF="shared_preload_libraries = 'agent_journal'
agent_journal.export_database = '$WDB'" \
  "$AJ_ROOT/scripts/cluster" start >/dev/null || fail "could not start the preloaded cluster"
eval "$(AJ_PGPORT=$WPORT AJ_CLUSTER_DIR=$WCLUSTER_DIR "$AJ_ROOT/scripts/cluster" env)"
export PGHOST PGPORT PGUSER PGDATABASE
DB=$WDB
fresh_db $DB  # until it exists, the worker fails to connect and is restarted (every 5 s)
worker_up() {
  [ "$(q $DB "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB' AND backend_type = 'agent_journal exporter'")" = 1 ]
}
wait_for 30 "(10) the background worker is connected to $DB" worker_up
"$BIN" --conninfo "dbname=$DB" --poll-ms 600000 >"$TMPD/notified.out" 2>"$TMPD/notified.err" &
NOTIFIED=$!
PIDS+=($NOTIFIED)
wait_for 10 "(10) the consumer started" grep -q listening "$TMPD/notified.err"
append $A 0 First
has_first() { grep -q First "$TMPD/notified.out"; }
wait_for 10 "(10) the first entry printed" has_first
# From here on only a notification can wake the consumer (it polls every
# 10 minutes): the worker's tick must.
append $A 1 Second
has_second() { grep -q Second "$TMPD/notified.out"; }
wait_for 10 "(10) an entry appended while it waits is printed (NOTIFY woke it)" has_second
kill -TERM $NOTIFIED
rc=0
wait $NOTIFIED || rc=$?
expect_eq "(10) exit status after SIGTERM" "$rc" 0
OUT=$TMPD/notified.out
expect_timeline "(10) A's entries" $A "#1 it=0 First
#2 it=1 Second"
expect_eq "(10) ack stored" "$(stored_position)" "$(last_printed)"

echo "feed_example: all checks passed in $((SECONDS - T0)) s"
