-- Upgrades: install the first release, write to it, then walk every
-- upgrade script with ALTER EXTENSION ... UPDATE; data survives.
\set VERBOSITY terse
DROP EXTENSION agent_journal;
CREATE EXTENSION agent_journal VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'agent_journal';
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e1', 0, '{"type": "Before"}');
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e1', 1, '{"type": "Before2"}', 1, 'k');
SELECT agent_journal.compact('00000000-0000-0000-0000-0000000000e1', 1);
SELECT count(*) FROM pg_proc WHERE proname = 'ingest_snapshot';
ALTER EXTENSION agent_journal UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'agent_journal';
-- 0.2.0: a writer role; replay is still the C function, served by this library
CREATE FUNCTION pg_temp.aj_upgrade_err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_aj_upgrade_writer;
RESET client_min_messages;
CREATE ROLE regress_aj_upgrade_writer;
SELECT agent_journal.grant_access('regress_aj_upgrade_writer', 'writer');
SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.oid = 'agent_journal.replay(uuid, bigint, bigint)'::regprocedure;
SET ROLE regress_aj_upgrade_writer;
SELECT sequence, kind FROM agent_journal.replay('00000000-0000-0000-0000-0000000000e1');
SELECT count(*) FROM agent_journal.replay('00000000-0000-0000-0000-0000000000e1', 1, 0);
RESET ROLE;
ALTER EXTENSION agent_journal UPDATE TO '0.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'agent_journal';
-- 0.3.0: replay is SQL (inlined into the caller's query); the writer
-- granted under 0.2.0 replays as before, with no new grant
SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.oid = 'agent_journal.replay(uuid, bigint, bigint)'::regprocedure;
SET ROLE regress_aj_upgrade_writer;
SELECT sequence, kind FROM agent_journal.replay('00000000-0000-0000-0000-0000000000e1');
SELECT count(*) FROM agent_journal.replay('00000000-0000-0000-0000-0000000000e1', 1, 0);
SELECT pg_temp.aj_upgrade_err($$SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-0000000000e1', 0)$$);
RESET ROLE;
-- 0.3.0 keeps roles as regrole; this library serves that schema: a bound
-- agent, an admin grant, a mixed-case role
SET client_min_messages = warning;
DROP ROLE IF EXISTS "Regress_AJ_Upgrade_Owner", regress_aj_upgrade_owner;
RESET client_min_messages;
CREATE ROLE "Regress_AJ_Upgrade_Owner";
CREATE ROLE regress_aj_upgrade_owner;
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000e2', '"Regress_AJ_Upgrade_Owner"'::regrole);
SELECT agent_journal.grant_access('regress_aj_upgrade_owner', 'admin');
SET ROLE regress_aj_upgrade_writer;
SELECT pg_temp.aj_upgrade_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e2', 0, '{}')$$);
RESET ROLE;
SET ROLE "Regress_AJ_Upgrade_Owner";
SELECT pg_temp.aj_upgrade_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e2', 0, '{}')$$);
RESET ROLE;
ALTER EXTENSION agent_journal UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'agent_journal';
-- 0.4.0: roles by their exact names; the binding and the grant carried over
SELECT format_type(atttypid, atttypmod) AS owner_type FROM pg_attribute
WHERE attrelid = 'agent_journal.agent_state'::regclass AND attname = 'owner';
SELECT agent_id, owner FROM agent_journal.agent_state WHERE owner IS NOT NULL;
SELECT role, access FROM agent_journal.access_grants ORDER BY 1, 2;
SET ROLE regress_aj_upgrade_writer;
SELECT pg_temp.aj_upgrade_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e2', 0, '{}')$$);
RESET ROLE;
SET ROLE regress_aj_upgrade_owner;  -- the admin granted under 0.3.0 binds by exact name
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000e2', 'Regress_AJ_Upgrade_Owner');
SELECT count(*) AS unresolved FROM agent_journal.unresolved_roles;
RESET ROLE;
SELECT agent_journal.revoke_access('regress_aj_upgrade_owner', 'admin');
SELECT agent_journal.revoke_access('regress_aj_upgrade_writer', 'writer');
SELECT agent_journal.forget_agent('00000000-0000-0000-0000-0000000000e2');
DROP ROLE regress_aj_upgrade_writer, regress_aj_upgrade_owner, "Regress_AJ_Upgrade_Owner";
-- the journal is intact and continues; keys still answer
SELECT sequence, kind FROM agent_journal.replay('00000000-0000-0000-0000-0000000000e1');
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e1', 1, '{"type": "Before2"}', NULL, 'k');
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e1', 2, '{"type": "After"}', 2);
-- the new objects work
SELECT agent_journal.counter_add('upgraded_total');
SELECT line FROM agent_journal.prometheus, regexp_split_to_table(exposition, E'\n') line
WHERE line LIKE 'agent_journal_appended%' OR line LIKE 'upgraded_total%';
-- every extension object is the same as in a fresh install of the default version
CREATE TEMP TABLE upgraded AS
SELECT pg_describe_object(classid, objid, objsubid) AS obj FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'agent_journal');
DROP EXTENSION agent_journal;
CREATE EXTENSION agent_journal;
SELECT obj AS only_in_fresh FROM (SELECT pg_describe_object(classid, objid, objsubid) AS obj FROM pg_depend
  WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
    AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'agent_journal')) f
EXCEPT SELECT obj FROM upgraded;
SELECT obj AS only_in_upgraded FROM upgraded EXCEPT
SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'agent_journal');
SELECT count(*) AS objects FROM upgraded;
