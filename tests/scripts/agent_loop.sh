#!/usr/bin/env bash
# examples/agent_loop (the README's durable agent loop) against a real
# server. (1) Killed with SIGKILL in the middle of an iteration, restarted,
# killed again right after the restart and restarted once more, it ends
# with every step of every iteration journaled exactly once, in order,
# gap-free, with its state (a running sum) rebuilt correctly from the
# journal, and with exactly one step's worth of metrics per step (a step
# and its metrics commit together). (2) Two agents run side by side, one
# of them killed and restarted, without disturbing each other; the other
# one's server session is terminated under it a few times (it reconnects
# and retries the same keyed call). (3) Foreign appends to a running
# agent make its appends fail with 40001 (expected_sequence); it replays
# what it missed and carries on. (4) Two workers and a forced takeover
# (--worker: leases with fencing tokens): worker A is stopped with SIGSTOP
# between two steps and stays stopped past its lease's ttl; worker B waits
# for the lease, takes the agent over, finishes it and releases it; A,
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
# loop AGENT ITERATIONS STEP_MS SERVICE [CONNINFO] &: runs agent_loop against $DB in
# the background; exec, so that $! is agent_loop itself (kill -9 must not
# hit a subshell and orphan the loop)
loop() {
  exec "$BIN" --conninfo "dbname=$DB ${5:-}" --agent "$1" --iterations "$2" --step-ms "$3" --service "$4"
}
AJ_POLL=0.02  # wait_for (lib.bash): kills must land close to the awaited step
# iterations_done OUT K: OUT (perhaps not created yet) reports K iterations done
iterations_done() {
  local n
  n=$(grep -sc '^iteration .* done' "$1") || true
  [ "${n:-0}" -ge "$2" ]
}
latest_kind_is() {
  [ "$(q $DB "SELECT kind FROM agent_journal.entries WHERE agent_id = '$1' ORDER BY sequence DESC LIMIT 1")" = "$2" ]
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

# check_agent AGENT N SERVICE OUT [METRICS]: the invariants of a finished
# loop; OUT is the output of its last run. METRICS=exact (default): a
# step and its metrics commit together and no reply was lost, so exactly
# one count per step and one snapshot per iteration; at-least: after a
# lost connection a retried step may count its metrics again.
check_agent() {
  local a=$1 n=$2 svc=$3 out=$4 metrics=${5:-exact}
  local e="agent_journal.entries WHERE agent_id = '$a'"
  local steps="$e AND kind IN ('Thought', 'ToolCall', 'IterationCompleted')"
  local latest
  latest=$(q $DB "SELECT agent_journal.latest_sequence('$a')")
  expect_eq "$a: sequences gap-free 1..latest" \
    "$(q $DB "SELECT count(*) || ',' || min(sequence) || ',' || max(sequence) FROM $e")" "$latest,1,$latest"
  expect_eq "$a: last run's final line" "$(tail -n 1 "$out")" "done: $n iterations, latest sequence $latest"
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
  # the running sum survives the kills only if replay rebuilt it right
  expect_eq "$a: running sum after iteration k is k(k+1)/2" \
    "$(q $DB "SELECT count(*) FROM $e AND kind IN ('ToolCall', 'IterationCompleted')
             AND (event ->> 'result')::bigint IS DISTINCT FROM iteration * (iteration + 1) / 2")" "0"
  expect_eq "$a: Started once, first" \
    "$(q $DB "SELECT string_agg(sequence::text, ',') FROM $e AND kind = 'Started'")" "1"
  expect_eq "$a: every Resumed names the first iteration not completed before it" \
    "$(q $DB "SELECT count(*) FROM $e AND kind = 'Resumed' AND (event ->> 'from_iteration')::int <>
             1 + (SELECT count(*) FROM agent_journal.entries c WHERE c.agent_id = '$a'
                  AND c.kind = 'IterationCompleted' AND c.sequence < entries.sequence)")" "0"
  expect_eq "$a: each step's idempotency key names that step's entry" \
    "$(q $DB "SELECT count(*) FROM agent_journal.idempotency_keys k
             JOIN agent_journal.entries s ON s.agent_id = k.agent_id AND s.sequence = k.first_sequence
             WHERE k.agent_id = '$a' AND k.idempotency_key = 'agent_loop/$a/' || s.iteration || '/' ||
               CASE s.kind WHEN 'Thought' THEN 'thought' WHEN 'ToolCall' THEN 'tool_call'
                           WHEN 'IterationCompleted' THEN 'completed' END")" "$((3 * n))"
  expect_eq "$a: last_completed_iteration" "$(q $DB "SELECT agent_journal.last_completed_iteration('$a')")" "$n"
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

# 1. kill -9 mid-iteration, restart, kill -9 right after the restart,
#    restart, finish
A=00000000-0000-0000-0000-00000000a001
N=30
loop $A $N 50 loop-a >"$TMPD/a1.out" 2>"$TMPD/a1.err" &
pid=$!
PIDS+=($pid)
wait_for 15 "5 iterations" iterations_done "$TMPD/a1.out" 5
# kill while the latest entry is a Thought: the iteration is half done
wait_for 10 "a Thought" latest_kind_is $A Thought
kill_loop $pid
killed_at=$(q $DB "SELECT kind FROM agent_journal.entries WHERE agent_id = '$A' ORDER BY sequence DESC LIMIT 1")
case $killed_at in
  Thought | ToolCall) ok "first kill left iteration $(q $DB "SELECT max(iteration) FROM agent_journal.entries WHERE agent_id = '$A'") half done ($killed_at)" ;;
  *) fail "first kill did not land mid-iteration (latest entry: $killed_at)" ;;
