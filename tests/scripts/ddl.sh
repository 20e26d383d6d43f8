#!/usr/bin/env bash
# DDL an operator runs on the extension's tables never crashes a backend:
# afterwards the journal either works (added nullable/defaulted columns,
# dropped added columns, triggers, indexes) or refuses with a clear ERROR
# (SQLSTATE 55000 naming the column for a renamed or retyped column, 23502
# for a NOT NULL column without a default) -- never a crash, never wrong
# data. (An added column once made append() die with SIGSEGV, and the
# journal stayed broken after DROP COLUMN.)
source "$(dirname "$0")/lib.bash"
DB=aj_ddl
A=00000000-0000-0000-0000-0000000000e1   # kept agent
F=00000000-0000-0000-0000-0000000000e2   # forgotten each workload
SNAP='{"timestamp": 1700000000, "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5, "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000, "load_factor": 0.005}, "task_manager": {"total_tasks": 5, "healthy_tasks": 4, "average_uptime_seconds": 1800.0, "total_memory_usage": 1024}, "load_balancer": {"total_allocations": 100, "active_allocations": 5, "memory_utilization": 0.45, "cpu_utilization": 0.30, "allocation_failures": 2, "average_allocation_time_ms": 1.5}, "system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0}}'

# a backend crash makes the postmaster reinitialize; its start time then
# changes (and a crashed statement shows as a lost connection)
START=$(q postgres "SELECT pg_postmaster_start_time()")
no_crash() {
  local now
  now=$(q postgres "SELECT pg_postmaster_start_time()") || fail "server unreachable after: $1"
  [ "$now" = "$START" ] || fail "server restarted (backend crash) after: $1"
}

# fresh database plus the helpers: aj_err (SQLSTATE of a statement) and
# aj_workload (touches every table; raises on a wrong result)
setup() {
  fresh_db $DB
  psql -X -q -v ON_ERROR_STOP=1 -d $DB >/dev/null <<'SQL'
CREATE FUNCTION public.aj_err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;
SQL
}

