#!/usr/bin/env bash
# examples/agent_loop (the README's durable agent loop) against a real
# server. Every run saves its state every few iterations (--state-every,
# in the transaction of the step that completes the iteration) and starts
# with one call to resume(): every agent ends with exactly the states it
# should have saved, each what the journal folds into at its sequence, and
# resume() folds to the same iteration and sum as a full replay() and as
# the loop's own last line. (1) Killed with SIGKILL in the middle of an
# iteration, compacted up to its latest state (the entries before it are
# gone: only a loop that resumes from the state can go on), restarted,
# killed again right after the restart and restarted once more, it ends
# with every step of every iteration journaled exactly once, in order,
# gap-free (counting the compacted entries, kept aside by the test), with
# its state (a running sum) rebuilt correctly from the journal, and with
# exactly one step's worth of metrics per step (a step and its metrics
# commit together). (2) Two agents run side by side, one of them killed
# and restarted, without disturbing each other; the other one's server
# session is terminated under it a few times (it reconnects and retries
# the same keyed call), and it saves no state (--state-every 0: resume()
# is a replay). (3) Foreign appends to a running agent, each while the
# loop is stopped between two steps, make its appends fail with 40001
# (expected_sequence); it replays what it missed and carries on. (4) Two
# workers and a forced takeover
# (--worker: leases with fencing tokens): worker A is stopped with SIGSTOP
# between two steps and stays stopped past its lease's ttl; worker B waits
# for the lease, takes the agent over from A's latest state, finishes it
# and releases it (saving its states under its lease); A,
# resumed with SIGCONT, makes the write it was about to make with its old
# token, is refused (55006) and exits 3 (fenced). The journal has every
# iteration exactly once. A third worker gives up while the lease is
# held (exit 4), and a loop without --worker is refused (exit 3).
source "$(dirname "$0")/lib.bash"
DB=aj_agent_loop
BIN=$AJ_ROOT/build/agent_loop
T0=$SECONDS

# The runner's cmake step builds it; standalone runs build it here.
if [ ! -x "$BIN" ] || [ "$AJ_ROOT/examples/agent_loop.cpp" -nt "$BIN" ]; then
  { cmake -S "$AJ_ROOT" -B "$AJ_ROOT/build" && cmake --build "$AJ_ROOT/build" --target agent_loop; } \
    >"$TMPD/build.log" 2>&1 || { cat "$TMPD/build.log"; fail "cannot build $BIN"; }
fi

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do { kill -KILL "$p" && wait "$p"; } 2>/dev/null || true; done
  rm -rf "$TMPD"
}
trap cleanup EXIT

fresh_db $DB
# The test's own copy of entries it compacts (scenario 1), and the journal
# as if nothing was compacted: the exactly-once checks read that.
q $DB "CREATE TABLE compacted_entries (LIKE agent_journal.entries);
       CREATE VIEW journal AS SELECT * FROM agent_journal.entries UNION ALL SELECT * FROM compacted_entries" >/dev/null
