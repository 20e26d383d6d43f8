-- The journal's counters never go down: agent_journal_appended_entries_total
-- and agent_journal_compacted_entries_total keep what forgotten agents
-- counted, across compact, retention, forks and forget_agent (0.5.0).
-- (A server restart: tests/scripts/exporter.sh.)
\set VERBOSITY terse
CREATE FUNCTION public.aj_counters() RETURNS TABLE (appended float8, compacted float8)
LANGUAGE sql AS $$
  SELECT (SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_journal_appended_entries_total'),
         (SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_journal_compacted_entries_total')
$$;
-- exact: the gauges (from per-backend tallies since 0.6.0, not a walk)
-- equal what a walk of every agent finds
CREATE TEMP TABLE seen (step text, appended float8, compacted float8, exact boolean, n serial);
CREATE FUNCTION pg_temp.look(step text) RETURNS void LANGUAGE sql AS $$
  INSERT INTO seen (step, appended, compacted, exact)
  SELECT step, c.*,
         (SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_journal_agents')
           = (SELECT count(*) FROM agent_journal.agents)
     AND (SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_journal_live_entries')
           = (SELECT COALESCE(sum(live_entries), 0) FROM agent_journal.agents)
  FROM public.aj_counters() c
$$;
SELECT pg_temp.look('start');
\set a '''00000000-0000-0000-0000-00000000ee01'''
\set b '''00000000-0000-0000-0000-00000000ee02'''
SELECT agent_journal.append_batch(:a, 1, ARRAY['{"type": "A"}', '{"type": "B"}', '{"type": "C"}', '{"type": "D"}']::jsonb[]);
SELECT pg_temp.look('4 appended');
SELECT agent_journal.compact(:a, 2);
SELECT pg_temp.look('2 compacted');
SELECT agent_journal.save_state(:a, '{}', 4);
SELECT agent_journal.set_retention(:a, keep_last => 1);
SELECT agent_journal.apply_retention();
SELECT pg_temp.look('retention');
SELECT agent_journal.fork_agent(:a, 4, :b);
SELECT pg_temp.look('forked');
SELECT agent_journal.forget_agent(:a);
SELECT pg_temp.look('forgot a');
SELECT agent_journal.forget_agent(:b);
SELECT pg_temp.look('forgot b');
SELECT agent_journal.append(:a, 1, '{"type": "Again"}');
SELECT pg_temp.look('a again');
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-00000000ee03', current_user);
SELECT agent_journal.claim_agent('00000000-0000-0000-0000-00000000ee04', 'w') IS NOT NULL AS claimed;
SELECT pg_temp.look('bound and claimed new agents');
BEGIN;
SELECT agent_journal.append_batch(:a, 1, ARRAY['{"type": "X"}', '{"type": "Y"}']::jsonb[]);
ROLLBACK;
SELECT pg_temp.look('rolled back');
SELECT agent_journal.forget_agent('00000000-0000-0000-0000-00000000ee03');
SELECT agent_journal.forget_agent('00000000-0000-0000-0000-00000000ee04');
-- each step's change; neither counter ever goes down
SELECT step, appended - lag(appended) OVER w AS appended_delta,
       compacted - lag(compacted) OVER w AS compacted_delta, exact
FROM seen WINDOW w AS (ORDER BY n) ORDER BY n;
SELECT count(*) AS decreases FROM (
  SELECT appended < lag(appended) OVER w OR compacted < lag(compacted) OVER w AS down
  FROM seen WINDOW w AS (ORDER BY n)) d WHERE down;
SELECT agent_journal.forget_agent(:a);
DROP FUNCTION public.aj_counters();

-- OTLP: the scope's version is the installed schema's, read at render time;
-- agent_journal.service_namespace adds service.namespace to every resource
SELECT DISTINCT sm #>> '{scope,version}' = (SELECT extversion FROM pg_extension WHERE extname = 'agent_journal')
       AS scope_is_schema_version
FROM jsonb_path_query(agent_journal.otlp_json(), '$.resourceMetrics[*].scopeMetrics[*]') sm;
SELECT count(*) AS namespaces_unset
FROM jsonb_path_query(agent_journal.otlp_json(), '$.resourceMetrics[*].resource.attributes[*] ? (@.key == "service.namespace")');
SET agent_journal.service_namespace = 'team-a';
SELECT DISTINCT a #>> '{value,stringValue}' AS service_namespace
FROM jsonb_path_query(agent_journal.otlp_json(), '$.resourceMetrics[*].resource.attributes[*] ? (@.key == "service.namespace")') a;
RESET agent_journal.service_namespace;
