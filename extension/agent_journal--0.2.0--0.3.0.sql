-- agent_journal 0.2.0 -> 0.3.0: replay streams.
-- Upgrade script (not a test): lives in extension/, installed by `make install`.
\echo Use "ALTER EXTENSION agent_journal UPDATE TO '0.3.0'" to load this file. \quit

-- replay's checks, run once per call: the arguments and the caller's access
-- to the agent (the errors replay gives). Returns max_entries (NULL: all).
CREATE FUNCTION agent_journal.replay_guard(
    agent_id uuid, from_sequence bigint, max_entries bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_replay_guard'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.replay_guard(uuid, bigint, bigint) IS
  'replay''s argument and access checks; returns max_entries (NULL: no limit)';

-- replay becomes an SQL function that PostgreSQL inlines into the calling
-- query: an index scan of entries_pkey streamed to the caller, in constant
-- memory, instead of a C function whose rows the executor stores in a
-- tuplestore (spilling to disk beyond work_mem) before reading them back.
-- Inlining needs: LANGUAGE sql, not STRICT, not SECURITY DEFINER, no SET
-- clause. The body is parsed now (BEGIN ATOMIC), so the caller's
-- search_path plays no part. The LIMIT is evaluated once, before the first
-- row, also for max_entries = 0. It reads entries as the calling role:
-- grant_access gives writers and readers SELECT on entries, and row-level
-- security (tenant_read) shows them only the agents they may use.
CREATE OR REPLACE FUNCTION agent_journal.replay(
    agent_id uuid, from_sequence bigint DEFAULT 1, max_entries bigint DEFAULT NULL)
RETURNS TABLE (sequence bigint, iteration integer, kind text,
               recorded_at timestamptz, event jsonb)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1000
BEGIN ATOMIC
  SELECT e.sequence, e.iteration, e.kind, e.recorded_at, e.event
  FROM agent_journal.entries e
  WHERE e.agent_id = replay.agent_id AND e.sequence >= replay.from_sequence
  ORDER BY e.sequence
  LIMIT agent_journal.replay_guard(replay.agent_id, replay.from_sequence, replay.max_entries);
END;

-- Writers now need SELECT on entries (and the functions its row-level
-- security calls) to replay; readers need replay_guard.
CREATE OR REPLACE FUNCTION agent_journal.access_privileges(access text)
RETURNS TABLE (object_type text, object_name text, privilege text)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT t.object_type, t.object_name, t.privilege FROM (VALUES
    ('writer', 'FUNCTION', 'agent_journal.append(uuid, integer, jsonb, bigint, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.append_batch(uuid, integer, jsonb[], bigint, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.replay(uuid, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.replay_guard(uuid, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.agent_visible(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.is_admin()', 'EXECUTE'),
    ('writer', 'TABLE', 'agent_journal.entries', 'SELECT'),
    ('writer', 'FUNCTION', 'agent_journal.latest_sequence(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.next_sequence(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.last_completed_iteration(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.compact(uuid, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.forget_agent(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.observability(uuid, integer)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.ingest_snapshot(jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.counter_add(text, double precision, jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.gauge_set(text, double precision, jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.gauge_add(text, double precision, jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.histogram_observe(text, double precision, jsonb, double precision[], text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.record_rejection(text, text, uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.replay(uuid, bigint, bigint)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.replay_guard(uuid, bigint, bigint)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.latest_sequence(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.next_sequence(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.last_completed_iteration(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.observability(uuid, integer)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.agent_visible(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.is_admin()', 'EXECUTE'),
    ('reader', 'TABLE', 'agent_journal.entries', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.agent_state', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.agents', 'SELECT'),
    ('reader', 'FUNCTION', 'agent_journal.prometheus_text()', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.openmetrics_text()', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.otlp_json(text)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.metric_samples_fn()', 'EXECUTE'),
    ('reader', 'TABLE', 'agent_journal.prometheus', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.openmetrics', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.metric_samples', 'SELECT'),
    ('scraper', 'FUNCTION', 'agent_journal.prometheus_text()', 'EXECUTE'),
    ('scraper', 'FUNCTION', 'agent_journal.openmetrics_text()', 'EXECUTE'),
    ('scraper', 'FUNCTION', 'agent_journal.otlp_json(text)', 'EXECUTE'),
    ('scraper', 'FUNCTION', 'agent_journal.metric_samples_fn()', 'EXECUTE'),
    ('scraper', 'TABLE', 'agent_journal.prometheus', 'SELECT'),
    ('scraper', 'TABLE', 'agent_journal.openmetrics', 'SELECT'),
    ('scraper', 'TABLE', 'agent_journal.metric_samples', 'SELECT')
  ) AS t(access, object_type, object_name, privilege)
  WHERE t.access = $1
  UNION ALL
  -- admin: every function and every table and view of the extension
  SELECT CASE WHEN d.classid = 'pg_proc'::regclass THEN 'FUNCTION' ELSE 'TABLE' END,
         CASE WHEN d.classid = 'pg_proc'::regclass THEN d.objid::regprocedure::text
              ELSE d.objid::regclass::text END,
         CASE WHEN d.classid = 'pg_proc'::regclass THEN 'EXECUTE'
              WHEN c.relkind = 'v' THEN 'SELECT'
              WHEN c.relkind = 'S' THEN 'USAGE, SELECT'
              ELSE 'SELECT, INSERT, UPDATE, DELETE' END
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'agent_journal'
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
  WHERE $1 = 'admin' AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
    AND (d.classid = 'pg_proc'::regclass OR (d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'v', 'S')))
$fn$;

-- Roles given an access level before this version get what it now includes.
-- (PostgreSQL records privileges granted by an extension script as the
-- extension's initial privileges, which pg_dump leaves out: after restoring
-- a dump of a database upgraded to 0.3.0, run agent_journal.reapply_access();
-- README, "Upgrading".)
CREATE FUNCTION agent_journal.reapply_access()
RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  g record;
  n integer := 0;
BEGIN
  FOR g IN SELECT r.rolname, a.access FROM agent_journal.access_grants a
           JOIN pg_roles r ON r.oid = a.role ORDER BY r.rolname, a.access LOOP
    PERFORM agent_journal.grant_access(g.rolname, g.access);
    n := n + 1;
  END LOOP;
  RETURN n;
END
$fn$;
COMMENT ON FUNCTION agent_journal.reapply_access() IS
  'grant again every access level recorded by grant_access (after an upgrade or a restore); returns how many';
SELECT agent_journal.reapply_access();

REVOKE ALL ON FUNCTION agent_journal.replay_guard(uuid, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION agent_journal.reapply_access() FROM PUBLIC;
