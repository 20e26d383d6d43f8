-- agent_journal 0.8.0 -> 0.9.0: a distributed journal (Citus) forgets
-- agents, renders its own counts across the nodes and keeps the access
-- levels on every node.
-- Upgrade script (not a test): lives in extension/, installed by `make install`.
\echo Use "ALTER EXTENSION agent_journal UPDATE TO '0.9.0'" to load this file. \quit

-- distribute(), as in 0.8.0, and also (re-run it after this update on a
-- journal distributed by 0.8.0):
--  * access_grants becomes a reference table (grant_access on the
--    coordinator makes an admin on every node);
--  * it refuses while the change feed has consumers, and empties the
--    feed's tables: a distributed journal has no feed;
--  * replay_backward becomes a C function on every node, as replay did
--    (Citus cannot plan the inlined SQL function).
-- Nothing in this script touches a table: it runs alike on a journal
-- that is distributed and on one that is not (Citus runs ALTER EXTENSION
-- ... UPDATE on every node).
CREATE OR REPLACE FUNCTION agent_journal.distribute(shard_count integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  t text;
  anchor text := NULL;
  on_coordinator boolean;
  f pg_catalog.regprocedure;
  libs text[];
  swap text;
  node record;
BEGIN
  -- Citus moves the tables only for their owner; an agent_journal admin
  -- (who may execute every function) gets this error rather than Citus's
  IF NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r
          WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
    RAISE EXCEPTION 'agent_journal.distribute() must be run by a superuser'
      USING ERRCODE = '42501';
  END IF;
  IF shard_count IS NOT NULL AND shard_count OPERATOR(pg_catalog.<) 1 THEN
    RAISE EXCEPTION 'shard_count must be at least 1, not %', shard_count USING ERRCODE = '22023';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
    RAISE EXCEPTION 'agent_journal.distribute() needs the citus extension in this database'
      USING ERRCODE = '55000', HINT = 'CREATE EXTENSION citus, add the workers, then call it again.';
  END IF;
  EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO on_coordinator;
  IF NOT on_coordinator THEN
    RAISE EXCEPTION 'agent_journal.distribute() runs on the Citus coordinator'
      USING ERRCODE = '55000';
  END IF;
  -- A distributed journal has no change feed (its functions refuse, and
  -- the writers note nothing for it): a consumer would silently stop
  -- getting entries, so distribute() refuses while there is one. The
  -- feed's rows name agents that forget_agent, run on their nodes, could
  -- no longer reach: they go.
  -- 0.9.0: agent_journal must be loaded after citus on every node (its
  -- planner hook refuses a NULL agent before Citus's planner, which
  -- crashes on one, sees the call)
  FOR node IN EXECUTE 'SELECT ''coordinator'' AS nodename, 0 AS nodeport, true AS success, '
                      'pg_catalog.current_setting(''shared_preload_libraries'') AS result '
                      'UNION ALL SELECT nodename, nodeport, success, result '
                      'FROM pg_catalog.run_command_on_workers(''SHOW shared_preload_libraries'')' LOOP
    libs := pg_catalog.string_to_array(
      pg_catalog.translate(node.result, ' "', ''), ',');
    IF NOT node.success OR pg_catalog.array_position(libs, 'agent_journal') IS NULL
       OR pg_catalog.array_position(libs, 'agent_journal') OPERATOR(pg_catalog.<)
          pg_catalog.array_position(libs, 'citus') THEN
      RAISE EXCEPTION 'agent_journal.distribute(): agent_journal is not loaded after citus on %',
        CASE WHEN node.nodeport OPERATOR(pg_catalog.=) 0 THEN 'the coordinator'
             ELSE node.nodename OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||) node.nodeport END
        USING ERRCODE = '55000',
              DETAIL = pg_catalog.format('shared_preload_libraries is %L there.', node.result),
              HINT = 'Set shared_preload_libraries = ''citus,agent_journal'' on every node and restart them: '
                     'Citus''s planner crashes on a call with a NULL agent_id, which agent_journal refuses first.';
    END IF;
  END LOOP;
  -- one connection per node for the rest of the transaction: Citus refuses function
  -- and table commands after a parallel multi-shard change (the feed's
  -- DELETE below, on a journal distributed before)
  PERFORM pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);
  IF EXISTS (SELECT FROM agent_journal.feed_subscriptions) THEN
    RAISE EXCEPTION 'agent_journal.distribute(): the change feed has consumers, and a distributed journal has no feed'
      USING ERRCODE = '55000',
            HINT = 'Drain them and call agent_journal.unsubscribe() for each (see the feed_consumers view), then call distribute() again.';
  END IF;
  DELETE FROM agent_journal.feed_pending;
  DELETE FROM agent_journal.feed;
  -- replay reads through Citus as a C function (the inlined SQL one is a
  -- parameterized query Citus cannot plan); on the agent's node it scans
  -- the shard, elsewhere it pages through Citus. On every node: Citus does
  -- not propagate changes to an extension's functions.
  swap := $swap$DO $do$ BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_proc p
               WHERE p.oid OPERATOR(pg_catalog.=)
                     'agent_journal.replay(pg_catalog.uuid, pg_catalog.int8, pg_catalog.int8)'::pg_catalog.regprocedure
                 AND p.prolang OPERATOR(pg_catalog.<>) (SELECT l.oid FROM pg_catalog.pg_language l
                                                         WHERE l.lanname OPERATOR(pg_catalog.=) 'c')) THEN
      CREATE OR REPLACE FUNCTION agent_journal.replay(
          agent_id uuid, from_sequence bigint DEFAULT 1, max_entries bigint DEFAULT NULL)
      RETURNS TABLE (sequence bigint, iteration integer, kind text,
                     recorded_at timestamptz, event jsonb)
      AS '$libdir/agent_journal', 'aj_replay'
      LANGUAGE C STABLE PARALLEL UNSAFE ROWS 1000;
    END IF;
    -- 0.9.0: replay_backward too
    IF EXISTS (SELECT FROM pg_catalog.pg_proc p
               WHERE p.oid OPERATOR(pg_catalog.=)
                     'agent_journal.replay_backward(pg_catalog.uuid, pg_catalog.int8, pg_catalog.int8, pg_catalog.text[])'::pg_catalog.regprocedure
                 AND p.prolang OPERATOR(pg_catalog.<>) (SELECT l.oid FROM pg_catalog.pg_language l
                                                         WHERE l.lanname OPERATOR(pg_catalog.=) 'c')) THEN
      CREATE OR REPLACE FUNCTION agent_journal.replay_backward(
          agent_id uuid, before_sequence bigint DEFAULT NULL, max_entries bigint DEFAULT NULL,
          kinds text[] DEFAULT NULL)
      RETURNS TABLE (sequence bigint, iteration integer, kind text,
                     recorded_at timestamptz, event jsonb)
      AS '$libdir/agent_journal', 'aj_replay_backward'
      LANGUAGE C STABLE PARALLEL UNSAFE ROWS 1000;
    END IF;
  END $do$$swap$;
  EXECUTE swap;
  FOR node IN EXECUTE 'SELECT nodename, nodeport, success, result FROM pg_catalog.run_command_on_workers($1)'
      USING 'SET citus.enable_ddl_propagation TO off; SET search_path = pg_catalog, pg_temp; '
            OPERATOR(pg_catalog.||) swap LOOP
    IF NOT node.success THEN
      RAISE EXCEPTION 'agent_journal.distribute(): worker %:% failed: %', node.nodename, node.nodeport, node.result
        USING ERRCODE = '55000';
    END IF;
  END LOOP;
  FOREACH t IN ARRAY ARRAY['agent_state', 'entries', 'idempotency_keys', 'saved_states',
                           'lease_graph', 'feed_pending'] LOOP
    IF pg_catalog.to_regclass('agent_journal.' OPERATOR(pg_catalog.||) t) IS NULL THEN
      CONTINUE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                   WHERE p.logicalrelid OPERATOR(pg_catalog.=)
                         ('agent_journal.' OPERATOR(pg_catalog.||) t)::pg_catalog.regclass) THEN
      IF anchor IS NULL THEN
        PERFORM pg_catalog.create_distributed_table(
          ('agent_journal.' OPERATOR(pg_catalog.||) t)::pg_catalog.regclass, 'agent_id',
          shard_count => shard_count);
      ELSE
        PERFORM pg_catalog.create_distributed_table(
          ('agent_journal.' OPERATOR(pg_catalog.||) t)::pg_catalog.regclass, 'agent_id',
          colocate_with => anchor);
      END IF;
    END IF;
    -- the shell keeps nothing, not even the pages of rows written and
    -- removed before the table was distributed (0.8.0 left those)
    IF pg_catalog.pg_relation_size(('agent_journal.' OPERATOR(pg_catalog.||) t)::pg_catalog.regclass)
       OPERATOR(pg_catalog.>) 0 THEN
      PERFORM pg_catalog.truncate_local_data_after_distributing_table(
        ('agent_journal.' OPERATOR(pg_catalog.||) t)::pg_catalog.regclass);
    END IF;
    IF anchor IS NULL THEN anchor := 'agent_journal.' OPERATOR(pg_catalog.||) t; END IF;
  END LOOP;
  -- 0.9.0: the access levels hold on every node (an admin is one
  -- wherever the call runs): access_grants becomes a reference table,
  -- written through the coordinator and read locally everywhere.
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                 WHERE p.logicalrelid OPERATOR(pg_catalog.=) 'agent_journal.access_grants'::pg_catalog.regclass) THEN
    PERFORM pg_catalog.create_reference_table('agent_journal.access_grants'::pg_catalog.regclass);
  END IF;
  IF pg_catalog.pg_relation_size('agent_journal.access_grants'::pg_catalog.regclass) OPERATOR(pg_catalog.>) 0 THEN
    PERFORM pg_catalog.truncate_local_data_after_distributing_table('agent_journal.access_grants'::pg_catalog.regclass);
  END IF;
  -- Every C function whose first argument is the agent runs where the
  -- agent's shards are (force_delegation: also inside transaction blocks).
  FOR f IN SELECT p.oid::pg_catalog.regprocedure FROM pg_catalog.pg_proc p
            WHERE p.pronamespace OPERATOR(pg_catalog.=) 'agent_journal'::pg_catalog.regnamespace
              AND p.prolang OPERATOR(pg_catalog.=) (SELECT l.oid FROM pg_catalog.pg_language l
                                                     WHERE l.lanname OPERATOR(pg_catalog.=) 'c')
              AND p.pronargs OPERATOR(pg_catalog.>) 0
              AND p.proargtypes[0] OPERATOR(pg_catalog.=) 'pg_catalog.uuid'::pg_catalog.regtype
              AND p.proargnames[1] OPERATOR(pg_catalog.=) 'agent_id'
              AND p.prosrc OPERATOR(pg_catalog.<>) 'aj_replay_guard' LOOP
    PERFORM pg_catalog.create_distributed_function(f, '$1', colocate_with => anchor,
                                                   force_delegation => true);
  END LOOP;
