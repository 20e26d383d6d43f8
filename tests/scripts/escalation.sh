#!/usr/bin/env bash
# No role can make itself superuser through the extension. The C functions
# switch to the extension owner (a superuser) for their SPI queries; if a
# name in those queries (a type in a cast, a relation, a function, an
# operator) were looked up through the caller's search_path, an object the
# caller planted would run with the owner's rights. The matrix
# (tests/scripts/escalation.py): for each access level writer, reader,
# scraper, admin and a role with no access, and two ways of shadowing:
#   pg_temp  temp domains named like every type the extension's objects and
#            the pg_catalog relations use (text, int8, jsonb, uuid, ...),
#            temp views named like every pg_catalog relation and every
#            table/view of the extension (INSTEAD OF triggers on the latter);
#   schema   the same in a schema the role owns, first in search_path, plus
#            wrappers of common pg_catalog functions (lower, now, unnest,
#            set_config, pg_has_role, ...), aggregates (count, sum, max, ...)
#            and operators (=, +, ||, ->> ... on the types the extension uses);
# every shadowing object calls an evil function that reports current_user
# (WARNING and a log table) and tries ALTER ROLE <attacker> SUPERUSER. The
# role then calls every SQL-callable function of the extension (listed from
# pg_depend; each needs a sample call in escalation.py, or the test fails)
# in a SELECT list, in FROM and as a PREPAREd statement executed twice, and
# selects from every view and table. Fails if any role became superuser or
# any shadowing object ran as a user other than the attacker; each
# escalation is printed with role, mode, object and call form.
# Checks that make a pass meaningful: every sample call succeeds as
# superuser; each role's own unqualified names do hit the shadows; the evil
# function run with superuser rights does escalate (positive control).
source "$(dirname "$0")/lib.bash"
DB=aj_escalation
P=aj_esc_
ROLES=(${P}none ${P}scraper ${P}reader ${P}writer ${P}admin ${P}dummy)
A=00000000-0000-0000-0000-0000000000e1
C=00000000-0000-0000-0000-0000000000e3

cleanup() {
  dropdb --if-exists $DB >/dev/null 2>&1 || true
  for r in "${ROLES[@]}"; do
    psql -X -q -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS \"$r\"" >/dev/null 2>&1 || true
  done
}
trap 'cleanup; rm -rf "$TMPD"' EXIT
cleanup
fresh_db $DB
start=$SECONDS

for r in "${ROLES[@]}"; do q $DB "CREATE ROLE \"$r\" LOGIN" >/dev/null; done
psql -X -q -v ON_ERROR_STOP=1 -d $DB >/dev/null <<SQL
SELECT agent_journal.grant_access('${P}' || l, l) FROM unnest(ARRAY['writer', 'reader', 'scraper', 'admin']) l;
-- the attacker's log (as a superuser would find it: anyone may insert)
CREATE TABLE public.aj_esc_log (id bigserial PRIMARY KEY, attacker text, cur_user text, sess_user text,
                                ctx text, shadow text, at timestamptz DEFAULT clock_timestamp());
GRANT INSERT ON public.aj_esc_log TO PUBLIC;
GRANT USAGE ON SEQUENCE public.aj_esc_log_id_seq TO PUBLIC;
-- schemas the roles own (mode "schema")
SELECT format('CREATE SCHEMA %I AUTHORIZATION %I', 'evil_' || l, '${P}' || l)
  FROM unnest(ARRAY['none', 'scraper', 'reader', 'writer', 'admin']) l \gexec
-- data, so the renders and replays have rows to cast and read
SELECT agent_journal.append('$A', i, jsonb_build_object('type', 'Step', 'i', i), NULL, 'seed-' || i) FROM generate_series(1, 5) i;
SELECT agent_journal.append_batch('$A', 6, ARRAY['{"type": "Interrupted"}', '{"type": "Resumed"}']::jsonb[]);
SELECT agent_journal.append('$C', 1, '{"Started": {}}');
SELECT agent_journal.bind_agent('$C', '${P}writer');
SELECT agent_journal.ingest_snapshot('{"timestamp": 1700000000, "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5, "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000, "load_factor": 0.005}, "task_manager": {"total_tasks": 5, "healthy_tasks": 4, "average_uptime_seconds": 1800.0, "total_memory_usage": 1024}, "load_balancer": {"total_allocations": 100, "active_allocations": 5, "memory_utilization": 0.45, "cpu_utilization": 0.30, "allocation_failures": 2, "average_allocation_time_ms": 1.5}, "system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0}}');
SELECT agent_journal.counter_add('seeded_total', 3, '{"k": "v"}', 'Seeded things');
SELECT agent_journal.histogram_observe('seeded_seconds', 0.3);
SELECT agent_journal.gauge_set('seeded_gauge', 42);
SELECT agent_journal.record_rejection('capacity_limit', 'full');
-- feed consumers (0.7.0): one owned by this superuser that every attacker
-- tries, and one per role (as subscribe would make it), then a tick so
-- the feed has positions to acknowledge
SELECT agent_journal.subscribe('esc-consumer', true);
INSERT INTO agent_journal.feed_subscriptions (consumer, owner, position)
SELECT 'esc-${P}' || l, '${P}' || l, 0 FROM unnest(ARRAY['none', 'scraper', 'reader', 'writer', 'admin', 'dummy']) l
UNION ALL SELECT 'esc-' || current_user, current_user, 0;
SELECT count(*) FROM agent_journal.read_feed('esc-consumer', 0);
SQL
ok "roles, log table and data set up"

/usr/bin/python3 "$(dirname "$0")/escalation.py" $DB $P || fail "privilege escalation matrix (see FAIL lines above)"

# Independent of the helper: no role of ours is superuser now.
expect_eq "roles of this test that are superuser" \
  "$(q $DB "SELECT count(*) FROM pg_roles WHERE rolsuper AND rolname LIKE 'aj\\_esc\\_%'")" "0"
ok "escalation matrix done in $((SECONDS - start))s"
