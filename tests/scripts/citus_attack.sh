#!/usr/bin/env bash
# The attack matrices on a distributed journal (Citus): a coordinator and
# two workers on loopback ports AJ_CITUS_ATTACK_PGPORT (default PGPORT+51)
# .. +2 (tests/scripts/citus_lib.bash), the extension created and
# distribute()d, then
#  1. the privilege-escalation matrix of escalation.sh (escalation.py: every
#     access level x pg_temp/schema shadows x every SQL-callable function
#     listed from pg_depend x three call forms), connected to the
#     coordinator and connected to a worker. The functions that refuse on
#     a distributed journal by design (0A000: the feed, apply_retention,
#     fork_agent, resume, the metrics on a worker, ...) are called all the
#     same; as superuser they must refuse with the listed SQLSTATE
#     (escalation.py CITUS_FAILS), for the attackers any outcome but an
#     escalation is fine;
#  2. the isolation matrix (isolation_matrix.py --citus-nodes): every journal
#     writer at READ COMMITTED, REPEATABLE READ and SERIALIZABLE, through the
#     coordinator and through a worker (partners append and forget_agent
#     at READ COMMITTED);
#  3. roles with quoted names ("Citus Writer") in grant_access/bind_agent on
#     the coordinator, used on every node;
#  4. at the end, no shell table on any node holds a byte.
# Prints one "SKIP: citus not installed" line and succeeds where Citus is
# not installed.
#
# Also checked here: a NULL agent_id, which crashes Citus 13.0.5's planner
# (SIGSEGV in FindShardInterval, function_call_delegation.c) for any role
# that may call a per-agent function, is refused with 22004 by
# agent_journal's planner hook on every node, as literal and as a prepared
# parameter; grant_access on the coordinator reaches every node for every
# function (distribute() makes them Citus objects).
#
# observability() inside a transaction block: Citus sends it to the
# agent's node as a query on a shard, where a query over the distributed
# tables is refused (XX000 until 0.10.0); it reads the agent's shards now.
source "$(dirname "$0")/lib.bash"
DB=aj_citus_attack
: "${AJ_CITUS_DIR_PREFIX:=/tmp/aj_citus_attack}"
source "$(dirname "$0")/citus_lib.bash"
start=$SECONDS
citus_start "${AJ_CITUS_ATTACK_PGPORT:-$((PGPORT + 51))}"
n "$C" "CREATE EXTENSION agent_journal" >/dev/null
n "$C" "SELECT agent_journal.distribute()" >/dev/null
ok "cluster up, journal distributed ($((SECONDS - start))s)"

# 1. the escalation matrix, through the coordinator and through a worker
#    at once: one set of roles for each (prefixes aj_esc_, aj_escw_: a run
#    resets its own roles, and its positive controls make them superuser
#    for a moment); roles, grants and data through the coordinator, a log
#    table on every node (the evil functions log where they run)
ESC_A=00000000-0000-0000-0000-0000000000e1
ESC_C=00000000-0000-0000-0000-0000000000e3
declare -A PREFIX_OF=(["$C"]=aj_esc_ ["$W1"]=aj_escw_)
for p in "$C" "$W1"; do
  PGOPTIONS="-c client_min_messages=warning" \
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$C" -U postgres -d $DB -v P="${PREFIX_OF[$p]}" -v feed=false \
    -v A=$ESC_A -v C=$ESC_C -f "$(dirname "$0")/escalation_setup.sql" >/dev/null
done
for p in "$W1" "$W2"; do
  PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$p" -U postgres -d $DB -v log_only=1 \
    -c "SET citus.enable_ddl_propagation = off" -f "$(dirname "$0")/escalation_setup.sql" >/dev/null
done
ok "escalation matrix: roles (on the coordinator), log tables (on every node) and data set up"
t=$SECONDS
pids=()
for p in "$C" "$W1"; do
  /usr/bin/python3 "$(dirname "$0")/escalation.py" $DB "${PREFIX_OF[$p]}" --citus-nodes "$C,$W1,$W2" --node "$p" \
    >"$TMPD/esc.$p" 2>&1 &
  pids+=($!)
done
st=0
for i in 0 1; do wait "${pids[$i]}" || st=1; done
for p in "$C" "$W1"; do
  echo "--- escalation matrix through node $p ($([ "$p" = "$C" ] && echo coordinator || echo worker))"
  grep -v '^note: aj_esc' "$TMPD/esc.$p" || true
done
[ $st -eq 0 ] || fail "privilege escalation matrix on the distributed journal (see FAIL lines above)"
ok "escalation matrix through the coordinator and a worker done in $((SECONDS - t))s"
for p in "${PORTS[@]}"; do
  expect_eq "roles of this test that are superuser on node $p" \
    "$(n "$p" "SELECT count(*) FROM pg_roles WHERE rolsuper AND rolname LIKE 'aj\\_esc%'")" "0"
done

