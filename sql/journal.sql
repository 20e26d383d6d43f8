-- The journal API: append, batch, replay, sequences, compaction, forget.
\set VERBOSITY terse
-- err(q): runs q and shows 'ok' or its SQLSTATE and message.
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;

\set a '''00000000-0000-0000-0000-00000000000a'''
\set b '''00000000-0000-0000-0000-00000000000b'''

-- unknown agent: nothing yet
SELECT agent_journal.latest_sequence(:a), agent_journal.next_sequence(:a),
       agent_journal.last_completed_iteration(:a);

-- sequences start at 1, per agent
SELECT agent_journal.append(:a, 0, '{"type": "Started", "goal": "demo"}');
SELECT agent_journal.append(:a, 1, '{"ToolCall": {"name": "search"}}');
SELECT agent_journal.append(:b, 0, '{"type": "Started"}');
SELECT agent_journal.append(:a, 1, '{"x": 1, "y": 2}');
SELECT agent_journal.append(:a, 1, '{}');
SELECT agent_journal.append(:a, 1, '{"type": 7}');
SELECT agent_journal.append(:a, 2, '{"type": {"nested": true}, "other": 1}');
SELECT agent_journal.append(:a, 2, '{"type": "Interrupted", "extra": [1,2,3]}');
SELECT sequence, iteration, kind, event FROM agent_journal.replay(:a);
SELECT agent_journal.latest_sequence(:a), agent_journal.next_sequence(:a),
       agent_journal.last_completed_iteration(:a), agent_journal.latest_sequence(:b);

-- replay: from a sequence, paged
SELECT sequence, kind FROM agent_journal.replay(:a, 3);
SELECT sequence, kind FROM agent_journal.replay(:a, 2, 2);
SELECT sequence, kind FROM agent_journal.replay(:a, 100);
SELECT count(*) FROM agent_journal.replay(:a, 1, 0);
SELECT count(*) FROM agent_journal.replay('00000000-0000-0000-0000-0000000000ff');
-- replay is inlined into the calling query: an index scan streamed to the
-- caller (no Function Scan, no tuplestore), the checks in the Limit. Seq
-- scans off: the plans must not depend on when autovacuum last analyzed
-- entries (a small table can otherwise get a seq scan and a sort).
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM agent_journal.replay(:a, 2, 10);
-- also with a parameter, under a generic plan, and joined laterally
PREPARE rp(uuid, bigint) AS SELECT sequence FROM agent_journal.replay($1, $2);
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE rp(:a, 3);
EXECUTE rp(:a, 3);
RESET plan_cache_mode;
RESET enable_seqscan;
DEALLOCATE rp;
SELECT a.agent_id, r.sequence FROM (VALUES (:a::uuid), (:b::uuid)) a(agent_id),
  LATERAL agent_journal.replay(a.agent_id, 1, 2) r ORDER BY 1, 2;

-- recorded_at never decreases along the sequence
SELECT bool_and(recorded_at >= prev) AS monotonic FROM (
  SELECT recorded_at, lag(recorded_at, 1, '-infinity') OVER (ORDER BY sequence) AS prev
  FROM agent_journal.replay(:a)) s;

-- expected_sequence: the agent's latest sequence before the append
SELECT agent_journal.append(:a, 3, '{"type": "Step"}', expected_sequence => 7);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 3, '{"type": "Step"}', expected_sequence => 7)$$);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000cc', 0, '{"type": "Step"}', expected_sequence => 1)$$);
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000cc', 0, '{"type": "Step"}', expected_sequence => 0);
SELECT agent_journal.latest_sequence(:a);

-- idempotency keys: a retry gets the original answer and writes nothing
SELECT agent_journal.append(:a, 3, '{"type": "Tool", "n": 1}', idempotency_key => 'step-9');
SELECT agent_journal.append(:a, 3, '{"type": "Tool", "n": 1}', idempotency_key => 'step-9');
-- even with the (now stale) expected_sequence of the lost first attempt
SELECT agent_journal.append(:a, 3, '{"type": "Tool", "n": 1}', 8, 'step-9');
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 3, '{"type": "Tool", "n": 2}', idempotency_key => 'step-9')$$);
SELECT agent_journal.latest_sequence(:a);
-- keys are per agent
SELECT agent_journal.append(:b, 1, '{"type": "Tool", "n": 1}', idempotency_key => 'step-9');