# loop AGENT ITERATIONS STEP_MS SERVICE [CONNINFO [STATE_EVERY]] &: runs agent_loop
# against $DB in the background; exec, so that $! is agent_loop itself
# (kill -9 must not hit a subshell and orphan the loop)
loop() {
  exec "$BIN" --conninfo "dbname=$DB ${5:-}" --agent "$1" --iterations "$2" --step-ms "$3" --service "$4" \
    --state-every "${6:-5}"
}
AJ_POLL=0.02  # wait_for (lib.bash): kills must land close to the awaited step
# iterations_done OUT K: OUT (perhaps not created yet) reports K iterations done
iterations_done() {
  local n
  n=$(grep -sc '^iteration .* done' "$1") || true
  [ "${n:-0}" -ge "$2" ]
}
# finish WHAT PID ERR: waits (bounded) for a loop to exit 0
finish() {
  local deadline=$((SECONDS + 15)) rc=0
  while kill -0 "$2" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill -KILL "$2"; cat "$3"; fail "$1 did not finish in 15 s"; }
    sleep 0.05
  done
  wait "$2" || rc=$?
  [ $rc -eq 0 ] || { cat "$3"; fail "$1 exited with $rc"; }
}
# kill_loop PID: SIGKILL, no chance to clean up
kill_loop() {
  kill -KILL "$1" 2>/dev/null || fail "agent_loop $1 exited before it could be killed"
  wait "$1" 2>/dev/null || true
}
session_state() {
  q $DB "SELECT state FROM pg_stat_activity WHERE application_name = '$1'"
}
# stop_settled PID APP: SIGSTOP, then wait until the session APP is not
# running a statement (one already sent finishes without its client):
# from then on, what the process committed cannot change. Sets `state` to
# the session's state (idle, or idle in transaction).
stop_settled() {
  local j
  kill -STOP "$1" 2>/dev/null || fail "$2 exited before it could be stopped"
  for j in $(seq 1 100); do
    state=$(session_state "$2")
    [ "$state" != active ] && return 0
    sleep 0.02
  done
}
# stop_between_steps PID APP: SIGSTOP, retried until the process stopped
# with its session idle (not in a step's transaction). A transaction
# stopped after its append would keep the agent's lock, and any other
# write to the agent (a takeover, a foreign append) waits for that lock:
# it would wait until the process is resumed, and the test for it. A real
# deployment bounds that with idle_in_transaction_session_timeout.
stop_between_steps() {
  local pid=$1 app=$2 state i
  for i in $(seq 1 40); do
    stop_settled "$pid" "$app"
    if [ "$state" = idle ]; then
      ok "$app stopped between two steps (attempt $i)"
      return 0
    fi
    kill -CONT "$pid"
    sleep "0.0$((RANDOM % 10))"
  done
  fail "could not stop $app outside a transaction in 40 attempts (last state: $state)"
}
# start_sum WHAT OUT: the first line of a run (OUT) names the running sum
# of the iterations it found completed: resume() rebuilt it right. (The
# journal alone may not show a wrong one: a run that resumes before an
# IterationCompleted takes the ToolCall's result, not its own sum.)
start_sum() {
  local line c sum
  line=$(head -n 1 "$2")
  c=$(sed -n 's/.*: \([0-9]*\) iterations completed, [0-9]* steps into the next, sum [0-9]*$/\1/p' <<<"$line")
  sum=$(sed -n 's/.* steps into the next, sum \([0-9]*\)$/\1/p' <<<"$line")
  [ -n "$c" ] && [ -n "$sum" ] || fail "$1: no start-up line: $line"
  expect_eq "$1 started with the sum of its $c completed iterations" "$sum" "$((c * (c + 1) / 2))"
}