# workload TAG: every call must succeed and give the right answer.
# Separate statements (not one function) so that each runs on its own.
workload() {
  local tag=$1 out
  out=$(psql -X -q -v ON_ERROR_STOP=1 -At -d $DB 2>&1 <<SQL
SELECT coalesce(agent_journal.latest_sequence('$A'), 0) AS l \gset
SELECT agent_journal.append('$A', 0, '{"type": "Step", "n": 1}') = :l + 1 AS r \gset
\if :r \else \echo BAD append :l \endif
SELECT agent_journal.append('$A', 0, '{"type": "Step", "n": 2}', NULL, 'key-$tag') = :l + 2 AS r \gset
\if :r \else \echo BAD append with key \endif
SELECT agent_journal.append('$A', 0, '{"type": "Step", "n": 2}', NULL, 'key-$tag') = :l + 2 AS r \gset
\if :r \else \echo BAD idempotent retry \endif
SELECT agent_journal.append_batch('$A', 1, ARRAY['{"type": "B1"}', '{"type": "B2"}', '{"type": "B3"}']::jsonb[]) = :l + 5 AS r \gset
\if :r \else \echo BAD append_batch \endif
SELECT agent_journal.append_batch('$A', 1, ARRAY['{"type": "C1"}']::jsonb[], :l + 5, 'batch-$tag') = :l + 6 AS r \gset
\if :r \else \echo BAD append_batch with key \endif
SELECT agent_journal.latest_sequence('$A') = :l + 6 AS r \gset
\if :r \else \echo BAD latest_sequence \endif
SELECT string_agg(kind, ',' ORDER BY sequence) = 'Step,Step,B1,B2,B3,C1' AS r
  FROM agent_journal.replay('$A') WHERE sequence > :l \gset
\if :r \else \echo BAD replay \endif
SELECT (SELECT count(*) FROM agent_journal.entries WHERE agent_id = '$A' AND sequence > :l) = 6 AS r \gset
\if :r \else \echo BAD entries rows \endif
SELECT agent_journal.compact('$A', :l + 1) IS NOT NULL AS r \gset
SELECT min(sequence) = :l + 2 AS r FROM agent_journal.replay('$A') \gset
\if :r \else \echo BAD replay after compact \endif
SELECT agent_journal.counter_add('ddl_total', 2, '{"t": "$tag"}', 'DDL things') AS c1 \gset
SELECT agent_journal.counter_add('ddl_total', 2, '{"t": "$tag"}') = :c1 + 2 AS r \gset
\if :r \else \echo BAD counter_add \endif
SELECT agent_journal.gauge_set('ddl_gauge', 42, '{"t": "$tag"}');
SELECT agent_journal.histogram_observe('ddl_seconds', 0.25, '{"t": "$tag"}');
SELECT agent_journal.record_rejection('tenant_limit') > 0 AS r \gset
\if :r \else \echo BAD record_rejection \endif
SELECT agent_journal.ingest_snapshot('$SNAP') > 0 AS r \gset
\if :r \else \echo BAD ingest_snapshot \endif
SELECT exposition LIKE '%ddl_total{t="$tag"} 4%' AS r FROM agent_journal.prometheus \gset
\if :r \else \echo BAD prometheus \endif
SELECT exposition LIKE '%ddl_gauge{t="$tag"} 42%' AS r FROM agent_journal.openmetrics \gset
\if :r \else \echo BAD openmetrics \endif
SELECT value = 4 AS r FROM agent_journal.metric_samples WHERE name = 'ddl_total' AND labels = '{"t": "$tag"}' \gset
\if :r \else \echo BAD metric_samples \endif
SELECT agent_journal.otlp_json() IS NOT NULL AS r \gset
\if :r \else \echo BAD otlp_json \endif
SELECT agent_journal.subscribe('ddl-$tag', true) >= 0 AS r \gset
SELECT count(*) FILTER (WHERE kind IN ('B1', 'B2', 'B3', 'C1')) >= 4 AS r
  FROM agent_journal.read_feed('ddl-$tag', 1000000) WHERE agent_id = '$A' \gset
\if :r \else \echo BAD read_feed \endif
SELECT max(position) AS p FROM agent_journal.read_feed('ddl-$tag', 1000000) \gset
SELECT agent_journal.ack_feed('ddl-$tag', :p);
SELECT count(*) = 0 AS r FROM agent_journal.read_feed('ddl-$tag') \gset
\if :r \else \echo BAD ack_feed \endif
SELECT lag_entries = 0 AS r FROM agent_journal.feed_consumers WHERE consumer = 'ddl-$tag' \gset
\if :r \else \echo BAD feed_consumers \endif
SELECT agent_journal.unsubscribe('ddl-$tag') AS r \gset
\if :r \else \echo BAD unsubscribe \endif
SELECT agent_journal.append('$F', 0, '{"type": "Gone"}') > 0 AS r \gset
SELECT agent_journal.forget_agent('$F') >= 1 AS r \gset
\if :r \else \echo BAD forget_agent \endif
SELECT count(*) = 0 AS r FROM agent_journal.entries WHERE agent_id = '$F' \gset
\if :r \else \echo BAD forgotten entries left \endif
\echo DONE
SQL
  ) || { echo "$out" >&2; no_crash "workload $tag"; fail "workload $tag: a call failed"; }
  no_crash "workload $tag"
  [ "$(printf '%s\n' "$out" | tail -1)" = DONE ] && ! grep -q '^BAD' <<<"$out" \
    || { echo "$out" >&2; fail "workload $tag: wrong result"; }
  ok "workload $tag"
}

# qs DB: a psql script on stdin (may use \gset), unaligned output
qs() { psql -X -q -v ON_ERROR_STOP=1 -At -d "$1"; }
# err DB SQL: 'ok' or 'SQLSTATE: message'
err() { q $DB "SELECT public.aj_err(\$aj\$$1\$aj\$)"; }
expect_err() {  # expect_err WHAT SQL SQLSTATE WORD
  local got
  got=$(err "$2") || { no_crash "$1"; fail "$1: aj_err itself failed"; }
  no_crash "$1"
  case "$got" in
    "$3: "*"$4"*) ok "$1 -> $got" ;;
    *) fail "$1: got '$got', want SQLSTATE $3 naming $4" ;;
  esac
}

# 1. an added defaulted column on every table, then dropped again
setup
TABLES=$(q $DB "SELECT c.relname FROM pg_depend d
  JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
  JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND e.oid = d.refobjid
  WHERE d.deptype = 'e' AND e.extname = 'agent_journal' AND c.relkind = 'r' ORDER BY 1")
[ "$(wc -w <<<"$TABLES")" -ge 9 ] || fail "expected at least 9 extension tables, got: $TABLES"
ok "extension tables: $(echo $TABLES)"
for t in $TABLES; do
  setup
  workload "$t-before"
  q $DB "ALTER TABLE agent_journal.$t ADD COLUMN aj_note text DEFAULT 'd'" >/dev/null
  workload "$t-added"
  if [ "$t" = entries ]; then
    expect_eq "entries: appended row gets the added column's default" \
      "$(qs $DB <<SQL
SELECT agent_journal.append('$A', 9, '{"type": "Noted"}') AS s \gset
SELECT aj_note FROM agent_journal.entries WHERE agent_id = '$A' AND sequence = :s
SQL
)" "d"
    expect_eq "entries: batch rows get the default" \
      "$(qs $DB <<SQL