-- batches: consecutive sequences, returns the last; expected_sequence is
-- the latest before the batch; the key covers the whole batch
SELECT agent_journal.append_batch(:a, 4, ARRAY['{"type": "A"}', '{"type": "B"}', '{"C": 1}']::jsonb[], 9, 'batch-1');
SELECT agent_journal.append_batch(:a, 4, ARRAY['{"type": "A"}', '{"type": "B"}', '{"C": 1}']::jsonb[], 9, 'batch-1');
SELECT pg_temp.err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000000a', 4, ARRAY['{"type": "A"}']::jsonb[], NULL, 'batch-1')$$);
SELECT pg_temp.err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000000a', 4, ARRAY['{"type": "A"}']::jsonb[], 9)$$);
SELECT sequence, iteration, kind FROM agent_journal.replay(:a, 10);
-- all or nothing: a bad element anywhere writes nothing
SELECT pg_temp.err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000000a', 5, ARRAY['{"type": "A"}', '[1]']::jsonb[])$$);
SELECT agent_journal.latest_sequence(:a);

-- bad input: a clear error naming the argument, nothing written
SELECT pg_temp.err($$SELECT agent_journal.append(NULL, 0, '{}')$$);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', NULL, '{}')$$);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 0, NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', -1, '{}')$$);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 0, '[1, 2]')$$);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 0, '"text"')$$);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 0, 'null')$$);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 0, '{}', -1)$$);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 0, '{}', NULL, '')$$);
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 0, '{}', NULL, repeat('k', 600))$$);
SELECT pg_temp.err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000000a', 0, NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000000a', 0, ARRAY[]::jsonb[])$$);
SELECT pg_temp.err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000000a', 0, ARRAY['{}', 'null']::jsonb[])$$);
SELECT pg_temp.err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000000a', 0, ARRAY['{}', NULL]::jsonb[])$$);
SELECT pg_temp.err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000000a', 0, ARRAY[['{}'], ['{}']]::jsonb[])$$);
SELECT pg_temp.err($$SELECT agent_journal.append_batch(NULL, 0, ARRAY['{}']::jsonb[])$$);
SELECT pg_temp.err($$SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-00000000000a', 0)$$);
SELECT pg_temp.err($$SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-00000000000a', NULL)$$);
SELECT pg_temp.err($$SELECT * FROM agent_journal.replay(NULL)$$);
SELECT pg_temp.err($$SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-00000000000a', 1, -1)$$);
SELECT pg_temp.err($$SELECT agent_journal.latest_sequence(NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.next_sequence(NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.last_completed_iteration(NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.compact(NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.compact('00000000-0000-0000-0000-00000000000a', -5)$$);
SELECT pg_temp.err($$SELECT agent_journal.forget_agent(NULL)$$);
SELECT agent_journal.latest_sequence(:a);

-- payload guardrail: agent_journal.max_event_bytes (54000)
SET agent_journal.max_event_bytes = '1kB';
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 0, jsonb_build_object('blob', repeat('x', 2000)))$$);
SELECT pg_temp.err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-00000000000a', 0, ARRAY['{}'::jsonb, jsonb_build_object('blob', repeat('x', 2000))])$$);
-- compressible payloads are measured uncompressed
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-00000000000a', 0, (SELECT event FROM (VALUES (jsonb_build_object('blob', repeat('x', 100000)))) v(event)))$$);
RESET agent_journal.max_event_bytes;
SELECT agent_journal.latest_sequence(:a);

-- a rolled-back append leaves no trace and no gap
BEGIN;
SELECT agent_journal.append(:a, 6, '{"type": "Doomed"}');
ROLLBACK;
SELECT agent_journal.append(:a, 6, '{"type": "Kept"}');
BEGIN;
SELECT agent_journal.append_batch(:a, 7, ARRAY['{"type": "Doomed"}', '{"type": "Doomed"}']::jsonb[], NULL, 'doomed-key');
ROLLBACK;
SELECT agent_journal.append(:a, 6, '{"type": "Kept2"}', idempotency_key => 'doomed-key');
SELECT sequence, kind FROM agent_journal.replay(:a, 12);

-- several appends in one transaction, and at every isolation level
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT agent_journal.append(:b, 2, '{"type": "RR1"}');
SELECT agent_journal.append(:b, 2, '{"type": "RR2"}');
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT agent_journal.append(:b, 2, '{"type": "S1"}');
COMMIT;
SELECT sequence, kind FROM agent_journal.replay(:b);
-- several appends to one agent inside ONE statement, at every level
SELECT agent_journal.append(:b, 3, jsonb_build_object('type', 'Multi', 'i', i)) FROM generate_series(1, 3) i;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT agent_journal.append(:b, 3, jsonb_build_object('type', 'MultiRR', 'i', i)) FROM generate_series(1, 3) i;
WITH x AS (SELECT agent_journal.append(:b, 3, '{"type": "CteOne"}') AS s)
SELECT s, agent_journal.append_batch(:b, 3, ARRAY['{"type": "CteBatch"}']::jsonb[]) FROM x;
COMMIT;
SELECT count(*), max(sequence), count(DISTINCT sequence) FROM agent_journal.replay(:b);

-- compaction removes a prefix and never lowers the sequence or iteration
SELECT agent_journal.compact(:a, 5);
SELECT min(sequence), max(sequence), count(*) FROM agent_journal.replay(:a);
SELECT agent_journal.compact(:a, 3);
SELECT * FROM agent_journal.replay(:a, 1, 1) \gset first_
SELECT :first_sequence;
SELECT agent_journal.compact(:a, 1000);
SELECT count(*) FROM agent_journal.replay(:a);
SELECT agent_journal.latest_sequence(:a), agent_journal.next_sequence(:a),
       agent_journal.last_completed_iteration(:a);
-- numbers are never reused after compaction
SELECT agent_journal.append(:a, 0, '{"type": "AfterCompaction"}');
-- keys survive compaction
SELECT agent_journal.append(:a, 3, '{"type": "Tool", "n": 1}', idempotency_key => 'step-9');
SELECT agent_journal.compact(:a);
SELECT agent_journal.compact(:a);
SELECT agent_journal.compact('00000000-0000-0000-0000-0000000000fe');
SELECT agent_journal.append(:a, 0, '{"type": "Again"}');
SELECT agent_id, latest_sequence, live_entries, compacted_through,
       first_recorded_at IS NOT NULL AS has_first, last_recorded_at >= first_recorded_at AS ordered
FROM agent_journal.agents ORDER BY agent_id;

-- forget_agent removes everything; the agent starts again at 1
SELECT agent_journal.forget_agent(:a);
SELECT agent_journal.latest_sequence(:a), agent_journal.last_completed_iteration(:a);
SELECT count(*) FROM agent_journal.idempotency_keys WHERE agent_id = :a;
SELECT agent_journal.append(:a, 3, '{"type": "Tool", "n": 2}', idempotency_key => 'step-9');
SELECT agent_journal.forget_agent('00000000-0000-0000-0000-0000000000fd');

-- the catalog: no STRICT functions, writers volatile and parallel unsafe,
-- every function documented, nothing granted to PUBLIC but replay's two
-- helpers (they answer only roles that may execute replay: sql/privileges.sql)
SELECT proname, provolatile, proparallel, proisstrict
FROM pg_proc WHERE pronamespace = 'agent_journal'::regnamespace ORDER BY proname;
SELECT count(*) AS undocumented FROM pg_proc p
WHERE pronamespace = 'agent_journal'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL;
SELECT string_agg(proname, ', ' ORDER BY proname) AS public_execute FROM pg_proc p
WHERE pronamespace = 'agent_journal'::regnamespace
  AND has_function_privilege('public', p.oid, 'EXECUTE');
