-- Resume in one call (0.5.0): save_state, resume, entry_by_key,
-- replay_backward, fork_agent, set_retention / apply_retention /
-- retention_policies, the saved_states and retention metrics.
-- No timestamp is printed; comparisons of them are.
\set VERBOSITY terse
-- SQLSTATE, or 'ok'
CREATE FUNCTION public.aj_resume_err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$;
-- SQLSTATE and the message with any timestamp replaced by <time>
CREATE FUNCTION public.aj_resume_msg(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d', '<time>', 'g');
END $$;
-- The plan of q: the scan of agent_journal.entries (type, direction, index,
-- whether the index condition holds the given guard), the Sort nodes above
-- it, and all Sort nodes.
CREATE FUNCTION public.aj_resume_shape(q text, guard text,
    OUT entries_scan text, OUT guard_in_index_cond boolean,
    OUT sorts_above_entries integer, OUT sorts_total integer)
LANGUAGE plpgsql AS $$
DECLARE plan jsonb;
BEGIN
  EXECUTE 'EXPLAIN (COSTS OFF, FORMAT JSON) ' || q INTO plan;
  WITH RECURSIVE n(node, ancestors) AS (
    SELECT plan -> 0 -> 'Plan', ARRAY[]::text[]
    UNION ALL
    SELECT c, n.ancestors || (n.node ->> 'Node Type')
    FROM n, jsonb_array_elements(n.node -> 'Plans') c)
  SELECT (SELECT string_agg(concat_ws(' ', node ->> 'Node Type', node ->> 'Scan Direction',
                                      'using ' || (node ->> 'Index Name')), ', ')
            FROM n WHERE node ->> 'Relation Name' = 'entries'),
         (SELECT bool_and(COALESCE(node ->> 'Index Cond', '') LIKE '%' || guard || '%')
            FROM n WHERE node ->> 'Relation Name' = 'entries'),
         (SELECT sum(cardinality(array_positions(ancestors, 'Sort')))::int
            FROM n WHERE node ->> 'Relation Name' = 'entries'),
         (SELECT count(*)::int FROM n WHERE node ->> 'Node Type' = 'Sort')
    INTO entries_scan, guard_in_index_cond, sorts_above_entries, sorts_total;
END $$;
GRANT EXECUTE ON FUNCTION public.aj_resume_err(text), public.aj_resume_msg(text) TO PUBLIC;
\set a '''00000000-0000-0000-0000-00000000d001'''
\set b '''00000000-0000-0000-0000-00000000d002'''
\set c '''00000000-0000-0000-0000-00000000d003'''
\set f '''00000000-0000-0000-0000-00000000d004'''
\set g '''00000000-0000-0000-0000-00000000d005'''
\set n '''00000000-0000-0000-0000-00000000d006'''
\set t '''00000000-0000-0000-0000-00000000d007'''
\set u '''00000000-0000-0000-0000-00000000d008'''
\set x '''00000000-0000-0000-0000-00000000d0ff'''
-- the metrics before this test (other tests ran in the same database)
SELECT (SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_journal_saved_states') AS states0,
       (SELECT value FROM agent_journal.metric_samples
         WHERE name = 'agent_journal_retention_removed_entries_total') AS removed0 \gset
SELECT :states0 = (SELECT count(*) FROM agent_journal.saved_states) AS gauge_counts_saved_states;
-- Plans depend on statistics: with a handful of rows a Seq Scan and a Sort
-- are cheapest, whatever the functions. 1000 other agents of 10 entries
-- each, analyzed, make the plans below those of a real journal (they are
-- forgotten after section 8).
SELECT count(agent_journal.append_batch(('00000000-0000-0000-0000-00000b00' || lpad(i::text, 4, '0'))::uuid, 0,
         (SELECT array_agg(jsonb_build_object('type', 'Bulk', 'n', k)) FROM generate_series(1, 10) k))) AS bulk_agents
FROM generate_series(1, 1000) i;
ANALYZE agent_journal.entries;

-- 1. a journal: 1 Start, 2 Step (key k-step), 3-4 a batch (key k-batch),
-- 5 Step, 6 Checkpoint (key k-six)
SELECT agent_journal.append(:a, 0, '{"type": "Start"}');
SELECT agent_journal.append(:a, 1, '{"type": "Step", "n": 1}', idempotency_key => 'k-step');
SELECT agent_journal.append_batch(:a, 2, ARRAY['{"type": "Step", "n": 2}', '{"type": "Checkpoint", "n": 2}']::jsonb[],
                                  idempotency_key => 'k-batch');
SELECT agent_journal.append(:a, 3, '{"type": "Step", "n": 3}');
SELECT agent_journal.append(:a, 3, '{"type": "Checkpoint", "n": 3}', idempotency_key => 'k-six');
SELECT agent_journal.append(:b, 0, '{"type": "Start"}');
SELECT agent_journal.append(:b, 1, '{"type": "Step"}');
SELECT agent_journal.append(:b, 2, '{"type": "Step"}');

-- 2. save_state: arguments
SELECT aj_resume_err($$SELECT agent_journal.save_state(NULL, '{}')$$) AS null_agent,
       aj_resume_err($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d001', NULL)$$) AS null_state,
       aj_resume_err($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d001', '{}', 0)$$) AS through_0,
       aj_resume_err($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d001', '{}', -1)$$) AS through_neg,
       aj_resume_err($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d001', '{}', 7)$$) AS through_past_latest,
       aj_resume_err($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d0ff', '{}')$$) AS unknown_agent;
SELECT aj_resume_msg($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d001', '{}', 7)$$);
SELECT aj_resume_msg($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d0ff', '{}')$$);
BEGIN READ ONLY;
SELECT aj_resume_err($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d001', '{}')$$) AS read_only;
ROLLBACK;
-- max_event_bytes applies to the state (54000, naming it)
SET agent_journal.max_event_bytes = '1kB';
SELECT aj_resume_msg($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d001', jsonb_build_object('big', repeat('x', 2000)))$$);
SELECT agent_journal.save_state(:a, jsonb_build_object('small', repeat('x', 900)), 1) AS just_below_limit;
RESET agent_journal.max_event_bytes;
-- nothing was stored by the failures; the one that fit is replaced below
SELECT through_sequence, iteration, length(state::text) AS state_length FROM agent_journal.saved_states
WHERE agent_id = :a ORDER BY 1;

-- 3. save_state: default through is the latest; saving again at the same
-- through replaces the state (and its iteration, saved_at)
SELECT agent_journal.save_state(:a, '{"sum": 1}', 1) AS saved_at_1;
SELECT agent_journal.save_state(:a, '{"sum": 3, "upto": 4}', 4) AS saved_at_4;
SELECT saved_at AS first_saved_at FROM agent_journal.saved_states WHERE agent_id = :a AND through_sequence = 4 \gset
SELECT agent_journal.save_state(:a, '{"sum": 6, "upto": 4}', 4) AS saved_again_at_4;
SELECT agent_journal.save_state(:a, '{"sum": 10, "upto": 6}') AS saved_at_latest;
SELECT through_sequence, iteration, state FROM agent_journal.saved_states WHERE agent_id = :a ORDER BY 1;
SELECT saved_at > :'first_saved_at' AS saved_at_moved FROM agent_journal.saved_states
WHERE agent_id = :a AND through_sequence = 4;
SELECT value - :states0 AS states_added FROM agent_journal.metric_samples WHERE name = 'agent_journal_saved_states';

-- 4. resume: the latest state (greatest through_sequence, not the last
-- saved), then the entries after it
SELECT agent_journal.save_state(:a, '{"sum": 1, "again": true}', 1) AS resaved_at_1;
SELECT agent_journal.append(:a, 4, '{"type": "Step", "n": 4}') AS seq7;
SELECT agent_journal.append(:a, 4, '{"type": "Done"}') AS seq8;
SELECT agent_journal.save_state(:a, '{"sum": 3, "upto": 4}', 4) AS older_state_resaved_last;
SELECT sequence, iteration, kind, event FROM agent_journal.resume(:a);
-- the state row: recorded_at is when it was saved, iteration the entry's
SELECT r.sequence, r.iteration = e.iteration AS iteration_of_entry, r.recorded_at = s.saved_at AS saved_at
FROM agent_journal.resume(:a) r
JOIN agent_journal.saved_states s ON s.agent_id = :a AND s.through_sequence = r.sequence
JOIN agent_journal.entries e ON e.agent_id = :a AND e.sequence = r.sequence
WHERE r.kind = 'state';
-- the entries after the state are replay's rows exactly
SELECT count(*) AS differences FROM (
  (SELECT sequence, iteration, kind, recorded_at, event FROM agent_journal.resume(:a) WHERE kind <> 'state'
   EXCEPT ALL SELECT * FROM agent_journal.replay(:a, 7))
  UNION ALL
  (SELECT * FROM agent_journal.replay(:a, 7)
   EXCEPT ALL SELECT sequence, iteration, kind, recorded_at, event FROM agent_journal.resume(:a) WHERE kind <> 'state')) d;
-- max_entries does not count the state row
SELECT sequence, kind FROM agent_journal.resume(:a, 1);
SELECT sequence, kind FROM agent_journal.resume(:a, 0);
-- a state at the latest sequence: only the state
SELECT agent_journal.save_state(:a, '{"sum": 10, "upto": 8}') AS saved_at_8;
SELECT sequence, iteration, kind, event FROM agent_journal.resume(:a);
SELECT sequence, kind FROM agent_journal.resume(:a, 5);
-- no state: exactly replay, also paged
SELECT count(*) AS differences FROM (
  (SELECT * FROM agent_journal.resume(:b) EXCEPT ALL SELECT * FROM agent_journal.replay(:b))
  UNION ALL
  (SELECT * FROM agent_journal.replay(:b) EXCEPT ALL SELECT * FROM agent_journal.resume(:b))) d;
SELECT sequence, kind FROM agent_journal.resume(:b);
SELECT sequence, kind FROM agent_journal.resume(:b, 2);
-- an unknown agent: no rows
SELECT count(*) AS unknown_agent_rows FROM agent_journal.resume(:x);
-- arguments
SELECT aj_resume_err($$SELECT * FROM agent_journal.resume('00000000-0000-0000-0000-00000000d001', -1)$$) AS max_negative,
       aj_resume_err($$SELECT * FROM agent_journal.resume('00000000-0000-0000-0000-00000000d0ff', -1)$$) AS max_negative_unknown;
SELECT aj_resume_msg($$SELECT * FROM agent_journal.resume('00000000-0000-0000-0000-00000000d001', -1)$$);
-- a NULL agent_id: 22004 like replay, under a generic plan and as a literal
-- (resume's checks are its LIMIT, which runs whatever the plan)
PREPARE rs(uuid, bigint) AS SELECT * FROM agent_journal.resume($1, $2);
SET plan_cache_mode = force_generic_plan;
SELECT aj_resume_err($$EXECUTE rs(NULL, NULL)$$) AS generic_null_agent;
RESET plan_cache_mode;
DEALLOCATE rs;
SELECT aj_resume_err($$SELECT * FROM agent_journal.resume(NULL)$$) AS null_agent,
       aj_resume_err($$SELECT * FROM agent_journal.replay(NULL)$$) AS replay_null_agent;

-- 5. resume after compaction: up to the state is fine; beyond it, 55000
SELECT agent_journal.append(:c, 0, '{"type": "Start"}');
SELECT agent_journal.append_batch(:c, 1, ARRAY['{"type": "A"}', '{"type": "B"}', '{"type": "C"}', '{"type": "D"}']::jsonb[]);
SELECT agent_journal.save_state(:c, '{"at": 2}', 2), agent_journal.save_state(:c, '{"at": 3}', 3);
SELECT through_sequence FROM agent_journal.saved_states WHERE agent_id = :c ORDER BY 1;
-- compact() drops the states below the new compaction point, except the latest
SELECT agent_journal.compact(:c, 3) AS compacted_to_state;
SELECT through_sequence FROM agent_journal.saved_states WHERE agent_id = :c ORDER BY 1;
SELECT sequence, iteration, kind, event FROM agent_journal.resume(:c);
-- the compaction point itself can be saved (its iteration is the compacted one)
SELECT aj_resume_msg($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d003', '{}', 2)$$) AS below_compaction_point;
SELECT agent_journal.save_state(:c, '{"at": 3, "again": true}', 3) AS at_compaction_point;
SELECT sequence, iteration, kind, event FROM agent_journal.resume(:c, 1);
-- compacting past the latest state keeps it: resume reports the hole
SELECT agent_journal.compact(:c, 4) AS compacted_past_state;
SELECT through_sequence FROM agent_journal.saved_states WHERE agent_id = :c ORDER BY 1;
SELECT aj_resume_msg($$SELECT * FROM agent_journal.resume('00000000-0000-0000-0000-00000000d003')$$);
SELECT aj_resume_err($$SELECT * FROM agent_journal.resume('00000000-0000-0000-0000-00000000d003', 0)$$) AS hole_max_0;
-- the same under a generic plan (drivers' prepared statements), whatever
-- scan the planner picks: the checks are resume's LIMIT
PREPARE rh(uuid) AS SELECT * FROM agent_journal.resume($1);
SET plan_cache_mode = force_generic_plan;
SELECT aj_resume_err($$EXECUTE rh('00000000-0000-0000-0000-00000000d003')$$) AS hole_generic;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT aj_resume_err($$EXECUTE rh('00000000-0000-0000-0000-00000000d003')$$) AS hole_generic_seqscan;
RESET enable_indexscan;
RESET enable_bitmapscan;
RESET plan_cache_mode;
DEALLOCATE rh;
-- replay still reads the live entries; a new state heals resume
SELECT sequence, kind FROM agent_journal.replay(:c);
SELECT agent_journal.save_state(:c, '{"at": 5}') AS healed;
SELECT sequence, kind, event FROM agent_journal.resume(:c);
SELECT through_sequence FROM agent_journal.saved_states WHERE agent_id = :c ORDER BY 1;
-- compacting the states' agent as a whole: the latest state stays
SELECT agent_journal.compact(:c) AS compacted_all;
SELECT through_sequence FROM agent_journal.saved_states WHERE agent_id = :c ORDER BY 1;
SELECT sequence, kind, event FROM agent_journal.resume(:c);

-- 6. entry_by_key: the entries written under the key (one, or a batch)
SELECT sequence, iteration, kind, event FROM agent_journal.entry_by_key(:a, 'k-step');
SELECT sequence, iteration, kind, event FROM agent_journal.entry_by_key(:a, 'k-batch');
SELECT e.recorded_at = k.recorded_at AS same_row
FROM agent_journal.entry_by_key(:a, 'k-six') e JOIN agent_journal.replay(:a) k USING (sequence);
SELECT count(*) AS unknown_key FROM agent_journal.entry_by_key(:a, 'no-such-key');
SELECT count(*) AS key_of_another_agent FROM agent_journal.entry_by_key(:b, 'k-step');
SELECT count(*) AS unknown_agent FROM agent_journal.entry_by_key(:x, 'k-step');
SELECT aj_resume_err($$SELECT * FROM agent_journal.entry_by_key(NULL, 'k-step')$$) AS null_agent,
       aj_resume_err($$SELECT * FROM agent_journal.entry_by_key('00000000-0000-0000-0000-00000000d001', NULL)$$) AS null_key,
       aj_resume_err($$SELECT * FROM agent_journal.entry_by_key('00000000-0000-0000-0000-00000000d001', '')$$) AS empty_key;

-- 7. replay_backward: newest first, strictly below before_sequence, at
-- most max_entries, only the given kinds
SELECT sequence, iteration, kind FROM agent_journal.replay_backward(:a);
SELECT sequence, kind FROM agent_journal.replay_backward(:a, 6);
SELECT sequence, kind FROM agent_journal.replay_backward(:a, 6, 2);
SELECT sequence, kind FROM agent_journal.replay_backward(:a, NULL, NULL, ARRAY['Checkpoint', 'Done']);
-- the latest checkpoint, and the one before it
SELECT sequence, event FROM agent_journal.replay_backward(:a, NULL, 1, ARRAY['Checkpoint']);
SELECT sequence, event FROM agent_journal.replay_backward(:a, 6, 1, ARRAY['Checkpoint']);
SELECT count(*) AS past_latest FROM agent_journal.replay_backward(:a, 100);
SELECT count(*) AS below_1 FROM agent_journal.replay_backward(:a, 1);
SELECT count(*) AS max_0 FROM agent_journal.replay_backward(:a, NULL, 0);
SELECT count(*) AS no_kinds FROM agent_journal.replay_backward(:a, NULL, NULL, ARRAY[]::text[]);
SELECT count(*) AS unknown_kind FROM agent_journal.replay_backward(:a, NULL, NULL, ARRAY['Nope']);
SELECT count(*) AS unknown_agent FROM agent_journal.replay_backward(:x);
-- the same rows as replay, reversed
SELECT array_agg(sequence) = (SELECT array_agg(sequence ORDER BY sequence DESC) FROM agent_journal.replay(:a)) AS reversed_replay
FROM agent_journal.replay_backward(:a);
SELECT aj_resume_err($$SELECT * FROM agent_journal.replay_backward(NULL)$$) AS null_agent,
       aj_resume_err($$SELECT * FROM agent_journal.replay_backward('00000000-0000-0000-0000-00000000d001', 0)$$) AS before_0,
       aj_resume_err($$SELECT * FROM agent_journal.replay_backward('00000000-0000-0000-0000-00000000d001', -3)$$) AS before_negative,
       aj_resume_err($$SELECT * FROM agent_journal.replay_backward('00000000-0000-0000-0000-00000000d001', NULL, -1)$$) AS max_negative,
       aj_resume_err($$SELECT * FROM agent_journal.replay_backward('00000000-0000-0000-0000-00000000d0ff', 0)$$) AS before_0_unknown;
SELECT aj_resume_msg($$SELECT * FROM agent_journal.replay_backward('00000000-0000-0000-0000-00000000d001', 0)$$);
SELECT aj_resume_msg($$SELECT * FROM agent_journal.replay_backward('00000000-0000-0000-0000-00000000d001', NULL, -1)$$);

-- 8. plans. resume streams: the entries come from an index scan of
-- entries_pkey whose condition holds the guard (run once), with no Sort
-- above it (the only Sorts are the one-row state branch's)
SELECT * FROM aj_resume_shape(format('SELECT * FROM agent_journal.resume(%L)', :a), 'resume_from');
SELECT * FROM aj_resume_shape(format('SELECT * FROM agent_journal.resume(%L, 10)', :a), 'resume_from');
PREPARE rs(uuid, bigint) AS SELECT * FROM agent_journal.resume($1, $2);
SET plan_cache_mode = force_generic_plan;
SELECT * FROM aj_resume_shape(format('EXECUTE rs(%L, 10)', :a), 'resume_from');
RESET plan_cache_mode;
DEALLOCATE rs;
-- replay_backward: a backward index scan under the Limit (the guard), no Sort
EXPLAIN (COSTS OFF) SELECT * FROM agent_journal.replay_backward(:a, 6, 1, ARRAY['Checkpoint']);
SELECT * FROM aj_resume_shape(format('SELECT * FROM agent_journal.replay_backward(%L)', :a), '');
SELECT * FROM aj_resume_shape(format('SELECT * FROM agent_journal.replay_backward(%L, 5, 2)', :a), '< ''5''');
-- under a generic plan too, before_sequence bounds the backward index scan
-- (a CASE goes into the security-barrier view; a COALESCE would not)
PREPARE rb(uuid, bigint, bigint, text[]) AS SELECT sequence FROM agent_journal.replay_backward($1, $2, $3, $4);
SET plan_cache_mode = force_generic_plan;
SELECT guard_in_index_cond AS before_sequence_in_index_cond
FROM aj_resume_shape(format('EXECUTE rb(%L, 5, 2, NULL)', :a), '$2');
SELECT sequence FROM agent_journal.replay_backward(:a, 5, 2);
EXECUTE rb(:a, 5, 2, NULL);
RESET plan_cache_mode;
DEALLOCATE rb;
SELECT sum(agent_journal.forget_agent(('00000000-0000-0000-0000-00000b00' || lpad(i::text, 4, '0'))::uuid)) AS bulk_forgotten
FROM generate_series(1, 1000) i;

-- 9. fork_agent: arguments
SELECT claim_agent IS NOT NULL AS leased_n FROM agent_journal.claim_agent(:n, 'someone', '1 hour');
SELECT aj_resume_err($$SELECT agent_journal.fork_agent(NULL, 1, '00000000-0000-0000-0000-00000000d004')$$) AS null_source,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', NULL, '00000000-0000-0000-0000-00000000d004')$$) AS null_through,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 1, NULL)$$) AS null_new,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 1, '00000000-0000-0000-0000-00000000d001')$$) AS onto_itself,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 1, '00000000-0000-0000-0000-00000000d002')$$) AS onto_journal,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 0, '00000000-0000-0000-0000-00000000d004')$$) AS through_0,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 9, '00000000-0000-0000-0000-00000000d004')$$) AS through_past_latest,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d0ff', 1, '00000000-0000-0000-0000-00000000d004')$$) AS unknown_source,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 1, '00000000-0000-0000-0000-00000000d006')$$) AS onto_leased;
SELECT aj_resume_msg($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 1, '00000000-0000-0000-0000-00000000d002')$$);
SELECT aj_resume_msg($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 9, '00000000-0000-0000-0000-00000000d004')$$);
SELECT aj_resume_msg($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 1, '00000000-0000-0000-0000-00000000d001')$$);
SELECT aj_resume_msg($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 1, '00000000-0000-0000-0000-00000000d006')$$);
BEGIN READ ONLY;
SELECT aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 1, '00000000-0000-0000-0000-00000000d004')$$) AS read_only;
ROLLBACK;
-- the failures left nothing behind
SELECT count(*) AS fork_rows FROM agent_journal.agent_state WHERE agent_id = :f;

-- 10. fork_agent: new_agent starts with the source's entries up to
-- through_sequence (same numbers, iterations, times, events), the keys of
-- those entries, the latest state covering no more; no lease, no policy
SELECT agent_journal.set_retention(:a, keep_last => 100) AS source_policy;
SELECT claim_agent AS tok_a FROM agent_journal.claim_agent(:a, 'worker-a', '1 hour') \gset
-- save_state is fenced like append (55006); fork_agent reads the source
-- without its token
SELECT aj_resume_msg($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d001', '{}')$$) AS no_token;
SELECT aj_resume_err(format($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d001', '{}', lease => %s)$$, :tok_a + 1)) AS other_token;
SELECT agent_journal.save_state(:a, '{"sum": 10, "upto": 8, "leased": true}', lease => :tok_a) AS with_token;
SELECT agent_journal.fork_agent(:a, 7, :f) AS forked_latest;
SELECT agent_journal.latest_sequence(:f), agent_journal.next_sequence(:f), agent_journal.last_completed_iteration(:f);
SELECT count(*) AS differences FROM (
  (SELECT * FROM agent_journal.replay(:f) EXCEPT ALL SELECT * FROM agent_journal.replay(:a, 1, 7))
  UNION ALL
  (SELECT * FROM agent_journal.replay(:a, 1, 7) EXCEPT ALL SELECT * FROM agent_journal.replay(:f))) d;
SELECT sequence, kind FROM agent_journal.entry_by_key(:f, 'k-batch');
SELECT sequence, kind FROM agent_journal.entry_by_key(:f, 'k-six');
-- of the states at 1, 4, 6 and 8, the latest that covers no more than 7: 6
SELECT through_sequence, iteration, state FROM agent_journal.saved_states WHERE agent_id = :f;
SELECT s.saved_at = o.saved_at AS same_saved_at FROM agent_journal.saved_states s
JOIN agent_journal.saved_states o ON o.agent_id = :a AND o.through_sequence = s.through_sequence WHERE s.agent_id = :f;
SELECT sequence, kind, event FROM agent_journal.resume(:f);
SELECT count(*) AS fork_leases FROM agent_journal.leases WHERE agent_id = :f;
SELECT count(*) AS fork_policies FROM agent_journal.retention_policies WHERE agent_id = :f;
SELECT agent_journal.observability(:f) -> 'forked_from' AS forked_from,
       agent_journal.observability(:a) -> 'forked_from' AS source_forked_from;
-- the fork is an agent of its own: writes go on after through_sequence,
-- with keys of its own (the source's k-six answers from the fork's copy)
SELECT agent_journal.append(:f, 5, '{"type": "Branch"}') AS fork_appends;
SELECT agent_journal.append(:f, 3, '{"type": "Checkpoint", "n": 3}', idempotency_key => 'k-six') AS key_answers;
SELECT agent_journal.latest_sequence(:a) AS source_untouched;
-- a batch key that spans the fork point stays behind
SELECT agent_journal.fork_agent(:a, 3, :g) AS forked_mid_batch;
SELECT count(*) AS mid_batch_key FROM agent_journal.entry_by_key(:g, 'k-batch');
SELECT through_sequence FROM agent_journal.saved_states WHERE agent_id = :g;
SELECT agent_journal.forget_agent(:g) AS forgot_g;
-- forking a compacted range: through below the compaction point is
-- refused; at it, the fork has no entries and the source's compaction point
SELECT agent_journal.compact(:a, 2, :tok_a) AS compacted_a;
-- a compacted key: no rows
SELECT count(*) AS compacted_key FROM agent_journal.entry_by_key(:a, 'k-step');
SELECT aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 1, '00000000-0000-0000-0000-00000000d005')$$) AS below_compaction_point;
SELECT aj_resume_msg($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d001', 1, '00000000-0000-0000-0000-00000000d005')$$);
SELECT agent_journal.fork_agent(:a, 2, :g) AS forked_at_compaction_point;
SELECT latest_sequence, live_entries, compacted_through FROM agent_journal.agents WHERE agent_id = :g;
SELECT agent_journal.last_completed_iteration(:g) AS compacted_iteration;
-- no state at or below 2 survived the compaction: none taken, resume = replay
SELECT count(*) AS states_g FROM agent_journal.saved_states WHERE agent_id = :g;
SELECT count(*) AS resume_g FROM agent_journal.resume(:g);
SELECT agent_journal.forget_agent(:g) AS forgot_g;
-- a fork of a fork
SELECT agent_journal.fork_agent(:f, 7, :g) AS fork_of_fork;
SELECT agent_journal.observability(:g) -> 'forked_from' AS forked_from;
SELECT sequence, kind FROM agent_journal.resume(:g);
-- a batch partly compacted: its live part
SELECT agent_journal.compact(:a, 3, :tok_a) AS compacted_a_mid_batch;
SELECT sequence, kind FROM agent_journal.entry_by_key(:a, 'k-batch');
SELECT value - :states0 AS states_added FROM agent_journal.metric_samples WHERE name = 'agent_journal_saved_states';

-- 11. privileges per level, and tenants
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_aj_resume_alice, regress_aj_resume_bob, regress_aj_resume_reader, regress_aj_resume_scraper;
RESET client_min_messages;
CREATE ROLE regress_aj_resume_alice;
CREATE ROLE regress_aj_resume_bob;
CREATE ROLE regress_aj_resume_reader;
CREATE ROLE regress_aj_resume_scraper;
SELECT agent_journal.grant_access('regress_aj_resume_alice', 'writer');
SELECT agent_journal.grant_access('regress_aj_resume_bob', 'writer');
SELECT agent_journal.grant_access('regress_aj_resume_reader', 'reader');
SELECT agent_journal.grant_access('regress_aj_resume_scraper', 'scraper');
SELECT o AS object,
       has_function_privilege('regress_aj_resume_alice', o, 'EXECUTE') AS writer,
       has_function_privilege('regress_aj_resume_reader', o, 'EXECUTE') AS reader,
       has_function_privilege('regress_aj_resume_scraper', o, 'EXECUTE') AS scraper
FROM unnest(ARRAY['agent_journal.save_state(uuid, jsonb, bigint, bigint)', 'agent_journal.fork_agent(uuid, bigint, uuid)',
                  'agent_journal.set_retention(uuid, bigint, interval, boolean)', 'agent_journal.resume(uuid, bigint)',
                  'agent_journal.entry_by_key(uuid, text)', 'agent_journal.replay_backward(uuid, bigint, bigint, text[])',
                  'agent_journal.apply_retention(bigint)', 'agent_journal.resume_guard(uuid, bigint)',
                  'agent_journal.resume_from(uuid)',
                  'agent_journal.backward_guard(uuid, bigint, bigint)']) o;
SELECT o AS object,
       has_table_privilege('regress_aj_resume_alice', o, 'SELECT') AS writer,
       has_table_privilege('regress_aj_resume_reader', o, 'SELECT') AS reader,
       has_table_privilege('regress_aj_resume_scraper', o, 'SELECT') AS scraper
FROM unnest(ARRAY['agent_journal.saved_states', 'agent_journal.retention_policies']) o;
SELECT agent_journal.bind_agent(:t, 'regress_aj_resume_alice');
SELECT agent_journal.bind_agent(:u, 'regress_aj_resume_alice');
-- alice works on her agent
SET ROLE regress_aj_resume_alice;
SELECT agent_journal.append(:t, 0, '{"type": "Start"}', idempotency_key => 'k-t');
SELECT agent_journal.append(:t, 1, '{"type": "Step"}');
SELECT agent_journal.save_state(:t, '{"mine": true}', 1) AS alice_saves;
SELECT sequence, kind FROM agent_journal.resume(:t);
SELECT sequence, kind FROM agent_journal.entry_by_key(:t, 'k-t');
SELECT sequence, kind FROM agent_journal.replay_backward(:t, NULL, 1);
SELECT agent_journal.set_retention(:t, keep_last => 10) AS alice_policy;
SELECT aj_resume_err($$SELECT agent_journal.set_retention(NULL, 10)$$) AS alice_default_policy,
       aj_resume_err($$SELECT agent_journal.apply_retention()$$) AS alice_applies,
       aj_resume_err($$SELECT * FROM agent_journal.saved_states$$) AS alice_reads_states;
RESET ROLE;
-- the fork keeps the binding: alice may use it, bob may not
SET ROLE regress_aj_resume_alice;
SELECT agent_journal.fork_agent(:t, 2, '00000000-0000-0000-0000-00000000d009') AS alice_forks;
RESET ROLE;
SELECT owner FROM agent_journal.agent_state WHERE agent_id = '00000000-0000-0000-0000-00000000d009';
-- bob: alice's agents are refused (42501), whatever the call
SET ROLE regress_aj_resume_bob;
SELECT aj_resume_err($$SELECT * FROM agent_journal.resume('00000000-0000-0000-0000-00000000d007')$$) AS bob_resumes,
       aj_resume_err($$SELECT * FROM agent_journal.resume('00000000-0000-0000-0000-00000000d007', 0)$$) AS bob_resumes_0,
       aj_resume_err($$SELECT * FROM agent_journal.entry_by_key('00000000-0000-0000-0000-00000000d007', 'k-t')$$) AS bob_key,
       aj_resume_err($$SELECT * FROM agent_journal.replay_backward('00000000-0000-0000-0000-00000000d007')$$) AS bob_backward,
       aj_resume_err($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d007', '{}')$$) AS bob_saves,
       aj_resume_err($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d007', 1)$$) AS bob_policy;
SELECT aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d007', 1, '00000000-0000-0000-0000-00000000d00a')$$) AS bob_forks_alices,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d009', 1, '00000000-0000-0000-0000-00000000d00a')$$) AS bob_forks_alices_fork,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d002', 1, '00000000-0000-0000-0000-00000000d008')$$) AS bob_forks_onto_alices;
SELECT aj_resume_msg($$SELECT * FROM agent_journal.resume('00000000-0000-0000-0000-00000000d007')$$);
SELECT aj_resume_msg($$SELECT agent_journal.set_retention(NULL, 10)$$);
SELECT aj_resume_msg($$SELECT agent_journal.apply_retention()$$);
-- bob's own (unbound) agent works
SELECT sequence, kind FROM agent_journal.resume(:b, 1);
RESET ROLE;
SELECT count(*) AS nothing_forked FROM agent_journal.agent_state
WHERE agent_id = '00000000-0000-0000-0000-00000000d00a';
-- readers: resume, keys, backward, saved_states and retention_policies of
-- the agents they may see; no writes
SET ROLE regress_aj_resume_reader;
SELECT sequence, kind FROM agent_journal.resume(:b, 1);
SELECT sequence FROM agent_journal.entry_by_key(:a, 'k-six');
SELECT sequence FROM agent_journal.replay_backward(:b, NULL, 1);
SELECT DISTINCT agent_id FROM agent_journal.saved_states WHERE agent_id IN (:a, :t) ORDER BY 1;
-- readers see the policies of the agents they may see (and the default)
SELECT agent_id, keep_last FROM agent_journal.retention_policies ORDER BY 1 NULLS FIRST;
SELECT aj_resume_err($$SELECT * FROM agent_journal.resume('00000000-0000-0000-0000-00000000d007')$$) AS reader_resumes_bound,
       aj_resume_err($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d002', '{}')$$) AS reader_saves,
       aj_resume_err($$SELECT agent_journal.fork_agent('00000000-0000-0000-0000-00000000d002', 1, '00000000-0000-0000-0000-00000000d00a')$$) AS reader_forks,
       aj_resume_err($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d002', 1)$$) AS reader_policy,
       aj_resume_err($$SELECT agent_journal.apply_retention()$$) AS reader_applies;
RESET ROLE;
-- scrapers: none of it, and the guards refuse them too
SET ROLE regress_aj_resume_scraper;
SELECT aj_resume_err($$SELECT * FROM agent_journal.resume('00000000-0000-0000-0000-00000000d002')$$) AS scraper_resumes,
       aj_resume_err($$SELECT * FROM agent_journal.entry_by_key('00000000-0000-0000-0000-00000000d001', 'k-six')$$) AS scraper_key,
       aj_resume_err($$SELECT * FROM agent_journal.replay_backward('00000000-0000-0000-0000-00000000d002')$$) AS scraper_backward,
       aj_resume_err($$SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d002', '{}')$$) AS scraper_saves,
       aj_resume_err($$SELECT * FROM agent_journal.saved_states$$) AS scraper_states,
       aj_resume_err($$SELECT * FROM agent_journal.retention_policies$$) AS scraper_policies;
SELECT aj_resume_err($$SELECT agent_journal.resume_guard('00000000-0000-0000-0000-00000000d002', NULL)$$) AS scraper_resume_guard,
       aj_resume_err($$SELECT agent_journal.resume_from('00000000-0000-0000-0000-00000000d002')$$) AS scraper_resume_from,
       aj_resume_err($$SELECT agent_journal.backward_guard('00000000-0000-0000-0000-00000000d002', NULL, NULL)$$) AS scraper_backward_guard,
       (SELECT count(*) FROM agent_journal.state_rows) AS scraper_sees_states;
RESET ROLE;

-- 12. set_retention: arguments, the view
SELECT aj_resume_err($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d002', -1)$$) AS keep_negative,
       aj_resume_err($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d002', NULL, '0 seconds')$$) AS age_0,
       aj_resume_err($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d002', NULL, '-1 day')$$) AS age_negative,
       aj_resume_err($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d002', NULL, '1 mon -30 days')$$) AS age_sums_to_0,
       aj_resume_err($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d002', 1, NULL, NULL)$$) AS null_require_state;
SELECT aj_resume_msg($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d002', -1)$$);
SELECT aj_resume_msg($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d002', NULL, '-1 day')$$);
SELECT aj_resume_msg($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d002', 1, NULL, NULL)$$);
BEGIN READ ONLY;
SELECT aj_resume_err($$SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d002', 1)$$) AS read_only;
ROLLBACK;
SELECT agent_journal.set_retention(:b, 5, '2 days', false);
SELECT agent_journal.set_retention(:b, keep_last => 0) AS keep_0_is_valid;
SELECT agent_journal.set_retention(max_age => '1 day 1 second') AS default_policy;
SELECT agent_id, keep_last, max_age, require_state, updated_at <= clock_timestamp() AS dated
FROM agent_journal.retention_policies ORDER BY agent_id NULLS FIRST;
-- both limits NULL removes a policy (also one that does not exist)
SELECT agent_journal.set_retention(:b) AS removed_b, agent_journal.set_retention(:a, NULL, NULL, false) AS removed_a,
       agent_journal.set_retention(:x) AS removed_none, agent_journal.set_retention() AS removed_default;
SELECT agent_id, keep_last FROM agent_journal.retention_policies ORDER BY agent_id NULLS FIRST;
SELECT agent_journal.set_retention(:t) AS removed_t;

-- 13. forget_agent removes the saved states, the policy, the lease and
-- the fork origin
SELECT agent_journal.set_retention(:g, keep_last => 3) AS policy_g;
SELECT claim_agent IS NOT NULL AS leased_g FROM agent_journal.claim_agent(:g, 'worker-g', '1 hour');
SELECT (SELECT count(*) FROM agent_journal.saved_states WHERE agent_id = :g) AS states,
       (SELECT count(*) FROM agent_journal.retention_policies WHERE agent_id = :g) AS policies,
       (SELECT count(*) FROM agent_journal.leases WHERE agent_id = :g) AS leases,
       agent_journal.observability(:g) ? 'forked_from' AS has_origin;
SELECT value AS states_before_forget FROM agent_journal.metric_samples WHERE name = 'agent_journal_saved_states' \gset
SELECT agent_journal.forget_agent(:g) AS forgot_g;
SELECT (SELECT count(*) FROM agent_journal.saved_states WHERE agent_id = :g) AS states,
       (SELECT count(*) FROM agent_journal.retention_policies WHERE agent_id = :g) AS policies,
       (SELECT count(*) FROM agent_journal.leases WHERE agent_id = :g) AS leases,
       agent_journal.observability(:g) ? 'forked_from' AS has_origin,
       (SELECT count(*) FROM agent_journal.agent_state WHERE agent_id = :g) AS state_rows;
SELECT :states_before_forget - value AS states_forgotten FROM agent_journal.metric_samples WHERE name = 'agent_journal_saved_states';
-- the id is free again: a fresh journal or a fork onto it
SELECT agent_journal.fork_agent(:b, 2, :g) AS forked_again;
SELECT agent_journal.observability(:g) -> 'forked_from' AS forked_from;
-- forgetting the source leaves its forks alone
SELECT agent_journal.forget_agent(:a) AS forgot_a;
SELECT agent_journal.latest_sequence(:f) AS fork_keeps_entries, agent_journal.observability(:f) -> 'forked_from' AS fork_origin;
SELECT count(*) AS states_of_a FROM agent_journal.saved_states WHERE agent_id = :a;
SELECT :states0 + (SELECT count(*) FROM agent_journal.saved_states WHERE agent_id::text LIKE '%-00000000d0%') = value AS gauge_matches
FROM agent_journal.metric_samples WHERE name = 'agent_journal_saved_states';
-- clean up before retention (apply_retention looks at every agent)
SELECT agent_journal.forget_agent(x) >= 0 AS cleaned
FROM (VALUES (:b::uuid), (:c::uuid), (:f::uuid), (:g::uuid), (:n::uuid), (:t::uuid), (:u::uuid),
             ('00000000-0000-0000-0000-00000000d009'::uuid)) v(x);
SELECT count(*) AS left_behind FROM agent_journal.agent_state WHERE agent_id::text LIKE '%-00000000d0%';
SELECT value - :states0 AS states_added FROM agent_journal.metric_samples WHERE name = 'agent_journal_saved_states';

-- 14. apply_retention: arguments, admins only
SELECT aj_resume_err($$SELECT agent_journal.apply_retention(NULL)$$) AS null_max,
       aj_resume_err($$SELECT agent_journal.apply_retention(-1)$$) AS max_negative;
SELECT aj_resume_msg($$SELECT agent_journal.apply_retention(-1)$$);
BEGIN READ ONLY;
SELECT aj_resume_err($$SELECT agent_journal.apply_retention()$$) AS read_only;
ROLLBACK;
SET ROLE regress_aj_resume_bob;
SELECT aj_resume_err($$SELECT agent_journal.apply_retention()$$) AS writer_applies,
       aj_resume_err($$SELECT agent_journal.apply_retention(0)$$) AS writer_applies_0;
RESET ROLE;
SELECT agent_journal.apply_retention(0) AS nothing_to_do;

-- 15. apply_retention semantics, on agents of 10 entries each:
--   r1 keep_last 3                    no state        -> nothing (require_state)
--   r2 keep_last 3                    states at 3, 5  -> 1..5 (the latest state's cover)
--   r3 keep_last 3, no require_state  no state        -> 1..7
--   r4 max_age 1 hour, no require_st. 1..6 are old    -> 1..6
--   r5 keep_last 2 and max_age 1 hour 1..4 are old    -> 1..4 (both must hold)
--   r6 keep_last 2 and max_age 1 hour 1..9 are old    -> 1..8 (both must hold)
--   r7 the default (keep_last 1)      state at 8      -> 1..8
--   r8 keep_last 5, no require_state (own policy replaces the default) -> 1..5
--   r9 max_age 1 hour                 state at 9, 1..6 old -> 1..6
DO $$
DECLARE i int; a uuid;
BEGIN
  FOR i IN 1..9 LOOP
    a := ('00000000-0000-0000-0000-00000000d01' || i)::uuid;
    PERFORM agent_journal.append_batch(a, 0, (SELECT array_agg(jsonb_build_object('type', 'Step', 'n', k) ORDER BY k)
                                              FROM generate_series(1, 10) k));
  END LOOP;
END $$;
UPDATE agent_journal.entries SET recorded_at = recorded_at - interval '2 hours'
WHERE (agent_id = '00000000-0000-0000-0000-00000000d014' AND sequence <= 6)
   OR (agent_id = '00000000-0000-0000-0000-00000000d015' AND sequence <= 4)
   OR (agent_id = '00000000-0000-0000-0000-00000000d016' AND sequence <= 9)
   OR (agent_id = '00000000-0000-0000-0000-00000000d019' AND sequence <= 6);
SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d012', '{"at": 3}', 3),
       agent_journal.save_state('00000000-0000-0000-0000-00000000d012', '{"at": 5}', 5),
       agent_journal.save_state('00000000-0000-0000-0000-00000000d017', '{"at": 8}', 8),
       agent_journal.save_state('00000000-0000-0000-0000-00000000d019', '{"at": 9}', 9);
SELECT agent_journal.set_retention('00000000-0000-0000-0000-00000000d011', keep_last => 3),
       agent_journal.set_retention('00000000-0000-0000-0000-00000000d012', keep_last => 3),
       agent_journal.set_retention('00000000-0000-0000-0000-00000000d013', keep_last => 3, require_state => false),
       agent_journal.set_retention('00000000-0000-0000-0000-00000000d014', max_age => '1 hour', require_state => false),
       agent_journal.set_retention('00000000-0000-0000-0000-00000000d015', 2, '1 hour', false),
       agent_journal.set_retention('00000000-0000-0000-0000-00000000d016', 2, '1 hour', false),
       agent_journal.set_retention(keep_last => 1),
       agent_journal.set_retention('00000000-0000-0000-0000-00000000d018', keep_last => 5, require_state => false),
       agent_journal.set_retention('00000000-0000-0000-0000-00000000d019', max_age => '1 hour');
SELECT value AS states_before FROM agent_journal.metric_samples WHERE name = 'agent_journal_saved_states' \gset
SELECT value AS compacted_before FROM agent_journal.metric_samples WHERE name = 'agent_journal_compacted_entries_total' \gset
-- the agents of the other tests have no saved state: the default
-- (require_state) removes none of theirs
SELECT agent_journal.apply_retention() AS removed;
SELECT right(agent_id::text, 3) AS agent, latest_sequence, live_entries, compacted_through
FROM agent_journal.agents WHERE agent_id::text LIKE '%-00000000d01_' ORDER BY 1;
-- a second pass has nothing left to do
SELECT agent_journal.apply_retention() AS removed_again;
SELECT value - :removed0 AS retention_removed FROM agent_journal.metric_samples
WHERE name = 'agent_journal_retention_removed_entries_total';
SELECT value - :compacted_before AS compacted_added FROM agent_journal.metric_samples
WHERE name = 'agent_journal_compacted_entries_total';
-- compaction dropped r2's state at 3 (below 5, not the latest)
SELECT right(agent_id::text, 3) AS agent, through_sequence FROM agent_journal.saved_states
WHERE agent_id::text LIKE '%-00000000d01_' ORDER BY 1, 2;
SELECT :states_before - value AS states_dropped FROM agent_journal.metric_samples WHERE name = 'agent_journal_saved_states';
-- every retained agent still resumes (require_state kept what resume needs)
SELECT right(a::text, 3) AS agent, array_agg(r.kind || '@' || r.sequence ORDER BY r.sequence) AS resumed
FROM (VALUES ('00000000-0000-0000-0000-00000000d012'::uuid), ('00000000-0000-0000-0000-00000000d017'::uuid),
             ('00000000-0000-0000-0000-00000000d019'::uuid), ('00000000-0000-0000-0000-00000000d013'::uuid)) v(a),
     LATERAL agent_journal.resume(a) r GROUP BY a ORDER BY 1;
-- a state saved later lets the policy go further
SELECT agent_journal.save_state('00000000-0000-0000-0000-00000000d011', '{"at": 6}', 6) AS r1_state;
SELECT agent_journal.apply_retention() AS removed_up_to_state;
SELECT compacted_through FROM agent_journal.agents WHERE agent_id = '00000000-0000-0000-0000-00000000d011';
-- the exposition
SELECT regexp_replace(line, ' [0-9]+$', ' <n>') AS line
FROM agent_journal.prometheus, regexp_split_to_table(exposition, E'\n') AS line
WHERE line LIKE '%agent_journal_saved_states%' OR line LIKE '%agent_journal_retention_removed_entries_total%';
SELECT agent_journal.forget_agent(('00000000-0000-0000-0000-00000000d01' || i)::uuid) >= 0 AS cleaned
FROM generate_series(1, 9) i;
SELECT agent_journal.set_retention() AS default_removed;

-- 16. max_entries bounds a pass over all agents, taken in agent order
SELECT agent_journal.append_batch(x, 0, (SELECT array_agg(jsonb_build_object('type', 'Step')) FROM generate_series(1, 10)))
FROM (VALUES ('00000000-0000-0000-0000-00000000d021'::uuid), ('00000000-0000-0000-0000-00000000d022'::uuid)) v(x);
SELECT agent_journal.set_retention(x, keep_last => 0, require_state => false)
FROM (VALUES ('00000000-0000-0000-0000-00000000d021'::uuid), ('00000000-0000-0000-0000-00000000d022'::uuid)) v(x);
SELECT agent_journal.apply_retention(3) AS removed_3;
SELECT agent_journal.apply_retention(10) AS removed_10;
SELECT right(agent_id::text, 3) AS agent, compacted_through FROM agent_journal.agents
WHERE agent_id::text LIKE '%-00000000d02_' ORDER BY 1;
-- rolled back: nothing removed, nothing counted
SELECT value AS removed_before FROM agent_journal.metric_samples
WHERE name = 'agent_journal_retention_removed_entries_total' \gset
BEGIN;
SELECT agent_journal.apply_retention() AS removed_in_rollback;
ROLLBACK;
SELECT right(agent_id::text, 3) AS agent, compacted_through FROM agent_journal.agents
WHERE agent_id::text LIKE '%-00000000d02_' ORDER BY 1;
SELECT value - :removed_before AS counted FROM agent_journal.metric_samples
WHERE name = 'agent_journal_retention_removed_entries_total';
SELECT agent_journal.apply_retention() AS removed_rest;
SELECT value - :removed0 AS retention_removed FROM agent_journal.metric_samples
WHERE name = 'agent_journal_retention_removed_entries_total';
-- keep_last 0 removes everything; numbers are not reused
SELECT agent_journal.latest_sequence('00000000-0000-0000-0000-00000000d021') AS latest,
       agent_journal.append('00000000-0000-0000-0000-00000000d021', 1, '{"type": "After"}') AS next;

-- clean up
SELECT agent_journal.forget_agent(x) >= 0 AS cleaned
FROM (VALUES ('00000000-0000-0000-0000-00000000d021'::uuid), ('00000000-0000-0000-0000-00000000d022'::uuid)) v(x);
SELECT count(*) AS policies_left FROM agent_journal.retention_policies;
SELECT value = :states0 AS states_back FROM agent_journal.metric_samples WHERE name = 'agent_journal_saved_states';
SELECT agent_journal.revoke_access(r, l) FROM (VALUES ('regress_aj_resume_alice', 'writer'), ('regress_aj_resume_bob', 'writer'),
  ('regress_aj_resume_reader', 'reader'), ('regress_aj_resume_scraper', 'scraper')) v(r, l);
DROP ROLE regress_aj_resume_alice, regress_aj_resume_bob, regress_aj_resume_reader, regress_aj_resume_scraper;
DROP FUNCTION public.aj_resume_err(text), public.aj_resume_msg(text), public.aj_resume_shape(text, text);