esac

loop $A $N 50 loop-a >"$TMPD/a2.out" 2>"$TMPD/a2.err" &
pid=$!
PIDS+=($pid)
wait_for 10 "the restart's replay" grep -qs '^agent .*replayed' "$TMPD/a2.out"
sleep "0.0$((RANDOM % 10))"
kill_loop $pid
grep -q "replayed .* entries: [1-9][0-9]* iterations completed, [12] steps into the next" "$TMPD/a2.out" \
  || fail "the restart did not see the half-done iteration: $(head -n 1 "$TMPD/a2.out")"
ok "restart 1 replayed: $(head -n 1 "$TMPD/a2.out" | sed 's/.*; //')"

rc=0
timeout 15 "$BIN" --conninfo "dbname=$DB" --agent $A --iterations $N --step-ms 50 --service loop-a \
  >"$TMPD/a3.out" 2>"$TMPD/a3.err" || rc=$?
[ $rc -eq 0 ] || { cat "$TMPD/a3.err"; fail "final run exited with $rc"; }
ok "final run: $(head -n 1 "$TMPD/a3.out" | sed 's/.*; //')"
check_agent $A $N loop-a "$TMPD/a3.out"
expect_eq "a Resumed after the first kill continues the half-done iteration" \
  "$(q $DB "SELECT count(*) > 0 FROM agent_journal.entries WHERE agent_id = '$A' AND kind = 'Resumed'
           AND event ->> 'from_step' IN ('tool_call', 'completed')")" "t"

# 2. two agents at once; B is killed mid-run and restarted while C runs
#    on, losing its server session a few times (pg_terminate_backend)
B=00000000-0000-0000-0000-00000000b002
C=00000000-0000-0000-0000-00000000c003
loop $B 20 30 loop-b >"$TMPD/b1.out" 2>"$TMPD/b1.err" &
PIDS+=($!)
bpid=$!
loop $C 20 30 loop-c application_name=agent_loop_c >"$TMPD/c.out" 2>"$TMPD/c.err" &
PIDS+=($!)
cpid=$!
wait_for 15 "B: 4 iterations" iterations_done "$TMPD/b1.out" 4
kill_loop $bpid
loop $B 20 30 loop-b >"$TMPD/b2.out" 2>"$TMPD/b2.err" &
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
check_agent $B 20 loop-b "$TMPD/b2.out"
check_agent $C 20 loop-c "$TMPD/c.out" at-least
[ "$terminated" -ge 1 ] && grep -q 'connection lost' "$TMPD/c.err" \
  || fail "C's session was not terminated (terminated: $terminated); the test did not exercise reconnecting"
