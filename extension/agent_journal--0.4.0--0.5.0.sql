-- agent_journal 0.4.0 -> 0.5.0: leases with fencing tokens. claim_agent,
-- renew_lease, release_agent; append, append_batch and compact take a
-- last `lease` argument; the leases view; observability's lease_graph.
-- Upgrade script (not a test): lives in extension/, installed by `make install`.
\echo Use "ALTER EXTENSION agent_journal UPDATE TO '0.5.0'" to load this file. \quit

-- ------------------------------------------------------------ grants kept
-- A function that gains a parameter is a new function: DROP + CREATE would
-- lose every EXECUTE privilege grant_access (or an operator) gave, and
-- keeping the old overload makes every call ambiguous (42725). This copies
-- the old function's grants to its successor. GRANTs run by an extension
-- script are recorded as the object's initial privileges (pg_init_privs),
-- which pg_dump leaves out, so the successor's initial privileges are set
-- back to the old function's: the copied grants stay ordinary grants that
-- a dump keeps. Also used for functions a level gains (their initial
-- privileges are then those of the function whose grants they copy).
CREATE FUNCTION agent_journal.carry_grants_050(src pg_catalog.regprocedure, dst pg_catalog.regprocedure)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  g record;
  init pg_catalog.aclitem[];
BEGIN
  EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', dst);
  FOR g IN SELECT a.grantee, a.is_grantable
             FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
            WHERE p.oid OPERATOR(pg_catalog.=) src
              AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
              AND a.grantee OPERATOR(pg_catalog.<>) p.proowner LOOP
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', dst,
      CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
           ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
  END LOOP;
  SELECT i.initprivs INTO init FROM pg_catalog.pg_init_privs i
   WHERE i.objoid OPERATOR(pg_catalog.=) src
     AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
     AND i.objsubid OPERATOR(pg_catalog.=) 0;
  IF init IS NULL THEN
    DELETE FROM pg_catalog.pg_init_privs i
     WHERE i.objoid OPERATOR(pg_catalog.=) dst
       AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND i.objsubid OPERATOR(pg_catalog.=) 0;
  ELSE
    UPDATE pg_catalog.pg_init_privs i SET initprivs = init
     WHERE i.objoid OPERATOR(pg_catalog.=) dst
       AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND i.objsubid OPERATOR(pg_catalog.=) 0;
  END IF;
END
$fn$;

-- ------------------------------------------------------------ lease state
-- The lease lives in the agent's state row, which every writer already
-- reads under the agent's lock: checking it costs no extra probe.
-- lease: the live (or expired, unreleased) token; NULL after release or
-- before any claim. lease_attempts: claims that started a new lease since
-- the agent's last forget_agent (attempt#N of the lease graph).
ALTER TABLE agent_journal.agent_state
  ADD COLUMN lease            bigint,
  ADD COLUMN lease_worker     text,
  ADD COLUMN lease_claimed_at timestamptz,
  ADD COLUMN lease_expires_at timestamptz,
  ADD COLUMN lease_attempts   integer NOT NULL DEFAULT 0 CHECK (lease_attempts >= 0);
COMMENT ON COLUMN agent_journal.agent_state.lease IS
  'the current lease token (claim_agent); live until lease_expires_at; NULL: released or never claimed';
-- leases_active renders from this index: its cost follows the agents with
-- an unreleased lease, not all agents. It indexes no column a renewal
-- changes, so renewals stay heap-only (HOT) updates and do not bloat the
-- state row every append reads.
CREATE INDEX agent_state_leased ON agent_journal.agent_state (agent_id)
  WHERE lease IS NOT NULL;

-- Lease tokens come from one sequence: strictly increasing for every agent
-- and never handed out twice, so forget_agent keeps nothing per agent for
-- fencing, and a dump carries the sequence's position.
CREATE SEQUENCE agent_journal.lease_tokens AS bigint;
COMMENT ON SEQUENCE agent_journal.lease_tokens IS
  'lease tokens (claim_agent): never reused, for any agent';
SELECT pg_catalog.pg_extension_config_dump('agent_journal.lease_tokens', '');
REVOKE ALL ON SEQUENCE agent_journal.lease_tokens FROM PUBLIC;

