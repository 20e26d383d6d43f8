#!/usr/bin/env bash
# A render (prometheus_text, openmetrics_text, otlp_json, metric_samples)
# is stopped only by what ends the statement: a cancel or statement
# timeout (57014) or a termination (57P01). Other interrupts that set
# InterruptPending must not stop it: (1) pg_log_backend_memory_contexts()
# sent to the rendering backend in a tight loop while it renders a large
# set (60k series) over and over, and (2) procsignal barriers from
# CREATE/DROP DATABASE elsewhere while it renders; every render must
# succeed, and the signals must be seen to overlap the renders (else the
# test proves nothing). (3) statement_timeout, pg_cancel_backend and
# pg_terminate_backend still stop renders with 57014 / 57P01, and a
# canceled session stays usable.
source "$(dirname "$0")/lib.bash"
DB=aj_render_interrupts
T0=$SECONDS

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do { kill -KILL "$p" && wait "$p"; } 2>/dev/null || true; done
  q postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'aj\\_render\\_%'" >/dev/null 2>&1 || true
  dropdb --if-exists aj_barrier_x >/dev/null 2>&1 || true
  rm -rf "$TMPD"
}
trap cleanup EXIT

fresh_db $DB
psql -X -q -v ON_ERROR_STOP=1 -d $DB >/dev/null <<'SQL'
INSERT INTO agent_journal.metric_families(name, type, help) VALUES ('big_gauge', 'gauge', 'x');
INSERT INTO agent_journal.metric_series(name, labels, value)
  SELECT 'big_gauge', jsonb_build_object('i', i::text), i FROM generate_series(1, 60000) i;
CREATE TABLE public.aj_stop (stop bool);
-- aj_signal(app, max_iter, sleep): while the backend with application_name
-- `app` exists, every `sleep` seconds, sends it pg_log_backend_memory_contexts
-- if it is running a render. hit counts the sends that reached it (true).
-- Returns once that backend is gone (or after max_iter rounds).
CREATE FUNCTION public.aj_signal(app text, max_iter int, sleep_s float8,
                                 OUT sent int, OUT hit int, OUT rounds int)
LANGUAGE plpgsql SET client_min_messages = error AS $$
DECLARE p int; st text; qu text;
BEGIN
  sent := 0; hit := 0; rounds := 0;
  FOR i IN 1..max_iter LOOP
    rounds := i;
    PERFORM pg_stat_clear_snapshot();  -- else pg_stat_activity is frozen for the transaction
    p := NULL;
    SELECT pid, state, query INTO p, st, qu FROM pg_stat_activity
      WHERE application_name = app AND pid <> pg_backend_pid() LIMIT 1;
    EXIT WHEN p IS NULL;
    IF st = 'active' AND qu ~ '(prometheus_text|openmetrics_text|otlp_json|metric_samples)' THEN
      sent := sent + 1;
      IF pg_log_backend_memory_contexts(p) THEN hit := hit + 1; END IF;
    END IF;
    PERFORM pg_sleep(sleep_s);
  END LOOP;
END $$;
SQL
ok "60000 series in $DB"

# Render statements by kind (each returns one line).
declare -A RENDER=(
  [prometheus]="SELECT length(agent_journal.prometheus_text()) > 1000000;"
  [openmetrics]="SELECT length(agent_journal.openmetrics_text()) > 1000000;"
  [otlp]="SELECT length(agent_journal.otlp_json()::text) > 1000000;"
  [samples]="SELECT count(*) >= 60000 FROM agent_journal.metric_samples;"
)

