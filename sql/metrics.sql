-- Metrics: snapshots, counters, gauges, histograms, rejections, renderings.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;
CREATE TABLE example (doc jsonb);
INSERT INTO example VALUES ('{"timestamp": 1700000000,
 "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5,
               "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000,
               "load_factor": 0.005},
 "task_manager": {"total_tasks": 5, "healthy_tasks": 4,
                  "average_uptime_seconds": 1800.0, "total_memory_usage": 1024},
 "load_balancer": {"total_allocations": 100, "active_allocations": 5,
                   "memory_utilization": 0.45, "cpu_utilization": 0.30,
                   "allocation_failures": 2, "average_allocation_time_ms": 1.5},
 "system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0},
 "compaction": {"total_compactions": 7, "total_tokens_saved": 12000,
                "compactions_by_tier": {"summarize": 5, "truncate": 2},
                "context_utilization_ratio": 0.62}}');

-- 1. the example renders exactly the values the metric table implies
SELECT agent_journal.ingest_snapshot(doc) > 0 AS stored FROM example;
SELECT name, labels, value FROM agent_journal.metric_samples
WHERE name LIKE 'agent_runtime_%' ORDER BY name, labels::text;

-- the current snapshot is the greatest (timestamp, id), whatever the order of ingestion
SELECT agent_journal.ingest_snapshot(jsonb_set(jsonb_set(doc, '{timestamp}', '1600000000'), '{scheduler,running_agents}', '99')) > 0 FROM example;
SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_runtime_scheduler_running_agents';
SELECT agent_journal.ingest_snapshot(jsonb_set(jsonb_set(doc, '{timestamp}', '1700000001'), '{scheduler,running_agents}', '6')) > 0 FROM example;
SELECT agent_journal.ingest_snapshot(jsonb_set(jsonb_set(doc, '{timestamp}', '1700000001'), '{scheduler,running_agents}', '7')) > 0 FROM example;
SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_runtime_scheduler_running_agents';

