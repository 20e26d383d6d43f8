-- The escalation matrix's roles, log table and data (tests/scripts/
-- escalation.sh on one server; citus_attack.sh on a distributed journal,
-- through the coordinator). psql variables: P (role prefix), A and C
-- (agents: A with entries, C bound to the writer role), feed (true: seed
-- the change feed; a distributed journal has none); with log_only set,
-- only the log table (a Citus worker needs one of its own). Runs once per
-- prefix (citus_attack.sh has one set of roles per node it attacks).
-- the attacker's log (as a superuser would find it: anyone may insert)
CREATE TABLE IF NOT EXISTS public.aj_esc_log (id bigserial PRIMARY KEY, attacker text, cur_user text, sess_user text,
                                ctx text, shadow text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT ON public.aj_esc_log TO PUBLIC;
GRANT USAGE ON SEQUENCE public.aj_esc_log_id_seq TO PUBLIC;
\if :{?log_only}
\quit
\endif
SELECT format('CREATE ROLE %I LOGIN', :'P' || l)
  FROM unnest(ARRAY['none', 'scraper', 'reader', 'writer', 'admin', 'dummy']) l \gexec
SELECT agent_journal.grant_access(:'P' || l, l) FROM unnest(ARRAY['writer', 'reader', 'scraper', 'admin']) l;
-- schemas the roles own (mode "schema")
SELECT format('CREATE SCHEMA %I AUTHORIZATION %I', 'evil_' || :'P' || l, :'P' || l)
  FROM unnest(ARRAY['none', 'scraper', 'reader', 'writer', 'admin']) l \gexec
-- data, so the renders and replays have rows to cast and read
-- (each append a statement of its own: on a distributed journal Citus
-- sends only those to the agent's node)
SELECT format('SELECT agent_journal.append(%L, %s, %L, NULL, %L)', :'A', i,
              jsonb_build_object('type', 'Step', 'i', i), 'seed-' || i) FROM generate_series(1, 5) i \gexec
SELECT agent_journal.append_batch(:'A', 6, ARRAY['{"type": "Interrupted"}', '{"type": "Resumed"}']::jsonb[]);
SELECT agent_journal.append(:'C', 1, '{"Started": {}}');
\set WRITER :P writer
SELECT agent_journal.bind_agent(:'C', :'WRITER');
SELECT agent_journal.ingest_snapshot('{"timestamp": 1700000000, "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5, "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000, "load_factor": 0.005}, "task_manager": {"total_tasks": 5, "healthy_tasks": 4, "average_uptime_seconds": 1800.0, "total_memory_usage": 1024}, "load_balancer": {"total_allocations": 100, "active_allocations": 5, "memory_utilization": 0.45, "cpu_utilization": 0.30, "allocation_failures": 2, "average_allocation_time_ms": 1.5}, "system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0}}');
SELECT agent_journal.counter_add('seeded_total', 3, '{"k": "v"}', 'Seeded things');
SELECT agent_journal.histogram_observe('seeded_seconds', 0.3);
SELECT agent_journal.gauge_set('seeded_gauge', 42);
SELECT agent_journal.record_rejection('capacity_limit', 'full');
\if :feed
-- feed consumers (0.7.0): one owned by this superuser that every attacker
-- tries, and one per role (as subscribe would make it), then a tick so
-- the feed has positions to acknowledge
SELECT agent_journal.subscribe('esc-consumer', true);
INSERT INTO agent_journal.feed_subscriptions (consumer, owner, position)
SELECT 'esc-' || :'P' || l, :'P' || l, 0 FROM unnest(ARRAY['none', 'scraper', 'reader', 'writer', 'admin', 'dummy']) l
UNION ALL SELECT 'esc-' || current_user, current_user, 0;
SELECT count(*) FROM agent_journal.read_feed('esc-consumer', 0);
\endif
