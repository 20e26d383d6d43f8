#!/usr/bin/env bash
# A hot standby (streaming replication between two local clusters) serves
# replay, the views and the exposition read-only: no read path writes.
source "$(dirname "$0")/lib.bash"
PGBIN=$(pg_config --bindir)
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
P_PORT=$((PGPORT + 11))
S_PORT=$((PGPORT + 12))
P_DIR=/tmp/aj_standby_primary.$P_PORT
S_DIR=/tmp/aj_standby_replica.$S_PORT
cleanup() {
  as_pg "$PGBIN/pg_ctl" -D "$S_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  AJ_PGPORT=$P_PORT AJ_CLUSTER_DIR=$P_DIR "$AJ_ROOT/scripts/cluster" stop >/dev/null 2>&1 || true
  rm -rf "$S_DIR" "$TMPD"
}
trap cleanup EXIT
# The library preloaded on both (the standby copies the configuration):
# the primary's worker ticks the feed in postgres (export_database's
# default), so its appends' notes in the unlogged feed_appends carry
# their counts until a tick moves them into tallies (0.11.0); the standby
# has no unlogged rows.
AJ_PGPORT=$P_PORT AJ_CLUSTER_DIR=$P_DIR AJ_PG_CONF="wal_level = replica
hot_standby_feedback = on
shared_preload_libraries = 'agent_journal'" "$AJ_ROOT/scripts/cluster" start >/dev/null
PHOST=$P_DIR/sock
rm -rf "$S_DIR"; mkdir -p "$S_DIR/sock"
[ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$S_DIR"
as_pg "$PGBIN/pg_basebackup" -h "$PHOST" -p $P_PORT -U postgres -D "$S_DIR/data" -R -X stream >/dev/null
{
  echo "port = $S_PORT"
  echo "unix_socket_directories = '$S_DIR/sock'"
  echo "hot_standby = on"
} | as_pg tee -a "$S_DIR/data/postgresql.conf" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$S_DIR/data" -l "$S_DIR/server.log" -w start >/dev/null || { cat "$S_DIR/server.log"; fail "standby start"; }

pq() { psql -X -v ON_ERROR_STOP=1 -At -h "$PHOST" -p $P_PORT -d postgres -c "$1"; }
sq() { psql -X -v ON_ERROR_STOP=1 -At -h "$S_DIR/sock" -p $S_PORT -d postgres -c "$1"; }
A=00000000-0000-0000-0000-0000000000f1
pq "CREATE EXTENSION agent_journal" >/dev/null
pq "SELECT agent_journal.append('$A', i, jsonb_build_object('type', CASE WHEN i = 3 THEN 'Interrupted' WHEN i = 4 THEN 'Resumed' ELSE 'Step' END)) FROM generate_series(1, 10) i" >/dev/null
pq "SELECT agent_journal.counter_add('replicated_total', 3)" >/dev/null
# a feed consumer on the primary; its reads there ticked the entries in
pq "SELECT agent_journal.subscribe('replicated_feed', true)" >/dev/null
pq "SELECT count(*) FROM agent_journal.read_feed('replicated_feed', 0)" >/dev/null
pq "SELECT agent_journal.ingest_snapshot('{\"timestamp\": 1700000000, \"scheduler\": {\"total_scheduled\": 10, \"uptime_seconds\": 3600, \"running_agents\": 5, \"queued_agents\": 3, \"suspended_agents\": 2, \"max_capacity\": 1000, \"load_factor\": 0.005}, \"task_manager\": {\"total_tasks\": 5, \"healthy_tasks\": 4, \"average_uptime_seconds\": 1800.0, \"total_memory_usage\": 1024}, \"load_balancer\": {\"total_allocations\": 100, \"active_allocations\": 5, \"memory_utilization\": 0.45, \"cpu_utilization\": 0.30, \"allocation_failures\": 2, \"average_allocation_time_ms\": 1.5}, \"system\": {\"memory_usage_mb\": 512.0, \"cpu_usage_percent\": 30.0}}')" >/dev/null
lsn=$(pq "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 100); do
  [ "$(sq "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")" = t ] && break
  sleep 0.1
done
expect_eq "standby is in recovery" "$(sq "SELECT pg_is_in_recovery()")" "t"
expect_eq "replay on the standby" "$(sq "SELECT count(*) || ',' || max(sequence) FROM agent_journal.replay('$A')")" "10,10"
expect_eq "latest/next/last iteration" "$(sq "SELECT agent_journal.latest_sequence('$A') || ',' || agent_journal.next_sequence('$A') || ',' || agent_journal.last_completed_iteration('$A')")" "10,11,10"
expect_eq "agents view" "$(sq "SELECT live_entries FROM agent_journal.agents WHERE agent_id = '$A'")" "10"
expect_eq "prometheus view" "$(sq "SELECT count(*) FROM agent_journal.prometheus, regexp_split_to_table(exposition, E'\n') l WHERE l IN ('replicated_total 3', 'agent_runtime_scheduler_running_agents{service=\"agent-runtime\"} 5')")" "2"
expect_eq "openmetrics view ends with # EOF" "$(sq "SELECT right(exposition, 6) = E'# EOF\n' FROM agent_journal.openmetrics")" "t"
expect_eq "metric_samples" "$(sq "SELECT value FROM agent_journal.metric_samples WHERE name = 'replicated_total'")" "3"
# The standby has no unlogged table's rows (feed_appends, whose notes
# carry the primary's latest appends' counts until a tick): it counts
# appended entries from the journal, the same number as the primary
expect_eq "the primary's appends wrote no tally row of their own" \
  "$(pq "SELECT count(*) FROM agent_journal.tally_deltas WHERE name = 'journal_appended'")" "0"
expect_eq "agent_journal_appended_entries_total on the standby, as on the primary" \
  "$(sq "SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_journal_appended_entries_total'")" \
  "$(pq "SELECT value FROM agent_journal.metric_samples WHERE name = 'agent_journal_appended_entries_total'")"
expect_eq "otlp_json" "$(sq "SELECT agent_journal.otlp_json() ? 'resourceMetrics'")" "t"
expect_eq "observability" "$(sq "SELECT agent_journal.observability('$A')->>'replay_cost'")" "10"
expect_eq "read_feed on the standby (no tick there)" \
  "$(sq "SELECT count(*) || ',' || string_agg(DISTINCT kind, ',' ORDER BY kind) FROM agent_journal.read_feed('replicated_feed')")" "10,Interrupted,Resumed,Step"
expect_eq "feed_consumers on the standby" "$(sq "SELECT consumer || ',' || lag_entries FROM agent_journal.feed_consumers")" "replicated_feed,10"
for call in "agent_journal.ack_feed('replicated_feed', 1)" "agent_journal.subscribe('standby_feed')" \
            "agent_journal.unsubscribe('replicated_feed')"; do
  out=$(psql -X -At -v VERBOSITY=sqlstate -h "$S_DIR/sock" -p $S_PORT -d postgres -c "SELECT $call" 2>&1 || true)
  expect_eq "on the standby, $call is refused" "$out" "ERROR:  25006"
done
printf '%s\n' "$(sq "SELECT exposition FROM agent_journal.prometheus")" | promtool check metrics || fail "promtool on the standby's exposition"
ok "standby exposition passes promtool"
# writes are refused with a clear read-only error, nothing crashes
out=$(psql -X -At -h "$S_DIR/sock" -p $S_PORT -d postgres -c "SELECT agent_journal.append('$A', 0, '{}')" 2>&1 || true)
echo "$out" | grep -q "read-only transaction\|recovery" || fail "append on standby: $out"
ok "append on the standby is refused: $out"
expect_eq "primary unaffected" "$(pq "SELECT agent_journal.append('$A', 11, '{}')")" "11"
