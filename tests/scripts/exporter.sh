#!/usr/bin/env bash
# The exporter background worker, in a cluster of its own that preloads
# the library (the runner's cluster does not): the textfile for
# node_exporter (appears, mode 0644, passes promtool, follows a reload,
# survives a bad path and the worker being killed), the OTLP push to a
# loopback receiver (body, headers; receiver down or stuck: errors counted,
# textfile export unaffected), the health families, and a database without
# the extension (warned, counted, worker keeps going).
source "$(dirname "$0")/lib.bash"
command -v promtool >/dev/null || fail "promtool not installed (package prometheus)"
T0=$SECONDS
PORT=${AJ_EXP_PGPORT:-54381}
CLUSTER_DIR=/tmp/aj_exp_cluster.$PORT
RECV_PID=""
cleanup() {
  local st=$?
  if [ $st -ne 0 ] && [ -f "$CLUSTER_DIR/server.log" ]; then
    echo "--- server log (tail)"; tail -40 "$CLUSTER_DIR/server.log"
  fi
  [ -n "$RECV_PID" ] && kill "$RECV_PID" 2>/dev/null || true
  AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" stop >/dev/null 2>&1
  rm -rf "$TMPD"
  exit $st
}
trap cleanup EXIT

start_receiver() {  # start_receiver NAME [--hang]: sets RECV_PID, RECV_PORT
  rm -f "$TMPD/$1.port"
  /usr/bin/python3 "$AJ_ROOT/tests/scripts/otlp_receiver.py" "$TMPD/$1.port" "$TMPD/$1.log" \
    --lifetime 120 "${@:2}" &
  RECV_PID=$!
  wait_for 10 "receiver $1 listening" test -s "$TMPD/$1.port"
  RECV_PORT=$(cat "$TMPD/$1.port")
}
health() {  # health NAME TARGET [DB]: the value read through SQL
  q "${3:-aj_exp}" "SELECT value FROM agent_journal.metric_samples
                    WHERE name = '$1' AND labels->>'target' = '$2'"
}
worker_pid() {
  q aj_exp_tmpl "SELECT pid FROM pg_stat_activity WHERE backend_type = 'agent_journal exporter'"
}
file_has() { grep -qxF "$2" "$1"; }
gt() { [ "$(awk -v a="$1" -v b="$2" 'BEGIN { print (a > b) }')" = 1 ]; }
health_gt() { gt "$(health "$1" "$2" "${4:-aj_exp}")" "$3"; }

TF=$TMPD/textfile
mkdir -p "$TF"
[ "$(id -u)" -eq 0 ] && chown postgres "$TF"
PROM=$TF/agent_journal.prom
start_receiver otlp
RECV1_LOG=$TMPD/otlp.log

# The worker exports database aj_exp, created below from a template that
# already has the extension (so no cycle ever sees it missing); until then
# it fails to connect and is restarted.
AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR AJ_PG_CONF="shared_preload_libraries = 'agent_journal'
agent_journal.export_interval = 1
agent_journal.export_database = 'aj_exp'
agent_journal.textfile_path = '$PROM'
agent_journal.otlp_endpoint = 'http://127.0.0.1:$RECV_PORT'
agent_journal.otlp_headers = 'Authorization=Bearer t0ken, X-Tenant=a%2Cb'
agent_journal.otlp_timeout = 8000" \
  "$AJ_ROOT/scripts/cluster" start >/dev/null || fail "could not start the preloaded cluster"
eval "$(AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" env)"
export PGHOST PGPORT PGUSER PGDATABASE
createdb aj_exp_tmpl
q aj_exp_tmpl "CREATE EXTENSION agent_journal" >/dev/null
createdb -T aj_exp_tmpl aj_exp

# 1. the textfile appears, 0644, valid, with the snapshot's values
wait_for 20 "exporter wrote $PROM" test -s "$PROM"
expect_eq "textfile mode" "$(stat -c %a "$PROM")" "644"
SNAP='{"timestamp": 1700000000, "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5, "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000, "load_factor": 0.005}, "task_manager": {"total_tasks": 5, "healthy_tasks": 4, "average_uptime_seconds": 1800.0, "total_memory_usage": 1024}, "load_balancer": {"total_allocations": 100, "active_allocations": 5, "memory_utilization": 0.45, "cpu_utilization": 0.30, "allocation_failures": 2, "average_allocation_time_ms": 1.5}, "system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0}, "compaction": {"total_compactions": 7, "total_tokens_saved": 12000, "compactions_by_tier": {"summarize": 5, "truncate": 2}, "context_utilization_ratio": 0.62}}'
q aj_exp "SELECT agent_journal.ingest_snapshot('$SNAP')" >/dev/null
wait_for 10 "textfile shows running_agents 5" \
  file_has "$PROM" 'agent_runtime_scheduler_running_agents{service="agent-runtime"} 5'
