#!/usr/bin/env bash
# Exemplars, end to end, on loopback with free ports and temporary
# directories: a cluster of our own; a histogram observation and a counter
# increment recorded with exemplars (trace_id, agent_id, sequence); a tiny
# python3 HTTP server answering every GET with the extension's OpenMetrics
# exposition (application/openmetrics-text; version=1.0.0), read with
# prometheus_client's OpenMetrics parser (exemplars, _created) and, for the
# 0.0.4 view, with promtool; a Prometheus server with exemplar storage
# scraping it every second (it asks for OpenMetrics first), asked through
# /api/v1/query_exemplars until it has both exemplars and through
# /api/v1/query for the counter; then delete_series takes the counter out
# of the exposition, which must still parse, and Prometheus marks it stale.
# Debian's packaged services (if any) are neither used nor touched.
source "$(dirname "$0")/lib.bash"
for b in prometheus promtool curl; do
  command -v $b >/dev/null || fail "$b not installed (scripts/install-deps)"
done
/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser, psycopg2' 2>/dev/null \
  || fail "python3-prometheus-client and python3-psycopg2 needed (scripts/install-deps)"
T0=$SECONDS
PORT=${AJ_EXEMPLARS_PGPORT:-54384}
CLUSTER_DIR=/tmp/aj_exp_exemplars.$PORT
PIDS=()
cleanup() {
  local st=$?
  if [ $st -ne 0 ]; then
    for f in "$CLUSTER_DIR/server.log" "$TMPD"/*.out; do
      [ -s "$f" ] && { echo "--- $f (tail)"; tail -15 "$f"; }
    done
    if [ -n "${PROM:-}" ]; then  # why a scrape failed, if it did
      echo "--- Prometheus' targets"
      curl -s "$PROM/api/v1/targets" | /usr/bin/python3 -c '
import json, sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print(t["scrapeUrl"], t["health"], t["lastError"])' 2>&1
    fi
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" stop >/dev/null 2>&1
  rm -rf "$TMPD"
  exit $st
}
trap cleanup EXIT

AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR \
  "$AJ_ROOT/scripts/cluster" start >/dev/null || fail "could not start the cluster"
eval "$(AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" env)"
export PGHOST PGPORT PGUSER PGDATABASE

HIST=aj_ex_step_seconds
CTR=aj_ex_tool_calls_total
HIST_EX='{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","agent_id":"agent-7","sequence":"42"}'
CTR_EX='{"trace_id":"0af7651916cd43dd8448eb211c80319c","agent_id":"agent-7","sequence":"43"}'
# 0.05 (no exemplar) and 0.3 (exemplar) in buckets 0.1 and 0.5; the counter
# 2 without and 3 with an exemplar: total 5, its exemplar's value 3
psql -X -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL
CREATE EXTENSION agent_journal;
SELECT agent_journal.histogram_observe('$HIST', 0.05, '{"route":"/plan"}', '{0.1,0.5,1}', 'Step latency');
SELECT agent_journal.histogram_observe('$HIST', 0.3, '{"route":"/plan"}', '{0.1,0.5,1}', 'Step latency', '$HIST_EX');
SELECT agent_journal.counter_add('$CTR', 2, '{"tool":"search"}', 'Tool calls');
SELECT agent_journal.counter_add('$CTR', 3, '{"tool":"search"}', 'Tool calls', '$CTR_EX');
SQL
ok "recorded $HIST and $CTR with exemplars"

# The HTTP server: /metrics is the OpenMetrics view, /metrics-0.0.4 the
# Prometheus text view; each GET reads the view afresh and logs the Accept
# header asked for. psycopg2, so the body is the exposition's exact text:
# psql -At would add a newline after "# EOF", which both prometheus_client
# ("Received line after # EOF") and Prometheus ("unexpected data after
# # EOF") reject.
# It binds port 0 and writes the port it got, so there is no race for it.
OM_CTYPE='application/openmetrics-text; version=1.0.0; charset=utf-8'
cat >"$TMPD/serve.py" <<'PY'
import http.server, sys
import psycopg2

port_file, accept_log, om_ctype = sys.argv[1:4]
VIEWS = {
    "/metrics": ("agent_journal.openmetrics", om_ctype),
    "/metrics-0.0.4": ("agent_journal.prometheus", "text/plain; version=0.0.4; charset=utf-8"),
}

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path not in VIEWS:
            self.send_error(404)
            return
        view, ctype = VIEWS[path]
        with open(accept_log, "a") as f:
            print(path, self.headers.get("Accept", "-"), sep="\t", file=f)
        try:
            conn = psycopg2.connect("")  # PGHOST, PGPORT, PGUSER, PGDATABASE
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SELECT exposition FROM " + view)
                    body = cur.fetchone()[0].encode()
            finally:
                conn.close()
        except Exception as e:
            self.send_error(500, explain=str(e))
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    print(srv.server_address[1], file=f)
import os
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
PY
/usr/bin/python3 "$TMPD/serve.py" "$TMPD/http.port" "$TMPD/accept.log" "$OM_CTYPE" \
  >"$TMPD/http.out" 2>&1 &
PIDS+=($!)
wait_for 10 "the exposition's HTTP server is listening" test -s "$TMPD/http.port"
HTTP_PORT=$(cat "$TMPD/http.port")
URL=http://127.0.0.1:$HTTP_PORT

# --- the exposition itself, as served
curl -sf -D "$TMPD/om.headers" -o "$TMPD/om.txt" "$URL/metrics" || fail "GET /metrics failed"
CTYPE=$(sed -n 's/^Content-Type: *//Ip' "$TMPD/om.headers" | tr -d '\r')
expect_eq "Content-Type of /metrics" "$CTYPE" "$OM_CTYPE"
# check_openmetrics FILE: parses FILE with prometheus_client's OpenMetrics
# parser (all of it, # EOF included); prints "family<TAB>type" per family
check_openmetrics() {
  /usr/bin/python3 - "$1" <<'PY'
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
with open(sys.argv[1]) as f:
    for fam in text_string_to_metric_families(f.read()):
        print(fam.name, fam.type, len(fam.samples), sep="\t")
PY
}
check_openmetrics "$TMPD/om.txt" >"$TMPD/om_families.txt" \
  || fail "prometheus_client's OpenMetrics parser rejects the exposition"
ok "prometheus_client's OpenMetrics parser reads all $(wc -l <"$TMPD/om_families.txt") families"
# The exemplars and _created samples, as the parser sees them; writes the
# exemplars' timestamps (to compare with Prometheus' own) to om_exemplars.json.
if ! /usr/bin/python3 - "$TMPD/om.txt" "$HIST" "$CTR" "$HIST_EX" "$CTR_EX" "$TMPD/om_exemplars.json" <<'PY'
import json, sys, time
from prometheus_client.openmetrics.parser import text_string_to_metric_families
path, hist, ctr, hist_ex, ctr_ex, out = sys.argv[1:7]
hist_ex, ctr_ex = json.loads(hist_ex), json.loads(ctr_ex)
ctr_base = ctr[:-len("_total")]
with open(path) as f:
    fams = {fam.name: fam for fam in text_string_to_metric_families(f.read())}
bad = []
def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what, file=sys.stdout if cond else sys.stderr)
    if not cond:
        bad.append(what)
    return cond
