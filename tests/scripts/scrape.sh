#!/usr/bin/env bash
# A real scrape, end to end, on loopback with free ports and temporary
# directories: a cluster that preloads agent_journal, whose exporter writes
# its textfile into node_exporter's textfile directory; node_exporter
# (running as an unprivileged user, so the file must be world-readable)
# with only the textfile collector; a Prometheus server scraping it every
# second, asked through its HTTP API until it has the snapshot's value; and
# prometheus-postgres-exporter with docs/postgres_exporter_queries.yaml,
# connected as a role with the scraper access level. Debian's packaged
# services (if any) are neither used nor touched.
source "$(dirname "$0")/lib.bash"
for b in prometheus prometheus-node-exporter prometheus-postgres-exporter curl; do
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
# the exporter's health, as an alert would use it (the extension was
# created after the server started: that first interval may count an error)
wait_for 10 "Prometheus: the exporter's last success is recent" \
  prom_value 'count(time() - agent_journal_export_last_success_timestamp_seconds{target="textfile"} < 10)' 1
prom_value 'count(agent_journal_export_errors_total{target="textfile"} <= 1)' 1 \
  || fail "Prometheus: textfile export errors after the extension was created"
ok "Prometheus: agent_journal_export_errors_total{target=\"textfile\"} <= 1"

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
echo "scrape test took $((SECONDS - T0)) s"