wait_for 10 "textfile shows a last success" \
  grep -qE '^agent_journal_export_last_success_timestamp_seconds\{target="textfile"\} [1-9]' "$PROM"
cp "$PROM" "$TMPD/snapshot.prom"
out=$(promtool check metrics <"$TMPD/snapshot.prom" 2>&1) || { echo "$out"; fail "promtool check metrics"; }
[ -z "$out" ] || { echo "$out"; fail "promtool lint complaints"; }
ok "promtool check metrics: clean"
for want in '# TYPE agent_journal_export_errors_total counter' \
            'agent_journal_export_errors_total{target="textfile"} 0' \
            'agent_journal_export_errors_total{target="otlp"} 0' \
            '# TYPE agent_journal_export_last_success_timestamp_seconds gauge'; do
  file_has "$TMPD/snapshot.prom" "$want" || fail "textfile lacks: $want"
done
ok "health families in the textfile, no errors"
ls "$TF" | grep -q '\.tmp\.' && fail "temporary file left in $TF: $(ls "$TF")"
ok "no temporary files left"
# the same health through SQL (shared memory), within a second of now
ts=$(health agent_journal_export_last_success_timestamp_seconds textfile)
gt "$ts" "$(($(date +%s) - 5))" || fail "last success $ts is not recent"
ok "last success through SQL is recent ($ts)"

# 2. OTLP: POSTs at /v1/metrics, JSON, headers, expected metric names
wait_for 10 "receiver got an OTLP push" test -s "$RECV1_LOG"
wait_for 10 "OTLP push counted as a success" \
  health_gt agent_journal_export_last_success_timestamp_seconds otlp 0
/usr/bin/python3 - "$RECV1_LOG" <<'PY' || fail "OTLP pushes not as expected"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert recs, "no request"
for r in recs:
    assert r["path"] == "/v1/metrics", r["path"]
    assert r["content_type"] == "application/json", r["content_type"]
    assert r["headers"].get("authorization") == "Bearer t0ken", r["headers"]
    assert r["headers"].get("x-tenant") == "a,b", r["headers"]
names = set()  # OTLP names drop the _total of counters
for r in recs:
    for rm in r["body"]["resourceMetrics"]:
        for sm in rm["scopeMetrics"]:
            for m in sm["metrics"]:
                names.add(m["name"])
for want in ("agent_runtime_scheduler_running_agents", "agent_journal_agents",
             "agent_journal_export_errors", "agent_journal_export_last_success_timestamp_seconds"):
    assert want in names, (want, sorted(names))
print("ok: %d OTLP pushes, %d metric names, headers and content type as configured"
      % (len(recs), len(names)))
PY
# the headers GUC may hold a token: superusers only
q aj_exp "CREATE ROLE aj_exp_user" >/dev/null
if q aj_exp "SET ROLE aj_exp_user; SHOW agent_journal.otlp_headers" >/dev/null 2>&1; then
  fail "a non-superuser can read agent_journal.otlp_headers"
fi
ok "agent_journal.otlp_headers hidden from non-superusers"

# 3. reload moves the output
q aj_exp "ALTER SYSTEM SET agent_journal.textfile_path = '$TF/moved.prom'" >/dev/null
q aj_exp "SELECT pg_reload_conf()" >/dev/null
wait_for 10 "after reload the exporter writes $TF/moved.prom" \
  file_has "$TF/moved.prom" 'agent_runtime_scheduler_running_agents{service="agent-runtime"} 5'
m1=$(stat -c %y "$PROM")
sleep 2.2
[ "$(stat -c %y "$PROM")" = "$m1" ] || fail "the old textfile is still written"
ok "the old textfile is no longer written"

# 4. a killed worker is restarted (bgw_restart_time 5 s)
pid1=$(worker_pid)
[ -n "$pid1" ] || fail "no 'agent_journal exporter' in pg_stat_activity"
q aj_exp "SELECT pg_terminate_backend($pid1)" >/dev/null
new_pid() { local p; p=$(worker_pid); [ -n "$p" ] && [ "$p" != "$pid1" ]; }
wait_for 15 "worker restarted after pg_terminate_backend" new_pid
rm -f "$TF/moved.prom"
wait_for 10 "restarted worker writes the textfile" test -s "$TF/moved.prom"

