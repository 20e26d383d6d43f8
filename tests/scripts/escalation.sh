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

psql -X -q -v ON_ERROR_STOP=1 -d $DB -v P=$P -v A=$A -v C=$C -v feed=true \
  -f "$(dirname "$0")/escalation_setup.sql" >/dev/null
ok "roles, log table and data set up"

/usr/bin/python3 "$(dirname "$0")/escalation.py" $DB $P || fail "privilege escalation matrix (see FAIL lines above)"

# Independent of the helper: no role of ours is superuser now.
expect_eq "roles of this test that are superuser" \
  "$(q $DB "SELECT count(*) FROM pg_roles WHERE rolsuper AND rolname LIKE 'aj\\_esc\\_%'")" "0"
ok "escalation matrix done in $((SECONDS - start))s"
