-- agent_journal 0.5.0 -> 0.6.0: metrics at scale and by the standards.
-- Upgrade script (not a test): lives in extension/, installed by `make install`.
\echo Use "ALTER EXTENSION agent_journal UPDATE TO '0.6.0'" to load this file. \quit

-- As in 0.5.0: a recreated function gets the EXECUTE grants of the one it
-- replaces, and its initial privileges (pg_init_privs) are set back to the
-- old function's, so the copied grants stay ordinary grants a dump keeps.
CREATE FUNCTION agent_journal.carry_grants_060(src pg_catalog.regprocedure, dst pg_catalog.regprocedure)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  g record;
  init pg_catalog.aclitem[];
BEGIN
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', dst);
  FOR g IN SELECT a.grantee, a.is_grantable
             FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
            WHERE p.oid OPERATOR(pg_catalog.=) src
              AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
              AND a.grantee OPERATOR(pg_catalog.<>) p.proowner LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', dst,
      CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
           ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
  END LOOP;
  SELECT i.initprivs INTO init FROM pg_catalog.pg_init_privs i
   WHERE i.objoid OPERATOR(pg_catalog.=) src
     AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
     AND i.objsubid OPERATOR(pg_catalog.=) 0;
  IF init IS NULL THEN
    DELETE FROM pg_catalog.pg_init_privs i
     WHERE i.objoid OPERATOR(pg_catalog.=) dst
       AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND i.objsubid OPERATOR(pg_catalog.=) 0;
  ELSE
    UPDATE pg_catalog.pg_init_privs i SET initprivs = init
     WHERE i.objoid OPERATOR(pg_catalog.=) dst
       AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND i.objsubid OPERATOR(pg_catalog.=) 0;
  END IF;
END
$fn$;