# check_agent AGENT N SERVICE OUT STATE_EVERY [METRICS]: the invariants of
# a finished loop; OUT is the output of its last run, STATE_EVERY its
# --state-every. METRICS=exact (default): a step and its metrics commit
# together and no reply was lost, so exactly one count per step and one
# snapshot per iteration; at-least: after a lost connection a retried
# step may count its metrics again. Entries compacted by the test count
# (view journal).
check_agent() {
  local a=$1 n=$2 svc=$3 out=$4 every=$5 metrics=${6:-exact}
  local e="journal WHERE agent_id = '$a'"
  local steps="$e AND kind IN ('Thought', 'ToolCall', 'IterationCompleted')"
  local latest
  latest=$(q $DB "SELECT agent_journal.latest_sequence('$a')")
  expect_eq "$a: sequences gap-free 1..latest" \
    "$(q $DB "SELECT count(*) || ',' || min(sequence) || ',' || max(sequence) FROM $e")" "$latest,1,$latest"
  expect_eq "$a: last run's final line" "$(tail -n 1 "$out")" \
    "done: $n iterations, sum $((n * (n + 1) / 2)), latest sequence $latest"
  expect_eq "$a: $n iterations x 3 steps, none twice" \
    "$(q $DB "SELECT count(*) || ',' || count(DISTINCT (iteration, kind)) || ',' || min(iteration) || ',' || max(iteration) FROM $steps")" \
    "$((3 * n)),$((3 * n)),1,$n"
  expect_eq "$a: one IterationCompleted per iteration" \
    "$(q $DB "SELECT count(DISTINCT iteration) || ',' || count(*) FROM $e AND kind = 'IterationCompleted'")" "$n,$n"
  expect_eq "$a: steps in order (Thought, ToolCall, IterationCompleted; iteration by iteration)" \
    "$(q $DB "SELECT count(*) FROM (SELECT iteration, row_number() OVER (ORDER BY sequence) AS rn,
               array_position(ARRAY['Thought', 'ToolCall', 'IterationCompleted'], kind) AS step
             FROM $steps) s WHERE rn <> (iteration - 1) * 3 + step")" "0"
  expect_eq "$a: events name their own iteration" \
    "$(q $DB "SELECT count(*) FROM $steps AND (event ->> 'iteration')::int IS DISTINCT FROM iteration")" "0"
  # the running sum survives the kills only if resume rebuilt it right
  expect_eq "$a: running sum after iteration k is k(k+1)/2" \
    "$(q $DB "SELECT count(*) FROM $e AND kind IN ('ToolCall', 'IterationCompleted')
             AND (event ->> 'result')::bigint IS DISTINCT FROM iteration * (iteration + 1) / 2")" "0"
  expect_eq "$a: Started once, first" \
    "$(q $DB "SELECT string_agg(sequence::text, ',') FROM $e AND kind = 'Started'")" "1"
  expect_eq "$a: every Resumed names the first iteration not completed before it" \
    "$(q $DB "SELECT count(*) FROM $e AND kind = 'Resumed' AND (event ->> 'from_iteration')::int <>
             1 + (SELECT count(*) FROM journal c WHERE c.agent_id = '$a'
                  AND c.kind = 'IterationCompleted' AND c.sequence < journal.sequence)")" "0"
  expect_eq "$a: each step's idempotency key names that step's entry" \
    "$(q $DB "SELECT count(*) FROM agent_journal.idempotency_keys k
             JOIN journal s ON s.agent_id = k.agent_id AND s.sequence = k.first_sequence
             WHERE k.agent_id = '$a' AND k.idempotency_key = 'agent_loop/$a/' || s.iteration || '/' ||
               CASE s.kind WHEN 'Thought' THEN 'thought' WHEN 'ToolCall' THEN 'tool_call'
                           WHEN 'IterationCompleted' THEN 'completed' END")" "$((3 * n))"
  expect_eq "$a: last_completed_iteration" "$(q $DB "SELECT agent_journal.last_completed_iteration('$a')")" "$n"
  # saved states: one at the IterationCompleted of every STATE_EVERY-th
  # iteration (compaction drops those below its point; the latest stays),
  # each what the journal folds into up to it
  local want_states="" what="no saved state (--state-every 0)"
  if [ "$every" -gt 0 ]; then
    what="saved states (through_sequence:iteration) at the IterationCompleted of each iteration k, k % $every = 0"
    want_states=$(q $DB "SELECT coalesce(string_agg(sequence || ':' || iteration, ',' ORDER BY sequence), '')
                         FROM $e AND kind = 'IterationCompleted' AND iteration % $every = 0
                         AND sequence >= (SELECT compacted_through FROM agent_journal.agents WHERE agent_id = '$a')")
    [ -n "$want_states" ] || fail "$a: no iteration to save a state at ($n iterations, every $every)"
  fi
  expect_eq "$a: $what" \
    "$(q $DB "SELECT coalesce(string_agg(through_sequence || ':' || iteration, ',' ORDER BY through_sequence), '')
             FROM agent_journal.saved_states WHERE agent_id = '$a'")" "$want_states"
  expect_eq "$a: each saved state is {iteration: k, sum: k(k+1)/2, sequence: its through_sequence}" \
    "$(q $DB "SELECT count(*) FROM agent_journal.saved_states WHERE agent_id = '$a' AND state IS DISTINCT FROM
             jsonb_build_object('iteration', iteration, 'sum', iteration * (iteration + 1) / 2,
                                'sequence', through_sequence)")" "0"
  if [ "$every" -gt 0 ]; then
    local through=${want_states##*,}
    through=${through%%:*}
    expect_eq "$a: resume() is the latest state (at $through) and the entries after it" \
      "$(q $DB "SELECT count(*) || ',' || min(sequence) || ',' || (array_agg(kind ORDER BY sequence))[1]
               FROM agent_journal.resume('$a')")" "$((1 + latest - through)),$through,state"
  else
    expect_eq "$a: without a state, resume() is replay()" \
      "$(q $DB "SELECT count(*) FROM ((SELECT * FROM agent_journal.resume('$a') EXCEPT ALL
                                       SELECT * FROM agent_journal.replay('$a'))
                                      UNION ALL (SELECT * FROM agent_journal.replay('$a') EXCEPT ALL
                                       SELECT * FROM agent_journal.resume('$a'))) d")" "0"
  fi
  # iteration:sum as the loop folds them, from a state row or an IterationCompleted
  local fold="(array_agg(iteration || ':' || coalesce(event ->> 'sum', event ->> 'result') ORDER BY sequence DESC)
               FILTER (WHERE kind IN ('state', 'IterationCompleted')))[1]"
  expect_eq "$a: resume() folds to what replay() folds to (and the loop's last line says)" \
    "$(q $DB "SELECT (SELECT $fold FROM agent_journal.resume('$a')) || ',' ||
                     (SELECT $fold FROM agent_journal.replay('$a'))")" "$n:$((n * (n + 1) / 2)),$n:$((n * (n + 1) / 2))"
  local cmp="="
  [ "$metrics" = exact ] || cmp=">="
  expect_eq "$a: agent_loop_steps_total per step $cmp $n" \
    "$(q $DB "SELECT string_agg(labels ->> 'step' || '=' || (value $cmp $n), ',' ORDER BY labels ->> 'step')
             FROM agent_journal.metric_samples WHERE name = 'agent_loop_steps_total' AND labels ->> 'agent' = '$a'")" \
    "completed=true,thought=true,tool_call=true"
  expect_eq "$a: snapshots of $svc $cmp $n" \
    "$(q $DB "SELECT count(*) $cmp $n FROM agent_journal.snapshots WHERE service = '$svc'")" "t"
  local expo
  expo=$(q $DB "SELECT exposition FROM agent_journal.prometheus")
  grep -qxF "agent_runtime_scheduler_running_agents{service=\"$svc\"} 1" <<<"$expo" \
    || fail "$a: no agent_runtime_scheduler_running_agents for $svc in the exposition"
  grep -qxF "agent_runtime_scheduler_scheduled_total{service=\"$svc\"} $n" <<<"$expo" \
    || fail "$a: the current snapshot of $svc is not the last iteration's"
  ok "$a: $svc in the Prometheus exposition, current snapshot from iteration $n"
}

# 1. kill -9 mid-iteration, compact up to the latest state, restart,
#    kill -9 right after the restart, restart, finish
A=00000000-0000-0000-0000-00000000a001
N=30
loop $A $N 50 loop-a application_name=agent_loop_a >"$TMPD/a1.out" 2>"$TMPD/a1.err" &
pid=$!
PIDS+=($pid)
wait_for 15 "5 iterations (a state saved)" iterations_done "$TMPD/a1.out" 5
# kill while the iteration is half done: stop the loop until the latest
# entry it committed is a Thought or a ToolCall (however loaded the
# machine), then SIGKILL it; it may be inside the next step's transaction,
# which then rolls back
for i in $(seq 1 100); do
  stop_settled $pid agent_loop_a
  killed_at=$(q $DB "SELECT kind FROM agent_journal.entries WHERE agent_id = '$A' ORDER BY sequence DESC LIMIT 1")
  case $killed_at in Thought | ToolCall) break ;; esac
  kill -CONT $pid
  sleep "0.0$((RANDOM % 10))"
