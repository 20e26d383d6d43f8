-- Hardening (issue 10): each defect an adversarial review reproduced, as
-- written, must stay fixed. The classes behind them are covered by
-- tests/scripts/escalation.sh, isolation_matrix.sh, ddl.sh,
-- render_interrupts.sh, dump_restore.sh and tests/isolation/specs.
\set VERBOSITY terse
CREATE FUNCTION public.aj_hard_err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;
GRANT EXECUTE ON FUNCTION public.aj_hard_err(text) TO PUBLIC;
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_aj_scr, "Regress_AJ_Alice", regress_aj_alice2, "regress_aj_team.a",
  "regress_aj svc runtime", "regress_aj_o'q";
RESET client_min_messages;

-- 1. a scraper shadowing text with a pg_temp domain does not become superuser
CREATE ROLE regress_aj_scr LOGIN;
SELECT agent_journal.grant_access('regress_aj_scr', 'scraper');
SELECT agent_journal.ingest_snapshot('{"timestamp": 1700000000, "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5, "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000, "load_factor": 0.005}, "task_manager": {"total_tasks": 5, "healthy_tasks": 4, "average_uptime_seconds": 1800.0, "total_memory_usage": 1024}, "load_balancer": {"total_allocations": 100, "active_allocations": 5, "memory_utilization": 0.45, "cpu_utilization": 0.30, "allocation_failures": 2, "average_allocation_time_ms": 1.5}, "system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0}}') > 0 AS ingested;
DO $$BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO regress_aj_scr', current_database()); END$$;
\c - regress_aj_scr
CREATE FUNCTION pg_temp.evil(v pg_catalog.text) RETURNS pg_catalog.bool LANGUAGE plpgsql
  AS $$BEGIN EXECUTE 'ALTER ROLE regress_aj_scr SUPERUSER'; RETURN true; END$$;
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.evil(VALUE));
SELECT length(exposition) > 0 AS rendered FROM agent_journal.prometheus;
-- the same through a schema the caller owns, first in search_path
CREATE SCHEMA regress_aj_evil;
CREATE FUNCTION regress_aj_evil.evil(v pg_catalog.text) RETURNS pg_catalog.bool LANGUAGE plpgsql
  AS $$BEGIN EXECUTE 'ALTER ROLE regress_aj_scr SUPERUSER'; RETURN true; END$$;
CREATE DOMAIN regress_aj_evil.text AS pg_catalog.text CHECK (regress_aj_evil.evil(VALUE));
CREATE VIEW regress_aj_evil.pg_roles AS SELECT * FROM pg_catalog.pg_roles WHERE regress_aj_evil.evil('x');
SET search_path = regress_aj_evil, pg_catalog, public;
SELECT length(exposition) > 0 AS rendered FROM agent_journal.openmetrics;
SELECT count(*) > 0 AS samples FROM agent_journal.metric_samples;
RESET search_path;
\c - postgres
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_aj_scr';
DROP SCHEMA regress_aj_evil CASCADE;
-- replay is still inlined (an index scan, not a function scan; seq scans
-- off so the plan does not depend on when entries was last analyzed)
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-0000000000f1', 1, 10);
RESET enable_seqscan;

