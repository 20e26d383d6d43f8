#!/usr/bin/env bash
# The exposition as real consumers read it: `promtool check metrics`
# (Debian's prometheus package) on the prometheus view, and the OpenMetrics
# parser of python3-prometheus-client on the openmetrics view, for a
# database holding snapshots of two services, every family type, labels
# needing escapes, and NaN/Inf values.
source "$(dirname "$0")/lib.bash"
DB=aj_exposition
fresh_db $DB
command -v promtool >/dev/null || fail "promtool not installed (package prometheus)"
SNAP='{"timestamp": 1700000000, "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5, "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000, "load_factor": 0.005}, "task_manager": {"total_tasks": 5, "healthy_tasks": 4, "average_uptime_seconds": 1800.0, "total_memory_usage": 1024}, "load_balancer": {"total_allocations": 100, "active_allocations": 5, "memory_utilization": 0.45, "cpu_utilization": 0.30, "allocation_failures": 2, "average_allocation_time_ms": 1.5}, "system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0}, "compaction": {"total_compactions": 7, "total_tokens_saved": 12000, "compactions_by_tier": {"summarize": 5, "truncate": 2}, "context_utilization_ratio": 0.62}}'
psql -X -q -v ON_ERROR_STOP=1 -d $DB >/dev/null <<SQL
SELECT agent_journal.ingest_snapshot('$SNAP');
SELECT agent_journal.ingest_snapshot(('$SNAP'::jsonb - 'compaction'), E'second "svc"\\\\ with\nnewline');
SELECT agent_journal.counter_add('requests_total', 3, jsonb_build_object('path', E'/a\\\\b "q"\nx', 'code', '200'), E'Requests \\\\ served\nper path "quoted"');
SELECT agent_journal.gauge_set('temperature_celsius', 'NaN', '{"room": "a"}');
SELECT agent_journal.gauge_set('temperature_celsius', 'Infinity', '{"room": "b"}');
SELECT agent_journal.gauge_set('temperature_celsius', '-Infinity', '{"room": "c"}');
SELECT agent_journal.gauge_set('temperature_celsius', -1.5e-300, '{"room": "d"}');
SELECT agent_journal.histogram_observe('step_duration_seconds', v, '{"agent": "x"}') FROM unnest(ARRAY[0.001, 0.2, 3, 50]) v;
SELECT agent_journal.histogram_observe('tokens_used', 1234, '{}', ARRAY[10, 100, 1000, 10000], 'Tokens per step');
SELECT agent_journal.record_rejection('tenant_limit');
SELECT agent_journal.record_rejection('other', E'odd "detail"');
SELECT agent_journal.append(gen_random_uuid(), 0, '{"type": "Started"}') FROM generate_series(1, 3);
SQL
# psql adds one newline after the value; printf '%s' of $(...) removes it
printf '%s\n' "$(psql -X -At -d $DB -c 'SELECT exposition FROM agent_journal.prometheus')" > "$TMPD/metrics.prom"
printf '%s\n' "$(psql -X -At -d $DB -c 'SELECT exposition FROM agent_journal.openmetrics')" > "$TMPD/metrics.om"
lines=$(wc -l < "$TMPD/metrics.prom")
[ "$lines" -gt 80 ] || fail "exposition too short ($lines lines)"
for want in 'agent_runtime_scheduler_running_agents{service="agent-runtime"} 5' \
            'agent_runtime_scheduler_running_agents{service="second \"svc\"\\ with\nnewline"} 5' \
            'requests_total{code="200",path="/a\\b \"q\"\nx"} 3' \
            'temperature_celsius{room="a"} NaN' 'temperature_celsius{room="b"} +Inf' \
            'step_duration_seconds_bucket{agent="x",le="+Inf"} 4' 'agent_journal_agents 3'; do
  grep -qxF "$want" "$TMPD/metrics.prom" || fail "missing line: $want"
done
ok "exposition has $lines lines with the expected samples"
out=$(promtool check metrics < "$TMPD/metrics.prom" 2>&1) || { echo "$out"; fail "promtool check metrics"; }
[ -z "$out" ] || { echo "$out"; fail "promtool lint complaints"; }
ok "promtool check metrics: clean"
# promtool must be able to fail: a broken exposition is rejected
printf '# TYPE x counter\nx{a="b} 1\n' | promtool check metrics >/dev/null 2>&1 && fail "promtool accepted garbage"
ok "promtool rejects a broken exposition"
/usr/bin/python3 - "$TMPD/metrics.om" <<'PY' || fail "OpenMetrics parser rejected the openmetrics view"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
fams = list(text_string_to_metric_families(text))
names = {f.name for f in fams}
for want in ("agent_runtime_scheduler_scheduled", "requests", "step_duration_seconds", "temperature_celsius"):
    assert want in names, (want, sorted(names))
print("ok: OpenMetrics parser accepted %d families" % len(fams))
PY
# the OTLP body is JSON with one resource per service plus the extension's own
n=$(q $DB "SELECT jsonb_array_length(agent_journal.otlp_json()->'resourceMetrics')")
expect_eq "OTLP resources" "$n" "3"
dropdb $DB