-- ------------------------------------------------------------ series
-- created_at: the series' first write (OpenMetrics _created, OTLP
-- startTimeUnixNano); a deleted and re-created series starts anew, which
-- renders as a counter reset. Series from before 0.6.0 take their family's
-- creation time: the earliest time their first write can have had.
-- exemplars: the latest exemplar per bucket ({"<bucket>": {"labels": {...},
-- "value": v, "ts": epoch seconds}}; a counter's bucket is 0).
ALTER TABLE agent_journal.metric_series
  ADD COLUMN created_at timestamptz,
  ADD COLUMN exemplars  jsonb;
UPDATE agent_journal.metric_series s SET created_at = f.created_at
  FROM agent_journal.metric_families f WHERE f.name OPERATOR(pg_catalog.=) s.name;
UPDATE agent_journal.metric_series SET created_at = updated_at WHERE created_at IS NULL;
ALTER TABLE agent_journal.metric_series
  ALTER COLUMN created_at SET DEFAULT clock_timestamp(),
  ALTER COLUMN created_at SET NOT NULL;
COMMENT ON COLUMN agent_journal.metric_series.created_at IS
  'the series'' first write (OpenMetrics _created, OTLP startTimeUnixNano)';
COMMENT ON COLUMN agent_journal.metric_series.exemplars IS
  'the latest exemplar per bucket (a counter''s is bucket 0): {"<bucket>": {"labels", "value", "ts"}}';

-- Slots (counters under contention) carry their own last write and
-- exemplar: series_ttl and the latest exemplar look at every part.
ALTER TABLE agent_journal.counter_slots
  ADD COLUMN updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  ADD COLUMN exemplars  jsonb;

-- ------------------------------------------------------------ exemplars
ALTER FUNCTION agent_journal.counter_add(text, double precision, jsonb, text)
  RENAME TO counter_add_before_060;
CREATE FUNCTION agent_journal.counter_add(
    name text, value double precision DEFAULT 1, labels jsonb DEFAULT '{}', help text DEFAULT NULL,
    exemplar jsonb DEFAULT NULL)
RETURNS double precision
AS 'MODULE_PATHNAME', 'aj_counter_add'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.counter_add(text, double precision, jsonb, text, jsonb) IS
  'add a finite value >= 0 to a counter series, with an optional exemplar (labels object); returns the new total';
SELECT agent_journal.carry_grants_060(
  'agent_journal.counter_add_before_060(text, double precision, jsonb, text)',
  'agent_journal.counter_add(text, double precision, jsonb, text, jsonb)');
DROP FUNCTION agent_journal.counter_add_before_060(text, double precision, jsonb, text);

ALTER FUNCTION agent_journal.histogram_observe(text, double precision, jsonb, double precision[], text)
  RENAME TO histogram_observe_before_060;
CREATE FUNCTION agent_journal.histogram_observe(
    name text, value double precision, labels jsonb DEFAULT '{}',
    buckets double precision[] DEFAULT NULL, help text DEFAULT NULL, exemplar jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'aj_histogram_observe'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.histogram_observe(text, double precision, jsonb, double precision[], text, jsonb) IS
  'record one observation (finite, >= 0) in a histogram series, with an optional exemplar (labels object) on its bucket';
SELECT agent_journal.carry_grants_060(
  'agent_journal.histogram_observe_before_060(text, double precision, jsonb, double precision[], text)',
  'agent_journal.histogram_observe(text, double precision, jsonb, double precision[], text, jsonb)');
DROP FUNCTION agent_journal.histogram_observe_before_060(text, double precision, jsonb, double precision[], text);

-- ------------------------------------------------------------ delete_series
CREATE FUNCTION agent_journal.delete_series(name text, labels jsonb DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_delete_series'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.delete_series(text, jsonb) IS
  'delete one series (or every series of the family when labels is NULL); the family stays; returns how many';
-- Writers delete series: whoever may add to a counter gets it.
SELECT agent_journal.carry_grants_060(
  'agent_journal.counter_add(text, double precision, jsonb, text, jsonb)',
  'agent_journal.delete_series(text, jsonb)');
DROP FUNCTION agent_journal.carry_grants_060(pg_catalog.regprocedure, pg_catalog.regprocedure);

-- ------------------------------------------------------------ journal totals
-- The journal's own families (agents, appended, compacted, live entries)
-- render from per-backend tallies that every writer adds to in its own
-- transaction, not from a walk of every agent. Seeded here from that walk
-- (and what forgotten agents counted); rows of these names written by a
-- 0.6.0 library before this update are replaced by the seed.
DELETE FROM agent_journal.tallies
 WHERE name OPERATOR(pg_catalog.=) ANY (ARRAY['journal_agents', 'journal_appended',
   'journal_compacted', 'journal_forgotten_live', 'journal_since']);
WITH w AS (
  SELECT pg_catalog.count(*) AS agents,
         COALESCE(pg_catalog.sum(a.latest_sequence), 0)::bigint AS appended,
         COALESCE(pg_catalog.sum(a.compacted_through), 0)::bigint AS compacted,
         COALESCE(pg_catalog.sum(a.live_entries), 0)::bigint AS live,
         pg_catalog.min(s.created_at) AS first_agent
  FROM agent_journal.agents a JOIN agent_journal.agent_state s USING (agent_id)),
f AS (
  SELECT COALESCE(pg_catalog.sum(value) FILTER (WHERE name OPERATOR(pg_catalog.=) 'forgotten_appended_entries'), 0)::bigint AS appended,
         COALESCE(pg_catalog.sum(value) FILTER (WHERE name OPERATOR(pg_catalog.=) 'forgotten_compacted_entries'), 0)::bigint AS compacted
  FROM agent_journal.tallies)
-- Slot 0 is no backend's. Only non-zero seeds are written: a fresh
-- install (and a restore, which creates the extension in an empty
-- database before pg_dump's rows come back) writes none but journal_since,
-- which the dump leaves out: a restored database counts from its restore.
INSERT INTO agent_journal.tallies (name, slot, value)
SELECT v.name, 0, v.value FROM w, f, LATERAL (VALUES
  ('journal_agents', w.agents),
  ('journal_appended', w.appended OPERATOR(pg_catalog.+) f.appended),
  ('journal_compacted', w.compacted OPERATOR(pg_catalog.+) f.compacted),
  -- appended - compacted - forgotten_live = live entries
  ('journal_forgotten_live', (w.appended OPERATOR(pg_catalog.+) f.appended)
     OPERATOR(pg_catalog.-) (w.compacted OPERATOR(pg_catalog.+) f.compacted) OPERATOR(pg_catalog.-) w.live),
  -- since when the counters count (microseconds since the Unix epoch):
  -- their _created and OTLP start time
  ('journal_since', (pg_catalog.date_part('epoch', LEAST(pg_catalog.now(), w.first_agent))
     OPERATOR(pg_catalog.*) 1000000)::bigint)) AS v(name, value)
WHERE v.value OPERATOR(pg_catalog.<>) 0;
SELECT pg_catalog.pg_extension_config_dump('agent_journal.tallies',
  $$WHERE name OPERATOR(pg_catalog.<>) 'journal_since'$$);

-- ------------------------------------------------------------ access levels
CREATE OR REPLACE FUNCTION agent_journal.access_privileges(access text)
RETURNS TABLE (object_type text, object_name text, privilege text)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT t.object_type, t.object_name, t.privilege FROM (VALUES
    ('writer', 'FUNCTION', 'agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.append_batch(uuid, integer, jsonb[], bigint, text, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.replay(uuid, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.latest_sequence(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.next_sequence(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.last_completed_iteration(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.compact(uuid, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.forget_agent(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.claim_agent(uuid, text, interval)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.renew_lease(uuid, bigint, interval)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.release_agent(uuid, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.save_state(uuid, jsonb, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.fork_agent(uuid, bigint, uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.set_retention(uuid, bigint, interval, boolean)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.resume(uuid, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.entry_by_key(uuid, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.replay_backward(uuid, bigint, bigint, text[])', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.observability(uuid, integer)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.ingest_snapshot(jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.counter_add(text, double precision, jsonb, text, jsonb)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.gauge_set(text, double precision, jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.gauge_add(text, double precision, jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.histogram_observe(text, double precision, jsonb, double precision[], text, jsonb)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.delete_series(text, jsonb)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.record_rejection(text, text, uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.replay(uuid, bigint, bigint)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.resume(uuid, bigint)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.entry_by_key(uuid, text)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.replay_backward(uuid, bigint, bigint, text[])', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.latest_sequence(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.next_sequence(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.last_completed_iteration(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.observability(uuid, integer)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.agent_visible(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.is_admin()', 'EXECUTE'),
    ('reader', 'TABLE', 'agent_journal.entries', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.agent_state', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.agents', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.leases', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.lease_graph', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.saved_states', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.retention_policies', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.retention_settings', 'SELECT'),
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
  -- admin: every function and every table, view and sequence of the extension
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
