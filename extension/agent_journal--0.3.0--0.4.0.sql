-- agent_journal 0.3.0 -> 0.4.0: hardening. Roles are kept by their exact
-- name (pg_roles.rolname), so a dump restored into a cluster that lacks a
-- role loses only what names that role; bind_agent takes a role's exact
-- name; unresolved_roles reports bindings and grants whose role is missing.
-- Upgrade script (not a test): lives in extension/, installed by `make install`.
\echo Use "ALTER EXTENSION agent_journal UPDATE TO '0.4.0'" to load this file. \quit

-- agent_state.owner and access_grants.role were regrole: pg_dump writes a
-- regrole as the role's name, and COPY of a whole table failed on the
-- first name the restoring cluster does not know, losing every agent's
-- compaction point (and then reusing sequence numbers). As text, a missing
-- role restores as a name that resolves to nothing: that agent is
-- admin-only, that grant gives nothing. A role already dropped keeps a
-- name no role has ('unknown (OID=n)'), as it was admin-only before.
ALTER TABLE agent_journal.agent_state
  ALTER COLUMN owner TYPE pg_catalog.text
  USING CASE WHEN owner IS NULL THEN NULL
             ELSE pg_catalog.pg_get_userbyid(owner::pg_catalog.oid)::pg_catalog.text END;
ALTER TABLE agent_journal.access_grants
  ALTER COLUMN role TYPE pg_catalog.text
  USING pg_catalog.pg_get_userbyid(role::pg_catalog.oid)::pg_catalog.text;
COMMENT ON COLUMN agent_journal.agent_state.owner IS
  'bind_agent''s role, by its exact name (pg_roles.rolname); NULL: not bound; a name no role has: admins only';
COMMENT ON COLUMN agent_journal.access_grants.role IS
  'the role, by its exact name (pg_roles.rolname)';

-- bind_agent with the role's exact name: bind_agent(a, 'Alice') binds the
-- role "Alice", not alice; 'team.a' and 'svc runtime' are names, not
-- syntax. A string literal or text argument picks this overload (string
-- category); a regrole-typed argument keeps the 0.2.0 one.
CREATE FUNCTION agent_journal.bind_agent(agent_id uuid, owner name)
RETURNS void
AS 'MODULE_PATHNAME', 'aj_bind_agent_name'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION agent_journal.bind_agent(uuid, name) IS
  'bind an agent to the role named exactly owner (pg_roles.rolname): only roles with its privileges (and admins) may use it; NULL unbinds (admins only)';
-- It checks that the caller is an admin itself (42501 otherwise), so roles
-- granted admin before this update can call it without a new grant (a
-- grant made here would be an initial privilege, left out of dumps).
REVOKE ALL ON FUNCTION agent_journal.bind_agent(uuid, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION agent_journal.bind_agent(uuid, name) TO PUBLIC;

-- Bindings and grants whose role does not exist (dropped, or missing after
-- a restore into another cluster). Shows rows to admins only.
CREATE VIEW agent_journal.unresolved_roles AS
  SELECT 'binding'::pg_catalog.text AS kind, s.agent_id, s.owner AS role
  FROM agent_journal.agent_state s
  WHERE s.owner IS NOT NULL
    AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) s.owner)
    AND agent_journal.is_admin()
  UNION ALL
  SELECT 'grant:' OPERATOR(pg_catalog.||) g.access, NULL::pg_catalog.uuid, g.role
  FROM agent_journal.access_grants g
  WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) g.role)
    AND agent_journal.is_admin();
COMMENT ON VIEW agent_journal.unresolved_roles IS
  'agent bindings and access grants naming a role that does not exist (admins see the rows)';
REVOKE ALL ON agent_journal.unresolved_roles FROM PUBLIC;
GRANT SELECT ON agent_journal.unresolved_roles TO PUBLIC;
-- is_admin() only tells the caller whether it is an admin.
GRANT EXECUTE ON FUNCTION agent_journal.is_admin() TO PUBLIC;