# render_script FILE KIND:N...: a psql script rendering each KIND N times,
# back to back, then printing "renders-done".
render_script() {
  local f=$1 spec kind n i
  shift
  { echo '\set VERBOSITY verbose'
    echo 'SET agent_journal.max_series_per_family = 1000000;'
    for spec in "$@"; do
      kind=${spec%%:*}; n=${spec#*:}
      for ((i = 0; i < n; i++)); do echo "${RENDER[$kind]}"; done
    done
    echo "SELECT 'renders-done';"
  } >"$f"
}
app_present() {  # app_present APP: a backend with that application_name exists
  [ "$(q postgres "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1'")" -ge 1 ]
}
app_rendering() {  # app_rendering APP: that backend is running a render
  [ "$(q postgres "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1' AND state = 'active' AND query ~ '(prometheus_text|openmetrics_text|otlp_json|metric_samples|generate_series)'")" -ge 1 ]
}
# wait_exit PID SECONDS WHAT: waits (bounded) for a background job to end;
# its exit status is left in $rc
wait_exit() {
  local deadline=$((SECONDS + $2))
  while kill -0 "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "timed out after $2s waiting for: $3"
    sleep 0.02
  done
  rc=0; wait "$1" || rc=$?
}
# check_renders OUT ERR RC TOTAL WHAT: every render succeeded
check_renders() {
  local out=$1 err=$2 rc=$3 total=$4 what=$5 good
  [ "$rc" = 0 ] || fail "$what: renderer failed (psql exit $rc): $(head -c 2000 "$err")"
  ! grep -q 'ERROR' "$err" || fail "$what: $(grep ERROR "$err" | head -3)"
  good=$(grep -c '^t$' "$out" || true)
  expect_eq "$what: renders that succeeded" "$good" "$total"
  grep -qx 'renders-done' "$out" || fail "$what: renderer did not reach its end"
}

# --- 1. pg_log_backend_memory_contexts on the rendering backend -------------
AJ_POLL=0.02
# mem_signals KIND N MIN_HITS
mem_signals() {
  local kind=$1 n=$2 min=$3 app=aj_render_$1 rpid res sent hit
  render_script "$TMPD/$kind.sql" "$kind:$n"
  PGAPPNAME=$app psql -X -v ON_ERROR_STOP=1 -At -d $DB -f "$TMPD/$kind.sql" \
    >"$TMPD/$kind.out" 2>"$TMPD/$kind.err" &
  rpid=$!; PIDS+=("$rpid")
  wait_for 10 "$kind renderer connected" app_present $app
  res=$(q $DB "SELECT sent || ' ' || hit FROM public.aj_signal('$app', 6000, 0.005)")
  read -r sent hit <<<"$res"
  wait_exit "$rpid" 20 "$kind renderer"
  check_renders "$TMPD/$kind.out" "$TMPD/$kind.err" "$rc" "$n" "$kind under pg_log_backend_memory_contexts"
  [ "$hit" -ge "$min" ] || fail "$kind: only $hit of $sent pg_log_backend_memory_contexts calls reached the backend mid-render (want >= $min): the test proved nothing"
  ok "$kind: $hit pg_log_backend_memory_contexts signals landed mid-render, no render failed"
}
mem_signals prometheus 30 30
mem_signals openmetrics 30 30
mem_signals otlp 5 30
mem_signals samples 5 30

# --- 2. procsignal barriers (DROP DATABASE elsewhere) -----------------------
# One statement (a DO block) renders every kind, round after round, until
# aj_stop has a row, so that it is rendering all along while DROP DATABASE
# (each one emits a procsignal barrier, which it must absorb) runs CYCLES times.
app=aj_render_barrier CYCLES=8
cat >"$TMPD/barrier.sql" <<'SQL'
\set VERBOSITY verbose
SET agent_journal.max_series_per_family = 1000000;
DO $$
DECLARE n int := 0;
BEGIN
  FOR i IN 1..100 LOOP
    PERFORM length(agent_journal.prometheus_text());
    PERFORM length(agent_journal.openmetrics_text());
    PERFORM length(agent_journal.otlp_json()::text);
    PERFORM count(*) FROM agent_journal.metric_samples;
    n := n + 4;
    EXIT WHEN EXISTS (SELECT 1 FROM public.aj_stop);
  END LOOP;
  RAISE NOTICE 'renders=%', n;
END $$;
SELECT 'renders-done';
SQL
PGAPPNAME=$app psql -X -v ON_ERROR_STOP=1 -At -d $DB -f "$TMPD/barrier.sql" \
  >"$TMPD/barrier.out" 2>"$TMPD/barrier.err" &
rpid=$!; PIDS+=("$rpid")
wait_for 10 "barrier renderer rendering" app_rendering $app
drops=0 overlapped=0
while kill -0 "$rpid" 2>/dev/null && [ $drops -lt $CYCLES ]; do
  q postgres "CREATE DATABASE aj_barrier_x" >/dev/null
  # is it rendering right before the DROP (whose barrier it must absorb)?
  res=$(psql -X -v ON_ERROR_STOP=1 -At -d postgres \
    -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$app' AND state = 'active'" \
    -c "DROP DATABASE aj_barrier_x")
  drops=$((drops + 1))
  if [ "$(head -1 <<<"$res")" = 1 ]; then overlapped=$((overlapped + 1)); fi
done
q $DB "INSERT INTO public.aj_stop VALUES (true)" >/dev/null
wait_exit "$rpid" 20 "barrier renderer"
[ "$rc" = 0 ] || fail "renders under DROP DATABASE barriers failed (psql exit $rc): $(head -c 2000 "$TMPD/barrier.err")"
grep -qx 'renders-done' "$TMPD/barrier.out" || fail "barrier renderer did not reach its end"
n=$(sed -n 's/.*NOTICE:  00000: renders=\([0-9]*\).*/\1/p' "$TMPD/barrier.err")
[ "${n:-0}" -ge 4 ] || fail "barrier renderer: renders='$n': $(cat "$TMPD/barrier.err")"
expect_eq "DROP DATABASE barriers emitted while it rendered" "$overlapped" $CYCLES
ok "$n renders, none failed, under $drops DROP DATABASE barriers"

# --- 3. real cancels still stop renders -------------------------------------
# Each statement below renders far longer than 50 ms (repeated renders).
LONG=(
  "SELECT sum(length(agent_journal.prometheus_text())) FROM generate_series(1, 1000) g;"
  "SELECT sum(length(agent_journal.openmetrics_text())) FROM generate_series(1, 1000) g;"
  "SELECT sum(length(agent_journal.otlp_json()::text)) FROM generate_series(1, 200) g;"
  "SELECT sum((SELECT count(*) FROM agent_journal.metric_samples WHERE g > 0)) FROM generate_series(1, 200) g;"
)
{ echo '\set VERBOSITY verbose'
  echo 'SET agent_journal.max_series_per_family = 1000000;'
  echo "SET statement_timeout = '50ms';"
  printf '%s\n' "${LONG[@]}"
  echo 'SET statement_timeout = 0;'
  echo "SELECT 'usable', length(agent_journal.prometheus_text()) > 1000000;"
} >"$TMPD/timeout.sql"
t=$SECONDS
psql -X -At -d $DB -f "$TMPD/timeout.sql" >"$TMPD/timeout.out" 2>"$TMPD/timeout.err" || true
[ $((SECONDS - t)) -le 10 ] || fail "statement_timeout renders took $((SECONDS - t))s"
n=$(grep -c 'ERROR:  57014: canceling statement due to statement timeout' "$TMPD/timeout.err" || true)
expect_eq "renders stopped by statement_timeout with 57014" "$n" 4
! grep -q 'XX000\|render canceled' "$TMPD/timeout.err" || fail "timeout reported wrongly: $(cat "$TMPD/timeout.err")"
grep -qx 'usable|t' "$TMPD/timeout.out" || fail "session unusable after timeouts: $(cat "$TMPD/timeout.out" "$TMPD/timeout.err")"
ok "session usable after statement timeouts"

# stop_render I HOW WANT: runs LONG[I] in the background, sends HOW
# (pg_cancel_backend / pg_terminate_backend) mid-render, expects WANT in its
# stderr, and (for a cancel) a usable session afterwards
stop_render() {
  local i=$1 how=$2 want=$3 app=aj_render_stop rpid f=$TMPD/stop$1$2
  { echo '\set VERBOSITY verbose'
    echo 'SET agent_journal.max_series_per_family = 1000000;'
    echo "${LONG[$i]}"
    echo "SELECT 'usable', length(agent_journal.prometheus_text()) > 1000000;"
  } >"$f.sql"
  PGAPPNAME=$app psql -X -At -d $DB -f "$f.sql" >"$f.out" 2>"$f.err" &
  rpid=$!; PIDS+=("$rpid")
  wait_for 10 "render $i running" app_rendering $app
  sleep 0.15
  expect_eq "$how of render $i" \
    "$(q postgres "SELECT $how(pid) FROM pg_stat_activity WHERE application_name = '$app'")" t
  wait_exit "$rpid" 5 "render $i to stop after $how"
  grep -q "$want" "$f.err" || fail "$how of render $i: want '$want', got: $(cat "$f.err")"
  ! grep -q 'XX000\|render canceled' "$f.err" || fail "$how reported wrongly: $(cat "$f.err")"
  if [ "$how" = pg_cancel_backend ]; then
    grep -qx 'usable|t' "$f.out" || fail "session unusable after cancel: $(cat "$f.out" "$f.err")"
  fi
  ok "$how stopped render $i with '$want'"
  wait_for 5 "its backend gone" app_gone $app
}
app_gone() { ! app_present "$1"; }
for i in 0 1 2 3; do
  stop_render $i pg_cancel_backend 'ERROR:  57014: canceling statement due to user request'
done
stop_render 0 pg_terminate_backend 'FATAL:  57P01: terminating connection due to administrator command'
stop_render 3 pg_terminate_backend 'FATAL:  57P01: terminating connection due to administrator command'

dropdb $DB
ok "render_interrupts done in $((SECONDS - T0))s"