now = time.time()
def ts(t):
    return t.sec + t.nsec / 1e9

h = fams.get(hist)
check(h is not None and h.type == "histogram", "OpenMetrics: %s is a histogram family" % hist)
c = fams.get(ctr_base)
check(c is not None and c.type == "counter", "OpenMetrics: %s is a counter family (%s_total)" % (ctr_base, ctr_base))
if bad:
    sys.exit(1)
stamps = {}

buckets = {s.labels["le"]: s for s in h.samples if s.name == hist + "_bucket"}
check(sorted(buckets) == sorted(["0.1", "0.5", "1.0", "+Inf"]), "OpenMetrics: %s buckets %s" % (hist, sorted(buckets)))
b = buckets.get("0.5")
ex = b.exemplar if b else None
if check(ex is not None, '%s_bucket{le="0.5"} has an exemplar' % hist):
    check(ex.labels == hist_ex, "its labels are %s" % hist_ex)
    check(ex.value == 0.3, "its value is 0.3 (got %r)" % ex.value)
    check(ex.timestamp is not None and abs(ts(ex.timestamp) - now) < 60, "its timestamp is now")
    stamps["hist"] = ts(ex.timestamp) if ex.timestamp else None
others = [le for le, s in buckets.items() if le != "0.5" and s.exemplar is not None]
check(not others, "no other bucket has an exemplar (%s)" % others)
counts = [buckets[le].value if le in buckets else None for le in ("0.1", "0.5", "1.0", "+Inf")]
check(counts == [1, 2, 2, 2], "cumulative bucket counts %s (le 0.1, 0.5, 1.0, +Inf)" % counts)
hc = [s for s in h.samples if s.name == hist + "_created"]
check(len(hc) == 1 and hc[0].labels == {"route": "/plan"} and abs(hc[0].value - now) < 60,
      '%s_created{route="/plan"} is now (%s)' % (hist, hc[0].value if hc else "missing"))