done
kill_loop $pid
case $killed_at in
  Thought | ToolCall) ok "first kill (session $state, attempt $i) left iteration $(q $DB "SELECT max(iteration) FROM agent_journal.entries WHERE agent_id = '$A'") half done ($killed_at)" ;;
  *) fail "first kill did not land mid-iteration (latest entry: $killed_at)" ;;
esac
# Compact A up to its latest state (the test keeps a copy of the entries
# for check_agent): a restart that needed an entry up to the state could
# no longer rebuild its state, only one that resumes from the state can.
through=$(q $DB "SELECT max(through_sequence) FROM agent_journal.saved_states WHERE agent_id = '$A'")
[ -n "$through" ] || fail "A saved no state in 5 iterations"
k0=$(q $DB "SELECT iteration FROM agent_journal.saved_states WHERE agent_id = '$A' AND through_sequence = $through")
killed_latest=$(q $DB "SELECT agent_journal.latest_sequence('$A')")
done_k=$(q $DB "SELECT max(iteration) FROM agent_journal.entries WHERE agent_id = '$A' AND kind = 'IterationCompleted'")
expect_eq "A's latest state is at the IterationCompleted of the last iteration k <= $done_k with k % 5 = 0" \
  "$(q $DB "SELECT kind || ',' || iteration FROM agent_journal.entries WHERE agent_id = '$A' AND sequence = $through")" \
  "IterationCompleted,$((done_k - done_k % 5))"