-- Every claim that started a new lease: observability's lease_graph.
-- Keeps the agent's last 1000 attempts; forget_agent removes them.
CREATE TABLE agent_journal.lease_graph (
    agent_id   uuid        NOT NULL,
    attempt    integer     NOT NULL CHECK (attempt >= 1),
    worker     text        NOT NULL,
    lease      bigint      NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (agent_id, attempt)
);
COMMENT ON TABLE agent_journal.lease_graph IS
  'claims that started a new lease, per agent (attempt number since the last forget_agent, worker, token)';
SELECT pg_catalog.pg_extension_config_dump('agent_journal.lease_graph', '');
REVOKE ALL ON agent_journal.lease_graph FROM PUBLIC;
ALTER TABLE agent_journal.lease_graph ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON agent_journal.lease_graph FOR SELECT
  USING (agent_journal.agent_visible(agent_id));
CREATE POLICY admin_all ON agent_journal.lease_graph FOR ALL
  USING (agent_journal.is_admin()) WITH CHECK (agent_journal.is_admin());

-- ------------------------------------------------------------ functions
CREATE FUNCTION agent_journal.claim_agent(
    agent_id uuid, worker text, ttl interval DEFAULT interval '30 seconds')
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_claim_agent'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.claim_agent(uuid, text, interval) IS
  'take the agent''s lease for worker; returns its token, the same one extended if worker holds it, or NULL while another worker holds a live lease';

CREATE FUNCTION agent_journal.renew_lease(
    agent_id uuid, lease bigint, ttl interval DEFAULT interval '30 seconds')
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'aj_renew_lease'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.renew_lease(uuid, bigint, interval) IS
  'extend the agent''s live lease to ttl from now; returns the new expiry (55006 if lease is not the live lease)';

