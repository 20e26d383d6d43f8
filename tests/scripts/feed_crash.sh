#!/usr/bin/env bash
# The change feed's unlogged notes through a crash (0.10.0). Appends note
# themselves in agent_journal.feed_appends, which is unlogged: a crash
# empties it. Before the crash, without any tick in between: agent A has
# entries in the feed and two more only noted; B has four noted entries,
# two of them compacted; C had entries in the feed and noted ones, was
# forgotten and appended again; D has two noted entries. A backend is then
# killed with SIGKILL (the postmaster restarts every process and empties
# unlogged tables). After the restart, before any tick: D is forgotten and
# a new agent F appends. Then a consumer subscribed before the crash reads
# the feed (its read ticks, and the tick rebuilds the lost notes from the
# journal): every live entry exactly once, per agent in sequence order,
# after what it had read before; B's compacted entries and C's and D's
# forgotten ones as gap rows; nothing twice. A second read returns nothing.
# Runs in the test cluster (not preloaded: only read_feed ticks).
source "$(dirname "$0")/lib.bash"
DB=aj_feed_crash
CLUSTER_DIR=${AJ_CLUSTER_DIR:-/tmp/agent_journal.${PGPORT:-54329}}
[ -f "$CLUSTER_DIR/server.log" ] || fail "no server.log in $CLUSTER_DIR (set AJ_CLUSTER_DIR)"
export PGCONNECT_TIMEOUT=3
A=00000000-0000-0000-0000-0000000fc00a
B=00000000-0000-0000-0000-0000000fc00b
C=00000000-0000-0000-0000-0000000fc00c
D=00000000-0000-0000-0000-0000000fc00d
F=00000000-0000-0000-0000-0000000fc00f
ev() { echo "'{\"type\": \"Step\", \"n\": $1}'"; }
app() { q $DB "SELECT agent_journal.append('$1', 0, $(ev "$2"))" >/dev/null; }
appended() {  # appended AGENT FROM TO
  local i
  for i in $(seq "$2" "$3"); do app "$1" "$i"; done
}
# what a read returns, one line per row: agent|kind|sequence|event for gaps
READ="SELECT position || '|' || agent_id || '|' || kind || '|' || coalesce(sequence::text, '') || '|' ||
        CASE WHEN kind = 'gap' THEN (event->>'from') || '-' || (event->>'through') || ' ' || (event->>'reason')
             ELSE event->>'n' END
      FROM agent_journal.read_feed('fc', 1000) ORDER BY position"

fresh_db $DB
q $DB "SELECT agent_journal.subscribe('fc', true)" >/dev/null
appended $A 1 3
appended $C 1 2
# a read outside a transaction block ticks: A 1-3 and C 1-2 get positions
before=$(q $DB "$READ")
expect_eq "before the crash: the consumer read A 1-3 and C 1-2" "$(echo "$before" | wc -l)" "5"
last=$(echo "$before" | tail -1 | cut -d'|' -f1)
q $DB "SELECT agent_journal.ack_feed('fc', $last)" >/dev/null
appended $A 4 5
appended $B 1 4
q $DB "SELECT agent_journal.compact('$B', 2)" >/dev/null
appended $C 3 4
expect_eq "C forgotten (4 entries removed)" "$(q $DB "SELECT agent_journal.forget_agent('$C')")" "4"
appended $C 1 1
appended $D 1 2
expect_eq "before the crash: notes not yet in the feed (unlogged), the marker, the forgotten note (logged)" \
  "$(q $DB "SELECT (SELECT count(*) FROM agent_journal.feed_appends WHERE first_sequence <> 0) || ' ' ||
               (SELECT count(*) FROM agent_journal.feed_appends WHERE first_sequence = 0) || ' ' ||
               (SELECT string_agg(first_sequence || '-' || last_sequence || ' ' || gap, ',')
                FROM agent_journal.feed_pending)")" "9 1 3-4 forgotten"
q $DB "CHECKPOINT" >/dev/null

# the crash: SIGKILL a backend; the postmaster restarts every process
log_at=$(stat -c %s "$CLUSTER_DIR/server.log")
psql -X -q -d $DB -c "SET application_name = 'aj_feed_crash_victim'" -c "SELECT pg_sleep(60)" \
  >/dev/null 2>&1 &
VPID=$!
victim=""
for _ in $(seq 1 50); do
  victim=$(q $DB "SELECT pid FROM pg_stat_activity WHERE application_name = 'aj_feed_crash_victim'" || true)
  [ -n "$victim" ] && break
  sleep 0.1
done
[ -n "$victim" ] || fail "the victim backend did not start"
kill -KILL "$victim"
wait "$VPID" 2>/dev/null || true
restarted() {
  tail -c +"$((log_at + 1))" "$CLUSTER_DIR/server.log" | grep -q "all server processes terminated; reinitializing" &&
    q $DB "SELECT 1" >/dev/null 2>&1
}
wait_for 30 "backend $victim killed with SIGKILL: the server ran crash recovery and is back" restarted
expect_eq "after the crash: the unlogged notes and their marker are gone, the forgotten note is not" \
  "$(q $DB "SELECT (SELECT count(*) FROM agent_journal.feed_appends) || ' ' ||
               (SELECT count(*) FROM agent_journal.feed_pending)")" "0 1"

# before any tick: D forgotten (its notes were lost: the note covers what
# the feed does not), a new agent F appends
expect_eq "D forgotten after the crash (2 entries removed)" "$(q $DB "SELECT agent_journal.forget_agent('$D')")" "2"
appended $F 1 1

after=$(q $DB "$READ")
echo "$after" | sed 's/^/  read: /'
rows() { echo "$after" | cut -d'|' -f2- | grep "^$1|" | cut -d'|' -f2- | paste -sd' ' -; }
expect_eq "A: the entries noted before the crash, once, after what was read" "$(rows $A)" "Step|4|4 Step|5|5"
expect_eq "B: its compacted entries as a gap, then the others" "$(rows $B)" "gap||1-2 compacted Step|3|3 Step|4|4"
expect_eq "C: its forgotten entries the consumer had not read (3-4) as one gap, then the new incarnation" \
  "$(rows $C)" "gap||3-4 forgotten Step|1|1"
expect_eq "D: forgotten after the crash, a gap for the lost notes" "$(rows $D)" "gap||1-2 forgotten"
expect_eq "F: appended after the crash" "$(rows $F)" "Step|1|1"
expect_eq "positions strictly increase, after the acknowledged one" \
  "$(echo "$after" | cut -d'|' -f1 | awk -v l="$last" 'BEGIN{ok=1} {if ($1 <= l) ok=0; l=$1} END{print ok}')" "1"
expect_eq "the marker is back" \
  "$(q $DB "SELECT count(*) FROM agent_journal.feed_appends WHERE first_sequence = 0")" "1"
tail -c +"$((log_at + 1))" "$CLUSTER_DIR/server.log" | grep -q "the feed's unlogged notes were lost" ||
  fail "server.log does not report the rebuilt notes"
ok "server.log reports the rebuilt notes"
q $DB "SELECT agent_journal.ack_feed('fc', $(echo "$after" | tail -1 | cut -d'|' -f1))" >/dev/null
expect_eq "a second read returns nothing (nothing noted twice)" "$(q $DB "$READ" | wc -l)" "0"
app $A 6
expect_eq "appends go on: A 6 next" "$(q $DB "$READ" | cut -d'|' -f3- | paste -sd' ')" "Step|6|6"
dropdb $DB