q $DB "INSERT INTO compacted_entries SELECT * FROM agent_journal.entries WHERE agent_id = '$A' AND sequence <= $through" >/dev/null
expect_eq "A compacted through its latest state" "$(q $DB "SELECT agent_journal.compact('$A', $through)")" "$through"
expect_eq "replay() of A from sequence 1 now starts after the state" \
  "$(q $DB "SELECT min(sequence) FROM agent_journal.replay('$A', 1)")" "$((through + 1))"

loop $A $N 50 loop-a >"$TMPD/a2.out" 2>"$TMPD/a2.err" &
pid=$!
PIDS+=($pid)
deadline=$((SECONDS + 10))
until grep -qs '^agent .*resumed from' "$TMPD/a2.out"; do
  kill -0 $pid 2>/dev/null || { cat "$TMPD/a2.err"; fail "restart 1 exited before it resumed"; }
  [ $SECONDS -lt $deadline ] || fail "restart 1 did not resume within 10 s"
  sleep 0.02
done
sleep "0.0$((RANDOM % 10))"
kill_loop $pid
# it started from the state, read only the entries after it, and saw the
# half-done iteration
case $killed_at in Thought) steps=1 ;; *) steps=2 ;; esac
expect_eq "restart 1 resumed from the state and the $((killed_latest - through)) entries after it" \
  "$(head -n 1 "$TMPD/a2.out")" \
  "agent $A: resumed from the state at sequence $through (iteration $k0), replayed $((killed_latest - through)) entries; latest sequence $killed_latest: $done_k iterations completed, $steps steps into the next, sum $((done_k * (done_k + 1) / 2))"

rc=0
timeout 15 "$BIN" --conninfo "dbname=$DB" --agent $A --iterations $N --step-ms 50 --service loop-a \
  >"$TMPD/a3.out" 2>"$TMPD/a3.err" || rc=$?
[ $rc -eq 0 ] || { cat "$TMPD/a3.err"; fail "final run exited with $rc"; }
grep -q "^agent $A: resumed from the state at sequence [0-9]* (iteration [1-9][0-9]*)," "$TMPD/a3.out" \
  || fail "the final run did not resume from a state: $(head -n 1 "$TMPD/a3.out")"
ok "final run: $(head -n 1 "$TMPD/a3.out" | sed 's/^agent [^:]*: //')"
start_sum "A's final run" "$TMPD/a3.out"
check_agent $A $N loop-a "$TMPD/a3.out" 5
expect_eq "a Resumed after the first kill continues the half-done iteration" \
  "$(q $DB "SELECT count(*) > 0 FROM journal WHERE agent_id = '$A' AND kind = 'Resumed'
           AND event ->> 'from_step' IN ('tool_call', 'completed')")" "t"

# 2. two agents at once; B is killed mid-run and restarted while C runs
#    on, losing its server session a few times (pg_terminate_backend).
#    B saves no state (a restart replays it all), C one every 2 iterations
B=00000000-0000-0000-0000-00000000b002
C=00000000-0000-0000-0000-00000000c003
loop $B 20 30 loop-b "" 0 >"$TMPD/b1.out" 2>"$TMPD/b1.err" &
PIDS+=($!)
bpid=$!
loop $C 20 30 loop-c application_name=agent_loop_c 2 >"$TMPD/c.out" 2>"$TMPD/c.err" &
PIDS+=($!)
cpid=$!
wait_for 15 "B: 4 iterations" iterations_done "$TMPD/b1.out" 4
kill_loop $bpid
loop $B 20 30 loop-b "" 0 >"$TMPD/b2.out" 2>"$TMPD/b2.err" &
PIDS+=($!)
bpid=$!
terminated=0
for i in 1 2 3; do
  sleep 0.2
  terminated=$((terminated + $(q $DB "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                                      WHERE application_name = 'agent_loop_c'")))
done
finish "B's second run" $bpid "$TMPD/b2.err"
finish C $cpid "$TMPD/c.err"
check_agent $B 20 loop-b "$TMPD/b2.out" 0
grep -q "^agent $B: resumed from no saved state, replayed [1-9][0-9]* entries;" "$TMPD/b2.out" \
  || fail "B's restart did not replay from the first entry: $(head -n 1 "$TMPD/b2.out")"
start_sum "B's restart" "$TMPD/b2.out"
check_agent $C 20 loop-c "$TMPD/c.out" 2 at-least
[ "$terminated" -ge 1 ] && grep -q 'connection lost' "$TMPD/c.err" \
  || fail "C's session was not terminated (terminated: $terminated); the test did not exercise reconnecting"
