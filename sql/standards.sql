-- Metrics by the standards (0.6.0): exemplars, _created, delete_series,
-- series_ttl. (promtool, the OpenMetrics parser and a real Prometheus
-- scrape of exemplars: tests/scripts/exemplars.sh.)
\set VERBOSITY terse
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;
-- OpenMetrics lines of a family, the times (which vary) shown as <t>
CREATE FUNCTION pg_temp.om(family text) RETURNS SETOF text LANGUAGE sql AS $$
  SELECT regexp_replace(regexp_replace(line, '_created(\{[^}]*\})? [0-9.]+$', '_created\1 <t>'),
                        '( # \{.*\} [^ ]+) [0-9.]+$', '\1 <t>')
  FROM agent_journal.openmetrics, regexp_split_to_table(exposition, E'\n') AS line
  WHERE line LIKE family || '%'
$$;

-- 1. exemplars: on the bucket the value falls in (the smallest le >= value)
-- and on a counter's sample; labels sorted by name; the latest wins
SELECT agent_journal.histogram_observe('std_step_seconds', 0.3, '{"tool": "grep"}', ARRAY[0.5, 1],
       exemplar => '{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "agent_id": "a1", "sequence": "42"}');
SELECT agent_journal.histogram_observe('std_step_seconds', 0.5, '{"tool": "grep"}',
       exemplar => '{"sequence": "43"}');
SELECT agent_journal.histogram_observe('std_step_seconds', 7, '{"tool": "grep"}',
       exemplar => '{"sequence": "44"}');
SELECT agent_journal.histogram_observe('std_step_seconds', 0.1, '{"tool": "grep"}');  -- none: the bucket keeps its exemplar
SELECT * FROM pg_temp.om('std_step_seconds');
SELECT agent_journal.counter_add('std_steps_total', 1, '{"k": "v"}', exemplar => '{"sequence": "1"}');
SELECT agent_journal.counter_add('std_steps_total', 2, '{"k": "v"}', exemplar => '{"sequence": "2"}');
SELECT agent_journal.counter_add('std_steps_total', 4, '{"k": "v"}');
SELECT * FROM pg_temp.om('std_steps');
-- under contention the increment and its exemplar go to a slot row
-- (counter_add); the latest of the series' row and its slots wins
INSERT INTO agent_journal.counter_slots (name, labels, slot, value, exemplars)
VALUES ('std_steps_total', '{"k": "v"}', 998, 1,
        jsonb_build_object('0', jsonb_build_object('labels', '{"sequence": "slot"}'::jsonb, 'value', '1',
                                                   'ts', (extract(epoch FROM now()) + 60)::text)));
SELECT * FROM pg_temp.om('std_steps_total');
UPDATE agent_journal.counter_slots SET exemplars = jsonb_set(exemplars, '{0,ts}', '"1"')
WHERE name = 'std_steps_total' AND slot = 998;
SELECT * FROM pg_temp.om('std_steps_total');  -- older than the row's: the row's again
DELETE FROM agent_journal.counter_slots WHERE name = 'std_steps_total' AND slot = 998;
-- not in the Prometheus 0.0.4 text format
SELECT count(*) AS exemplars_in_004 FROM agent_journal.prometheus, regexp_split_to_table(exposition, E'\n') line
WHERE line LIKE '%#%{%';
-- OTLP: exemplars on the data points; trace_id (32 hex digits) in traceId
SELECT e->>'traceId' AS trace_id, e->'asDouble' AS value,
       (SELECT string_agg(a->>'key', ',') FROM jsonb_array_elements(e->'filteredAttributes') a) AS attributes,
       (e->>'timeUnixNano')::numeric > 0 AS timed
FROM jsonb_array_elements(agent_journal.otlp_json()->'resourceMetrics') rm,
     jsonb_array_elements(rm->'scopeMetrics') sm, jsonb_array_elements(sm->'metrics') m,
     jsonb_array_elements(COALESCE(m->'histogram'->'dataPoints', m->'sum'->'dataPoints')) dp,
     jsonb_array_elements(dp->'exemplars') e
WHERE m->>'name' IN ('std_step_seconds', 'std_steps')
ORDER BY 1, 2;
-- every cumulative point has a start time: the series' first write
SELECT m->>'name' AS metric, bool_and(dp ? 'startTimeUnixNano') AS started
FROM jsonb_array_elements(agent_journal.otlp_json()->'resourceMetrics') rm,
     jsonb_array_elements(rm->'scopeMetrics') sm, jsonb_array_elements(sm->'metrics') m,
     jsonb_array_elements(COALESCE(m->'histogram'->'dataPoints', m->'sum'->'dataPoints')) dp