SELECT agent_journal.append_batch('$A', 9, ARRAY['{"type": "N1"}', '{"type": "N2"}']::jsonb[]) AS s \gset
SELECT string_agg(coalesce(aj_note, 'NULL'), ',' ORDER BY sequence) FROM agent_journal.entries WHERE agent_id = '$A' AND sequence > :s - 2
SQL
)" "d,d"
  fi
  q $DB "ALTER TABLE agent_journal.$t DROP COLUMN aj_note" >/dev/null
  workload "$t-dropped"
  expect_eq "$t: sequences continue after drop" \
    "$(qs $DB <<SQL
SELECT agent_journal.latest_sequence('$A') AS l \gset
SELECT agent_journal.append('$A', 10, '{"type": "After"}') = :l + 1
SQL
)" "t"
done

# 2. NOT NULL column without a default: a clean not-null violation
setup
q $DB "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')" >/dev/null
q $DB "ALTER TABLE agent_journal.entries ADD COLUMN must text NOT NULL DEFAULT 'x'" >/dev/null
q $DB "ALTER TABLE agent_journal.entries ALTER COLUMN must DROP DEFAULT" >/dev/null
expect_err "NOT NULL column: append refused" \
  "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')" 23502 ""
expect_err "NOT NULL column: append_batch refused" \
  "SELECT agent_journal.append_batch('$A', 0, ARRAY['{\"type\": \"X\"}']::jsonb[])" 23502 ""
expect_eq "NOT NULL column: nothing written" \
  "$(q $DB "SELECT agent_journal.latest_sequence('$A') || '/' || (SELECT count(*) FROM agent_journal.entries)")" "1/1"
q $DB "ALTER TABLE agent_journal.entries DROP COLUMN must" >/dev/null
expect_eq "NOT NULL column dropped: append continues" \
  "$(q $DB "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')")" "2"

# 3. renamed columns: 55000 naming the column; renaming back repairs it
setup
q $DB "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')" >/dev/null
q $DB "ALTER TABLE agent_journal.entries RENAME COLUMN kind TO kind2" >/dev/null
expect_err "entries.kind renamed: append refused" \
  "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')" 55000 kind
expect_err "entries.kind renamed: append_batch refused" \
  "SELECT agent_journal.append_batch('$A', 0, ARRAY['{\"type\": \"X\"}']::jsonb[])" 55000 kind
q $DB "ALTER TABLE agent_journal.entries RENAME COLUMN kind2 TO kind" >/dev/null
expect_eq "entries.kind renamed back: append works" \
  "$(q $DB "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')")" "2"
q $DB "ALTER TABLE agent_journal.agent_state RENAME COLUMN compacted_through TO ct2" >/dev/null
expect_err "agent_state.compacted_through renamed: append refused" \
  "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')" 55000 compacted_through
q $DB "ALTER TABLE agent_journal.agent_state RENAME COLUMN ct2 TO compacted_through" >/dev/null
expect_eq "agent_state.compacted_through renamed back: append works" \
  "$(q $DB "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')")" "3"
workload renamed-back

# 4. retyped columns. entries.iteration (like every column the C code
# checks by type) is pinned by the replay_rows view and a SQL function, so
# PostgreSQL itself refuses the ALTER (0A000) and the journal is untouched.
# Columns that are not pinned can be retyped; the journal then still
# works with the right results, and after changing back as well.
setup
q $DB "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')" >/dev/null
expect_err "entries.iteration bigint: PostgreSQL refuses (replay_rows depends on it)" \
  "ALTER TABLE agent_journal.entries ALTER COLUMN iteration TYPE bigint" 0A000 "used by a view"
expect_eq "entries.iteration untouched: append works" \
  "$(q $DB "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')")" "2"
expect_eq "entries.iteration untouched: replay" \
  "$(q $DB "SELECT string_agg(sequence || ':' || iteration || ':' || kind, ',' ORDER BY sequence) FROM agent_journal.replay('$A')")" \
  "1:0:Step,2:0:Step"