ok "C's session terminated $terminated times: $(grep -c 'connection lost' "$TMPD/c.err") reconnects"
expect_eq "C ran in one process (no Resumed)" \
  "$(q $DB "SELECT count(*) FROM agent_journal.entries WHERE agent_id = '$C' AND kind = 'Resumed'")" "0"

# 3. another writer appends to the agent while it runs: its appends with
#    expected_sequence fail with 40001, it replays and retries. Note i goes
#    in after iteration i, while the loop is stopped between two steps:
#    however loaded the machine, the loop cannot finish before the last
#    note (its last line would not name the latest sequence), and its next
#    append follows a note it has not replayed.
D=00000000-0000-0000-0000-00000000d004
loop $D 15 30 loop-d application_name=agent_loop_d 4 >"$TMPD/d.out" 2>"$TMPD/d.err" &
PIDS+=($!)
dpid=$!
for i in $(seq 1 8); do
  wait_for 15 "D: $i iterations" iterations_done "$TMPD/d.out" $i
  stop_between_steps $dpid agent_loop_d
  q $DB "SELECT agent_journal.append('$D', 0, jsonb_build_object('type', 'Note', 'n', $i))" >/dev/null
  kill -CONT $dpid
done
finish D $dpid "$TMPD/d.err"
check_agent $D 15 loop-d "$TMPD/d.out" 4
expect_eq "all 8 foreign notes kept" \
  "$(q $DB "SELECT count(*) FROM agent_journal.entries WHERE agent_id = '$D' AND kind = 'Note'")" "8"
conflicts=$(grep -c 'conflict at expected_sequence' "$TMPD/d.err" || true)
[ "$conflicts" -ge 1 ] || fail "no 40001 conflict was seen; the test did not exercise expected_sequence"
ok "$conflicts conflicts (40001) replayed and retried"
# 4. two workers and a forced takeover
E=00000000-0000-0000-0000-00000000e005
NE=20
TTL=3000  # ms; a worker renews every TTL/3: A runs ~1 s before it is stopped
# worker NAME STEP_MS [OPTION...] &: agent_loop on agent E as worker NAME
# (lease mode), its session named agent_loop_NAME; exec, as in loop
worker() {
  local name=$1 step=$2
  shift 2
  exec "$BIN" --conninfo "dbname=$DB application_name=agent_loop_$name" --agent $E --iterations $NE \
    --step-ms "$step" --service loop-e --worker "$name" --lease-ttl-ms $TTL --state-every 2 "$@"
}
worker A 100 >"$TMPD/ea.out" 2>"$TMPD/ea.err" &
apid=$!
PIDS+=($apid)
wait_for 15 "worker A: 1 iteration" iterations_done "$TMPD/ea.out" 1
# while A holds the lease: a third worker gives up, a loop without a lease is refused
rc=0
"$BIN" --conninfo "dbname=$DB" --agent $E --iterations $NE --step-ms 0 --service loop-e \
  --worker C --lease-ttl-ms $TTL --claim-wait-ms 300 >"$TMPD/ec.out" 2>"$TMPD/ec.err" || rc=$?
[ $rc -eq 4 ] || { cat "$TMPD/ec.err"; fail "worker C exited with $rc, want 4 (leased to another worker)"; }
grep -q "is still leased to another worker after 300 ms" "$TMPD/ec.err" || { cat "$TMPD/ec.err"; fail "worker C: no message"; }
ok "worker C gave up after 300 ms while worker A held the lease (exit 4)"
rc=0
"$BIN" --conninfo "dbname=$DB" --agent $E --iterations $NE --step-ms 0 --service loop-e \
  >"$TMPD/eu.out" 2>"$TMPD/eu.err" || rc=$?
[ $rc -eq 3 ] && grep -q 'fenced (55006) .*is leased to worker "A"' "$TMPD/eu.err" \
  || { cat "$TMPD/eu.err"; fail "a loop without --worker exited with $rc, want 3 (fenced by worker A's lease)"; }