GROUP BY 1 ORDER BY 1;
-- bad exemplars: a clear error naming the argument or the label
SELECT pg_temp.err($$SELECT agent_journal.counter_add('std_steps_total', 1, '{}', exemplar => '[1]')$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('std_steps_total', 1, '{}', exemplar => '{}')$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('std_steps_total', 1, '{}', exemplar => '{"trace_id": 7}')$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('std_steps_total', 1, '{}', exemplar => '{"1bad": "x"}')$$);
SELECT pg_temp.err($$SELECT agent_journal.counter_add('std_steps_total', 1, '{}', exemplar => '{"__x": "x"}')$$);
SELECT pg_temp.err($$SELECT agent_journal.histogram_observe('std_step_seconds', 1, '{"tool": "grep"}',
       exemplar => jsonb_build_object('trace_id', repeat('é', 121)))$$);
-- 128 characters in all is the limit (names and values, in characters)
SELECT pg_temp.err($$SELECT agent_journal.counter_add('std_steps_total', 1, '{}',
       exemplar => jsonb_build_object('t', repeat('é', 127)))$$);
-- a refused exemplar wrote nothing
SELECT value FROM agent_journal.metric_samples WHERE name = 'std_steps_total' ORDER BY labels::text;

-- 2. delete_series: one series, or the family's every series; the family
-- (type, help, buckets) stays; written again, the series starts anew
-- (a later _created: a reset, as Prometheus reads it)
SELECT agent_journal.counter_add('std_deleted_total', 5, '{"k": "a"}', 'Deleted things');
SELECT agent_journal.counter_add('std_deleted_total', 6, '{"k": "b"}');
SELECT created_at AS first_created FROM agent_journal.metric_series
WHERE name = 'std_deleted_total' AND labels = '{"k": "a"}' \gset
SELECT agent_journal.delete_series('std_deleted_total', '{"k": "a", "empty": ""}');  -- labels normalized as counter_add does
SELECT agent_journal.delete_series('std_deleted_total', '{"k": "a"}');  -- gone already
SELECT labels, value FROM agent_journal.metric_samples WHERE name = 'std_deleted_total';
SELECT agent_journal.counter_add('std_deleted_total', 1, '{"k": "a"}');
SELECT created_at > :'first_created' AS starts_anew FROM agent_journal.metric_series
WHERE name = 'std_deleted_total' AND labels = '{"k": "a"}';
SELECT agent_journal.delete_series('std_deleted_total');  -- the family's every series
SELECT agent_journal.delete_series('std_step_seconds');
SELECT name, type, help, buckets FROM agent_journal.metric_families
WHERE name IN ('std_deleted_total', 'std_step_seconds') ORDER BY 1;
SELECT line FROM agent_journal.openmetrics, regexp_split_to_table(exposition, E'\n') AS line
WHERE line LIKE '%std_deleted%';  -- no series, nothing rendered; the family stays (above)
SELECT agent_journal.delete_series('std_no_such_family');
SELECT pg_temp.err($$SELECT agent_journal.delete_series(NULL)$$);
SELECT pg_temp.err($$SELECT agent_journal.delete_series('std_steps_total', '{"k": 1}')$$);
SELECT pg_temp.err($$SELECT agent_journal.delete_series('agent_journal_rejections_total')$$);
-- writers may delete series; readers and scrapers may not
CREATE ROLE regress_aj_std_writer;
CREATE ROLE regress_aj_std_reader;
SELECT agent_journal.grant_access('regress_aj_std_writer', 'writer');
SELECT agent_journal.grant_access('regress_aj_std_reader', 'reader');
SET ROLE regress_aj_std_writer;
SELECT agent_journal.delete_series('std_steps_total', '{"k": "v"}');
RESET ROLE;
SET ROLE regress_aj_std_reader;
SELECT pg_temp.err($$SELECT agent_journal.delete_series('std_steps_total')$$);
RESET ROLE;

-- 3. series_ttl: a series not written for longer is left out of every
-- render (the background worker deletes it: tests/scripts/retention.sh);
-- the extension's own families never expire
SELECT agent_journal.gauge_set('std_fresh', 1);
SELECT agent_journal.gauge_set('std_stale', 1);
SELECT agent_journal.counter_add('std_contended_total', 1);
UPDATE agent_journal.metric_series SET updated_at = now() - interval '2 hours'
WHERE name IN ('std_stale', 'std_contended_total');
-- a slot row written recently keeps its series alive
INSERT INTO agent_journal.counter_slots (name, labels, slot, value) VALUES ('std_contended_total', '{}', 999, 1);
SET agent_journal.series_ttl = '1h';
SELECT name, value FROM agent_journal.metric_samples WHERE name LIKE 'std_%' ORDER BY 1;
UPDATE agent_journal.counter_slots SET updated_at = now() - interval '2 hours' WHERE name = 'std_contended_total';
SELECT name, value FROM agent_journal.metric_samples WHERE name LIKE 'std_%' ORDER BY 1;
SELECT count(*) > 0 AS own_families_kept FROM agent_journal.metric_samples WHERE name LIKE 'agent_journal_%';
RESET agent_journal.series_ttl;
SELECT name, value FROM agent_journal.metric_samples WHERE name LIKE 'std_%' ORDER BY 1;
SELECT agent_journal.revoke_access('regress_aj_std_writer', 'writer');
SELECT agent_journal.revoke_access('regress_aj_std_reader', 'reader');
DROP ROLE regress_aj_std_writer, regress_aj_std_reader;
