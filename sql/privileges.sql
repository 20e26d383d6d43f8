-- Privileges and tenants: PUBLIC gets nothing; grant_access levels;
-- agents bound to a role; row-level security for direct SQL.
\set VERBOSITY terse
CREATE FUNCTION public.aj_err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$;
GRANT EXECUTE ON FUNCTION public.aj_err(text) TO PUBLIC;
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_aj_alice, regress_aj_bob, regress_aj_reader, regress_aj_scraper,
  regress_aj_admin, regress_aj_nobody, regress_aj_temp, regress_aj_alice_team;
RESET client_min_messages;
CREATE ROLE regress_aj_alice LOGIN;
CREATE ROLE regress_aj_bob LOGIN;
CREATE ROLE regress_aj_reader LOGIN;
CREATE ROLE regress_aj_scraper LOGIN;
CREATE ROLE regress_aj_admin LOGIN;
CREATE ROLE regress_aj_nobody LOGIN;
CREATE ROLE regress_aj_temp;
CREATE ROLE regress_aj_alice_team LOGIN IN ROLE regress_aj_alice;

-- after CREATE EXTENSION, PUBLIC can do nothing (no schema usage; the three
-- objects inlined replay uses answer only roles that may execute replay);
-- nothing is SECURITY DEFINER
SELECT has_schema_privilege('public', 'agent_journal', 'USAGE') AS public_usage;
SELECT relname AS public_tables FROM pg_class
WHERE relnamespace = 'agent_journal'::regnamespace AND has_table_privilege('public', oid, 'SELECT')
ORDER BY 1;
SELECT proname AS public_functions FROM pg_proc
WHERE pronamespace = 'agent_journal'::regnamespace AND has_function_privilege('public', oid, 'EXECUTE')
ORDER BY 1;
SELECT count(*) AS security_definer FROM pg_proc WHERE pronamespace = 'agent_journal'::regnamespace AND prosecdef;
SET ROLE regress_aj_nobody;
SELECT aj_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000a1', 0, '{}')$$);
SELECT aj_err($$SELECT * FROM agent_journal.prometheus$$);
SELECT aj_err($$SELECT * FROM agent_journal.entries$$);
SELECT aj_err($$SELECT * FROM agent_journal.replay_rows$$);
RESET ROLE;

-- grant_access levels
SELECT agent_journal.grant_access('regress_aj_alice', 'writer');
SELECT agent_journal.grant_access('regress_aj_bob', 'writer');
SELECT agent_journal.grant_access('regress_aj_reader', 'reader');
SELECT agent_journal.grant_access('regress_aj_scraper', 'scraper');
SELECT agent_journal.grant_access('regress_aj_admin', 'admin');
SELECT agent_journal.grant_access('regress_aj_alice', 'writer');  -- idempotent
SELECT aj_err($$SELECT agent_journal.grant_access('regress_aj_bob', 'root')$$);
SELECT aj_err($$SELECT agent_journal.grant_access('regress_aj_nosuchrole', 'reader')$$);
SELECT aj_err($$SELECT agent_journal.grant_access(NULL, 'reader')$$);
SELECT role, access FROM agent_journal.access_grants ORDER BY 1::text, 2;