CREATE FUNCTION agent_journal.release_agent(agent_id uuid, lease bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'aj_release_agent'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.release_agent(uuid, bigint) IS
  'release the agent''s live lease; false if lease was no longer the live lease';

-- append, append_batch, compact: a last argument `lease`.
ALTER FUNCTION agent_journal.append(uuid, integer, jsonb, bigint, text) RENAME TO append_before_050;
CREATE FUNCTION agent_journal.append(
    agent_id uuid, iteration integer, event jsonb,
    expected_sequence bigint DEFAULT NULL, idempotency_key text DEFAULT NULL,
    lease bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_append'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.append(uuid, integer, jsonb, bigint, text, bigint) IS
  'append one event to an agent''s journal; returns its sequence (55006 if lease is not the agent''s live lease)';
SELECT agent_journal.carry_grants_050(
  'agent_journal.append_before_050(uuid, integer, jsonb, bigint, text)',
  'agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)');
DROP FUNCTION agent_journal.append_before_050(uuid, integer, jsonb, bigint, text);

ALTER FUNCTION agent_journal.append_batch(uuid, integer, jsonb[], bigint, text) RENAME TO append_batch_before_050;
CREATE FUNCTION agent_journal.append_batch(
    agent_id uuid, iteration integer, events jsonb[],
    expected_sequence bigint DEFAULT NULL, idempotency_key text DEFAULT NULL,
    lease bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_append_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.append_batch(uuid, integer, jsonb[], bigint, text, bigint) IS
  'append events in order with consecutive sequences, all or nothing; returns the last sequence (55006 if lease is not the agent''s live lease)';
SELECT agent_journal.carry_grants_050(
  'agent_journal.append_batch_before_050(uuid, integer, jsonb[], bigint, text)',
  'agent_journal.append_batch(uuid, integer, jsonb[], bigint, text, bigint)');
DROP FUNCTION agent_journal.append_batch_before_050(uuid, integer, jsonb[], bigint, text);

ALTER FUNCTION agent_journal.compact(uuid, bigint) RENAME TO compact_before_050;
CREATE FUNCTION agent_journal.compact(
    agent_id uuid, through_sequence bigint DEFAULT NULL, lease bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_compact'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.compact(uuid, bigint, bigint) IS
  'delete the agent''s entries with sequence <= through_sequence (all when NULL); returns how many (55006 if lease is not the agent''s live lease)';
SELECT agent_journal.carry_grants_050('agent_journal.compact_before_050(uuid, bigint)',
                                      'agent_journal.compact(uuid, bigint, bigint)');
DROP FUNCTION agent_journal.compact_before_050(uuid, bigint);

-- Writers may claim, renew and release: whoever may append gets them now.
SELECT agent_journal.carry_grants_050('agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)',
                                      'agent_journal.claim_agent(uuid, text, interval)');
SELECT agent_journal.carry_grants_050('agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)',
                                      'agent_journal.renew_lease(uuid, bigint, interval)');
SELECT agent_journal.carry_grants_050('agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)',
                                      'agent_journal.release_agent(uuid, bigint)');

-- ------------------------------------------------------------ leases view
-- Live leases. Runs with the caller's privileges: agent_state's row-level
-- security shows each role the agents it may see.
CREATE VIEW agent_journal.leases WITH (security_invoker = true) AS
  SELECT s.agent_id, s.lease, s.lease_worker AS worker, s.lease_claimed_at AS claimed_at,
         s.lease_expires_at AS expires_at
  FROM agent_journal.agent_state s
  WHERE s.lease IS NOT NULL AND s.lease_expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp();
COMMENT ON VIEW agent_journal.leases IS
  'live leases: agent, token, worker, when claimed, when it expires (server clock)';
REVOKE ALL ON agent_journal.leases FROM PUBLIC;




-- ============================================================ resume, forks, retention
-- Saved states: a snapshot of what the agent's entries up to
-- through_sequence fold into. iteration: that entry's iteration, kept here
-- because compaction may remove the entry. resume() starts from the one with
-- the greatest through_sequence.
CREATE TABLE agent_journal.saved_states (
    agent_id         uuid        NOT NULL,
    through_sequence bigint      NOT NULL CHECK (through_sequence >= 1),
    iteration        integer     NOT NULL CHECK (iteration >= 0),
    state            jsonb       NOT NULL,
    saved_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (agent_id, through_sequence)
);
COMMENT ON TABLE agent_journal.saved_states IS
  'state snapshots saved by save_state: what the agent''s entries up to through_sequence fold into';
SELECT pg_catalog.pg_extension_config_dump('agent_journal.saved_states', '');
REVOKE ALL ON agent_journal.saved_states FROM PUBLIC;
ALTER TABLE agent_journal.saved_states ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON agent_journal.saved_states FOR SELECT
  USING (agent_journal.agent_visible(agent_id));
CREATE POLICY admin_all ON agent_journal.saved_states FOR ALL
  USING (agent_journal.is_admin()) WITH CHECK (agent_journal.is_admin());

-- Where a forked agent came from (fork_agent).
ALTER TABLE agent_journal.agent_state
  ADD COLUMN forked_from          uuid,
  ADD COLUMN forked_from_sequence bigint;

-- Retention policies: one per agent, and the default for all (agent_id
-- NULL). With both limits, an entry goes only when it is beyond keep_last
-- and older than max_age.
CREATE TABLE agent_journal.retention_settings (
    agent_id      uuid,
    keep_last     bigint CHECK (keep_last >= 0),
    max_age       interval,
    require_state boolean     NOT NULL DEFAULT true,
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (keep_last IS NOT NULL OR max_age IS NOT NULL),
    UNIQUE NULLS NOT DISTINCT (agent_id)
);
COMMENT ON TABLE agent_journal.retention_settings IS
  'retention policies (set_retention): per agent, and the default (agent_id NULL)';
SELECT pg_catalog.pg_extension_config_dump('agent_journal.retention_settings', '');
REVOKE ALL ON agent_journal.retention_settings FROM PUBLIC;
ALTER TABLE agent_journal.retention_settings ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_read ON agent_journal.retention_settings FOR SELECT
  USING (agent_id IS NULL OR agent_journal.agent_visible(agent_id));
CREATE POLICY admin_all ON agent_journal.retention_settings FOR ALL
  USING (agent_journal.is_admin()) WITH CHECK (agent_journal.is_admin());
CREATE VIEW agent_journal.retention_policies WITH (security_invoker = true) AS
  SELECT r.agent_id, r.keep_last, r.max_age, r.require_state, r.updated_at
  FROM agent_journal.retention_settings r;
COMMENT ON VIEW agent_journal.retention_policies IS
  'retention policies: one per agent, and the default for all (agent_id NULL)';
REVOKE ALL ON agent_journal.retention_policies FROM PUBLIC;

-- The extension's own tallies (saved states, entries removed by retention):
-- each backend adds to its own row (slot), so writers never wait for each
-- other, and a render sums a few rows per name whatever the number of agents.
CREATE TABLE agent_journal.tallies (
    name  text    NOT NULL,
    slot  integer NOT NULL,
    value bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (name, slot)
);
COMMENT ON TABLE agent_journal.tallies IS
  'per-backend-slot parts of the extension''s own counts (a count is the sum of its rows)';
SELECT pg_catalog.pg_extension_config_dump('agent_journal.tallies', '');
REVOKE ALL ON agent_journal.tallies FROM PUBLIC;

CREATE FUNCTION agent_journal.save_state(
    agent_id uuid, state jsonb, through_sequence bigint DEFAULT NULL, lease bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_save_state'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.save_state(uuid, jsonb, bigint, bigint) IS
  'store a state snapshot covering the agent''s entries up to through_sequence (default: the latest); returns through_sequence';

CREATE FUNCTION agent_journal.entry_by_key(agent_id uuid, idempotency_key text)
RETURNS TABLE (sequence bigint, iteration integer, kind text, recorded_at timestamptz, event jsonb)
AS 'MODULE_PATHNAME', 'aj_entry_by_key'
LANGUAGE C STABLE PARALLEL SAFE ROWS 1;
COMMENT ON FUNCTION agent_journal.entry_by_key(uuid, text) IS
  'the entries written under an idempotency key (one, or a whole batch); none if unknown or compacted';

CREATE FUNCTION agent_journal.fork_agent(source_agent uuid, through_sequence bigint, new_agent uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_fork_agent'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.fork_agent(uuid, bigint, uuid) IS
  'start new_agent with source_agent''s live entries up to through_sequence (same numbers, keys, binding, latest covering state); returns its latest sequence';

CREATE FUNCTION agent_journal.set_retention(
    agent_id uuid DEFAULT NULL, keep_last bigint DEFAULT NULL, max_age interval DEFAULT NULL,
    require_state boolean DEFAULT true)
RETURNS void
AS 'MODULE_PATHNAME', 'aj_set_retention'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.set_retention(uuid, bigint, interval, boolean) IS
  'set an agent''s retention policy, or the default for all (agent_id NULL, admins); both limits NULL removes it';

CREATE FUNCTION agent_journal.apply_retention(max_entries bigint DEFAULT 100000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_apply_retention'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.apply_retention(bigint) IS
  'compact what the retention policies allow, at most max_entries entries; returns how many were removed';

-- resume and replay_backward are inlined SQL, like replay (README, "How
-- replay reads"): they read replay_rows / replay_rows_desc / state_rows,
-- whose filter shows each user the agents replay() would show it, and
-- their guards run the checks once per call.
-- resume's checks run in its LIMIT (resume_guard), which the executor
-- evaluates once, before the first row, whatever the plan; resume_from
-- bounds the entries' index scan (the sequence after the latest state).
CREATE FUNCTION agent_journal.resume_guard(agent_id uuid, max_entries bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_resume_guard'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.resume_guard(uuid, bigint) IS
  'resume''s checks (privilege, arguments, tenant, no hole after the latest state); returns its LIMIT: max_entries plus the state row (NULL: no limit)';
CREATE FUNCTION agent_journal.resume_from(agent_id uuid)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_resume_from'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.resume_from(uuid) IS
  'the through_sequence of the agent''s latest saved state (0: none), for resume''s index scan';
CREATE FUNCTION agent_journal.backward_guard(agent_id uuid, before_sequence bigint, max_entries bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'aj_backward_guard'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION agent_journal.backward_guard(uuid, bigint, bigint) IS
  'replay_backward''s privilege, argument and tenant checks; returns max_entries (NULL: no limit)';

CREATE VIEW agent_journal.replay_rows_desc WITH (security_barrier) AS
  SELECT e.agent_id, e.sequence, e.iteration, e.kind, e.recorded_at, e.event
  FROM agent_journal.entries e
  WHERE agent_journal.may_replay(e.agent_id)
  ORDER BY e.agent_id DESC, e.sequence DESC;
COMMENT ON VIEW agent_journal.replay_rows_desc IS
  'journal entries the current user may replay, newest first (what replay_backward() reads)';
CREATE VIEW agent_journal.state_rows WITH (security_barrier) AS
  SELECT s.agent_id, s.through_sequence, s.iteration, s.saved_at, s.state
  FROM agent_journal.saved_states s
  WHERE agent_journal.may_replay(s.agent_id)
  ORDER BY s.agent_id DESC, s.through_sequence DESC;
COMMENT ON VIEW agent_journal.state_rows IS
  'saved states the current user may replay (what resume() reads)';

CREATE FUNCTION agent_journal.resume(agent_id uuid, max_entries bigint DEFAULT NULL)
RETURNS TABLE (sequence bigint, iteration integer, kind text, recorded_at timestamptz, event jsonb)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1000
BEGIN ATOMIC
  SELECT u.sequence, u.iteration, u.kind, u.recorded_at, u.event FROM (
    -- the latest state: the view's order (newest first) read backward
    -- from saved_states_pkey, one row
    (SELECT s.through_sequence AS sequence, s.iteration, 'state'::text AS kind,
            s.saved_at AS recorded_at, s.state AS event
       FROM agent_journal.state_rows s
      WHERE s.agent_id = resume.agent_id
      LIMIT 1)
    UNION ALL
    (SELECT r.sequence, r.iteration, r.kind, r.recorded_at, r.event
       FROM agent_journal.replay_rows r
      WHERE r.agent_id = resume.agent_id
        AND r.sequence > agent_journal.resume_from(resume.agent_id)
      ORDER BY r.sequence)) u
  ORDER BY u.sequence
  LIMIT agent_journal.resume_guard(resume.agent_id, resume.max_entries);
END;
COMMENT ON FUNCTION agent_journal.resume(uuid, bigint) IS
  'the agent''s latest saved state (kind ''state'') then the entries after it, in order, at most max_entries entries; without a state, replay';

CREATE FUNCTION agent_journal.replay_backward(
    agent_id uuid, before_sequence bigint DEFAULT NULL, max_entries bigint DEFAULT NULL,
    kinds text[] DEFAULT NULL)
RETURNS TABLE (sequence bigint, iteration integer, kind text, recorded_at timestamptz, event jsonb)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1000
BEGIN ATOMIC
  SELECT r.sequence, r.iteration, r.kind, r.recorded_at, r.event
  FROM agent_journal.replay_rows_desc r
  WHERE r.agent_id = replay_backward.agent_id
    -- CASE, not COALESCE: a CASE may go into the security-barrier view
    -- (into the index scan's bound), a COALESCE would stay above it
    AND r.sequence < CASE WHEN replay_backward.before_sequence IS NULL THEN 9223372036854775807
                          ELSE replay_backward.before_sequence END
    AND (replay_backward.kinds IS NULL OR r.kind = ANY (replay_backward.kinds))
  -- no ORDER BY here: the view's order is the result's, and without an
  -- outer sort the planner plans the view for the LIMIT's share of its
  -- rows, so "the latest N" is a backward index scan that stops after N
  LIMIT agent_journal.backward_guard(replay_backward.agent_id, replay_backward.before_sequence,
                                     replay_backward.max_entries);
END;
COMMENT ON FUNCTION agent_journal.replay_backward(uuid, bigint, bigint, text[]) IS
  'entries newest first, strictly below before_sequence (all when NULL), at most max_entries, only the given kinds';

-- replay gets the same shape: its paged reads (from_sequence, max_entries)
-- were planned for the agent's whole journal (a sort of it, on a large
-- agent) because of the ORDER BY around the ordered view; without it the
-- LIMIT's share reaches the view's planning. The view's ORDER BY gives the
-- order.
CREATE OR REPLACE FUNCTION agent_journal.replay(
    agent_id uuid, from_sequence bigint DEFAULT 1, max_entries bigint DEFAULT NULL)
RETURNS TABLE (sequence bigint, iteration integer, kind text,
               recorded_at timestamptz, event jsonb)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1000
BEGIN ATOMIC
  SELECT r.sequence, r.iteration, r.kind, r.recorded_at, r.event
  FROM agent_journal.replay_rows r
  WHERE r.agent_id = replay.agent_id AND r.sequence >= replay.from_sequence
  LIMIT agent_journal.replay_guard(replay.agent_id, replay.from_sequence, replay.max_entries);
END;

-- As for replay: the guards and the row views answer only roles that may
-- execute replay, so PUBLIC may have them (nothing to grant on upgrade).
REVOKE ALL ON FUNCTION agent_journal.resume_guard(uuid, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION agent_journal.resume_from(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION agent_journal.backward_guard(uuid, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON agent_journal.replay_rows_desc FROM PUBLIC;
REVOKE ALL ON agent_journal.state_rows FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agent_journal.resume_guard(uuid, bigint) TO PUBLIC;
GRANT EXECUTE ON FUNCTION agent_journal.resume_from(uuid) TO PUBLIC;
GRANT EXECUTE ON FUNCTION agent_journal.backward_guard(uuid, bigint, bigint) TO PUBLIC;
GRANT SELECT ON agent_journal.replay_rows_desc TO PUBLIC;
GRANT SELECT ON agent_journal.state_rows TO PUBLIC;

-- ------------------------------------------------------------ grants kept (2)
-- Readers and writers resume, look entries up by key and read backward:
-- whoever may replay gets them; writers save states, fork and set
-- policies: whoever may append gets them.
SELECT agent_journal.carry_grants_050('agent_journal.replay(uuid, bigint, bigint)',
                                      'agent_journal.resume(uuid, bigint)');
SELECT agent_journal.carry_grants_050('agent_journal.replay(uuid, bigint, bigint)',
                                      'agent_journal.entry_by_key(uuid, text)');
SELECT agent_journal.carry_grants_050('agent_journal.replay(uuid, bigint, bigint)',
                                      'agent_journal.replay_backward(uuid, bigint, bigint, text[])');
SELECT agent_journal.carry_grants_050('agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)',
                                      'agent_journal.save_state(uuid, jsonb, bigint, bigint)');
SELECT agent_journal.carry_grants_050('agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)',
                                      'agent_journal.fork_agent(uuid, bigint, uuid)');
SELECT agent_journal.carry_grants_050('agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)',
                                      'agent_journal.set_retention(uuid, bigint, interval, boolean)');
DROP FUNCTION agent_journal.carry_grants_050(pg_catalog.regprocedure, pg_catalog.regprocedure);
-- apply_retention compacts every agent with a policy: admins only. It
-- checks that itself (42501), so admins granted before the update use it.
REVOKE ALL ON FUNCTION agent_journal.apply_retention(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agent_journal.apply_retention(bigint) TO PUBLIC;

DO $grant$
DECLARE
  g record;
  init pg_catalog.aclitem[];
BEGIN
  -- Readers had agents; they get leases, lease_graph, saved_states and
  -- retention_policies. As in carry_grants_050, the
  -- view's initial privileges stay what the REVOKE above left, so these
  -- grants are ordinary ones that a dump keeps.
  SELECT i.initprivs INTO init FROM pg_catalog.pg_init_privs i
   WHERE i.objoid OPERATOR(pg_catalog.=) 'agent_journal.leases'::pg_catalog.regclass
     AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
     AND i.objsubid OPERATOR(pg_catalog.=) 0;
  FOR g IN SELECT DISTINCT a.role FROM agent_journal.access_grants a
           WHERE a.access OPERATOR(pg_catalog.=) ANY (ARRAY['reader', 'admin'])
             AND EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) a.role) LOOP
    EXECUTE pg_catalog.format('GRANT SELECT ON agent_journal.leases TO %I', g.role);
    EXECUTE pg_catalog.format('GRANT SELECT ON agent_journal.lease_graph TO %I', g.role);
    EXECUTE pg_catalog.format('GRANT SELECT ON agent_journal.saved_states TO %I', g.role);
    EXECUTE pg_catalog.format('GRANT SELECT ON agent_journal.retention_policies TO %I', g.role);
    EXECUTE pg_catalog.format('GRANT SELECT ON agent_journal.retention_settings TO %I', g.role);
  END LOOP;
  UPDATE pg_catalog.pg_init_privs i SET initprivs = init
   WHERE i.objoid OPERATOR(pg_catalog.=) 'agent_journal.leases'::pg_catalog.regclass
     AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
     AND i.objsubid OPERATOR(pg_catalog.=) 0;
  UPDATE pg_catalog.pg_init_privs i SET initprivs = init
   WHERE i.objoid OPERATOR(pg_catalog.=) ANY (ARRAY['agent_journal.lease_graph'::pg_catalog.regclass,
                                                    'agent_journal.saved_states'::pg_catalog.regclass,
                                                    'agent_journal.retention_policies'::pg_catalog.regclass,
                                                    'agent_journal.retention_settings'::pg_catalog.regclass])
     AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
     AND i.objsubid OPERATOR(pg_catalog.=) 0;
END
$grant$;

-- ------------------------------------------------------------ access levels
CREATE OR REPLACE FUNCTION agent_journal.access_privileges(access text)
RETURNS TABLE (object_type text, object_name text, privilege text)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT t.object_type, t.object_name, t.privilege FROM (VALUES
    ('writer', 'FUNCTION', 'agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.append_batch(uuid, integer, jsonb[], bigint, text, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.replay(uuid, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.latest_sequence(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.next_sequence(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.last_completed_iteration(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.compact(uuid, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.forget_agent(uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.claim_agent(uuid, text, interval)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.renew_lease(uuid, bigint, interval)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.release_agent(uuid, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.save_state(uuid, jsonb, bigint, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.fork_agent(uuid, bigint, uuid)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.set_retention(uuid, bigint, interval, boolean)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.resume(uuid, bigint)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.entry_by_key(uuid, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.replay_backward(uuid, bigint, bigint, text[])', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.observability(uuid, integer)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.ingest_snapshot(jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.counter_add(text, double precision, jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.gauge_set(text, double precision, jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.gauge_add(text, double precision, jsonb, text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.histogram_observe(text, double precision, jsonb, double precision[], text)', 'EXECUTE'),
    ('writer', 'FUNCTION', 'agent_journal.record_rejection(text, text, uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.replay(uuid, bigint, bigint)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.resume(uuid, bigint)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.entry_by_key(uuid, text)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.replay_backward(uuid, bigint, bigint, text[])', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.latest_sequence(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.next_sequence(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.last_completed_iteration(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.observability(uuid, integer)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.agent_visible(uuid)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.is_admin()', 'EXECUTE'),
    ('reader', 'TABLE', 'agent_journal.entries', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.agent_state', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.agents', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.leases', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.lease_graph', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.saved_states', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.retention_policies', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.retention_settings', 'SELECT'),
    ('reader', 'FUNCTION', 'agent_journal.prometheus_text()', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.openmetrics_text()', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.otlp_json(text)', 'EXECUTE'),
    ('reader', 'FUNCTION', 'agent_journal.metric_samples_fn()', 'EXECUTE'),
    ('reader', 'TABLE', 'agent_journal.prometheus', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.openmetrics', 'SELECT'),
    ('reader', 'TABLE', 'agent_journal.metric_samples', 'SELECT'),
    ('scraper', 'FUNCTION', 'agent_journal.prometheus_text()', 'EXECUTE'),
    ('scraper', 'FUNCTION', 'agent_journal.openmetrics_text()', 'EXECUTE'),
    ('scraper', 'FUNCTION', 'agent_journal.otlp_json(text)', 'EXECUTE'),
    ('scraper', 'FUNCTION', 'agent_journal.metric_samples_fn()', 'EXECUTE'),
    ('scraper', 'TABLE', 'agent_journal.prometheus', 'SELECT'),
    ('scraper', 'TABLE', 'agent_journal.openmetrics', 'SELECT'),
    ('scraper', 'TABLE', 'agent_journal.metric_samples', 'SELECT')
  ) AS t(access, object_type, object_name, privilege)
  WHERE t.access = $1
  UNION ALL
  -- admin: every function and every table, view and sequence of the extension
  SELECT CASE WHEN d.classid = 'pg_proc'::regclass THEN 'FUNCTION' ELSE 'TABLE' END,
         CASE WHEN d.classid = 'pg_proc'::regclass THEN d.objid::regprocedure::text
              ELSE d.objid::regclass::text END,
         CASE WHEN d.classid = 'pg_proc'::regclass THEN 'EXECUTE'
              WHEN c.relkind = 'v' THEN 'SELECT'
              WHEN c.relkind = 'S' THEN 'USAGE, SELECT'
              ELSE 'SELECT, INSERT, UPDATE, DELETE' END
  FROM pg_depend d
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'agent_journal'
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
  WHERE $1 = 'admin' AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
    AND (d.classid = 'pg_proc'::regclass OR (d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'v', 'S')))
$fn$;
