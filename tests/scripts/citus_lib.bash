# The Citus cluster of tests/scripts/citus*.sh (sourced after lib.bash,
# with DB set): prints one "SKIP: citus not installed" line and exits 0
# where Citus is not installed (it is not a Debian package; see
# docs/scaling.md); else citus_start BASE starts a coordinator (BASE) and
# two workers (BASE+1, BASE+2) on loopback ports, Citus and agent_journal
# preloaded on all three (as the README asks), each in $AJ_CITUS_DIR_PREFIX.<port> (default /tmp/aj_citus), creates
# $DB with citus on each and registers the workers. PORTS, C, W1, W2 name
# the nodes; n, sqlstate and as_role run a statement on one.
PKGLIB=$(pg_config --pkglibdir)
SHARE=$(pg_config --sharedir)
if [ ! -f "$PKGLIB/citus.so" ] || [ ! -f "$SHARE/extension/citus.control" ]; then
  echo "SKIP: citus not installed"
  exit 0
fi
CITUS_DIR=${AJ_CITUS_DIR_PREFIX:-/tmp/aj_citus}
PORTS=()
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
citus_cleanup() {
  local st=$?
  for p in "${PORTS[@]}"; do
    if [ $st -ne 0 ] && [ -f "$CITUS_DIR.$p/server.log" ]; then
      echo "--- server log of port $p (tail)"; tail -15 "$CITUS_DIR.$p/server.log"
    fi
    AJ_PGPORT=$p AJ_CLUSTER_DIR=$CITUS_DIR.$p "$AJ_ROOT/scripts/cluster" stop >/dev/null 2>&1 || true
  done
  rm -rf "$TMPD"
}
trap citus_cleanup EXIT
# n PORT SQL: one statement on a node, over loopback TCP
n() { psql -X -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$1" -U postgres -d $DB -c "$2"; }
# sqlstate PORT SQL: the SQLSTATE of the statement's error ("no error" if none)
sqlstate() {
  local out
  if out=$(psql -X -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -At -h 127.0.0.1 -p "$1" -U postgres -d $DB \
             -c "$2" 2>&1); then echo "no error"; else echo "$out" | sed -n 's/^ERROR: *//p' | head -1; fi
}
# as_role PORT ROLE SQL: the first line of the result, or the SQLSTATE of its error
as_role() { psql -X -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -At -h 127.0.0.1 -p "$1" -U "$2" -d $DB -c "$3" 2>&1 | sed 's/^ERROR: *//' | head -1; }
citus_start() {  # citus_start BASE [EXTRA_CONF]
  PORTS=("$1" "$(($1 + 1))" "$(($1 + 2))")  # coordinator, worker 1, worker 2
  C=${PORTS[0]} W1=${PORTS[1]} W2=${PORTS[2]}
  local p
  for p in "${PORTS[@]}"; do
    AJ_PGPORT=$p AJ_CLUSTER_DIR=$CITUS_DIR.$p AJ_PG_CONF="listen_addresses = '127.0.0.1'
shared_preload_libraries = 'citus,agent_journal'
citus.enable_statistics_collection = off
citus.shard_count = 4
max_connections = 100
${2:-}" "$AJ_ROOT/scripts/cluster" start >/dev/null
  done
  for p in "${PORTS[@]}"; do
    psql -X -q -h 127.0.0.1 -p "$p" -U postgres -d postgres -c "CREATE DATABASE $DB" >/dev/null
    n "$p" "CREATE EXTENSION citus" >/dev/null
  done
  n "$C" "SELECT citus_set_coordinator_host('127.0.0.1', $C)" >/dev/null
  n "$C" "SELECT citus_add_node('127.0.0.1', $W1)" >/dev/null
  n "$C" "SELECT citus_add_node('127.0.0.1', $W2)" >/dev/null
  expect_eq "workers registered" "$(n "$C" "SELECT count(*) FROM citus_get_active_worker_nodes()")" "2"
}
