#!/usr/bin/env bash
# Concurrency: many sessions appending to one agent stay gap-free and
# duplicate-free, with rollbacks mixed in; idempotency keys and
# expected_sequence hold under concurrent retries.
source "$(dirname "$0")/lib.bash"
DB=aj_concurrency
fresh_db $DB
A=00000000-0000-0000-0000-0000000000a1

# 1. 8 writers x 500 appends to one agent: exactly 1..4000
cat > "$TMPD/append.sql" <<SQL
SELECT agent_journal.append('$A', :client_id, jsonb_build_object('type', 'Step', 'client', :client_id::int));
SQL
pgbench -n -M prepared -c 8 -j 2 -t 500 -f "$TMPD/append.sql" $DB >"$TMPD/pgbench1.log" 2>&1 \
  || { cat "$TMPD/pgbench1.log"; fail "pgbench append"; }
expect_eq "8x500 appends: count, min, max, distinct" \
  "$(q $DB "SELECT count(*)||','||min(sequence)||','||max(sequence)||','||count(DISTINCT sequence) FROM agent_journal.entries WHERE agent_id = '$A'")" \
  "4000,1,4000,4000"
expect_eq "per-client counts" \
  "$(q $DB "SELECT count(*) FROM (SELECT event->>'client' c, count(*) n FROM agent_journal.entries WHERE agent_id = '$A' GROUP BY 1) s WHERE n = 500")" "8"

# 2. appends that roll back, mixed with ones that commit, plus batches
B=00000000-0000-0000-0000-0000000000b1
cat > "$TMPD/mixed.sql" <<SQL
\set r random(0, 3)
BEGIN;
SELECT agent_journal.append('$B', 1, '{"type": "Maybe"}');
\if :r = 0
ROLLBACK;
\else
COMMIT;
\endif
SELECT agent_journal.append_batch('$B', 2, ARRAY['{"type": "B1"}', '{"type": "B2"}']::jsonb[]);
SQL
pgbench -n -M prepared -c 8 -j 2 -t 200 -f "$TMPD/mixed.sql" $DB >"$TMPD/pgbench2.log" 2>&1 \
  || { cat "$TMPD/pgbench2.log"; fail "pgbench mixed"; }
expect_eq "rollbacks leave no gap (count = max = distinct)" \
  "$(q $DB "SELECT count(*) = max(sequence) AND count(*) = count(DISTINCT sequence) AND min(sequence) = 1 FROM agent_journal.entries WHERE agent_id = '$B'")" "t"
expect_eq "batches are contiguous" \
  "$(q $DB "SELECT count(*) FROM agent_journal.entries e WHERE agent_id = '$B' AND kind = 'B1' AND NOT EXISTS (SELECT 1 FROM agent_journal.entries f WHERE f.agent_id = e.agent_id AND f.sequence = e.sequence + 1 AND f.kind = 'B2')")" "0"

# 3. idempotency keys under concurrency: 8 clients retry 100 keys at random;
#    each key ends up as exactly one entry and every caller got its sequence
C=00000000-0000-0000-0000-0000000000c1
q $DB "CREATE TABLE answers (key text, seq bigint)" >/dev/null
cat > "$TMPD/idem.sql" <<SQL
\set k random(1, 100)
INSERT INTO answers SELECT 'key-' || :k::int, agent_journal.append('$C', 1, jsonb_build_object('type', 'Once', 'key', 'key-' || :k::int), NULL, 'key-' || :k::int);
SQL
pgbench -n -M prepared -c 8 -j 2 -t 300 -f "$TMPD/idem.sql" $DB >"$TMPD/pgbench3.log" 2>&1 \
  || { cat "$TMPD/pgbench3.log"; fail "pgbench idempotency"; }
expect_eq "one entry per key" \
  "$(q $DB "SELECT count(*) = count(DISTINCT event->>'key') AND count(*) = max(sequence) FROM agent_journal.entries WHERE agent_id = '$C'")" "t"
expect_eq "every caller got the key's sequence" \
  "$(q $DB "SELECT count(*) FROM answers a LEFT JOIN agent_journal.entries e ON e.agent_id = '$C' AND e.sequence = a.seq AND e.event->>'key' = a.key WHERE e.sequence IS NULL")" "0"
expect_eq "all 2400 calls answered" "$(q $DB "SELECT count(*) FROM answers")" "2400"

