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
-- 0.5.0: append, append_batch and compact gain a last argument, lease.
-- Every role keeps EXECUTE (grant_access's writer, and a role granted
-- append directly), no old overload is left, and the kept grants are not
-- initial privileges (pg_dump keeps them; tests/scripts/dump_restore.sh).
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_aj_upgrade_direct;
RESET client_min_messages;
CREATE ROLE regress_aj_upgrade_direct;
GRANT USAGE ON SCHEMA agent_journal TO regress_aj_upgrade_direct;
GRANT EXECUTE ON FUNCTION agent_journal.append(uuid, integer, jsonb, bigint, text) TO regress_aj_upgrade_direct;
ALTER EXTENSION agent_journal UPDATE TO '0.5.0';
SELECT extversion FROM pg_extension WHERE extname = 'agent_journal';
SELECT p.oid::regprocedure AS fenced_writer FROM pg_proc p
WHERE p.pronamespace = 'agent_journal'::regnamespace AND p.proname IN ('append', 'append_batch', 'compact')
ORDER BY 1::text;
SELECT r.rolname, f.fn, has_function_privilege(r.oid, f.fn, 'EXECUTE') AS may
FROM pg_roles r,
     (VALUES ('agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)'),
             ('agent_journal.append_batch(uuid, integer, jsonb[], bigint, text, bigint)'),
             ('agent_journal.compact(uuid, bigint, bigint)'),
             ('agent_journal.claim_agent(uuid, text, interval)'),
             ('agent_journal.renew_lease(uuid, bigint, interval)'),
             ('agent_journal.release_agent(uuid, bigint)'),
             ('agent_journal.save_state(uuid, jsonb, bigint, bigint)'),
             ('agent_journal.fork_agent(uuid, bigint, uuid)'),
             ('agent_journal.set_retention(uuid, bigint, interval, boolean)'),
             ('agent_journal.resume(uuid, bigint)'),
             ('agent_journal.entry_by_key(uuid, text)'),
             ('agent_journal.replay_backward(uuid, bigint, bigint, text[])')) f(fn)
WHERE r.rolname IN ('regress_aj_upgrade_writer', 'regress_aj_upgrade_direct', 'regress_aj_upgrade_owner')
ORDER BY 1, 2;
-- initial privileges of what the update created: the owner's alone
SELECT i.objoid::regprocedure AS fn, a.grantee::regrole AS initial_grantee
FROM pg_init_privs i, aclexplode(i.initprivs) a
WHERE i.classoid = 'pg_proc'::regclass
  AND i.objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'agent_journal'::regnamespace
                   AND proname IN ('append', 'append_batch', 'compact', 'claim_agent', 'renew_lease', 'release_agent',
                                   'save_state', 'fork_agent', 'set_retention', 'resume', 'entry_by_key', 'replay_backward'))
  AND a.grantee <> (SELECT proowner FROM pg_proc WHERE oid = i.objoid)