# 5. a bad textfile path: errors counted, worker keeps running
pid2=$(worker_pid)
q aj_exp "ALTER SYSTEM SET agent_journal.textfile_path = '/nonexistent/aj_exp/x.prom'" >/dev/null
q aj_exp "SELECT pg_reload_conf()" >/dev/null
wait_for 10 "bad path: textfile errors_total > 0" health_gt agent_journal_export_errors_total textfile 0
sleep 1.5
e1=$(health agent_journal_export_errors_total textfile)
gt "$e1" 1 || fail "errors_total did not keep growing ($e1)"
expect_eq "worker pid after bad path" "$(worker_pid)" "$pid2"
grep -q 'could not create file "/nonexistent/aj_exp/x.prom.tmp' "$CLUSTER_DIR/server.log" \
  || fail "no warning about the bad path in the server log"
ok "bad path logged ($e1 errors so far)"
# a relative path is refused by the GUC check: the old value stays
q aj_exp "ALTER SYSTEM SET agent_journal.textfile_path = 'relative.prom'" >/dev/null 2>&1 \
  && fail "relative textfile_path accepted"
ok "relative textfile_path refused"
q aj_exp "ALTER SYSTEM SET agent_journal.textfile_path = '$PROM'" >/dev/null
q aj_exp "SELECT pg_reload_conf()" >/dev/null
rm -f "$PROM"
wait_for 10 "textfile back after fixing the path" test -s "$PROM"

# 6. receiver down: OTLP errors counted, textfile export continues
o0=$(health agent_journal_export_errors_total otlp)
kill "$RECV_PID"; wait "$RECV_PID" 2>/dev/null || true; RECV_PID=""
wait_for 10 "receiver down: otlp errors_total grows" health_gt agent_journal_export_errors_total otlp "$o0"
q aj_exp "SELECT agent_journal.ingest_snapshot(jsonb_set('$SNAP', '{scheduler,running_agents}', '7'))" >/dev/null
wait_for 10 "textfile still exported while OTLP fails (running_agents 7)" \
  file_has "$PROM" 'agent_runtime_scheduler_running_agents{service="agent-runtime"} 7'
grep -q 'OTLP push to "http://127.0.0.1:.*/v1/metrics" failed' "$CLUSTER_DIR/server.log" \
  || fail "no warning about the failed push in the server log"
ok "failed push logged"

# 7. a stuck collector (answers nothing; timeout 8 s) never delays the textfile
start_receiver stuck --hang
q aj_exp "ALTER SYSTEM SET agent_journal.otlp_endpoint = 'http://127.0.0.1:$RECV_PORT'" >/dev/null
q aj_exp "SELECT pg_reload_conf()" >/dev/null
wait_for 10 "stuck receiver got a push" test -s "$TMPD/stuck.log"
t_push=$SECONDS
q aj_exp "SELECT agent_journal.ingest_snapshot(jsonb_set('$SNAP', '{scheduler,running_agents}', '9'))" >/dev/null
wait_for 4 "textfile updated within 4 s while a push hangs" \
  file_has "$PROM" 'agent_runtime_scheduler_running_agents{service="agent-runtime"} 9'
o1=$(health agent_journal_export_errors_total otlp)
wait_for 15 "stuck push times out and is counted" health_gt agent_journal_export_errors_total otlp "$o1"
[ $((SECONDS - t_push)) -ge 5 ] || fail "the stuck push failed before its 8 s timeout"
kill "$RECV_PID"; wait "$RECV_PID" 2>/dev/null || true; RECV_PID=""
q aj_exp "ALTER SYSTEM SET agent_journal.otlp_endpoint = ''" >/dev/null
q aj_exp "SELECT pg_reload_conf()" >/dev/null

# 8. the extension missing from export_database: warned, counted, still running
pid3=$(worker_pid)
t0=$(health agent_journal_export_errors_total textfile aj_exp_tmpl)
q aj_exp "DROP EXTENSION agent_journal" >/dev/null
wait_for 10 "missing extension: textfile errors_total grows" \
  health_gt agent_journal_export_errors_total textfile "$t0" aj_exp_tmpl
sleep 1.2
n=$(grep -c 'extension "agent_journal" is not installed in database "aj_exp"' "$CLUSTER_DIR/server.log" || true)
t1=$(health agent_journal_export_errors_total textfile aj_exp_tmpl)
[ "$n" -ge 1 ] || fail "no warning about the missing extension"
[ "$n" -le "$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b + 1 }')" ] \
  || fail "$n warnings for $t1 - $t0 failed intervals: more than one per interval"
ok "missing extension: $n warnings, one per interval"
expect_eq "worker pid with the extension missing" "$(worker_pid)" "$pid3"
# the health is only rendered for the targets that are on
q aj_exp_tmpl "SELECT count(*) FROM agent_journal.metric_samples WHERE labels->>'target' = 'otlp'" \
  | grep -qx 0 || fail "otlp health still rendered with otlp_endpoint off"