-- a second service, without compaction; extra keys are ignored
SELECT agent_journal.ingest_snapshot((doc - 'compaction') || '{"extra": [1, 2]}', 'billing "east"\') > 0 FROM example;
SELECT name, labels, value FROM agent_journal.metric_samples
WHERE name IN ('agent_runtime_scheduler_running_agents', 'agent_runtime_compactions_total') ORDER BY name, labels::text;
-- context_utilization_ratio may be null: that gauge is omitted
SELECT agent_journal.ingest_snapshot(jsonb_set(doc, '{compaction,context_utilization_ratio}', 'null'), 'nulls') > 0 FROM example;
SELECT count(*) FROM agent_journal.metric_samples WHERE labels->>'service' = 'nulls' AND name = 'agent_runtime_context_utilization_ratio';

-- bad snapshots: 22023 naming the JSON path; nothing stored
SELECT count(*) AS snapshots_before FROM agent_journal.snapshots;
SELECT pg_temp.err(format('SELECT agent_journal.ingest_snapshot(%L)', jsonb_set(doc, '{scheduler,running_agents}', '"five"'))) FROM example;
SELECT pg_temp.err(format('SELECT agent_journal.ingest_snapshot(%L)', doc #- '{scheduler,running_agents}')) FROM example;
SELECT pg_temp.err(format('SELECT agent_journal.ingest_snapshot(%L)', jsonb_set(doc, '{load_balancer,allocation_failures}', '-1'))) FROM example;
SELECT pg_temp.err(format('SELECT agent_journal.ingest_snapshot(%L)', jsonb_set(doc, '{task_manager,total_tasks}', '5.5'))) FROM example;
SELECT pg_temp.err(format('SELECT agent_journal.ingest_snapshot(%L)', jsonb_set(doc, '{system}', '3'))) FROM example;
SELECT pg_temp.err(format('SELECT agent_journal.ingest_snapshot(%L)', jsonb_set(doc, '{system,cpu_usage_percent}', 'true'))) FROM example;
SELECT pg_temp.err(format('SELECT agent_journal.ingest_snapshot(%L)', jsonb_set(doc, '{compaction,compactions_by_tier,summarize}', '"x"'))) FROM example;
SELECT pg_temp.err(format('SELECT agent_journal.ingest_snapshot(%L)', jsonb_set(doc, '{timestamp}', '1e400'))) FROM example;
SELECT pg_temp.err($$SELECT agent_journal.ingest_snapshot('[1, 2]')$$);
SELECT pg_temp.err($$SELECT agent_journal.ingest_snapshot(NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.ingest_snapshot('{}', NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.ingest_snapshot('{}', '')$$);
SELECT count(*) AS snapshots_after FROM agent_journal.snapshots;

-- 2. counters, gauges, histograms
SELECT agent_journal.counter_add('jobs_done_total');
SELECT agent_journal.counter_add('jobs_done_total', 2.5, '{"queue": "a"}', 'Jobs done');
SELECT agent_journal.counter_add('jobs_done_total', 1, '{"queue": "a"}', 'ignored: first help wins');
SELECT agent_journal.counter_add('jobs_done_total', 0, '{"queue": ""}');  -- empty value = no label
SELECT agent_journal.gauge_set('queue_depth', 7, '{"queue": "a"}');
SELECT agent_journal.gauge_add('queue_depth', -2.5, '{"queue": "a"}');
SELECT agent_journal.gauge_add('queue_depth', 1, '{"queue": "b"}');
SELECT agent_journal.gauge_set('odd_values', 'NaN', '{"v": "nan"}');
SELECT agent_journal.gauge_set('odd_values', 'Infinity', '{"v": "inf"}');
SELECT agent_journal.gauge_set('odd_values', '-Infinity', '{"v": "-inf"}');
SELECT agent_journal.histogram_observe('step_seconds', 0.003);
SELECT agent_journal.histogram_observe('step_seconds', 0.7);
SELECT agent_journal.histogram_observe('step_seconds', 99);
SELECT agent_journal.histogram_observe('tokens', 150, '{"model": "m"}', ARRAY[100, 1000, 'Infinity']::float8[], 'Tokens per step');
SELECT agent_journal.histogram_observe('tokens', 1000, '{"model": "m"}', ARRAY[100, 1000]);
SELECT agent_journal.histogram_observe('tokens', 5, '{"model": "m"}');
SELECT agent_journal.counter_add('escapes_total', 1, jsonb_build_object('path', E'C:\\dir "x"\nnext'), E'help with \\ and\nnewline "quotes"');

-- bad metric input: 22023 (or 22004 for NULL) naming the argument
SELECT pg_temp.err($$SELECT agent_journal.counter_add('jobs_done_total', -1)$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('jobs_done_total', 'NaN')$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('jobs_done_total', 'Infinity')$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('jobs_done_total', NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add(NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('jobs_done')$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('Jobs_total')$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('a:b_total')$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('queue_depth_total', 1)$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('queue_count', 1)$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('agent_runtime_fake', 1)$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('agent_journal_fake_total')$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('jobs_done_total', 1)$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('queue_depth')$$);
SELECT pg_temp.err($$SELECT agent_journal.histogram_observe('queue_depth', 1)$$);
-- a new family must not collide with another's sample names (OpenMetrics: counter x_total is family x)
SELECT pg_temp.err($$SELECT agent_journal.counter_add('queue_depth_total')$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('step_seconds_created', 1)$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('step_seconds_count', 1)$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('step_seconds_bucket', 1)$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('x', 1, '{"le": "1"}')$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('x', 1, '{"__name": "1"}')$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('x', 1, '{"bad-name": "1"}')$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('x', 1, '{"n": 1}')$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('x', 1, '[]')$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('x', 1, NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.gauge_set('x', NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.histogram_observe('step_seconds', -1)$$);
SELECT pg_temp.err($$SELECT agent_journal.histogram_observe('step_seconds', 'Infinity')$$);
SELECT pg_temp.err($$SELECT agent_journal.histogram_observe('step_seconds', 1, '{}', ARRAY[1, 2])$$);
SELECT pg_temp.err($$SELECT agent_journal.histogram_observe('h2', 1, '{}', ARRAY[2, 1])$$);
SELECT pg_temp.err($$SELECT agent_journal.histogram_observe('h2', 1, '{}', ARRAY['NaN']::float8[])$$);
SELECT pg_temp.err($$SELECT agent_journal.histogram_observe('h2', 1, '{}', ARRAY[]::float8[])$$);
SELECT pg_temp.err($$SELECT agent_journal.histogram_observe('h2', 1, '{}', ARRAY[1, NULL])$$);
SELECT name, type FROM agent_journal.metric_families WHERE name IN ('x', 'h2', 'jobs_done') ORDER BY 1;

-- 3. rejections and observability
SELECT agent_journal.record_rejection('tenant_limit') > 0;
SELECT agent_journal.record_rejection('capacity_limit', 'pool full', '00000000-0000-0000-0000-0000000000aa') > 0;
SELECT agent_journal.record_rejection('capacity_limit') > 0;
SELECT pg_temp.err($$SELECT agent_journal.record_rejection('other')$$);
SELECT pg_temp.err($$SELECT agent_journal.record_rejection('bogus')$$);
SELECT pg_temp.err($$SELECT agent_journal.record_rejection(NULL)$$);
SELECT agent_journal.record_rejection('other', 'maintenance') > 0;
SELECT labels, value FROM agent_journal.metric_samples WHERE name = 'agent_journal_rejections_total' ORDER BY labels::text;

\set o '''00000000-0000-0000-0000-0000000000b0'''
SELECT agent_journal.observability(:o);
SELECT agent_journal.append(:o, 0, '{"type": "Started"}');
SELECT agent_journal.append(:o, 1, '{"Thought": "x"}');
SELECT agent_journal.append(:o, 1, '{"type": "Interrupted"}');
SELECT pg_sleep(0.02);
SELECT agent_journal.append(:o, 1, '{"type": "Resumed"}');
SELECT agent_journal.append(:o, 2, '{"type": "Interrupted"}');
SELECT agent_journal.append(:o, 2, '{"type": "Resumed"}');
SELECT o->'reasoning_timeline' AS timeline, o->'replay_cost' AS cost,
       (o->>'interrupt_latency_ms')::numeric BETWEEN 20 AND 5000 AS latency_ok
FROM agent_journal.observability(:o) o;
SELECT agent_journal.observability(:o, 2)->'reasoning_timeline';
SELECT agent_journal.compact(:o, 2);
SELECT agent_journal.observability(:o, 10)->'replay_cost';
SELECT pg_temp.err($$SELECT agent_journal.observability(NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.observability('00000000-0000-0000-0000-0000000000b0', -1)$$);

-- 4. the Prometheus view, one line a row (SQL families and journal families)
SELECT line FROM agent_journal.prometheus, regexp_split_to_table(exposition, E'\n') AS line
WHERE line !~ '^(# (HELP|TYPE) )?agent_runtime_';
-- the journal's own families
SELECT name, value FROM agent_journal.metric_samples WHERE name LIKE 'agent_journal_%' AND name NOT LIKE '%rejections%' ORDER BY 1, 2;

-- 5. OpenMetrics and OTLP JSON of the same model
-- _created: the series' first write (the time varies: shown as <t>)
SELECT regexp_replace(line, '_created(\{[^}]*\})? [0-9.]+$', '_created\1 <t>') AS line
FROM agent_journal.openmetrics, regexp_split_to_table(exposition, E'\n') AS line
WHERE line ~ '^(# (HELP|TYPE) )?(jobs_done|tokens|odd_values)|EOF';
SELECT jsonb_array_length(agent_journal.otlp_json()->'resourceMetrics') AS resources;
SELECT r->'resource'->'attributes'->0->'value'->>'stringValue' AS service
FROM jsonb_array_elements(agent_journal.otlp_json()->'resourceMetrics') r ORDER BY 1;
SELECT m->'sum'->'isMonotonic' AS monotonic, m->'sum'->'aggregationTemporality' AS temporality,
       m->'sum'->'dataPoints'->0->'asDouble' AS v
FROM jsonb_array_elements(agent_journal.otlp_json('nulls')->'resourceMetrics'->0->'scopeMetrics'->0->'metrics') m
WHERE m->>'name' = 'agent_runtime_allocation_failures';
SELECT m->'histogram'->'dataPoints'->0->'bucketCounts' AS buckets, m->'histogram'->'dataPoints'->0->'explicitBounds' AS bounds,
       m->'histogram'->'dataPoints'->0->'count' AS count
FROM jsonb_array_elements(agent_journal.otlp_json('agent_journal')->'resourceMetrics'->0->'scopeMetrics'->0->'metrics') m
WHERE m->>'name' = 'tokens';
SELECT jsonb_array_length(agent_journal.otlp_json('no-such-service')->'resourceMetrics');

-- 6. a scrape never fails as a whole: over-budget series are dropped and counted
SET agent_journal.max_series_per_family = 2;
SELECT agent_journal.gauge_set('wide', i, jsonb_build_object('i', i::text)) FROM generate_series(1, 5) i;
SELECT name, labels, value FROM agent_journal.metric_samples WHERE name IN ('wide', 'agent_journal_render_dropped_series') ORDER BY 1, 2::text;
RESET agent_journal.max_series_per_family;

-- snapshot_max_age: a stale service is not rendered; prune keeps the current one
SET agent_journal.snapshot_max_age = '1h';
UPDATE agent_journal.snapshots SET ingested_at = now() - interval '2 hours' WHERE service = 'nulls';
SELECT count(*) FROM agent_journal.metric_samples WHERE labels->>'service' = 'nulls';
RESET agent_journal.snapshot_max_age;
SELECT count(*) > 0 FROM agent_journal.metric_samples WHERE labels->>'service' = 'nulls';
UPDATE agent_journal.snapshots SET ingested_at = now() - interval '2 days';
SELECT agent_journal.prune_snapshots(interval '1 day');
SELECT service, snapshot->'scheduler'->'running_agents' FROM agent_journal.snapshots ORDER BY 1;
SELECT pg_temp.err($$SELECT agent_journal.prune_snapshots(NULL)$$);

-- a large render stops at statement_timeout (or pg_cancel_backend) with 57014
INSERT INTO agent_journal.metric_families (name, type, help) VALUES ('big_total', 'counter', 'Big');
INSERT INTO agent_journal.metric_series (name, labels, value)
SELECT 'big_total', jsonb_build_object('i', i::text), i FROM generate_series(1, 30000) i;
SET statement_timeout = '5ms';
SELECT octet_length(exposition) FROM agent_journal.prometheus;  -- ERROR 57014, the session goes on
RESET statement_timeout;
DELETE FROM agent_journal.metric_families WHERE name = 'big_total';
SELECT count(*) FROM agent_journal.metric_series WHERE name = 'big_total';

-- read paths write nothing: they run in a read-only transaction
BEGIN READ ONLY;
SELECT length(exposition) > 0 FROM agent_journal.prometheus;
SELECT length(exposition) > 0 FROM agent_journal.openmetrics;
SELECT count(*) > 0 FROM agent_journal.metric_samples;
SELECT agent_journal.otlp_json() ? 'resourceMetrics';
SELECT agent_journal.observability(:o) ? 'replay_cost';
SELECT count(*) FROM agent_journal.replay(:o);
-- writers refuse (25006) instead of failing halfway
SELECT pg_temp.err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000b0', 0, '{}')$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('jobs_done_total')$$);
COMMIT;
DROP TABLE example;