-- writers: a real login as alice
\c - regress_aj_alice
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000a1', 0, '{"type": "AliceStarted"}');
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000b1', 0, '{"type": "Shared"}');
SELECT agent_journal.counter_add('alice_steps_total');
SELECT aj_err($$SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000a1', 'regress_aj_alice')$$);
SELECT aj_err($$SELECT * FROM agent_journal.entries$$);
SELECT aj_err($$INSERT INTO agent_journal.entries VALUES ('00000000-0000-0000-0000-0000000000a1', 99, 0, 'x', now(), '{}')$$);
SELECT aj_err($$SELECT agent_journal.grant_access('regress_aj_alice', 'admin')$$);
-- the scraper sees the exposition, no journal contents
\c - regress_aj_scraper
SELECT count(*) > 0 AS has_lines FROM agent_journal.prometheus, regexp_split_to_table(exposition, E'\n') l WHERE l LIKE 'alice_steps_total%';
SELECT count(*) > 0 FROM agent_journal.metric_samples;
SELECT agent_journal.otlp_json() ? 'resourceMetrics';
SELECT aj_err($$SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-0000000000a1')$$);
SELECT aj_err($$SELECT * FROM agent_journal.agents$$);
SELECT aj_err($$SELECT * FROM agent_journal.entries$$);
SELECT aj_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000a1', 0, '{}')$$);
-- nor through replay's helpers (it has USAGE on the schema, not replay)
SELECT count(*) FROM agent_journal.replay_rows;
SELECT agent_journal.may_replay('00000000-0000-0000-0000-0000000000a1');
SELECT aj_err($$SELECT agent_journal.replay_guard('00000000-0000-0000-0000-0000000000a1', 1, NULL)$$);

-- an admin binds agent a1 to alice
\c - regress_aj_admin
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000a1', 'regress_aj_alice');
-- binding before the first append works too
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000a2', 'regress_aj_alice');
SELECT agent_id, owner FROM agent_journal.agent_state ORDER BY 1;

-- bob (another tenant) can neither read nor write alice's agents ...
\c - regress_aj_bob
SELECT aj_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000a1', 1, '{}')$$);
SELECT aj_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000a2', 1, '{}')$$);
SELECT aj_err($$SELECT agent_journal.append_batch('00000000-0000-0000-0000-0000000000a1', 1, ARRAY['{}']::jsonb[])$$);
SELECT aj_err($$SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-0000000000a1')$$);
SELECT aj_err($$SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-0000000000a1', 1, 0)$$);
-- (a query the planner proves reads no row of it skips the check, and gets no rows)
SELECT aj_err($$SELECT count(*) FROM agent_journal.replay('00000000-0000-0000-0000-0000000000a1') r WHERE false$$);
-- replay's view hides alice's agent from bob
SELECT count(*) FROM agent_journal.replay_rows WHERE agent_id = '00000000-0000-0000-0000-0000000000a1';
SELECT count(*) > 0 AS sees_shared FROM agent_journal.replay_rows WHERE agent_id = '00000000-0000-0000-0000-0000000000b1';
SELECT aj_err($$SELECT agent_journal.latest_sequence('00000000-0000-0000-0000-0000000000a1')$$);
SELECT aj_err($$SELECT agent_journal.last_completed_iteration('00000000-0000-0000-0000-0000000000a1')$$);
SELECT aj_err($$SELECT agent_journal.observability('00000000-0000-0000-0000-0000000000a1')$$);
SELECT aj_err($$SELECT agent_journal.compact('00000000-0000-0000-0000-0000000000a1')$$);
SELECT aj_err($$SELECT agent_journal.forget_agent('00000000-0000-0000-0000-0000000000a1')$$);
-- ... and a keyed retry does not leak the original sequence
SELECT aj_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000a1', 0, '{"type": "AliceStarted"}', NULL, 'k')$$);
-- unbound agents stay shared
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000b1', 1, '{"type": "BobToo"}');
-- ... alice and her team may
\c - regress_aj_alice
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000a1', 1, '{"type": "AliceAgain"}');
SELECT sequence, kind FROM agent_journal.replay('00000000-0000-0000-0000-0000000000a1');
\c - regress_aj_alice_team
SELECT agent_journal.latest_sequence('00000000-0000-0000-0000-0000000000a1');
-- SET ROLE: the check is against the current user, not the login
\c - postgres
SET ROLE regress_aj_bob;
SELECT aj_err($$SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-0000000000a1')$$);
SET ROLE regress_aj_alice;
SELECT count(*) FROM agent_journal.replay('00000000-0000-0000-0000-0000000000a1');
RESET ROLE;
-- one transaction, one session: the per-call-site answers of replay's
-- filter follow the user and the command (a bind in between changes what
-- bob sees)
BEGIN;
SET LOCAL ROLE regress_aj_bob;
SELECT count(*) FROM agent_journal.replay_rows WHERE agent_id = '00000000-0000-0000-0000-0000000000b1';
SET LOCAL ROLE regress_aj_alice;
SELECT count(*) FROM agent_journal.replay_rows WHERE agent_id IN ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000b1');
RESET ROLE;
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000b1', 'regress_aj_alice');
SET LOCAL ROLE regress_aj_bob;
SELECT count(*) FROM agent_journal.replay_rows WHERE agent_id = '00000000-0000-0000-0000-0000000000b1';
SELECT aj_err($$SELECT count(*) FROM agent_journal.replay('00000000-0000-0000-0000-0000000000b1', 1, 0)$$);
ROLLBACK;
-- a leaky function of the caller's cannot see rows the view's filter drops
-- (security barrier): it is called only for the rows bob may replay
CREATE FUNCTION public.aj_leak(a uuid) RETURNS boolean LANGUAGE plpgsql COST 0.0001 AS $$
BEGIN RAISE NOTICE 'saw %', a; RETURN true; END $$;
GRANT EXECUTE ON FUNCTION public.aj_leak(uuid) TO PUBLIC;
SET ROLE regress_aj_bob;
SELECT count(*) FROM agent_journal.replay_rows WHERE public.aj_leak(agent_id)
  AND agent_id IN ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000b1');
RESET ROLE;
DROP FUNCTION public.aj_leak(uuid);

-- direct SQL: row-level security shows a reader only what it may see
\c - regress_aj_reader
SELECT agent_id, sequence, kind FROM agent_journal.entries ORDER BY 1, 2;
SELECT agent_id, latest_sequence FROM agent_journal.agents ORDER BY 1;
SELECT aj_err($$SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-0000000000a1')$$);
SELECT aj_err($$DELETE FROM agent_journal.entries$$);
\c - postgres
GRANT regress_aj_alice TO regress_aj_reader;
\c - regress_aj_reader
SELECT agent_id, sequence, kind FROM agent_journal.entries ORDER BY 1, 2;
\c - postgres
REVOKE regress_aj_alice FROM regress_aj_reader;

-- admins see everything; an agent whose owner role is dropped stays
-- readable by admins (and only by them)
SELECT agent_journal.append('00000000-0000-0000-0000-0000000000c1', 0, '{"type": "Orphan"}');
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000c1', 'regress_aj_temp');
DROP ROLE regress_aj_temp;
\c - regress_aj_admin
SELECT agent_id, count(*) FROM agent_journal.entries GROUP BY 1 ORDER BY 1;
SELECT sequence, kind FROM agent_journal.replay('00000000-0000-0000-0000-0000000000c1');
\c - regress_aj_alice
SELECT aj_err($$SELECT * FROM agent_journal.replay('00000000-0000-0000-0000-0000000000c1')$$);
\c - regress_aj_reader
SELECT count(*) FROM agent_journal.entries WHERE agent_id = '00000000-0000-0000-0000-0000000000c1';
-- admins can unbind
\c - regress_aj_admin
SELECT agent_journal.bind_agent('00000000-0000-0000-0000-0000000000c1', NULL);
\c - regress_aj_bob
SELECT count(*) FROM agent_journal.replay('00000000-0000-0000-0000-0000000000c1');

-- revoke_access takes a level back; levels still held stay
\c - postgres
SELECT agent_journal.grant_access('regress_aj_bob', 'scraper');
SELECT agent_journal.revoke_access('regress_aj_bob', 'writer');
SET ROLE regress_aj_bob;
SELECT aj_err($$SELECT agent_journal.append('00000000-0000-0000-0000-0000000000b1', 2, '{}')$$);
SELECT count(*) > 0 FROM agent_journal.prometheus;
RESET ROLE;
SELECT agent_journal.revoke_access('regress_aj_bob', 'scraper');
SELECT has_schema_privilege('regress_aj_bob', 'agent_journal', 'USAGE') AS bob_usage;

-- clean up
SELECT agent_journal.revoke_access(r, a) FROM (VALUES
  ('regress_aj_alice', 'writer'), ('regress_aj_reader', 'reader'),
  ('regress_aj_scraper', 'scraper'), ('regress_aj_admin', 'admin')) v(r, a);
SELECT count(*) AS grants_left FROM agent_journal.access_grants;
DROP ROLE regress_aj_alice_team, regress_aj_alice, regress_aj_bob, regress_aj_reader,
  regress_aj_scraper, regress_aj_admin, regress_aj_nobody;
DROP FUNCTION public.aj_err(text);