ok "a loop without --worker was refused while worker A held the lease (exit 3)"
wait_for 15 "worker A: 3 iterations" iterations_done "$TMPD/ea.out" 3
stop_between_steps $apid agent_loop_A
a_lines=$(wc -l <"$TMPD/ea.out")
stopped_at=$(q $DB "SELECT agent_journal.latest_sequence('$E')")
state_at=$(q $DB "SELECT max(through_sequence) FROM agent_journal.saved_states WHERE agent_id = '$E'")
[ -n "$state_at" ] || fail "worker A saved no state in 3 iterations"
# B starts at once: it waits for A's lease to expire (at most TTL), then takes over
worker B 30 --claim-wait-ms 30000 >"$TMPD/eb.out" 2>"$TMPD/eb.err" &
bpid=$!
PIDS+=($bpid)
finish "worker B" $bpid "$TMPD/eb.err"
grep -q "is leased to another worker; waiting" "$TMPD/eb.err" \
  && ok "worker B waited for worker A's lease to expire" \
  || ok "worker B found worker A's lease expired already"
start_sum "worker B" <(grep '^agent ' "$TMPD/eb.out")
[ "$(ps -o state= -p $apid)" = T ] || fail "worker A was not stopped all along (state: $(ps -o state= -p $apid))"
grep -q "resumed from the state at sequence $state_at (iteration [0-9]*), replayed $((stopped_at - state_at)) entries; latest sequence $stopped_at:" "$TMPD/eb.out" \
  || fail "worker B did not start from A's latest state (sequence $state_at) where A stopped (sequence $stopped_at): $(sed -n 2p "$TMPD/eb.out")"
ok "worker B took over from A's state at sequence $state_at, at sequence $stopped_at, and finished: $(sed -n 2p "$TMPD/eb.out" | sed 's/.*; //')"
# A wakes up in the middle of a step; its write carries the old token
kill -CONT $apid
rc=0
deadline=$((SECONDS + 15))
while kill -0 $apid 2>/dev/null; do
  [ $SECONDS -lt $deadline ] || { kill -KILL $apid; fail "worker A did not exit within 15 s of SIGCONT"; }
  sleep 0.05
done
wait $apid || rc=$?
[ $rc -eq 3 ] || { cat "$TMPD/ea.err"; fail "worker A exited with $rc after the takeover, want 3 (fenced)"; }
fenced_key=$(sed -n "s|^agent_loop: fenced (55006) writing key \(agent_loop/$E/[0-9]*/[a-z_]*\): .*is not the live lease.*|\1|p" "$TMPD/ea.err")
[ -n "$fenced_key" ] || { cat "$TMPD/ea.err"; fail "worker A was not fenced writing a step"; }
expect_eq "worker A printed nothing after it was resumed" "$(wc -l <"$TMPD/ea.out")" "$a_lines"
# the key A was refused with is one B journaled: the lease is checked first
expect_eq "worker A's fenced step ($fenced_key) was journaled once, by worker B" \
  "$(q $DB "SELECT count(*) FROM agent_journal.idempotency_keys
           WHERE agent_id = '$E' AND idempotency_key = '$fenced_key' AND first_sequence > $stopped_at")" "1"
check_agent $E $NE loop-e "$TMPD/eb.out" 2
expect_eq "one Resumed (worker B's takeover)" \
  "$(q $DB "SELECT count(*) FROM agent_journal.entries WHERE agent_id = '$E' AND kind = 'Resumed'")" "1"
expect_eq "lease graph: worker A, then worker B" \
  "$(q $DB "SELECT agent_journal.observability('$E') -> 'lease_graph'")" '[["attempt#1", "A"], ["attempt#2", "B"]]'
expect_eq "worker B's token is larger than worker A's" \
  "$(q $DB "SELECT max(lease) FILTER (WHERE attempt = 2) > max(lease) FILTER (WHERE attempt = 1)
           FROM agent_journal.lease_graph WHERE agent_id = '$E'")" "t"
expect_eq "worker B released its lease" \
  "$(q $DB "SELECT count(*) FROM agent_journal.leases WHERE agent_id = '$E'")" "0"
expect_eq "one takeover counted" \
  "$(q $DB "SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_journal_lease_takeovers_total'")" "1"

# (C may count an iteration again per lost connection)
expect_eq "histogram: one observation per iteration" \
  "$(q $DB "SELECT value BETWEEN $((N + 20 + 20 + 15 + NE)) AND $((N + 20 + 20 + 15 + NE + terminated))
           FROM agent_journal.metric_samples WHERE name = 'agent_loop_iteration_seconds_count'")" "t"

dropdb $DB
echo "agent_loop: all checks passed ($((SECONDS - T0)) s)"
