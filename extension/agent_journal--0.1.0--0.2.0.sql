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

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA agent_journal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA agent_journal FROM PUBLIC;