# 4. expected_sequence under concurrency: optimistic writers read the latest
#    sequence, append with it, and retry on 40001; every entry was written
#    by a caller that saw exactly the previous sequence
D=00000000-0000-0000-0000-0000000000d1
cat > "$TMPD/expected.sql" <<SQL
SELECT agent_journal.latest_sequence('$D') AS latest \gset
SELECT agent_journal.append('$D', 1, jsonb_build_object('type', 'Opt', 'saw', :latest::bigint), :latest::bigint);
SQL
pgbench -n -M prepared -c 8 -j 2 -t 100 --max-tries=100000 -f "$TMPD/expected.sql" $DB >"$TMPD/pgbench4.log" 2>&1 \
  || { cat "$TMPD/pgbench4.log"; fail "pgbench expected_sequence"; }
expect_eq "800 optimistic appends, each saw its predecessor" \
  "$(q $DB "SELECT count(*)||','||count(*) FILTER (WHERE (event->>'saw')::bigint = sequence - 1)||','||max(sequence) FROM agent_journal.entries WHERE agent_id = '$D'")" "800,800,800"
grep -E "number of (failed|retried)" "$TMPD/pgbench4.log" || true

# 5. appends to different agents do not wait for each other: a session
#    holding agent X's lock does not block an append to agent Y
q $DB "SELECT 1" >/dev/null
( psql -X -q -d $DB -c "BEGIN; SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e1', 0, '{}'); SELECT pg_sleep(3); COMMIT;" >/dev/null ) &
holder=$!
sleep 0.5
expect_eq "other agent not blocked" \
  "$(PGOPTIONS='-c lock_timeout=1000' q $DB "SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e2', 0, '{}')")" "1"
expect_eq "same agent is serialized" \
  "$(PGOPTIONS='-c lock_timeout=300' psql -X -At -d $DB -c "SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e1', 0, '{}')" 2>&1 | grep -c 'lock timeout')" "1"
wait $holder
# 6. counters: 8 sessions x 1000 increments on one series lose nothing;
#    histograms likewise
cat > "$TMPD/counter.sql" <<SQL
SELECT agent_journal.counter_add('hits_total', 1, '{"route": "/"}');
SELECT agent_journal.histogram_observe('hit_seconds', 0.2);
SQL
pgbench -n -M prepared -c 8 -j 2 -t 1000 -f "$TMPD/counter.sql" $DB >"$TMPD/pgbench6.log" 2>&1 \
  || { cat "$TMPD/pgbench6.log"; fail "pgbench counter_add"; }
expect_eq "8x1000 counter increments" \
  "$(q $DB "SELECT value FROM agent_journal.metric_samples WHERE name = 'hits_total'")" "8000"
expect_eq "8x1000 histogram observations" \
  "$(q $DB "SELECT value FROM agent_journal.metric_samples WHERE name = 'hit_seconds_count'")" "8000"
# 7. counters under contention (counter_add moves to per-backend slots):
#    8 sessions x 500 committed increments of 1 and 500 rolled-back ones of
#    1000: exactly 4000, whichever path each took
cat > "$TMPD/counter_rb.sql" <<SQL
BEGIN;
SELECT agent_journal.counter_add('rb_total', 1);
COMMIT;
BEGIN;
SELECT agent_journal.counter_add('rb_total', 1000);
ROLLBACK;
SQL
pgbench -n -M prepared -c 8 -j 2 -t 500 -f "$TMPD/counter_rb.sql" $DB >"$TMPD/pgbench7.log" 2>&1 \
  || { cat "$TMPD/pgbench7.log"; fail "pgbench counter_add with rollbacks"; }
expect_eq "8x500 committed increments, rollbacks left out" \
  "$(q $DB "SELECT value FROM agent_journal.metric_samples WHERE name = 'rb_total'")" "4000"
echo "info: rb_total ended with $(q $DB "SELECT count(*) FROM agent_journal.counter_slots WHERE name = 'rb_total'") slot rows (contention moved increments there)"
expect_eq "the exposition shows the same total" \
  "$(q $DB "SELECT l FROM agent_journal.prometheus, regexp_split_to_table(exposition, E'\\n') l WHERE l LIKE 'rb_total %'")" "rb_total 4000"

dropdb $DB
echo "concurrency: all checks passed"
