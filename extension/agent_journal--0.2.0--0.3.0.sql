-- agent_journal 0.2.0 -> 0.3.0: replay streams; counters under contention
-- add to per-backend slots instead of waiting for the series row.
-- Upgrade script (not a test): lives in extension/, installed by `make install`.
\echo Use "ALTER EXTENSION agent_journal UPDATE TO '0.3.0'" to load this file. \quit

-- What replay() shows the current user: it may execute replay and see the
-- agent (tenant binding). Answers are cached per call site (README, "How
-- replay reads").
CREATE FUNCTION agent_journal.may_replay_support(internal)
RETURNS internal
AS 'MODULE_PATHNAME', 'aj_may_replay_support'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.may_replay_support(internal) IS
  'planner support for may_replay: selectivity 1 (a replay reads an agent the caller may see)';
CREATE FUNCTION agent_journal.may_replay(agent_id uuid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'aj_may_replay'
LANGUAGE C STABLE PARALLEL SAFE
SUPPORT agent_journal.may_replay_support;
COMMENT ON FUNCTION agent_journal.may_replay(uuid) IS
  'whether the current user may replay this agent: EXECUTE on replay and the agent visible to it';

-- replay's checks, run once per call: EXECUTE on replay, the arguments and
-- the caller's access to the agent (the errors replay gives). Returns
-- max_entries (NULL: all).
CREATE FUNCTION agent_journal.replay_guard(
    agent_id uuid, from_sequence bigint, max_entries bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_replay_guard'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.replay_guard(uuid, bigint, bigint) IS
  'replay''s privilege, argument and tenant checks; returns max_entries (NULL: no limit)';

-- The rows replay reads. An ordinary (not security_invoker) view: it reads
-- entries with its owner's rights, and its security-barrier filter shows
-- each user only the agents replay() would show it. A security barrier
-- keeps the view a subquery, planned before the query around it; its ORDER
-- BY (the primary key's order) is what makes that plan the ordered index
-- scan replay needs rather than a scan and a sort.
CREATE VIEW agent_journal.replay_rows WITH (security_barrier) AS
  SELECT e.agent_id, e.sequence, e.iteration, e.kind, e.recorded_at, e.event
  FROM agent_journal.entries e
  WHERE agent_journal.may_replay(e.agent_id)
  ORDER BY e.agent_id, e.sequence;
COMMENT ON VIEW agent_journal.replay_rows IS
  'journal entries the current user may replay (what replay() reads)';

-- replay becomes an SQL function that PostgreSQL inlines into the calling
-- query: an index scan of entries_pkey streamed to the caller in constant
-- memory, where a C set-returning function had its rows stored in a
-- tuplestore (spilling to disk past work_mem) and read back. Inlining needs
-- LANGUAGE sql, not STRICT, not SECURITY DEFINER, no SET clause, and
-- EXECUTE on replay for the caller. BEGIN ATOMIC parses the body now, so
-- the caller's search_path plays no part. The LIMIT runs once, before the
-- first row, also for max_entries = 0.
CREATE OR REPLACE FUNCTION agent_journal.replay(
    agent_id uuid, from_sequence bigint DEFAULT 1, max_entries bigint DEFAULT NULL)
RETURNS TABLE (sequence bigint, iteration integer, kind text,
               recorded_at timestamptz, event jsonb)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1000
BEGIN ATOMIC
  SELECT r.sequence, r.iteration, r.kind, r.recorded_at, r.event
  FROM agent_journal.replay_rows r
  WHERE r.agent_id = replay.agent_id AND r.sequence >= replay.from_sequence
  ORDER BY r.sequence
  LIMIT agent_journal.replay_guard(replay.agent_id, replay.from_sequence, replay.max_entries);
END;

-- A counter_add that finds its series row being updated by another running
-- transaction adds to its own backend slot's row here instead of waiting
-- for that row lock (held until commit). A counter's total is its
-- metric_series value plus its slots. Rows are ordinary rows: an increment
-- is rolled back or made durable with its transaction, as before.
CREATE TABLE agent_journal.counter_slots (
    name   text             NOT NULL,
    labels jsonb            NOT NULL,
    slot   integer          NOT NULL,
    value  double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (name, labels, slot)
);
COMMENT ON TABLE agent_journal.counter_slots IS
  'per-backend-slot parts of counters that met contention; a total is metric_series.value plus these';
SELECT pg_catalog.pg_extension_config_dump('agent_journal.counter_slots', '');
REVOKE ALL ON agent_journal.counter_slots FROM PUBLIC;

-- The inlined query runs as the caller, who thus uses these three. Each
-- answers only a user who may execute replay (granted by grant_access to
-- writers and readers), so PUBLIC may have them: roles need no new grant
-- on upgrade (privileges granted by an extension script become its initial
-- privileges, which pg_dump would leave out), and without USAGE on the
-- schema nobody can name them anyway.
REVOKE ALL ON FUNCTION agent_journal.may_replay_support(internal) FROM PUBLIC;
REVOKE ALL ON FUNCTION agent_journal.may_replay(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION agent_journal.replay_guard(uuid, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON agent_journal.replay_rows FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agent_journal.may_replay(uuid) TO PUBLIC;
GRANT EXECUTE ON FUNCTION agent_journal.replay_guard(uuid, bigint, bigint) TO PUBLIC;
GRANT SELECT ON agent_journal.replay_rows TO PUBLIC;