-- grant_access / revoke_access: the role by its exact name (a cast to
-- regrole folded "Alice" to alice and refused 'team.a').
CREATE OR REPLACE FUNCTION agent_journal.grant_access(role name, access text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  p record;
BEGIN
  PERFORM agent_journal.check_access_args(role, access);
  EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA agent_journal TO %I', role);
  FOR p IN SELECT * FROM agent_journal.access_privileges(access) LOOP
    EXECUTE pg_catalog.format('GRANT %s ON %s %s TO %I', p.privilege, p.object_type, p.object_name, role);
  END LOOP;
  INSERT INTO agent_journal.access_grants (role, access)
  VALUES (role::pg_catalog.text, access) ON CONFLICT DO NOTHING;
END
$fn$;

CREATE OR REPLACE FUNCTION agent_journal.revoke_access(role name, access text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  p record;
BEGIN
  PERFORM agent_journal.check_access_args(role, access);
  DELETE FROM agent_journal.access_grants g
  WHERE g.role OPERATOR(pg_catalog.=) revoke_access.role::pg_catalog.text
    AND g.access OPERATOR(pg_catalog.=) revoke_access.access;
  -- Revoke this level's privileges, then give back those that another
  -- level the role still holds includes.
  FOR p IN SELECT * FROM agent_journal.access_privileges(access) LOOP
    EXECUTE pg_catalog.format('REVOKE %s ON %s %s FROM %I', p.privilege, p.object_type, p.object_name, role);
  END LOOP;
  FOR p IN SELECT a.* FROM agent_journal.access_grants g,
           LATERAL agent_journal.access_privileges(g.access) a
           WHERE g.role OPERATOR(pg_catalog.=) revoke_access.role::pg_catalog.text LOOP
    EXECUTE pg_catalog.format('GRANT %s ON %s %s TO %I', p.privilege, p.object_type, p.object_name, role);
  END LOOP;
  IF NOT EXISTS (SELECT FROM agent_journal.access_grants g
                 WHERE g.role OPERATOR(pg_catalog.=) revoke_access.role::pg_catalog.text) THEN
    EXECUTE pg_catalog.format('REVOKE USAGE ON SCHEMA agent_journal FROM %I', role);
  END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION agent_journal.check_access_args(role name, access text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
  IF role IS NULL THEN RAISE EXCEPTION 'role must not be NULL' USING ERRCODE = '22004'; END IF;
  IF access IS NULL THEN RAISE EXCEPTION 'access must not be NULL' USING ERRCODE = '22004'; END IF;
  IF access OPERATOR(pg_catalog.<>) ALL (ARRAY['writer', 'reader', 'scraper', 'admin']) THEN
    RAISE EXCEPTION 'access must be writer, reader, scraper or admin, got "%"', access
      USING ERRCODE = '22023';
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) role) THEN
    RAISE EXCEPTION 'role "%" does not exist', role USING ERRCODE = '42704',
      HINT = 'role names a role exactly as pg_roles.rolname spells it (case and punctuation included).';
  END IF;
END
$fn$;

-- Gives every role in access_grants that exists the privileges of its
-- levels again. pg_restore runs each object's GRANTs as one command, so a
-- restore into a cluster missing one granted role also drops the other
-- roles' privileges on that object; after ALTER EXTENSION ... UPDATE a
-- function a level gained needs granting too. Grants made here (not by an
-- extension script) are ordinary privileges that pg_dump keeps.
CREATE FUNCTION agent_journal.reapply_access()
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  g record;
  n bigint := 0;
BEGIN
  FOR g IN SELECT a.role, a.access FROM agent_journal.access_grants a
           WHERE EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) a.role)
           ORDER BY a.role, a.access LOOP
    PERFORM agent_journal.grant_access(g.role::pg_catalog.name, g.access);
    n := n OPERATOR(pg_catalog.+) 1;
  END LOOP;
  RETURN n;
END
$fn$;
COMMENT ON FUNCTION agent_journal.reapply_access() IS
  'grant every existing role in access_grants its levels again (after a restore or an update); returns how many grants';
REVOKE ALL ON FUNCTION agent_journal.reapply_access() FROM PUBLIC;