END
$fn$;
COMMENT ON FUNCTION agent_journal.distribute(integer) IS
  'on a Citus coordinator: distribute the journal''s per-agent tables by agent_id, co-located, make access_grants a reference table, and run the per-agent functions where the agent''s shards are (idempotent)';

-- grant_access / revoke_access on a distributed journal's coordinator: Citus
-- propagates GRANTs on its own objects (the schema, the distributed tables,
-- the per-agent functions) with the transaction; the privileges on the
-- other functions and the views are also given on every worker, last, over
-- Citus's own connections (they commit on their own: what fails before
-- them is rolled back everywhere; reapply_access() gives them again).
-- commands[i] is a GRANT or REVOKE on object_types[i] (FUNCTION, TABLE or
-- SCHEMA) object_names[i]; those on Citus objects are left to Citus (a
-- second GRANT there would wait for the transaction's own, a deadlock).
CREATE FUNCTION agent_journal.on_workers(commands text[], object_types text[], object_names text[])
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  node record;
  todo text[] := ARRAY[]::text[];
  i integer;
  cls pg_catalog.regclass;
  obj pg_catalog.oid;
BEGIN
  IF commands IS NULL OR pg_catalog.cardinality(commands) OPERATOR(pg_catalog.=) 0
     OR NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
    RETURN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                 WHERE p.logicalrelid OPERATOR(pg_catalog.=) 'agent_journal.entries'::pg_catalog.regclass) THEN
    RETURN;
  END IF;
  FOR i IN 1 .. pg_catalog.cardinality(commands) LOOP
    CASE object_types[i]
      WHEN 'FUNCTION' THEN
        cls := 'pg_catalog.pg_proc'; obj := object_names[i]::pg_catalog.regprocedure;
      WHEN 'SCHEMA' THEN
        cls := 'pg_catalog.pg_namespace'; obj := object_names[i]::pg_catalog.regnamespace;
      ELSE
        cls := 'pg_catalog.pg_class'; obj := object_names[i]::pg_catalog.regclass;
    END CASE;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_dist_object o
                   WHERE o.classid OPERATOR(pg_catalog.=) cls AND o.objid OPERATOR(pg_catalog.=) obj)
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p
                       WHERE cls OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                         AND p.logicalrelid OPERATOR(pg_catalog.=) obj) THEN
      todo := todo OPERATOR(pg_catalog.||) commands[i];
    END IF;
  END LOOP;
  IF pg_catalog.cardinality(todo) OPERATOR(pg_catalog.=) 0 THEN
    RETURN;
  END IF;
  FOR node IN EXECUTE 'SELECT nodename, nodeport, success, result FROM pg_catalog.run_command_on_workers($1)'
      USING 'SET citus.enable_ddl_propagation TO off; '
            OPERATOR(pg_catalog.||) pg_catalog.array_to_string(todo, '; ') LOOP
    IF NOT node.success THEN
      RAISE EXCEPTION 'agent_journal: worker %:% refused the grants: %', node.nodename, node.nodeport, node.result
        USING ERRCODE = '55000';
    END IF;
  END LOOP;
