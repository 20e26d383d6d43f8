#!/usr/bin/env bash
# Crash safety: writers append to their own agent and to one shared agent
# while (1) a backend serving a writer is killed with SIGKILL (the
# postmaster then restarts every backend and runs crash recovery) and
# (2) the whole server is stopped with `pg_ctl stop -m immediate` and
# restarted. Writers reconnect and retry with idempotency keys, logging
# every acknowledged (agent, sequence). Afterwards: every acknowledged
# append is in the journal with the event its writer sent, each agent's
# journal is gap-free and duplicate-free, retries never produced a second
# entry, and appends continue at max + 1.
# Needs AJ_CLUSTER_DIR (exported by scripts/test) to stop and start the server.
source "$(dirname "$0")/lib.bash"
DB=aj_crash
NWRITERS=4
SHARED=00000000-0000-0000-0000-00000000c0de
PGBIN=$(pg_config --bindir)
CLUSTER_DIR=${AJ_CLUSTER_DIR:-/tmp/agent_journal.${PGPORT:-54329}}
DATA=$CLUSTER_DIR/data
[ -f "$DATA/postgresql.conf" ] || fail "no cluster data directory at $DATA (set AJ_CLUSTER_DIR)"
export PGCONNECT_TIMEOUT=3
T0=$SECONDS

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
own_agent() { printf '00000000-0000-0000-0000-%012d' "$1"; }

WPIDS=()
cleanup() {
  touch "$TMPD/stop" 2>/dev/null || true
  for p in "${WPIDS[@]}"; do
    pkill -KILL -P "$p" 2>/dev/null || true   # its psql, if any
    { kill -KILL "$p" && wait "$p"; } 2>/dev/null || true
  done
  rm -rf "$TMPD"
}
trap cleanup EXIT

# append_retry W AGENT TOKEN N: one append, retried with the same
# idempotency key and event until acknowledged (COMMIT succeeded); logs
# "agent sequence token attempts" to the writer's log. The append runs in
# a transaction that pauses before COMMIT, so a kill often lands on a
# written but uncommitted append (holding the agent's lock).
append_retry() {
  local w=$1 agent=$2 token=$3 n=$4 out rc attempts=0 deadline=$((SECONDS + 40))
  local sql="SELECT agent_journal.append('$agent', $n, '{\"type\": \"Step\", \"token\": \"$token\", \"n\": $n}', NULL, '$token')"
  while :; do
    attempts=$((attempts + 1))
    out=$(timeout 15 psql -X -At -q -v ON_ERROR_STOP=1 -d $DB -c "BEGIN" -c "$sql" \
      -c "SELECT FROM pg_sleep(0.05)" -c "COMMIT" 2>>"$TMPD/w$w.err")
    rc=$?
    if [ $rc -eq 0 ] && [[ $out =~ ^[0-9]+$ ]]; then
      echo "$agent $out $token $attempts" >>"$TMPD/w$w.log"
      return 0
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "writer $w: append $token not acknowledged after $attempts attempts" >>"$TMPD/w$w.err"
      return 1
    fi
    sleep 0.1
  done
}

# writer W: alternates appends to its own agent and the shared agent until
# $TMPD/stop exists; never stops between sending an append and its ack.
writer() {
  set +e
  local w=$1 own n=0
  own=$(own_agent "$w")
  export PGAPPNAME=aj_crash_w$w
  while [ ! -e "$TMPD/stop" ]; do
    n=$((n + 1))
    append_retry "$w" "$own" "w$w-own-$n" "$n" || exit 1
    append_retry "$w" "$SHARED" "w$w-shared-$n" "$n" || exit 1
  done
  exit 0
}

acked() { cat "$TMPD"/w*.log 2>/dev/null | wc -l; }
log_size() { stat -c %s "$CLUSTER_DIR/server.log" 2>/dev/null || echo 0; }
wait_ready() {  # wait_ready SECONDS
  local end=$((SECONDS + $1))
  until pg_isready -q -d $DB; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
  until q $DB "SELECT 1" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}
wait_progress() {  # wait_progress FROM_COUNT MIN_NEW SECONDS: at least MIN_NEW more acks
  local end=$((SECONDS + $3))
  while [ "$(acked)" -lt $(($1 + $2)) ]; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}

fresh_db $DB
for w in $(seq 1 $NWRITERS); do
  : >"$TMPD/w$w.log"
  writer "$w" &
  WPIDS+=($!)
