#!/usr/bin/env bash
# agent_journal next to Citus (issue 11, its first part): a coordinator and
# two workers on loopback ports, Citus preloaded on all three.
#  1. With its tables left as plain tables on the coordinator (the layout
#     Citus calls "local"), the journal works there as on any server.
#  2. The layout issue 11 found losing acknowledged appends: entries and
#     agent_state distributed by hand with create_distributed_table. Every
#     function that reads or writes the tables directly (append,
#     append_batch, compact, forget_agent, replay, latest_sequence, the
#     renders, the feed) refuses with 0A000 and a hint
#     pointing to docs/scaling.md, on the coordinator and on a worker; no row
#     reaches a shell table or a shard (counted on every node).
#  3. The rows are intact; Citus's undistribute_table refuses tables that
#     belong to an extension, so the journal is moved back with pg_dump
#     (which reads the shards) and pg_restore into a database without
#     distribution, where it carries on (the recipe in docs/scaling.md).
# Prints one "SKIP: citus not installed" line and succeeds where Citus is
# not installed (it is not a Debian package; see docs/scaling.md).
source "$(dirname "$0")/lib.bash"
PKGLIB=$(pg_config --pkglibdir)
SHARE=$(pg_config --sharedir)
if [ ! -f "$PKGLIB/citus.so" ] || [ ! -f "$SHARE/extension/citus.control" ]; then
  echo "SKIP: citus not installed"
  exit 0
fi
BASE=${AJ_CITUS_PGPORT:-$((PGPORT + 41))}
PORTS=("$BASE" "$((BASE + 1))" "$((BASE + 2))")  # coordinator, worker 1, worker 2
C=${PORTS[0]}
DB=aj_citus
cleanup() {
  local st=$?
  for p in "${PORTS[@]}"; do
    if [ $st -ne 0 ] && [ -f "/tmp/aj_citus.$p/server.log" ]; then
      echo "--- server log of port $p (tail)"; tail -15 "/tmp/aj_citus.$p/server.log"
    fi
    AJ_PGPORT=$p AJ_CLUSTER_DIR=/tmp/aj_citus.$p "$AJ_ROOT/scripts/cluster" stop >/dev/null 2>&1 || true
  done
  rm -rf "$TMPD"
}
trap cleanup EXIT
for p in "${PORTS[@]}"; do
  AJ_PGPORT=$p AJ_CLUSTER_DIR=/tmp/aj_citus.$p AJ_PG_CONF="listen_addresses = '127.0.0.1'
shared_preload_libraries = 'citus'
citus.enable_statistics_collection = off
citus.shard_count = 4
max_connections = 100" "$AJ_ROOT/scripts/cluster" start >/dev/null
done
# n PORT SQL: one statement on a node, over loopback TCP
n() { psql -X -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$1" -U postgres -d $DB -c "$2"; }
# sqlstate PORT SQL: the SQLSTATE of the statement's error ("no error" if none)
sqlstate() {
  local out
  if out=$(psql -X -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -At -h 127.0.0.1 -p "$1" -U postgres -d $DB \
             -c "$2" 2>&1); then echo "no error"; else echo "$out" | sed -n 's/^ERROR: *//p' | head -1; fi
}
for p in "${PORTS[@]}"; do
  psql -X -q -h 127.0.0.1 -p "$p" -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null
  n "$p" "CREATE EXTENSION citus" >/dev/null
done
n "$C" "SELECT citus_set_coordinator_host('127.0.0.1', $C)" >/dev/null
n "$C" "SELECT citus_add_node('127.0.0.1', ${PORTS[1]})" >/dev/null
n "$C" "SELECT citus_add_node('127.0.0.1', ${PORTS[2]})" >/dev/null
expect_eq "workers registered" "$(n "$C" "SELECT count(*) FROM citus_get_active_worker_nodes()")" "2"
n "$C" "CREATE EXTENSION agent_journal" >/dev/null
for p in "${PORTS[1]}" "${PORTS[2]}"; do
  expect_eq "CREATE EXTENSION reached the worker on port $p" \
    "$(n "$p" "SELECT count(*) FROM pg_extension WHERE extname = 'agent_journal'")" "1"
done

# 1. the tables as plain tables on the coordinator
A=00000000-0000-0000-0000-0000000000c1
n "$C" "SELECT agent_journal.append('$A', i, jsonb_build_object('type', 'Step', 'n', i)) FROM generate_series(1, 5) i" >/dev/null
n "$C" "SELECT agent_journal.append_batch('$A', 6, ARRAY['{\"type\": \"Step\"}', '{\"type\": \"Step\"}']::jsonb[], 5)" >/dev/null
expect_eq "local layout: replay" "$(n "$C" "SELECT count(*) || ',' || max(sequence) FROM agent_journal.replay('$A')")" "7,7"
expect_eq "local layout: compact" "$(n "$C" "SELECT agent_journal.compact('$A', 2)")" "2"
expect_eq "local layout: the agents view" "$(n "$C" "SELECT live_entries FROM agent_journal.agents WHERE agent_id = '$A'")" "5"
expect_eq "local layout: forget_agent" "$(n "$C" "SELECT agent_journal.forget_agent('$A')")" "5"

# 2. entries and agent_state distributed by hand (the layout of issue 11),
#    with an agent's entries already there (Citus copies them into shards)
B=00000000-0000-0000-0000-0000000000c2
D=00000000-0000-0000-0000-0000000000c3
n "$C" "SELECT agent_journal.append('$D', i, jsonb_build_object('type', 'Step', 'n', i)) FROM generate_series(1, 3) i" >/dev/null
n "$C" "SELECT create_distributed_table('agent_journal.agent_state', 'agent_id')" >/dev/null
n "$C" "SELECT create_distributed_table('agent_journal.entries', 'agent_id', colocate_with => 'agent_journal.agent_state')" >/dev/null
n "$C" "SELECT truncate_local_data_after_distributing_table('agent_journal.entries')" >/dev/null 2>&1 || true
n "$C" "SELECT truncate_local_data_after_distributing_table('agent_journal.agent_state')" >/dev/null 2>&1 || true
expect_eq "entries and agent_state are distributed" \
  "$(n "$C" "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid IN ('agent_journal.entries'::regclass, 'agent_journal.agent_state'::regclass)")" "2"
calls=(
  "SELECT agent_journal.append('$B', 1, '{\"type\": \"Step\"}')"
  "SELECT agent_journal.append_batch('$B', 1, ARRAY['{\"type\": \"Step\"}']::jsonb[], 0)"
  "SELECT agent_journal.compact('$B', 1)"
  "SELECT agent_journal.forget_agent('$B')"
  "SELECT count(*) FROM agent_journal.replay('$B')"
  "SELECT agent_journal.latest_sequence('$B')"
  "SELECT length(exposition) FROM agent_journal.prometheus"
  "SELECT agent_journal.subscribe('citus_feed', true)"
)
for p in "$C" "${PORTS[1]}"; do
  where=$([ "$p" = "$C" ] && echo "the coordinator" || echo "a worker")
  for call in "${calls[@]}"; do
    expect_eq "distributed by hand, on $where: $call" "$(sqlstate "$p" "$call")" "0A000"
  done
done
hint=$(psql -X -At -h 127.0.0.1 -p "$C" -U postgres -d $DB -c "SELECT agent_journal.append('$B', 1, '{\"type\": \"Step\"}')" 2>&1 || true)
case "$hint" in
  *"managed by Citus"*"Nothing was written"*"docs/scaling.md"*) ok "the error says why, that nothing was written, and where to read on" ;;
  *) fail "the refusal does not explain itself: $hint" ;;
