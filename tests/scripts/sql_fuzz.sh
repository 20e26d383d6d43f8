#!/usr/bin/env bash
# Hostile input through SQL: a few hundred mutated snapshots, events and
# label sets (wrong types, huge numbers, deep nesting, long strings, odd
# Unicode) go through ingest_snapshot, append, append_batch and the metric
# functions. Each is accepted or rejected with an ERROR; no backend dies;
# afterwards the exposition still passes promtool check metrics.
source "$(dirname "$0")/lib.bash"
DB=aj_sql_fuzz
fresh_db $DB
PY=/usr/bin/python3
SEED=${AJ_FUZZ_SEED:-20261126}
echo "seed: $SEED (AJ_FUZZ_SEED=$SEED reproduces)"
$PY "$(dirname "$0")/sql_fuzz.py" "$SEED" snapshot 400 > "$TMPD/snapshots.txt"
$PY "$(dirname "$0")/sql_fuzz.py" "$((SEED + 1))" event 400 > "$TMPD/events.txt"
$PY "$(dirname "$0")/sql_fuzz.py" "$((SEED + 2))" labels 200 > "$TMPD/labels.txt"
chmod 644 "$TMPD"/*.txt
q $DB "CREATE TABLE fuzz_in (kind text, doc text)" >/dev/null
for k in snapshots events labels; do
  psql -X -q -v ON_ERROR_STOP=1 -d $DB -c "\\copy fuzz_in (doc) FROM '$TMPD/$k.txt'" >/dev/null
  q $DB "UPDATE fuzz_in SET kind = '$k' WHERE kind IS NULL" >/dev/null
done
before=$(grep -c "terminated by signal" "$AJ_CLUSTER_DIR/server.log" 2>/dev/null || true)
psql -X -q -v ON_ERROR_STOP=1 -d $DB > "$TMPD/result.txt" <<'SQL'
CREATE TABLE fuzz_out (kind text, outcome text);
DO $$
DECLARE
  r record;
  j jsonb;
  n int := 0;
BEGIN
  FOR r IN SELECT * FROM fuzz_in LOOP
    n := n + 1;
    BEGIN
      j := r.doc::jsonb;
      IF r.kind = 'snapshots' THEN
        PERFORM agent_journal.ingest_snapshot(j, 'fuzz-' || (n % 3));
      ELSIF r.kind = 'events' THEN
        PERFORM agent_journal.append('00000000-0000-0000-0000-00000000f022', n % 7, j,
                                     NULL, CASE WHEN n % 5 = 0 THEN 'k' || (n % 20) END);
        PERFORM agent_journal.append_batch('00000000-0000-0000-0000-00000000f023', 1, ARRAY[j, '{}'::jsonb]);
      ELSE
        PERFORM agent_journal.counter_add('fuzz_total', 1, j);
        PERFORM agent_journal.gauge_set('fuzz_level', n, j);
        PERFORM agent_journal.histogram_observe('fuzz_seconds', n / 100.0, j);
      END IF;
      INSERT INTO fuzz_out VALUES (r.kind, 'accepted');
    EXCEPTION WHEN OTHERS THEN
      INSERT INTO fuzz_out VALUES (r.kind, SQLSTATE);
    END;
  END LOOP;
END $$;
SELECT kind, outcome, count(*) FROM fuzz_out GROUP BY 1, 2 ORDER BY 1, 2;
SQL
cat "$TMPD/result.txt"
after=$(grep -c "terminated by signal" "$AJ_CLUSTER_DIR/server.log" 2>/dev/null || true)
[ "$before" = "$after" ] || fail "a backend died during the fuzz run (see server.log)"
ok "no backend died"
expect_eq "every input answered" "$(q $DB "SELECT count(*) FROM fuzz_out")" "$(q $DB "SELECT count(*) FROM fuzz_in")"
expect_eq "only SQLSTATE classes 22, 54 or acceptance" \
  "$(q $DB "SELECT count(*) FROM fuzz_out WHERE outcome <> 'accepted' AND left(outcome, 2) NOT IN ('22', '54')")" "0"
[ "$(q $DB "SELECT count(*) FROM fuzz_out WHERE kind = 'snapshots' AND outcome = 'accepted'")" -gt 0 ] || fail "no snapshot accepted"
[ "$(q $DB "SELECT count(*) FROM fuzz_out WHERE kind = 'snapshots' AND outcome <> 'accepted'")" -gt 0 ] || fail "no snapshot rejected"
expect_eq "journals still gap-free" \
  "$(q $DB "SELECT bool_and(n = mx) FROM (SELECT agent_id, count(*) n, max(sequence) mx FROM agent_journal.entries GROUP BY 1) s")" "t"
printf '%s\n' "$(q $DB "SELECT exposition FROM agent_journal.prometheus")" > "$TMPD/metrics.prom"
out=$(promtool check metrics < "$TMPD/metrics.prom" 2>&1) || { echo "$out"; fail "promtool after fuzzing"; }
ok "exposition after fuzzing passes promtool ($(wc -l < "$TMPD/metrics.prom") lines)"
/usr/bin/python3 -c 'import sys; from prometheus_client.openmetrics.parser import text_string_to_metric_families as p; list(p(sys.stdin.read()))' \
  <<< "$(q $DB "SELECT exposition FROM agent_journal.openmetrics")" || fail "OpenMetrics parser after fuzzing"
ok "openmetrics after fuzzing parses"
q $DB "SELECT agent_journal.otlp_json()" > /dev/null || fail "otlp_json after fuzzing"
dropdb $DB