done

# log_has PATTERN: server.log has PATTERN after byte offset $log_at
log_has() { tail -c +"$((log_at + 1))" "$CLUSTER_DIR/server.log" >"$TMPD/server.new"; grep -q -- "$1" "$TMPD/server.new"; }

# 1. steady writing
sleep 3
before_kill=$(acked)
[ "$before_kill" -gt 0 ] || fail "writers acknowledged nothing in 3 s (see errors: $(cat "$TMPD"/w*.err | tail -3))"
ok "phase 1: $before_kill appends acknowledged before the crash"

# 2. SIGKILL a backend serving a writer: the postmaster restarts everything
# Prefer a backend inside a write transaction (an append not yet committed:
# its writer never gets the acknowledgement), though it may commit between
# the query and the kill (the writers pause 50 ms before COMMIT so that a
# sample of pg_stat_activity often finds one). A backend that is just exiting
# (or a zombie) may take the signal without crashing anything, so try again
# until the postmaster reports the kill.
log_at=$(log_size)
victim=""
end=$((SECONDS + 30))
while [ -z "$victim" ]; do
  [ $SECONDS -lt $end ] || fail "could not kill a writer backend mid-append (postmaster never reported one)"
  row=$(q $DB "SELECT pid || ' ' || application_name FROM pg_stat_activity
               WHERE application_name LIKE 'aj_crash_w%' AND backend_xid IS NOT NULL
               LIMIT 1" 2>/dev/null || true)
  [ -n "$row" ] && kill -KILL "${row%% *}" 2>/dev/null || continue
  for _ in $(seq 1 20); do
    if log_has "(PID ${row%% *}) was terminated by signal 9"; then
      victim=$row; break
    fi
    sleep 0.1
  done
done
ok "killed backend ${victim%% *} (serving ${victim#* }, inside a write transaction) with SIGKILL; postmaster reports it"
wait_ready 30 || fail "server did not come back after crash recovery"
log_has "all server processes terminated; reinitializing" \
  || fail "server.log does not show a crash restart"
ok "crash recovery: all server processes restarted, server accepts connections"

# 3. writers resume after the crash
wait_progress "$(acked)" $((NWRITERS * 4)) 15 || fail "writers made no progress after crash recovery"
sleep 2
before_stop=$(acked)
ok "phase 2: $((before_stop - before_kill)) more appends acknowledged around and after the crash"

# 4. immediate shutdown (no checkpoint) while writers are running, then restart
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null || fail "pg_ctl stop -m immediate"
ok "server stopped with -m immediate while writers were running"
sleep 1
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$CLUSTER_DIR/server.log" -w -t 60 start >/dev/null \
  || { tail -20 "$CLUSTER_DIR/server.log"; fail "pg_ctl start after immediate stop"; }
wait_ready 30 || fail "server not ready after restart"
ok "server restarted (recovery from the immediate stop)"
wait_progress "$(acked)" $((NWRITERS * 4)) 15 || fail "writers made no progress after the restart"
sleep 1

# 5. stop the writers; each finishes (acknowledges) the append it is in
touch "$TMPD/stop"
wait_writers 45 "${WPIDS[@]}"
WPIDS=()
total=$(acked)
retried=$(cat "$TMPD"/w*.log | awk '$4 > 1' | wc -l)
ok "writers stopped: $total appends acknowledged, $retried of them after retries"
[ "$retried" -gt 0 ] || fail "no append needed a retry: the crash and the restart were not exercised"

# 6. verify
cat "$TMPD"/w*.log | tr ' ' '\t' >"$TMPD/acks.tsv"
q $DB "CREATE TABLE acks (agent_id uuid, sequence bigint, token text, attempts int)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d $DB -c "\\copy acks FROM '$TMPD/acks.tsv'" || fail "load acks"
expect_eq "acks loaded" "$(q $DB "SELECT count(*) FROM acks")" "$total"

expect_eq "acknowledged appends missing or with another event" \
  "$(q $DB "SELECT count(*) FROM acks a LEFT JOIN agent_journal.entries e
            ON e.agent_id = a.agent_id AND e.sequence = a.sequence AND e.event->>'token' = a.token
            WHERE e.sequence IS NULL")" "0"
expect_eq "(agent, sequence) acknowledged twice" \
  "$(q $DB "SELECT count(*) - count(DISTINCT (agent_id, sequence)) FROM acks")" "0"
expect_eq "tokens journaled more than once (a retry appended again)" \
  "$(q $DB "SELECT count(*) FROM (SELECT event->>'token' FROM agent_journal.entries
            GROUP BY 1 HAVING count(*) > 1) d")" "0"
expect_eq "entries no writer acknowledged" \
  "$(q $DB "SELECT count(*) FROM agent_journal.entries e
            WHERE NOT EXISTS (SELECT 1 FROM acks a WHERE a.token = e.event->>'token')")" "0"
expect_eq "own agents: n-th append has sequence n" \
  "$(q $DB "SELECT count(*) FROM agent_journal.entries
            WHERE agent_id <> '$SHARED' AND (event->>'n')::bigint <> sequence")" "0"
expect_eq "idempotency keys match entries" \
  "$(q $DB "SELECT count(*) FROM agent_journal.entries e FULL JOIN agent_journal.idempotency_keys k
            ON k.agent_id = e.agent_id AND k.idempotency_key = e.event->>'token' AND k.last_sequence = e.sequence
            WHERE e.sequence IS NULL OR k.last_sequence IS NULL")" "0"

lost=$(cat "$TMPD"/w*.err | grep -c -E "server closed the connection unexpectedly" || true)
vw=${victim#* aj_crash_w}
# Informational: the victim's transaction may have committed between the
# pg_stat_activity query and the kill.
vlost=$(grep -c "server closed the connection unexpectedly" "$TMPD/w$vw.err" || true)
ok "$lost append attempts lost their connection mid-flight ($vlost of them writer $vw's); retries decided"
entries=$(q $DB "SELECT count(*) FROM agent_journal.entries")
expect_eq "re-sent acknowledged appends (same key and event) answering another sequence" \
  "$(q $DB "SELECT count(*) FROM acks a WHERE agent_journal.append(a.agent_id, split_part(a.token, '-', 3)::int,
            jsonb_build_object('type', 'Step', 'token', a.token, 'n', split_part(a.token, '-', 3)::int),
            NULL, a.token) <> a.sequence")" "0"
expect_eq "entries after re-sending" "$(q $DB "SELECT count(*) FROM agent_journal.entries")" "$entries"

gapfree_sql="SELECT count(*) FROM (SELECT agent_id FROM agent_journal.entries GROUP BY 1
             HAVING min(sequence) <> 1 OR count(*) <> max(sequence) OR count(DISTINCT sequence) <> count(*)) g"
expect_eq "agents with gaps or duplicates" "$(q $DB "$gapfree_sql")" "0"
expect_eq "agents journaled" "$(q $DB "SELECT count(DISTINCT agent_id) FROM agent_journal.entries")" "$((NWRITERS + 1))"
# the journal's own families (per-backend tallies, written at commit) came
# through the kill and the immediate stop exactly: nothing counted twice,
# nothing acknowledged missing
expect_eq "agent_journal_appended_entries_total and _agents after the crashes = entries, agents" \
  "$(q $DB "SELECT string_agg(value::bigint::text, ',' ORDER BY name) FROM agent_journal.metric_samples
            WHERE name IN ('agent_journal_agents', 'agent_journal_appended_entries_total')")" \
  "$((NWRITERS + 1)),$(q $DB "SELECT count(*) FROM agent_journal.entries")"
expect_eq "agent_journal.agents agrees with entries" \
  "$(q $DB "SELECT count(*) FROM agent_journal.agents a JOIN (SELECT agent_id, max(sequence) m, count(*) c
            FROM agent_journal.entries GROUP BY 1) e USING (agent_id)
            WHERE a.latest_sequence <> e.m OR a.live_entries <> e.c")" "0"

for agent in $(q $DB "SELECT DISTINCT agent_id FROM agent_journal.entries ORDER BY 1"); do
  max=$(q $DB "SELECT max(sequence) FROM agent_journal.entries WHERE agent_id = '$agent'")
  got=$(q $DB "SELECT agent_journal.append('$agent', 0, '{\"type\": \"After\"}')")
  [ "$got" = "$((max + 1))" ] || fail "append to $agent after recovery: got $got, want $((max + 1))"
done
ok "one more append per agent returns max + 1"
expect_eq "agents with gaps or duplicates after the extra appends" "$(q $DB "$gapfree_sql")" "0"

dropdb $DB
echo "crash: all checks passed in $((SECONDS - T0)) s"