# 2. the isolation matrix: every journal writer at READ COMMITTED,
#    REPEATABLE READ and SERIALIZABLE, through the coordinator and through
#    a worker (one after the other: each run's lock waits are found on
#    every node)
ISO_OWNER=aj_iso_owner
n "$C" "CREATE ROLE $ISO_OWNER NOLOGIN" >/dev/null
for p in "$C" "$W1"; do
  t=$SECONDS
  /usr/bin/python3 "$(dirname "$0")/isolation_matrix.py" $DB $ISO_OWNER --citus-nodes "$C,$W1,$W2" --node "$p" \
    || fail "isolation matrix through node $p: a writer is not correct at some isolation level (see above)"
  ok "isolation matrix through node $p done in $((SECONDS - t))s"
done

# 3. roles whose names need quoting, granted and bound on the coordinator,
#    used on every node: Citus creates them and copies the function grants
#    (quoting the names again), access_grants is a reference table
RW="Citus Writer" RR="Citus Reader" RA="Ev\"il Ad'min" RO="citus other"
T=00000000-0000-0000-0000-0000000000f1
T2=00000000-0000-0000-0000-0000000000f2
E='{"type": "Step"}'
lit() { printf "'%s'" "${1//\'/\'\'}"; }  # a SQL literal
ident() { printf '"%s"' "${1//\"/\"\"}"; }  # a SQL identifier
for r in "$RW" "$RR" "$RA" "$RO"; do n "$C" "CREATE ROLE $(ident "$r") LOGIN" >/dev/null; done
n "$C" "SELECT agent_journal.grant_access($(lit "$RW"), 'writer'), agent_journal.grant_access($(lit "$RO"), 'writer'),
               agent_journal.grant_access($(lit "$RR"), 'reader'), agent_journal.grant_access($(lit "$RA"), 'admin')" >/dev/null
for p in "${PORTS[@]}"; do
  expect_eq "quoted roles: on port $p the roles exist and may run what their levels grant" \
    "$(n "$p" "SELECT string_agg(rolname || '=' || has_function_privilege(oid, 'agent_journal.append(uuid,integer,jsonb,bigint,text,bigint)', 'EXECUTE') || '/' || has_function_privilege(oid, 'agent_journal.replay(uuid,bigint,bigint)', 'EXECUTE'), ' ' ORDER BY rolname) FROM pg_roles WHERE rolname IN ($(lit "$RW"), $(lit "$RR"), $(lit "$RA"), $(lit "$RO"))")" \
    "Citus Reader=false/true Citus Writer=true/true Ev\"il Ad'min=true/true citus other=true/true"
done
expect_eq "quoted roles: the writer appends through the coordinator" "$(as_role "$C" "$RW" "SELECT agent_journal.append('$T', 1, '$E')")" "1"
n "$C" "SELECT agent_journal.bind_agent('$T', $(lit "$RW")::name)" >/dev/null
n "$C" "SELECT agent_journal.bind_agent('$T2', $(lit "$(ident "$RA")")::regrole)" >/dev/null
expect_eq "quoted roles: bind_agent(name) and bind_agent(regrole) recorded the names as given" \
  "$(n "$W2" "SELECT string_agg(owner::text, ',' ORDER BY agent_id) FROM agent_journal.agent_state WHERE agent_id IN ('$T', '$T2')")" \
  "$RW,$RA"
seq=1
for p in "${PORTS[@]}"; do
  seq=$((seq + 1))
  expect_eq "quoted roles: the bound writer appends on port $p" \
    "$(as_role "$p" "$RW" "SELECT agent_journal.append('$T', 1, '$E')")" "$seq"
  expect_eq "quoted roles: another writer is refused on port $p" \
    "$(as_role "$p" "$RO" "SELECT agent_journal.append('$T', 1, '$E')")" "42501"
  expect_eq "quoted roles: the reader may not write on port $p" \
    "$(as_role "$p" "$RR" "SELECT agent_journal.append('$T', 1, '$E')")" "42501"
  expect_eq "quoted roles: the admin replays the writer's agent on port $p" \
    "$(as_role "$p" "$RA" "SELECT count(*) FROM agent_journal.replay('$T')")" "$seq"
  expect_eq "quoted roles: the admin appends to its own agent on port $p" \
    "$(as_role "$p" "$RA" "SELECT agent_journal.append('$T2', 1, '$E')")" "$((seq - 1))"
  expect_eq "quoted roles: the writer may not touch the admin's agent on port $p" \
    "$(as_role "$p" "$RW" "SELECT count(*) FROM agent_journal.replay('$T2')")" "42501"
done
expect_eq "quoted roles: nothing written by the refused calls" \
  "$(n "$C" "SELECT agent_journal.latest_sequence('$T') || ',' || agent_journal.latest_sequence('$T2')")" "4,3"
