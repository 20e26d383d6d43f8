#!/usr/bin/env bash
# A real scrape, end to end, on loopback with free ports and temporary
# directories: a cluster that preloads agent_journal, whose exporter writes
# its textfile into node_exporter's textfile directory; node_exporter
# (running as an unprivileged user, so the file must be world-readable)
# with only the textfile collector; a Prometheus server scraping it every
# second, asked through its HTTP API until it has the snapshot's value; and
# prometheus-postgres-exporter with docs/postgres_exporter_queries.yaml
# and prometheus-sql-exporter with docs/sql_exporter.yml, both connected as
# a role with the scraper access level; the latter's values are compared
# with the extension's own exposition. Debian's packaged services (if any)
# are neither used nor touched.
source "$(dirname "$0")/lib.bash"
for b in prometheus prometheus-node-exporter prometheus-postgres-exporter prometheus-sql-exporter curl; do
  command -v $b >/dev/null || fail "$b not installed (scripts/install-deps)"
done
T0=$SECONDS
PORT=${AJ_SCRAPE_PGPORT:-54382}
CLUSTER_DIR=/tmp/aj_exp_scrape.$PORT
PIDS=()
cleanup() {
  local st=$?
  if [ $st -ne 0 ]; then
    for f in "$CLUSTER_DIR/server.log" "$TMPD"/*.out; do
      [ -f "$f" ] && { echo "--- $f (tail)"; tail -15 "$f"; }
    done
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" stop >/dev/null 2>&1
  rm -rf "$TMPD"
  exit $st
}
trap cleanup EXIT

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
as_user() {  # as_user USER CMD...: drop root for the exporters; execs, so $! is CMD
  if [ "$(id -u)" -eq 0 ]; then
    exec setpriv --reuid="$1" --regid="$(id -g "$1")" --init-groups -- "${@:2}"
  else
    exec "${@:2}"
  fi
}

TF=$TMPD/textfile
mkdir -p "$TF"
[ "$(id -u)" -eq 0 ] && chown postgres "$TF"
AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR AJ_PG_CONF="shared_preload_libraries = 'agent_journal'
agent_journal.export_interval = 1
agent_journal.textfile_path = '$TF/agent_journal.prom'" \
  "$AJ_ROOT/scripts/cluster" start >/dev/null || fail "could not start the preloaded cluster"
eval "$(AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" env)"
export PGHOST PGPORT PGUSER PGDATABASE
SNAP=$(sed -n "s/^SNAP='\(.*\)'$/\1/p" "$AJ_ROOT/tests/scripts/exposition.sh")
[ -n "$SNAP" ] || fail "no snapshot in exposition.sh"
psql -X -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL
CREATE EXTENSION agent_journal;
SELECT agent_journal.ingest_snapshot('$SNAP');
CREATE ROLE aj_scrape_exporter LOGIN;
SELECT agent_journal.grant_access('aj_scrape_exporter', 'scraper');
SQL
wait_for 20 "exporter wrote the textfile" grep -q '^agent_runtime_scheduler_running_agents' "$TF/agent_journal.prom"

# node_exporter: textfile collector only, as user nobody
NE_PORT=$(free_port)
(as_user nobody prometheus-node-exporter --web.listen-address=127.0.0.1:$NE_PORT \
  --collector.disable-defaults --collector.textfile --collector.textfile.directory="$TF") \
  >"$TMPD/node_exporter.out" 2>&1 &
PIDS+=($!)
ne_has() {
  curl -sf "http://127.0.0.1:$NE_PORT/metrics" >"$TMPD/ne.txt" &&
    grep -qx "$1" "$TMPD/ne.txt"
}
wait_for 20 "node_exporter serves the textfile" \
  ne_has 'agent_runtime_scheduler_running_agents{service="agent-runtime"} 5'
ne_has 'node_textfile_scrape_error 0' || fail "node_exporter reports a textfile scrape error"
ok "node_textfile_scrape_error 0"

# Prometheus scraping node_exporter every second
PROM_PORT=$(free_port)
cat >"$TMPD/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:$NE_PORT']
YML
prometheus --config.file="$TMPD/prometheus.yml" --storage.tsdb.path="$TMPD/prometheus-data" \
  --web.listen-address=127.0.0.1:$PROM_PORT --log.level=warn >"$TMPD/prometheus.out" 2>&1 &
PIDS+=($!)
prom_value() {  # prom_value QUERY WANT: the single result's value is WANT
  curl -sf -G "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" \
    | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
sys.exit(0 if len(r) == 1 and r[0]["value"][1] == sys.argv[1] else 1)' "$2"
}
wait_for 60 "Prometheus has agent_runtime_scheduler_running_agents = 5" \
  prom_value 'agent_runtime_scheduler_running_agents{job="node",service="agent-runtime"}' 5
# a new snapshot reaches Prometheus through the same path
psql -X -q -v ON_ERROR_STOP=1 -d postgres \
  -c "SELECT agent_journal.ingest_snapshot(jsonb_set(jsonb_set('$SNAP', '{scheduler,running_agents}', '8'), '{timestamp}', '1700000100'))" >/dev/null
wait_for 30 "Prometheus follows a new snapshot (running_agents = 8)" \
  prom_value 'agent_runtime_scheduler_running_agents{job="node"}' 8
# the exporter's health, as an alert would use it. The extension was
# created after the server started: the intervals before that count
# errors ("not installed"), as many as the creation took; after it, the
# count must stop growing.
wait_for 10 "Prometheus: the exporter's last success is recent" \
  prom_value 'count(time() - agent_journal_export_last_success_timestamp_seconds{target="textfile"} < 10)' 1
wait_for 15 "Prometheus: no new textfile export error in the last 5 s (agent_journal_export_errors_total)" \
  prom_value 'count(changes(agent_journal_export_errors_total{target="textfile"}[5s]) == 0)' 1

# postgres_exporter with the documented custom queries, as the scraper role
PE_PORT=$(free_port)
DSN="host=$PGHOST port=$PGPORT user=aj_scrape_exporter dbname=postgres sslmode=disable"
(export DATA_SOURCE_NAME=$DSN
  as_user postgres prometheus-postgres-exporter --web.listen-address=127.0.0.1:$PE_PORT \
  --extend.query-path="$AJ_ROOT/docs/postgres_exporter_queries.yaml" \
  --disable-default-metrics --disable-settings-metrics --log.level=warn) \
  >"$TMPD/postgres_exporter.out" 2>&1 &
PIDS+=($!)
pe_has() {
  curl -sf "http://127.0.0.1:$PE_PORT/metrics" >"$TMPD/pe.txt" || return 1
  grep -E '^agent_journal_value\{.*sample="agent_runtime_scheduler_running_agents".*\} 8$' "$TMPD/pe.txt" \
    | grep -q 'agent-runtime'
}
wait_for 30 "postgres_exporter shows agent_journal_value{sample=\"agent_runtime_scheduler_running_agents\"} 8" pe_has
echo "  $(grep -m1 'sample="agent_runtime_scheduler_running_agents"' "$TMPD/pe.txt")"

# prometheus-sql-exporter (Debian's build of justwatchcom/sql_exporter) with
# docs/sql_exporter.yml, as the same scraper role, given the connection only
# through AGENT_JOURNAL_DSN (no PG* variables): the values it serves must be
# the extension's own. A labelled counter of our own first, so that the
# exporter's first run (at start, then every 15 s) already sees it.
q postgres "SELECT agent_journal.counter_add('aj_scrape_sqlexp_total', 3, '{\"k\":\"v\"}')" >/dev/null
SE_PORT=$(free_port)
(export AGENT_JOURNAL_DSN="postgres://aj_scrape_exporter@/postgres?host=$PGHOST&port=$PGPORT&sslmode=disable"
  export LOGLEVEL=warn
  unset PGHOST PGPORT PGUSER PGDATABASE
  as_user postgres prometheus-sql-exporter -config.file="$AJ_ROOT/docs/sql_exporter.yml" \
    -web.listen-address=127.0.0.1:$SE_PORT) >"$TMPD/sql_exporter.out" 2>&1 &
PIDS+=($!)
se_has() {
  curl -sf "http://127.0.0.1:$SE_PORT/metrics" >"$TMPD/se.txt" &&
    grep -q '^sql_agent_journal_value{.*sample="aj_scrape_sqlexp_total"' "$TMPD/se.txt"
}
wait_for 30 "prometheus-sql-exporter serves sql_agent_journal_value" se_has
grep -Eq '^sql_exporter_last_scrape_failed\{.*query="agent_journal_value".*\} 0$' "$TMPD/se.txt" \
  || fail "prometheus-sql-exporter: sql_exporter_last_scrape_failed is not 0"
ok "prometheus-sql-exporter: sql_exporter_last_scrape_failed 0"
q postgres "SELECT exposition FROM agent_journal.prometheus" >"$TMPD/expo.txt"
# sample_values NAME_REGEX: prints "series<TAB>exporter-value<TAB>exposition-value"
# for every series whose name matches, from the exporter's
# sql_agent_journal_value (its sample label, and its labels label parsed as
# JSON) and from the extension's exposition, both read with
# prometheus_client's parser; "-" where a side lacks the series. Values in
# the shortest form, as PostgreSQL prints a float8 (8, 0.0015, 1700000000).
sample_values() {
  /usr/bin/python3 - "$TMPD/se.txt" "$TMPD/expo.txt" "$1" <<'PY'
import json, re, sys
from prometheus_client.parser import text_string_to_metric_families

def samples(path):
    with open(path) as f:
        return [s for fam in text_string_to_metric_families(f.read()) for s in fam.samples]

def series(name, labels):
    return name + "{" + ",".join('%s="%s"' % kv for kv in sorted(labels.items())) + "}"

def fmt(v):
    r = repr(v)
    return r[:-2] if r.endswith(".0") else r

want = re.compile(sys.argv[3])
got = {series(s.labels["sample"], json.loads(s.labels["labels"])): s.value
       for s in samples(sys.argv[1])
       if s.name == "sql_agent_journal_value" and want.fullmatch(s.labels["sample"])}
exp = {series(s.name, s.labels): s.value for s in samples(sys.argv[2]) if want.fullmatch(s.name)}
for k in sorted(set(got) | set(exp)):
    print(k, fmt(got[k]) if k in got else "-", fmt(exp[k]) if k in exp else "-", sep="\t")
PY
}
sample_values 'agent_runtime_scheduler_running_agents|aj_scrape_sqlexp_total' >"$TMPD/se_cmp.txt"
pair() {  # pair SERIES: "exporter-value exposition-value"
  awk -F'\t' -v s="$1" '$1 == s { print $2, $3 }' "$TMPD/se_cmp.txt"
}
expect_eq "prometheus-sql-exporter and exposition: agent_runtime_scheduler_running_agents{service=\"agent-runtime\"}" \
  "$(pair 'agent_runtime_scheduler_running_agents{service="agent-runtime"}')" "8 8"
SQL_VALUE=$(q postgres "SELECT value FROM agent_journal.metric_samples WHERE name = 'aj_scrape_sqlexp_total'")
expect_eq "metric_samples: aj_scrape_sqlexp_total" "$SQL_VALUE" 3
expect_eq "prometheus-sql-exporter and exposition: aj_scrape_sqlexp_total{k=\"v\"}" \
  "$(pair 'aj_scrape_sqlexp_total{k="v"}')" "$SQL_VALUE $SQL_VALUE"
# every series of the snapshot (they no longer change), both sides alike;
# the extension's own families are left out: the export health ones move
# with every export of the worker
sample_values 'agent_runtime_.*|aj_scrape_.*' >"$TMPD/se_all.txt"
N=$(wc -l <"$TMPD/se_all.txt")
[ "$N" -ge 20 ] || fail "prometheus-sql-exporter: only $N snapshot series compared"
if awk -F'\t' '($2 "") != ($3 "")' "$TMPD/se_all.txt" | grep -q .; then
  awk -F'\t' '($2 "") != ($3 "")' "$TMPD/se_all.txt" | head -5 >&2
  fail "prometheus-sql-exporter differs from the exposition (series exporter exposition above)"
fi
ok "prometheus-sql-exporter: all $N agent_runtime_*/aj_scrape_* series as in the exposition"
echo "  $(grep -m1 'sample="agent_runtime_scheduler_running_agents"' "$TMPD/se.txt")"
echo "scrape test took $((SECONDS - T0)) s"
