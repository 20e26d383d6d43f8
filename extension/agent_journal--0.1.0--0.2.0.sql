-- agent_journal 0.1.0 -> 0.2.0: metrics (snapshots, counters, gauges,
-- histograms, rejections), the Prometheus / OpenMetrics / OTLP renderings,
-- observability, and the access model (grant_access / revoke_access).
-- Upgrade script (not a test): lives in extension/, installed by `make install`.
\echo Use "ALTER EXTENSION agent_journal UPDATE TO '0.2.0'" to load this file. \quit

-- Runtime snapshots, kept for history until prune_snapshots. A service's
-- current snapshot is the one with the greatest (snapshot_ts, id), decided
-- when reading.
CREATE TABLE agent_journal.snapshots (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service     text             NOT NULL,
    snapshot_ts double precision NOT NULL,
    ingested_at timestamptz      NOT NULL DEFAULT clock_timestamp(),
    snapshot    jsonb            NOT NULL
);
CREATE INDEX snapshots_current ON agent_journal.snapshots (service, snapshot_ts DESC, id DESC);
COMMENT ON TABLE agent_journal.snapshots IS 'runtime metric snapshots, validated by ingest_snapshot';

-- SQL-recorded metric families: one type and one set of buckets for life.
CREATE TABLE agent_journal.metric_families (
    name       text PRIMARY KEY,
    type       text NOT NULL CHECK (type IN ('counter', 'gauge', 'histogram')),
    help       text,
    buckets    double precision[],
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE agent_journal.metric_families IS 'metric families recorded from SQL';

-- One row per series (family + normalized labels). Counters and gauges use
-- value; histograms bucket_counts (per bucket, not cumulative, last = +Inf),
-- sum and count.
CREATE TABLE agent_journal.metric_series (
    name          text   NOT NULL REFERENCES agent_journal.metric_families (name) ON DELETE CASCADE,
    labels        jsonb  NOT NULL,
    value         double precision NOT NULL DEFAULT 0,
    bucket_counts bigint[],
    sum           double precision,
    count         bigint,
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, labels)
);
COMMENT ON TABLE agent_journal.metric_series IS 'metric series recorded from SQL';

-- Rejections (admission control), counted per reason for the exposition.
CREATE TABLE agent_journal.rejections (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reason      text NOT NULL CHECK (reason IN ('tenant_limit', 'capacity_limit', 'other')),
    detail      text,
    agent_id    uuid,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (reason <> 'other' OR detail IS NOT NULL)
);
COMMENT ON TABLE agent_journal.rejections IS 'rejected agent admissions, with reason';