# the agents view for a non-superuser on every node: the row-level
# security's admin check reads access_grants' local shard (a distributed
# query there is refused inside the shard query); a reader sees the
# unbound agents, the agent bound to another role stays hidden
AV_ALL=$(n "$C" "SELECT count(*) FROM agent_journal.agents")
AV_BOUND=$(n "$C" "SELECT count(*) FROM agent_journal.agent_state WHERE owner IS NOT NULL")
[ "$AV_BOUND" -gt 0 ] || fail "no bound agent to hide from the reader"
for p in "${PORTS[@]}"; do
  expect_eq "a reader's SELECT FROM agent_journal.agents on port $p: the agents it may see" \
    "$(as_role "$p" "$RR" "SELECT count(*) FROM agent_journal.agents")" "$((AV_ALL - AV_BOUND))"
  expect_eq "an admin's SELECT FROM agent_journal.agents on port $p: every agent" \
    "$(as_role "$p" "$RA" "SELECT count(*) FROM agent_journal.agents")" "$AV_ALL"
done

n "$C" "SELECT agent_journal.revoke_access($(lit "$RA"), 'admin'), agent_journal.revoke_access($(lit "$RW"), 'writer')" >/dev/null
for p in "${PORTS[@]}"; do
  expect_eq "quoted roles: revoked on the coordinator, the writer is refused on port $p" \
    "$(as_role "$p" "$RW" "SELECT agent_journal.append('$T', 1, '$E')")" "42501"
  expect_eq "quoted roles: revoked on the coordinator, the admin level is gone on port $p" \
    "$(as_role "$p" "$RA" "SELECT count(*) FROM agent_journal.replay('$T')")" "42501"
done

# a NULL agent: refused (22004) before Citus's planner sees it, on every
# node, and the node stays up
n "$C" "CREATE ROLE $(ident "$RR 2") LOGIN" >/dev/null
n "$C" "SELECT agent_journal.grant_access($(lit "$RR 2"), 'reader')" >/dev/null
for p in "${PORTS[@]}"; do
  expect_eq "a reader's latest_sequence(NULL) on port $p is refused (22004), no crash" \
    "$(as_role "$p" "$RR 2" "SELECT agent_journal.latest_sequence(NULL)")" "22004"
  expect_eq "a reader's replay(NULL) in FROM on port $p is refused (22004)" \
    "$(as_role "$p" "$RR 2" "SELECT count(*) FROM agent_journal.replay(NULL)")" "22004"
  expect_eq "prepared with a NULL \$1 on port $p: refused (22004)" \
    "$(psql -X -v VERBOSITY=sqlstate -At -h 127.0.0.1 -p "$p" -U postgres -d $DB \
         -c "PREPARE nl(uuid) AS SELECT agent_journal.latest_sequence(\$1)" -c "EXECUTE nl(NULL)" 2>&1 \
         | sed -n 's/^ERROR: *//p' | head -1)" "22004"
  expect_eq "set_retention(NULL, ...) (the default policy) on port $p: refused (22004)" \
    "$(sqlstate "$p" "SELECT agent_journal.set_retention(NULL, 10)")" "22004"
  expect_eq "port $p did not restart (no backend crashed)" \
    "$(grep -c "terminated by signal" "$CITUS_DIR.$p/server.log" || true)" "0"
done
# grant_access on the coordinator reaches every node for every function
RS="Citus Scraper"
n "$C" "CREATE ROLE $(ident "$RS") LOGIN" >/dev/null
n "$C" "SELECT agent_journal.grant_access($(lit "$RS"), 'scraper')" >/dev/null
for p in "$W1" "$W2"; do
  expect_eq "a scraper's prometheus_text() through worker $p (the grant reached it)" \
    "$(as_role "$p" "$RS" "SELECT length(agent_journal.prometheus_text()) > 0")" "t"
done
n "$C" "SELECT agent_journal.revoke_access($(lit "$RS"), 'scraper')" >/dev/null
expect_eq "revoked on the coordinator, the scraper is refused on a worker" \
  "$(as_role "$W1" "$RS" "SELECT length(agent_journal.prometheus_text()) > 0")" "42501"

# observability() in a transaction block answers as in autocommit, through
# every node
OBS_AUTO=$(n "$C" "SELECT agent_journal.observability('$T')")
[ -n "$OBS_AUTO" ] || fail "observability() in autocommit returned nothing"
for p in "${PORTS[@]}"; do
  expect_eq "observability() in a transaction block through port $p, as in autocommit" \
    "$(psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$p" -U postgres -d $DB -c "BEGIN" \
         -c "SELECT agent_journal.observability('$T')" -c "COMMIT" 2>&1)" "$OBS_AUTO"
done

# never written into a shell: every per-agent table's shell is empty on
# every node
for p in "${PORTS[@]}"; do
  expect_eq "the shells on port $p are empty (pg_relation_size)" \
    "$(n "$p" "SELECT sum(pg_relation_size(('agent_journal.' || t)::regclass)) FROM unnest(ARRAY['agent_state', 'entries', 'idempotency_keys', 'saved_states', 'lease_graph', 'feed_pending', 'access_grants']) t")" "0"
done
echo "citus_attack: ok ($((SECONDS - start))s)"