q $DB "ALTER TABLE agent_journal.agent_state ALTER COLUMN compacted_iteration TYPE bigint" >/dev/null
q $DB "ALTER TABLE agent_journal.idempotency_keys ALTER COLUMN first_sequence TYPE numeric" >/dev/null
workload retyped
q $DB "ALTER TABLE agent_journal.agent_state ALTER COLUMN compacted_iteration TYPE integer" >/dev/null
q $DB "ALTER TABLE agent_journal.idempotency_keys ALTER COLUMN first_sequence TYPE bigint" >/dev/null
workload retyped-back

# 5. user triggers on entries (qualified names: the extension runs with
# search_path pinned to pg_catalog)
setup
psql -X -q -v ON_ERROR_STOP=1 -d $DB >/dev/null <<'SQL'
CREATE TABLE public.aj_audit (id serial, what text, n bigint);
CREATE FUNCTION public.aj_row_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.aj_audit (what, n) VALUES ('row', NEW.sequence); RETURN NEW; END $$;
CREATE FUNCTION public.aj_stmt_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.aj_audit (what, n) SELECT 'stmt', count(*) FROM n; RETURN NULL; END $$;
CREATE TRIGGER aj_row BEFORE INSERT ON agent_journal.entries
  FOR EACH ROW EXECUTE FUNCTION public.aj_row_trg();
CREATE TRIGGER aj_stmt AFTER INSERT ON agent_journal.entries
  REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION public.aj_stmt_trg();
SQL
expect_eq "triggers: append" "$(q $DB "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')")" "1"
no_crash "append with triggers"
expect_eq "triggers: single append fires row trigger once, statement trigger once with 1 row" \
  "$(q $DB "SELECT string_agg(what || '=' || n, ',' ORDER BY id) FROM public.aj_audit")" "row=1,stmt=1"
q $DB "TRUNCATE public.aj_audit" >/dev/null
expect_eq "triggers: append_batch" \
  "$(q $DB "SELECT agent_journal.append_batch('$A', 1, ARRAY['{\"type\": \"B1\"}', '{\"type\": \"B2\"}', '{\"type\": \"B3\"}']::jsonb[])")" "4"
no_crash "append_batch with triggers"
expect_eq "triggers: batch of 3 fires row trigger per row, statement trigger once with 3 rows" \
  "$(q $DB "SELECT string_agg(what || '=' || n, ',' ORDER BY id) FROM public.aj_audit")" "row=2,row=3,row=4,stmt=3"
expect_eq "triggers: journal intact" \
  "$(q $DB "SELECT string_agg(sequence || kind, ',' ORDER BY sequence) FROM agent_journal.replay('$A')")" "1Step,2B1,3B2,4B3"
workload triggers

# 6. user indexes on entries and a metric table
setup
q $DB "CREATE INDEX aj_entries_kind ON agent_journal.entries (kind)" >/dev/null
q $DB "CREATE UNIQUE INDEX aj_families_name_type ON agent_journal.metric_families (name, type)" >/dev/null
q $DB "CREATE UNIQUE INDEX aj_series_labels_name ON agent_journal.metric_series (labels, name)" >/dev/null
workload indexes
workload indexes-again
q $DB "SELECT agent_journal.append('$A', 0, '{\"type\": \"Step\"}')" >/dev/null
q $DB "SELECT agent_journal.append_batch('$A', 0, ARRAY['{\"type\": \"Step\"}', '{\"type\": \"Other\"}']::jsonb[])" >/dev/null
cnt() { psql -X -At -v ON_ERROR_STOP=1 -d $DB "$@" -c "SELECT count(*) FROM agent_journal.entries WHERE kind = 'Step'" | tail -1; }
SEQ=$(cnt -c "SET enable_indexscan = off" -c "SET enable_indexonlyscan = off" -c "SET enable_bitmapscan = off")
[ "${SEQ:-0}" -ge 3 ] || fail "index: expected at least 3 Step rows, got '$SEQ'"
expect_eq "index: the added entries index holds every appended row (index count = heap count)" \
  "$(cnt -c "SET enable_seqscan = off")" "$SEQ"
expect_eq "index: the plan uses it" \
  "$(psql -X -At -d $DB -c "SET enable_seqscan = off" -c "EXPLAIN SELECT count(*) FROM agent_journal.entries WHERE kind = 'Step'" | grep -c aj_entries_kind)" "1"
expect_eq "index: REINDEX of entries succeeds" \
  "$(q $DB "REINDEX TABLE agent_journal.entries" >/dev/null && echo done)" "done"

no_crash "all cases"
ok "postmaster start time unchanged: no backend crashed"
dropdb $DB