END
$fn$;
COMMENT ON FUNCTION agent_journal.on_workers(text[], text[], text[]) IS
  'on a distributed journal''s coordinator: run the privilege commands Citus does not propagate on every worker too (grant_access, revoke_access)';
REVOKE ALL ON FUNCTION agent_journal.on_workers(text[], text[], text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION agent_journal.grant_access(role name, access text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  p record;
  cmds text[] := ARRAY[]::text[];
  types text[] := ARRAY[]::text[];
  names text[] := ARRAY[]::text[];
  cmd text;
BEGIN
  PERFORM agent_journal.check_access_args(role, access);
  cmd := pg_catalog.format('GRANT USAGE ON SCHEMA agent_journal TO %I', role);
  EXECUTE cmd;
  cmds := cmds OPERATOR(pg_catalog.||) cmd;
  types := types OPERATOR(pg_catalog.||) 'SCHEMA'::text;
  names := names OPERATOR(pg_catalog.||) 'agent_journal'::text;
  FOR p IN SELECT * FROM agent_journal.access_privileges(access) LOOP
    cmd := pg_catalog.format('GRANT %s ON %s %s TO %I', p.privilege, p.object_type, p.object_name, role);
    EXECUTE cmd;
    cmds := cmds OPERATOR(pg_catalog.||) cmd;
    types := types OPERATOR(pg_catalog.||) p.object_type;
    names := names OPERATOR(pg_catalog.||) p.object_name;
  END LOOP;
  INSERT INTO agent_journal.access_grants (role, access)
  VALUES (role::pg_catalog.text, access) ON CONFLICT DO NOTHING;
  PERFORM agent_journal.on_workers(cmds, types, names);
END
$fn$;

CREATE OR REPLACE FUNCTION agent_journal.revoke_access(role name, access text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  p record;
  cmds text[] := ARRAY[]::text[];
  types text[] := ARRAY[]::text[];
  names text[] := ARRAY[]::text[];
  cmd text;
BEGIN
  PERFORM agent_journal.check_access_args(role, access);
  DELETE FROM agent_journal.access_grants g
  WHERE g.role OPERATOR(pg_catalog.=) revoke_access.role::pg_catalog.text
    AND g.access OPERATOR(pg_catalog.=) revoke_access.access;
  -- Revoke this level's privileges, then give back those that another
  -- level the role still holds includes.
  FOR p IN SELECT * FROM agent_journal.access_privileges(access) LOOP
    cmd := pg_catalog.format('REVOKE %s ON %s %s FROM %I', p.privilege, p.object_type, p.object_name, role);
    EXECUTE cmd;
    cmds := cmds OPERATOR(pg_catalog.||) cmd;
    types := types OPERATOR(pg_catalog.||) p.object_type;
    names := names OPERATOR(pg_catalog.||) p.object_name;
  END LOOP;
  FOR p IN SELECT a.* FROM agent_journal.access_grants g,
           LATERAL agent_journal.access_privileges(g.access) a
           WHERE g.role OPERATOR(pg_catalog.=) revoke_access.role::pg_catalog.text LOOP
    cmd := pg_catalog.format('GRANT %s ON %s %s TO %I', p.privilege, p.object_type, p.object_name, role);
    EXECUTE cmd;
    cmds := cmds OPERATOR(pg_catalog.||) cmd;
    types := types OPERATOR(pg_catalog.||) p.object_type;
    names := names OPERATOR(pg_catalog.||) p.object_name;
  END LOOP;
  IF NOT EXISTS (SELECT FROM agent_journal.access_grants g
                 WHERE g.role OPERATOR(pg_catalog.=) revoke_access.role::pg_catalog.text) THEN
    cmd := pg_catalog.format('REVOKE USAGE ON SCHEMA agent_journal FROM %I', role);
    EXECUTE cmd;
    cmds := cmds OPERATOR(pg_catalog.||) cmd;
    types := types OPERATOR(pg_catalog.||) 'SCHEMA'::text;
    names := names OPERATOR(pg_catalog.||) 'agent_journal'::text;
  END IF;
  PERFORM agent_journal.on_workers(cmds, types, names);
END
$fn$;