ORDER BY 1::text;
SET ROLE regress_aj_upgrade_writer;
SELECT agent_journal.claim_agent('00000000-0000-0000-0000-0000000000e3', 'upgrade-worker') AS lease \gset
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e3', 0, '{"type": "Leased"}', lease => :lease);
SELECT agent_journal.append_batch('00000000-0000-0000-0000-0000000000e3', 1, ARRAY['{"type": "B"}']::jsonb[], lease => :lease);
SELECT left(pg_temp.aj_upgrade_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e3', 2, '{}')$$), 5) AS no_lease;
SELECT agent_journal.compact('00000000-0000-0000-0000-0000000000e3', 1, :lease);
SELECT agent_journal.save_state('00000000-0000-0000-0000-0000000000e3', '{"total": 2}', 2, :lease);
SELECT sequence, kind FROM agent_journal.resume('00000000-0000-0000-0000-0000000000e3');
SELECT sequence, kind FROM agent_journal.replay_backward('00000000-0000-0000-0000-0000000000e3', NULL, 1);
SELECT agent_journal.release_agent('00000000-0000-0000-0000-0000000000e3', :lease);
RESET ROLE;
-- 0.6.0: counter_add and histogram_observe gain a last argument, exemplar;
-- delete_series is new. Every role keeps EXECUTE (the writer level and a
-- direct grant), no old overload is left, the kept grants are not initial
-- privileges, and the journal's counters carry on from the walk they were
-- (tallies seeded by the update): nothing goes down.
GRANT EXECUTE ON FUNCTION agent_journal.counter_add(text, double precision, jsonb, text) TO regress_aj_upgrade_direct;
SELECT agent_journal.counter_add('upgraded_before_total', 2, '{"k": "v"}');
CREATE TEMP TABLE journal_before AS
SELECT name, value FROM agent_journal.metric_samples
WHERE name ~ '^agent_journal_(agents|live_entries|appended_entries_total|compacted_entries_total)$';
SELECT name, value FROM journal_before ORDER BY 1;
ALTER EXTENSION agent_journal UPDATE TO '0.6.0';
SELECT b.name, b.value AS before, a.value AS after
FROM journal_before b JOIN agent_journal.metric_samples a USING (name) ORDER BY 1;
SELECT p.oid::regprocedure AS recreated FROM pg_proc p
WHERE p.pronamespace = 'agent_journal'::regnamespace AND p.proname IN ('counter_add', 'histogram_observe', 'delete_series')
ORDER BY 1::text;
SELECT r.rolname, f.fn, has_function_privilege(r.oid, f.fn, 'EXECUTE') AS may
FROM pg_roles r,
     (VALUES ('agent_journal.counter_add(text, double precision, jsonb, text, jsonb)'),
             ('agent_journal.histogram_observe(text, double precision, jsonb, double precision[], text, jsonb)'),
             ('agent_journal.delete_series(text, jsonb)')) f(fn)
WHERE r.rolname IN ('regress_aj_upgrade_writer', 'regress_aj_upgrade_direct', 'regress_aj_upgrade_owner')
ORDER BY 1, 2;
SELECT i.objoid::regprocedure AS fn, a.grantee::regrole AS initial_grantee
FROM pg_init_privs i, aclexplode(i.initprivs) a
WHERE i.classoid = 'pg_proc'::regclass
  AND i.objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'agent_journal'::regnamespace
                   AND proname IN ('counter_add', 'histogram_observe', 'delete_series'))
  AND a.grantee <> (SELECT proowner FROM pg_proc WHERE oid = i.objoid)