ok "C's session terminated $terminated times: $(grep -c 'connection lost' "$TMPD/c.err") reconnects"
expect_eq "C ran in one process (no Resumed)" \
  "$(q $DB "SELECT count(*) FROM agent_journal.entries WHERE agent_id = '$C' AND kind = 'Resumed'")" "0"

# 3. another writer appends to the agent while it runs: its appends with
#    expected_sequence fail with 40001, it replays and retries
D=00000000-0000-0000-0000-00000000d004
loop $D 15 30 loop-d >"$TMPD/d.out" 2>"$TMPD/d.err" &
PIDS+=($!)
dpid=$!
wait_for 10 "D: 1 iteration" iterations_done "$TMPD/d.out" 1
for i in $(seq 1 8); do
  q $DB "SELECT agent_journal.append('$D', 0, jsonb_build_object('type', 'Note', 'n', $i))" >/dev/null
  sleep 0.07
done
finish D $dpid "$TMPD/d.err"
check_agent $D 15 loop-d "$TMPD/d.out"
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
    --step-ms "$step" --service loop-e --worker "$name" --lease-ttl-ms $TTL "$@"
}
session_state() {
  q $DB "SELECT state FROM pg_stat_activity WHERE application_name = '$1'"
}
# stop_between_steps PID APP: SIGSTOP, retried until the process stopped
# with its session idle (not in a step's transaction). A transaction
# stopped after its append would keep the agent's lock, and a takeover
# waits for that lock (a write accepted under a lease commits first): B
# would wait until A is resumed, and the test for it. A real deployment
# bounds that with idle_in_transaction_session_timeout.
stop_between_steps() {
  local pid=$1 app=$2 state i j
  for i in $(seq 1 40); do
    kill -STOP "$pid" 2>/dev/null || fail "$app exited before it could be stopped"
    for j in $(seq 1 100); do  # a statement already sent finishes without its client
      state=$(session_state "$app")
      [ "$state" != active ] && break
      sleep 0.02
    done
    if [ "$state" = idle ]; then
      ok "$app stopped between two steps (attempt $i)"
      return 0
    fi
    kill -CONT "$pid"
    sleep "0.0$((RANDOM % 10))"
  done
  fail "could not stop $app outside a transaction in 40 attempts (last state: $state)"
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
# B starts at once: it waits for A's lease to expire (at most TTL), then takes over
worker B 30 --claim-wait-ms 30000 >"$TMPD/eb.out" 2>"$TMPD/eb.err" &
bpid=$!
PIDS+=($bpid)
finish "worker B" $bpid "$TMPD/eb.err"
grep -q "is leased to another worker; waiting" "$TMPD/eb.err" \
  && ok "worker B waited for worker A's lease to expire" \
  || ok "worker B found worker A's lease expired already"
[ "$(ps -o state= -p $apid)" = T ] || fail "worker A was not stopped all along (state: $(ps -o state= -p $apid))"
grep -q "replayed $stopped_at entries" "$TMPD/eb.out" \
  || fail "worker B did not start where A stopped (sequence $stopped_at): $(sed -n 2p "$TMPD/eb.out")"
ok "worker B took over at sequence $stopped_at and finished: $(sed -n 2p "$TMPD/eb.out" | sed 's/.*; //')"
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
check_agent $E $NE loop-e "$TMPD/eb.out"
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
