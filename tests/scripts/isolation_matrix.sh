#!/usr/bin/env bash
# Isolation matrix: every journal writer (every VOLATILE function of the
# extension whose first argument is agent_id or source_agent uuid, read
# from the catalog)
# at READ COMMITTED, REPEATABLE READ and SERIALIZABLE, against a concurrent
# partner (itself, append, forget_agent) that commits while it waits on the
# agent's lock or after it took its snapshot. Each call either raises 40001
# or acts on what is committed; afterwards the journal is contiguous, has
# its state row, keeps every acknowledged sequence, a committed
# forget_agent removed everything, the next append (under the live lease,
# if any) continues exactly at latest + 1, and the lease in agent_state is
# the lease graph's latest attempt, saved states stay within the journal
# and a fork holds the agent's journal up to its sequence. A writer
# without a sample call in
# isolation_matrix.py fails the test. Details: the docstring of
# isolation_matrix.py.
source "$(dirname "$0")/lib.bash"
DB=aj_isolation_matrix
ROLE=aj_iso_owner
PY=/usr/bin/python3
fresh_db $DB
q $DB "DO \$\$ BEGIN CREATE ROLE $ROLE NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null
rc=0
$PY "$(dirname "$0")/isolation_matrix.py" $DB $ROLE || rc=$?
dropdb $DB
q postgres "DROP ROLE IF EXISTS $ROLE" >/dev/null || true
[ $rc -eq 0 ] || fail "isolation matrix: a writer is not correct at some isolation level (see above)"
echo "isolation_matrix: all checks passed"