SELECT pg_catalog.pg_extension_config_dump('agent_journal.snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('agent_journal.snapshots_id_seq', '');
-- The extension's own rejection counter family is seeded here; the dump
-- leaves it out so a restore (which runs this script again) does not
-- insert it twice.
INSERT INTO agent_journal.metric_families (name, type, help)
VALUES ('agent_journal_rejections_total', 'counter', 'Agent admissions rejected, by reason');
SELECT pg_catalog.pg_extension_config_dump('agent_journal.metric_families',
  $$WHERE name <> 'agent_journal_rejections_total'$$);
SELECT pg_catalog.pg_extension_config_dump('agent_journal.metric_series', '');
SELECT pg_catalog.pg_extension_config_dump('agent_journal.rejections', '');
SELECT pg_catalog.pg_extension_config_dump('agent_journal.rejections_id_seq', '');

CREATE FUNCTION agent_journal.ingest_snapshot(snapshot jsonb, service text DEFAULT 'agent-runtime')
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_ingest_snapshot'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.ingest_snapshot(jsonb, text) IS
  'validate and store a runtime metrics snapshot; returns its id';

CREATE FUNCTION agent_journal.prune_snapshots(older_than interval)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_prune_snapshots'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.prune_snapshots(interval) IS
  'delete snapshots ingested longer ago than older_than, never a service''s current one; returns how many';

CREATE FUNCTION agent_journal.counter_add(
    name text, value double precision DEFAULT 1, labels jsonb DEFAULT '{}', help text DEFAULT NULL)
RETURNS double precision
AS 'MODULE_PATHNAME', 'aj_counter_add'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.counter_add(text, double precision, jsonb, text) IS
  'add a finite value >= 0 to a counter series; returns the new total';

CREATE FUNCTION agent_journal.gauge_set(
    name text, value double precision, labels jsonb DEFAULT '{}', help text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'aj_gauge_set'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.gauge_set(text, double precision, jsonb, text) IS
  'set a gauge series (any double, NaN and infinities included)';

CREATE FUNCTION agent_journal.gauge_add(
    name text, delta double precision, labels jsonb DEFAULT '{}', help text DEFAULT NULL)
RETURNS double precision
AS 'MODULE_PATHNAME', 'aj_gauge_add'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.gauge_add(text, double precision, jsonb, text) IS
  'add delta to a gauge series; returns the new value';

CREATE FUNCTION agent_journal.histogram_observe(
    name text, value double precision, labels jsonb DEFAULT '{}',
    buckets double precision[] DEFAULT NULL, help text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'aj_histogram_observe'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.histogram_observe(text, double precision, jsonb, double precision[], text) IS
  'record one observation (finite, >= 0) in a histogram series; buckets are fixed when the family is created';

CREATE FUNCTION agent_journal.record_rejection(reason text, detail text DEFAULT NULL, agent_id uuid DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_record_rejection'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.record_rejection(text, text, uuid) IS
  'count a rejection (tenant_limit, capacity_limit, or other with a detail); returns its id';

CREATE FUNCTION agent_journal.prometheus_text()
RETURNS text
AS 'MODULE_PATHNAME', 'aj_prometheus_text'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.prometheus_text() IS
  'the whole exposition in the Prometheus text format 0.0.4';

CREATE FUNCTION agent_journal.openmetrics_text()
RETURNS text
AS 'MODULE_PATHNAME', 'aj_openmetrics_text'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.openmetrics_text() IS
  'the whole exposition in the OpenMetrics 1.0 text format';

CREATE FUNCTION agent_journal.otlp_json(service text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'aj_otlp_json'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.otlp_json(text) IS
  'the metrics as an OTLP/HTTP JSON body for POST /v1/metrics (one service, or all when NULL)';

CREATE FUNCTION agent_journal.metric_samples_fn()
RETURNS TABLE (name text, labels jsonb, value double precision)
AS 'MODULE_PATHNAME', 'aj_metric_samples'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.metric_samples_fn() IS
  'every sample of the exposition in long format (behind the metric_samples view)';

CREATE FUNCTION agent_journal.observability(agent_id uuid, timeline_limit integer DEFAULT 1000)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'aj_observability'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.observability(uuid, integer) IS
  'per-agent reasoning timeline, replay cost and interrupt latency derived from the journal';

CREATE VIEW agent_journal.prometheus AS SELECT agent_journal.prometheus_text() AS exposition;
COMMENT ON VIEW agent_journal.prometheus IS 'one row: the Prometheus text exposition';
CREATE VIEW agent_journal.openmetrics AS SELECT agent_journal.openmetrics_text() AS exposition;
COMMENT ON VIEW agent_journal.openmetrics IS 'one row: the OpenMetrics text exposition';
CREATE VIEW agent_journal.metric_samples AS SELECT * FROM agent_journal.metric_samples_fn();
COMMENT ON VIEW agent_journal.metric_samples IS 'every sample in long format: name, labels, value';


-- ---------------------------------------------------------------- access
-- Tenants: an agent bound to a role may be used only by roles that have
-- that role's privileges, and by admins.

-- Who was given which access level by grant_access (admins bypass tenants).
CREATE TABLE agent_journal.access_grants (
    role       regrole     NOT NULL,
    access     text        NOT NULL CHECK (access IN ('writer', 'reader', 'scraper', 'admin')),
    granted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (role, access)
);
COMMENT ON TABLE agent_journal.access_grants IS 'access levels given by grant_access';
SELECT pg_catalog.pg_extension_config_dump('agent_journal.access_grants', '');

CREATE FUNCTION agent_journal.bind_agent(agent_id uuid, owner regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'aj_bind_agent'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.bind_agent(uuid, regrole) IS
  'bind an agent to a role: only roles with its privileges (and admins) may use it; NULL unbinds (admins only)';

CREATE FUNCTION agent_journal.agent_visible(agent_id uuid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'aj_agent_visible'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.agent_visible(uuid) IS
  'whether the current user may see this agent (row-level security on the journal tables)';

CREATE FUNCTION agent_journal.is_admin()
RETURNS boolean
AS 'MODULE_PATHNAME', 'aj_is_admin'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.is_admin() IS
  'whether the current user is a superuser or has the privileges of a role granted admin access';

-- Row-level security for direct SQL on the journal tables. The extension's
-- functions run as the extension owner (who bypasses RLS) after checking
-- the calling user themselves.
ALTER TABLE agent_journal.entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_journal.agent_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_journal.idempotency_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON agent_journal.entries FOR SELECT
  USING (agent_journal.agent_visible(agent_id));
CREATE POLICY admin_all ON agent_journal.entries FOR ALL
  USING (agent_journal.is_admin()) WITH CHECK (agent_journal.is_admin());
CREATE POLICY tenant_read ON agent_journal.agent_state FOR SELECT
  USING (agent_journal.agent_visible(agent_id));
CREATE POLICY admin_all ON agent_journal.agent_state FOR ALL
  USING (agent_journal.is_admin()) WITH CHECK (agent_journal.is_admin());
CREATE POLICY tenant_read ON agent_journal.idempotency_keys FOR SELECT
  USING (agent_journal.agent_visible(agent_id));
CREATE POLICY admin_all ON agent_journal.idempotency_keys FOR ALL
  USING (agent_journal.is_admin()) WITH CHECK (agent_journal.is_admin());
-- The agents view runs with the privileges of its caller, so RLS applies.
ALTER VIEW agent_journal.agents SET (security_invoker = true);

-- What each access level may use. One list, read by grant_access and
-- revoke_access. Every role also gets USAGE on the schema.
CREATE FUNCTION agent_journal.access_privileges(access text)
RETURNS TABLE (object_type text, object_name text, privilege text)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT t.object_type, t.object_name, t.privilege FROM (VALUES
    ('writer', 'FUNCTION', 'agent_journal.append(uuid, integer, jsonb, bigint, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.append_batch(uuid, integer, jsonb[], bigint, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.replay(uuid, bigint, bigint)', 'EXECUTE'),
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
COMMENT ON FUNCTION agent_journal.access_privileges(text) IS
  'the privileges each access level (writer, reader, scraper, admin) consists of';

CREATE FUNCTION agent_journal.check_access_args(role name, access text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  IF role IS NULL THEN RAISE EXCEPTION 'role must not be NULL' USING ERRCODE = '22004'; END IF;
  IF access IS NULL THEN RAISE EXCEPTION 'access must not be NULL' USING ERRCODE = '22004'; END IF;
  IF access NOT IN ('writer', 'reader', 'scraper', 'admin') THEN
    RAISE EXCEPTION 'access must be writer, reader, scraper or admin, got "%"', access
      USING ERRCODE = '22023';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = role) THEN
    RAISE EXCEPTION 'role "%" does not exist', role USING ERRCODE = '42704';
  END IF;
END
$fn$;
COMMENT ON FUNCTION agent_journal.check_access_args(name, text) IS
  'raises the error grant_access / revoke_access give for a NULL, unknown role or unknown level';

CREATE FUNCTION agent_journal.grant_access(role name, access text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  p record;
BEGIN
  PERFORM agent_journal.check_access_args(role, access);
  EXECUTE format('GRANT USAGE ON SCHEMA agent_journal TO %I', role);
  FOR p IN SELECT * FROM agent_journal.access_privileges(access) LOOP
    EXECUTE format('GRANT %s ON %s %s TO %I', p.privilege, p.object_type, p.object_name, role);
  END LOOP;
  INSERT INTO agent_journal.access_grants (role, access)
  VALUES (role::regrole, access) ON CONFLICT DO NOTHING;
END
$fn$;
COMMENT ON FUNCTION agent_journal.grant_access(name, text) IS
  'give a role an access level: writer, reader, scraper or admin (run as the extension owner or a superuser)';

CREATE FUNCTION agent_journal.revoke_access(role name, access text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  p record;
BEGIN
  PERFORM agent_journal.check_access_args(role, access);
  DELETE FROM agent_journal.access_grants g WHERE g.role = revoke_access.role::regrole AND g.access = revoke_access.access;
  -- Revoke this level's privileges, then give back those that another
  -- level the role still holds includes.
  FOR p IN SELECT * FROM agent_journal.access_privileges(access) LOOP
    EXECUTE format('REVOKE %s ON %s %s FROM %I', p.privilege, p.object_type, p.object_name, role);
  END LOOP;
  FOR p IN SELECT a.* FROM agent_journal.access_grants g,
           LATERAL agent_journal.access_privileges(g.access) a
           WHERE g.role = revoke_access.role::regrole LOOP
    EXECUTE format('GRANT %s ON %s %s TO %I', p.privilege, p.object_type, p.object_name, role);
  END LOOP;
  IF NOT EXISTS (SELECT 1 FROM agent_journal.access_grants g WHERE g.role = revoke_access.role::regrole) THEN
    EXECUTE format('REVOKE USAGE ON SCHEMA agent_journal FROM %I', role);
  END IF;
END
$fn$;
COMMENT ON FUNCTION agent_journal.revoke_access(name, text) IS
  'take an access level back from a role (privileges of levels it still holds stay)';

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA agent_journal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA agent_journal FROM PUBLIC;