tot = [s for s in c.samples if s.name == ctr]
if check(len(tot) == 1 and tot[0].value == 5, '%s{tool="search"} 5' % ctr):
    ex = tot[0].exemplar
    if check(ex is not None, "%s has an exemplar" % ctr):
        check(ex.labels == ctr_ex, "its labels are %s" % ctr_ex)
        check(ex.value == 3, "its value is the increment, 3 (got %r)" % ex.value)
        check(ex.timestamp is not None and abs(ts(ex.timestamp) - now) < 60, "its timestamp is now")
        stamps["ctr"] = ts(ex.timestamp) if ex.timestamp else None
cc = [s for s in c.samples if s.name == ctr_base + "_created"]
check(len(cc) == 1 and cc[0].labels == {"tool": "search"} and abs(cc[0].value - now) < 60,
      '%s_created{tool="search"} is now (%s)' % (ctr_base, cc[0].value if cc else "missing"))
if "ctr" in stamps and cc:
    check(cc[0].value <= stamps["ctr"], "%s_created is not after its exemplar" % ctr_base)
with open(out, "w") as f:
    json.dump(stamps, f)
sys.exit(1 if bad else 0)
PY
then
  fail "the parsed exposition lacks its exemplars or _created samples"
fi

# promtool on the 0.0.4 view (its linter only reads the Prometheus text format)
curl -sf -D "$TMPD/p.headers" -o "$TMPD/p.txt" "$URL/metrics-0.0.4" || fail "GET /metrics-0.0.4 failed"
if ! promtool check metrics <"$TMPD/p.txt" >"$TMPD/promtool.out" 2>&1; then
  cat "$TMPD/promtool.out" >&2
  fail "promtool check metrics rejects agent_journal.prometheus"
fi
ok "promtool check metrics accepts agent_journal.prometheus$( [ -s "$TMPD/promtool.out" ] && echo " (with notes: $(tr '\n' ' ' <"$TMPD/promtool.out"))")"
grep -q ' # {' "$TMPD/p.txt" && fail "agent_journal.prometheus (0.0.4) has an exemplar"
ok "agent_journal.prometheus (0.0.4) has no exemplars"

# --- Prometheus with exemplar storage, scraping /metrics every second
PROM_PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$TMPD/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: aj_exemplars
    metrics_path: /metrics
    static_configs:
      - targets: ['127.0.0.1:$HTTP_PORT']
YML
prometheus --config.file="$TMPD/prometheus.yml" --storage.tsdb.path="$TMPD/prometheus-data" \
  --enable-feature=exemplar-storage --web.listen-address="127.0.0.1:$PROM_PORT" \
  --log.level=warn >"$TMPD/prometheus.out" 2>&1 &
PIDS+=($!)
PROM=http://127.0.0.1:$PROM_PORT
START=$(($(date +%s) - 300))
prom_value() {  # prom_value QUERY WANT: the single result's value is WANT
  curl -sf -G "$PROM/api/v1/query" --data-urlencode "query=$1" \
    | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
sys.exit(0 if len(r) == 1 and r[0]["value"][1] == sys.argv[1] else 1)' "$2"
}
prom_empty() {  # prom_empty QUERY: no result
  curl -sf -G "$PROM/api/v1/query" --data-urlencode "query=$1" \
    | /usr/bin/python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["data"]["result"] == [] else 1)'
}
# prom_exemplar QUERY SERIES_LABELS EXEMPLAR_LABELS VALUE TS: query_exemplars
# has exactly one series for QUERY, with SERIES_LABELS (a JSON subset), and
# its latest exemplar has exactly EXEMPLAR_LABELS, VALUE and (to the
# millisecond Prometheus keeps) timestamp TS
prom_exemplar() {
  curl -sf -G "$PROM/api/v1/query_exemplars" --data-urlencode "query=$1" \
    --data-urlencode "start=$START" --data-urlencode "end=$(($(date +%s) + 60))" >"$TMPD/exemplars.json" \
    && /usr/bin/python3 - "$TMPD/exemplars.json" "${@:2}" <<'PY'
import json, sys
path, series, labels, value, ts = sys.argv[1:6]
d = json.load(open(path))["data"]
series, labels = json.loads(series), json.loads(labels)
ok = (len(d) == 1 and all(d[0]["seriesLabels"].get(k) == v for k, v in series.items())
      and d[0]["exemplars"]
      and d[0]["exemplars"][-1]["labels"] == labels
      and float(d[0]["exemplars"][-1]["value"]) == float(value)
      and abs(float(d[0]["exemplars"][-1]["timestamp"]) - float(ts)) < 0.002)
sys.exit(0 if ok else 1)
PY
}
HIST_TS=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["hist"])' "$TMPD/om_exemplars.json")
CTR_TS=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ctr"])' "$TMPD/om_exemplars.json")
wait_for 20 "Prometheus scrapes the exposition (up = 1)" prom_value 'up{job="aj_exemplars"}' 1
wait_for 20 "Prometheus: query_exemplars ${HIST}_bucket has le=\"0.5\"'s exemplar (trace_id, agent_id, sequence; 0.3)" \
  prom_exemplar "${HIST}_bucket" '{"le":"0.5","route":"/plan","job":"aj_exemplars"}' "$HIST_EX" 0.3 "$HIST_TS"