-- 3. roles named exactly as pg_roles.rolname spells them
CREATE ROLE "Regress_AJ_Alice";
CREATE ROLE regress_aj_alice2;
CREATE ROLE "regress_aj_team.a";
CREATE ROLE "regress_aj svc runtime";
CREATE ROLE "regress_aj_o'q";
SELECT agent_journal.grant_access('Regress_AJ_Alice', 'admin');
SELECT agent_journal.grant_access('regress_aj_team.a', 'writer');
SELECT agent_journal.grant_access('regress_aj svc runtime', 'reader');
SELECT agent_journal.grant_access('regress_aj_o''q', 'scraper');
SELECT role, access FROM agent_journal.access_grants WHERE role LIKE '%AJ%' OR role LIKE 'regress_aj%' ORDER BY 1, 2;
SELECT public.aj_hard_err($$SELECT agent_journal.grant_access('regress_aj_alice', 'admin')$$);  -- no such role
SELECT has_function_privilege('regress_aj_team.a', 'agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)', 'EXECUTE') AS team_may_append;
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000f2', 'Regress_AJ_Alice');
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000f3', 'regress_aj svc runtime');
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000f4', 'regress_aj_o''q'::text);
SELECT public.aj_hard_err($$SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000f4', 'regress_aj_alice')$$);
SELECT agent_id, owner FROM agent_journal.agent_state WHERE agent_id::text LIKE '%f_' ORDER BY 1;
SELECT agent_journal.revoke_access('regress_aj_team.a', 'writer');
SELECT agent_journal.revoke_access('Regress_AJ_Alice', 'admin');
SELECT agent_journal.revoke_access('regress_aj svc runtime', 'reader');
SELECT agent_journal.revoke_access('regress_aj_o''q', 'scraper');
SELECT count(*) AS grants_left FROM agent_journal.access_grants WHERE role LIKE '%AJ%' OR role LIKE 'regress_aj_%.%' OR role LIKE '% %' OR role LIKE '%''%';
SELECT has_function_privilege('regress_aj_team.a', 'agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)', 'EXECUTE') AS team_may_append;
-- an agent bound to a role that is dropped is admin-only, never unbound
SELECT agent_journal.grant_access('regress_aj_alice2', 'writer');
DROP ROLE "regress_aj svc runtime";
SELECT * FROM agent_journal.unresolved_roles ORDER BY 1, 2;
SET ROLE regress_aj_alice2;
SELECT public.aj_hard_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000f3', 0, '{}')$$);
RESET ROLE;
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000f3', 0, '{}');
SELECT agent_journal.revoke_access('regress_aj_alice2', 'writer');
SELECT agent_journal.forget_agent(a) FROM (VALUES ('00000000-0000-0000-0000-0000000000f2'::uuid),
  ('00000000-0000-0000-0000-0000000000f3'), ('00000000-0000-0000-0000-0000000000f4')) v(a);

-- 5. ALTER TABLE on entries: no crash; columns are mapped by name
ALTER TABLE agent_journal.entries ADD COLUMN note text DEFAULT 'noted';
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000f5', 0, '{"type": "A"}');
ALTER TABLE agent_journal.entries DROP COLUMN note;
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000f5', 0, '{"type": "B"}');
SELECT sequence, kind FROM agent_journal.replay('00000000-0000-0000-0000-0000000000f5');
ALTER TABLE agent_journal.entries RENAME COLUMN kind TO kind2;
SELECT public.aj_hard_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000f5', 0, '{}')$$);
ALTER TABLE agent_journal.entries RENAME COLUMN kind2 TO kind;
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000f5', 0, '{"type": "C"}');

-- 7. statement-level triggers with transition tables fire for single appends
CREATE TABLE public.aj_audit (op text, n bigint);
CREATE FUNCTION public.aj_audit_fn() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, public AS $$
BEGIN INSERT INTO public.aj_audit SELECT TG_OP, count(*) FROM new_rows; RETURN NULL; END $$;
CREATE TRIGGER aj_audit AFTER INSERT ON agent_journal.entries
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.aj_audit_fn();
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000f5', 0, '{"type": "D"}');
SELECT agent_journal.append_batch('00000000-0000-0000-0000-0000000000f5', 0, ARRAY['{}', '{}']::jsonb[]);
SELECT * FROM public.aj_audit;
DROP TRIGGER aj_audit ON agent_journal.entries;
SELECT agent_journal.forget_agent('00000000-0000-0000-0000-0000000000f5');

-- 9. labels that cannot be indexed: 54000 naming labels, not a btree error
SELECT public.aj_hard_err($$SELECT agent_journal.gauge_set('regress_long_label', 1, jsonb_build_object('v', repeat('x', 2900)))$$);
SELECT public.aj_hard_err($$SELECT agent_journal.counter_add('regress_long_label_total', 1, jsonb_build_object('v', repeat('x', 2900)))$$);
SELECT agent_journal.gauge_set('regress_long_label', 1, jsonb_build_object('v', repeat('x', 2000)));
DELETE FROM agent_journal.metric_families WHERE name = 'regress_long_label';

DELETE FROM agent_journal.snapshots;
DROP TABLE public.aj_audit;
DROP FUNCTION public.aj_audit_fn();
DO $$BEGIN EXECUTE format('REVOKE CREATE ON DATABASE %I FROM regress_aj_scr', current_database()); END$$;
SELECT agent_journal.revoke_access('regress_aj_scr', 'scraper');
DROP FUNCTION public.aj_hard_err(text);
DROP ROLE regress_aj_scr, "Regress_AJ_Alice", regress_aj_alice2, "regress_aj_team.a", "regress_aj_o'q";