esac
# nothing was written anywhere: not into a shell, not into a shard
for p in "${PORTS[@]}"; do
  expect_eq "no row of the refused agent on port $p (shells or shards)" \
    "$(n "$p" "SET citus.override_table_visibility = off; SELECT coalesce(sum(c), 0) FROM (SELECT (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM ONLY %s WHERE agent_id = %L', oid::regclass, '$B'), false, true, '')))[1]::text::bigint AS c FROM pg_class WHERE relnamespace = 'agent_journal'::regnamespace AND relkind = 'r' AND relname ~ '^(entries|agent_state)(_[0-9]+)?$') x" | tail -1)" "0"
done

for p in "${PORTS[@]}"; do
  expect_eq "the shells of entries and agent_state on port $p are empty (pg_relation_size)" \
    "$(n "$p" "SELECT pg_relation_size('agent_journal.entries') + pg_relation_size('agent_journal.agent_state')")" "0"
done

expect_eq "the rows written before are intact in the shards (plain SELECT through the coordinator)" \
  "$(n "$C" "SELECT count(*) || ',' || max(sequence) FROM agent_journal.entries WHERE agent_id = '$D'")" "3,3"

# 3. moved back as docs/scaling.md says: Citus cannot undistribute a table
#    that belongs to an extension, but pg_dump reads the shards (COPY
#    through the coordinator); restored into a database where the tables
#    are plain, the journal carries on where it stopped
out=$(psql -X -At -h 127.0.0.1 -p "$C" -U postgres -d $DB -c "SELECT undistribute_table('agent_journal.entries')" 2>&1 || true)
case "$out" in
  *"an extension depends on it"*) ok "undistribute_table refuses a member of the extension, as docs/scaling.md says" ;;
  *) fail "undistribute_table: $out (update docs/scaling.md and the hint)" ;;
esac
dump=$TMPD/journal.dump
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
chmod 777 "$TMPD"
as_pg pg_dump -Fc --extension=agent_journal -h 127.0.0.1 -p "$C" -U postgres -d $DB -f "$dump"
psql -X -q -h 127.0.0.1 -p "$C" -U postgres -d postgres -c "CREATE DATABASE aj_moved" >/dev/null
as_pg pg_restore -h 127.0.0.1 -p "$C" -U postgres -d aj_moved "$dump"
m() { psql -X -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$C" -U postgres -d aj_moved -c "$1"; }
expect_eq "moved: no Citus in the new database" "$(m "SELECT count(*) FROM pg_extension WHERE extname = 'citus'")" "0"
expect_eq "moved: replay" "$(m "SELECT count(*) || ',' || max(sequence) FROM agent_journal.replay('$D')")" "3,3"
expect_eq "moved: append carries on" "$(m "SELECT agent_journal.append('$D', 4, '{\"type\": \"Step\"}')")" "4"
echo "citus: ok"