echo "  $(/usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))["data"][0]; print(json.dumps(d["seriesLabels"], sort_keys=True), json.dumps(d["exemplars"][-1], sort_keys=True))' "$TMPD/exemplars.json")"
wait_for 20 "Prometheus: query_exemplars $CTR has its exemplar (trace_id, agent_id, sequence; 3)" \
  prom_exemplar "$CTR" '{"tool":"search","job":"aj_exemplars"}' "$CTR_EX" 3 "$CTR_TS"
echo "  $(/usr/bin/python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))["data"][0]; print(json.dumps(d["seriesLabels"], sort_keys=True), json.dumps(d["exemplars"][-1], sort_keys=True))' "$TMPD/exemplars.json")"
prom_value "$CTR{job=\"aj_exemplars\",tool=\"search\"}" 5 || fail "Prometheus: $CTR{tool=\"search\"} is not 5"
ok "Prometheus: $CTR{tool=\"search\"} = 5"
prom_value "sum(${HIST}_bucket{job=\"aj_exemplars\",le=\"+Inf\"})" 2 || fail "Prometheus: ${HIST}_bucket{le=\"+Inf\"} is not 2"
ok "Prometheus: ${HIST}_bucket{le=\"+Inf\"} = 2"
# the scrape itself: negotiated OpenMetrics, no error, no complaint
grep -P '^/metrics\t' "$TMPD/accept.log" | tail -1 | grep -q 'application/openmetrics-text' \
  || fail "Prometheus did not ask for OpenMetrics: $(tail -1 "$TMPD/accept.log")"
ok "Prometheus asked for application/openmetrics-text"
echo "  Accept: $(grep -P '^/metrics\t' "$TMPD/accept.log" | tail -1 | cut -f2)"
curl -sf "$PROM/api/v1/targets" | /usr/bin/python3 -c '
import json, sys
t = json.load(sys.stdin)["data"]["activeTargets"]
sys.exit(0 if len(t) == 1 and t[0]["health"] == "up" and t[0]["lastError"] == "" else 1)' \
  || fail "Prometheus: the target has a scrape error"
ok "Prometheus: the target is up with no lastError"
if grep -Ei 'exemplar|error|invalid' "$TMPD/prometheus.out" | grep -v 'level=info' | grep -q .; then
  grep -Ei 'exemplar|error|invalid' "$TMPD/prometheus.out" >&2
  fail "Prometheus logged a complaint about the scrape (above)"
fi
ok "Prometheus logged no complaint"

# --- delete_series: the counter's series leaves the exposition
N=$(q postgres "SELECT agent_journal.delete_series('$CTR')")
expect_eq "delete_series('$CTR')" "$N" 1
curl -sf -o "$TMPD/om2.txt" "$URL/metrics" || fail "GET /metrics failed"
if grep -E "^${CTR%_total}(_total|_created)?[{ ]" "$TMPD/om2.txt"; then
  fail "the exposition still has $CTR's series (above)"
fi
ok "the exposition no longer has $CTR's samples"
check_openmetrics "$TMPD/om2.txt" >"$TMPD/om2_families.txt" \
  || fail "prometheus_client's OpenMetrics parser rejects the exposition after delete_series"
ok "prometheus_client's OpenMetrics parser still reads it ($(wc -l <"$TMPD/om2_families.txt") families)"
grep -q " # {" "$TMPD/om2.txt" || fail "the histogram's exemplar went with the counter"
ok "the histogram keeps its exemplar"
wait_for 20 "Prometheus: $CTR is stale (no result)" prom_empty "$CTR{job=\"aj_exemplars\"}"
prom_value 'up{job="aj_exemplars"}' 1 || fail "Prometheus: scrape failed after delete_series"
ok "Prometheus: still up after delete_series"
echo "exemplars test took $((SECONDS - T0)) s"