ORDER BY 1::text;
-- a series from before the update renders with _created (its family's
-- creation) and takes exemplars
SELECT count(*) AS created_lines FROM agent_journal.openmetrics, regexp_split_to_table(exposition, E'\n') line
WHERE line LIKE 'upgraded_before_created{k="v"} %';
SET ROLE regress_aj_upgrade_direct;
SELECT agent_journal.counter_add('upgraded_before_total', 1, '{"k": "v"}', exemplar => '{"trace_id": "t1"}');
RESET ROLE;
SET ROLE regress_aj_upgrade_writer;
SELECT agent_journal.histogram_observe('upgraded_seconds', 0.2, exemplar => '{"sequence": "1"}');
SELECT agent_journal.delete_series('upgraded_seconds');
RESET ROLE;
SELECT count(*) AS exemplar_lines FROM agent_journal.openmetrics, regexp_split_to_table(exposition, E'\n') line
WHERE line LIKE 'upgraded_before_total{k="v"} 3.0 # {trace_id="t1"} 1.0 %';
SET ROLE regress_aj_upgrade_direct;
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e3', 2, '{"type": "Direct"}');
RESET ROLE;
-- 0.7.0: the change feed. The entries from before it are in the feed (a
-- consumer from the beginning gets each agent's live entries in order);
-- whoever may replay may use it (grants carried from replay's), and the
-- grants are ordinary ones, not initial privileges.
ALTER EXTENSION agent_journal UPDATE TO '0.7.0';
SELECT r.rolname, f.fn, has_function_privilege(r.oid, f.fn, 'EXECUTE') AS may
FROM pg_roles r,
     (VALUES ('agent_journal.subscribe(text, boolean)'), ('agent_journal.read_feed(text, bigint)'),
             ('agent_journal.ack_feed(text, bigint)'), ('agent_journal.unsubscribe(text)')) f(fn)
WHERE r.rolname IN ('regress_aj_upgrade_writer', 'regress_aj_upgrade_direct', 'regress_aj_upgrade_owner')
ORDER BY 1, 2;
SELECT r.rolname, has_table_privilege(r.oid, 'agent_journal.feed_consumers', 'SELECT') AS sees_consumers
FROM pg_roles r
WHERE r.rolname IN ('regress_aj_upgrade_writer', 'regress_aj_upgrade_direct', 'regress_aj_upgrade_owner')
ORDER BY 1;
SELECT count(*) AS initial_feed_grants
FROM pg_init_privs i, aclexplode(i.initprivs) a
WHERE ((i.classoid = 'pg_proc'::regclass AND i.objoid IN (SELECT oid FROM pg_proc
          WHERE pronamespace = 'agent_journal'::regnamespace
            AND proname IN ('subscribe', 'read_feed', 'ack_feed', 'unsubscribe', 'feed_consumers_fn'))
          AND a.grantee <> (SELECT proowner FROM pg_proc WHERE oid = i.objoid))
    OR (i.classoid = 'pg_class'::regclass AND i.objoid = 'agent_journal.feed_consumers'::regclass
          AND a.grantee <> (SELECT relowner FROM pg_class WHERE oid = i.objoid)));
SELECT agent_id, first_sequence, last_sequence FROM agent_journal.feed ORDER BY last_position;
SET ROLE regress_aj_upgrade_writer;
SELECT agent_journal.subscribe('upgrade_consumer', true);
SELECT agent_id, sequence, kind FROM agent_journal.read_feed('upgrade_consumer');
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000e3', 3, '{"type": "AfterFeed"}');
SELECT agent_id, sequence, kind FROM agent_journal.read_feed('upgrade_consumer')
WHERE kind = 'AfterFeed';
SELECT consumer, owner, lag_entries FROM agent_journal.feed_consumers;
SELECT agent_journal.unsubscribe('upgrade_consumer');
RESET ROLE;
DROP OWNED BY regress_aj_upgrade_direct;
DROP ROLE regress_aj_upgrade_direct;
SELECT agent_journal.forget_agent('00000000-0000-0000-0000-0000000000e3');
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
-- 0.8.0: distribute() for Citus; only the superuser may run it, and
-- without Citus it says what it needs
ALTER EXTENSION agent_journal UPDATE TO '0.8.0';
CREATE ROLE regress_aj_upgrade_late;
SELECT agent_journal.grant_access('regress_aj_upgrade_late', 'admin');
SET ROLE regress_aj_upgrade_late;
\set VERBOSITY sqlstate
SELECT agent_journal.distribute();
\set VERBOSITY default
RESET ROLE;
SELECT agent_journal.revoke_access('regress_aj_upgrade_late', 'admin');
DROP ROLE regress_aj_upgrade_late;
\set VERBOSITY sqlstate
SELECT agent_journal.distribute();
SELECT agent_journal.distribute(0);
\set VERBOSITY default
SELECT agent_journal.distribute();
-- 0.9.0: distribute() also makes access_grants a reference table and
-- refuses while the feed has consumers; without Citus it still says what
-- it needs, before anything else
ALTER EXTENSION agent_journal UPDATE TO '0.9.0';
SELECT agent_journal.subscribe('regress_upgrade_consumer');
\set VERBOSITY sqlstate
SELECT agent_journal.distribute();
\set VERBOSITY default
SELECT agent_journal.unsubscribe('regress_upgrade_consumer');
-- 0.10.0: appends note themselves in the unlogged feed_appends; a note
-- written by 0.9.0 (in feed_pending) still reaches the feed, and the
-- marker row says that the notes were not lost
SELECT agent_journal.append('00000000-0000-0000-0000-0000000a0100', 0, '{"type": "Before"}');
ALTER EXTENSION agent_journal UPDATE TO '0.10.0';
SELECT agent_journal.append('00000000-0000-0000-0000-0000000a0100', 0, '{"type": "After"}');
SELECT relpersistence, (SELECT count(*) FROM agent_journal.feed_pending) AS pending,
       (SELECT string_agg(first_sequence || '-' || last_sequence, ',' ORDER BY first_sequence)
        FROM agent_journal.feed_appends) AS appends
FROM pg_class WHERE oid = 'agent_journal.feed_appends'::regclass;
SELECT agent_journal.subscribe('regress_upgrade_consumer', true);
SELECT sequence, kind FROM agent_journal.read_feed('regress_upgrade_consumer')
WHERE agent_id = '00000000-0000-0000-0000-0000000a0100' ORDER BY position;
SELECT agent_journal.unsubscribe('regress_upgrade_consumer');
-- 0.11.0: feed_appends.counted; a note written before the update was
-- counted by its writer (true), as are the notes of appends that are not
-- preloaded (here): the count stays the journal's
SELECT sum(value) AS appended_before FROM agent_journal.tallies WHERE name = 'journal_appended' \gset
SELECT agent_journal.append('00000000-0000-0000-0000-0000000a0100', 0, '{"type": "Before11"}');
ALTER EXTENSION agent_journal UPDATE TO '0.11.0';
SELECT agent_journal.append('00000000-0000-0000-0000-0000000a0100', 0, '{"type": "After11"}');
SELECT first_sequence, last_sequence, counted FROM agent_journal.feed_appends ORDER BY first_sequence;
SELECT sum(value) - :appended_before AS appended_since FROM agent_journal.tallies WHERE name = 'journal_appended';
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