ok "otlp health gone with otlp_endpoint off"
# 9. fenced writes (55006) are counted in shared memory: the refused
# transaction rolls back, the count stays; created = the server's start
# (OpenMetrics _created, OTLP startTimeUnixNano); a restart resets it
fenced() { q aj_exp_tmpl "SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_journal_fenced_writes_total'"; }
f0=$(fenced)
[ -n "$f0" ] || fail "agent_journal_fenced_writes_total not rendered by a preloaded library"
A=00000000-0000-0000-0000-0000000000f5
q aj_exp_tmpl "SELECT agent_journal.claim_agent('$A', 'exp-worker', '1 hour')" >/dev/null
for i in 1 2 3; do
  out=$(psql -X -At -d aj_exp_tmpl -c "SELECT agent_journal.append('$A', 0, '{}')" 2>&1) && fail "unleased append accepted: $out"
  [[ "$out" == *"is leased to worker \"exp-worker\""* ]] || fail "unexpected refusal: $out"
done
out=$(psql -X -At -d aj_exp_tmpl -c "SELECT agent_journal.compact('$A', NULL, 12345)" 2>&1) && fail "compact with a wrong lease accepted"
expect_eq "fenced writes counted" "$(fenced)" "$((f0 + 4))"
expect_eq "nothing written by fenced writes" "$(q aj_exp_tmpl "SELECT agent_journal.latest_sequence('$A')")" "0"
start=$(q aj_exp_tmpl "SELECT extract(epoch FROM pg_postmaster_start_time())")
created=$(q aj_exp_tmpl "SELECT split_part(line, ' ', 2) FROM regexp_split_to_table(agent_journal.openmetrics_text(), E'\n') line WHERE line LIKE 'agent_journal_fenced_writes_created %'")
[ -n "$created" ] || fail "no agent_journal_fenced_writes_created sample"
awk -v a="$created" -v b="$start" 'BEGIN { d = a - b; exit !(d < 0.01 && d > -0.01) }' \
  || fail "fenced_writes _created $created is not the server start $start"
startns=$(q aj_exp_tmpl "SELECT dp->>'startTimeUnixNano' FROM jsonb_path_query(agent_journal.otlp_json(), '$.resourceMetrics[*].scopeMetrics[*].metrics[*] ? (@.name == \"agent_journal_fenced_writes\").sum.dataPoints[*]') dp")
awk -v a="$startns" -v b="$start" 'BEGIN { d = a / 1e9 - b; exit !(d < 0.01 && d > -0.01) }' \
  || fail "fenced_writes startTimeUnixNano '$startns' is not the server start $start"
ok "fenced writes: +4 counted, nothing written, created at the server start ($created)"
counter() { q aj_exp_tmpl "SELECT value FROM agent_journal.metric_samples WHERE name = '$1'"; }
q aj_exp_tmpl "SELECT agent_journal.release_agent('$A', lease) FROM agent_journal.leases WHERE agent_id = '$A'" >/dev/null
q aj_exp_tmpl "SELECT agent_journal.append('$A', 0, '{}'), agent_journal.append('$A', 0, '{}'), agent_journal.compact('$A', 1)" >/dev/null
q aj_exp_tmpl "SELECT agent_journal.forget_agent('$A')" >/dev/null
appended0=$(counter agent_journal_appended_entries_total); compacted0=$(counter agent_journal_compacted_entries_total)
[ "$appended0" -ge 2 ] && [ "$compacted0" -ge 1 ] || fail "counters before the restart: $appended0 / $compacted0"
restart=("$(pg_config --bindir)/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -m fast -w -t 60 restart)
if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "${restart[@]}" >/dev/null; else "${restart[@]}" >/dev/null; fi \
  || fail "could not restart the preloaded cluster"
wait_for 15 "server back after restart" q aj_exp_tmpl "SELECT 1"
expect_eq "fenced writes after a restart" "$(fenced)" "0"
start2=$(q aj_exp_tmpl "SELECT extract(epoch FROM pg_postmaster_start_time())")
awk -v a="$start2" -v b="$start" 'BEGIN { exit !(a > b) }' || fail "server start did not move"
ok "restart resets fenced writes to 0 with a new created time"
expect_eq "appended_entries_total across a restart (forgotten agent included)" \
  "$(counter agent_journal_appended_entries_total)" "$appended0"
expect_eq "compacted_entries_total across a restart" "$(counter agent_journal_compacted_entries_total)" "$compacted0"
echo "exporter test took $((SECONDS - T0)) s"
