#!/usr/bin/env bash
# Retention under load, in a cluster of its own that preloads the library
# (the runner's does not): 8 writers (pgbench) append to 16 agents for
# AJ_RET_SECONDS (default 35) with a default keep_last => 200 policy, the
# background worker running a retention pass every second and an
# aggressive autovacuum. Every 50th append of an agent saves a state in the
# append's transaction: the state's total is resume() folded (the latest
# state's total plus the n of every entry after it), computed while the
# append holds the agent's lock. Each append also writes (agent, sequence,
# n) to a side table, ret_acks, in the same transaction: the full history,
# which retention never touches. Checks, once the writers stop:
#  (c) every agent's resume() is a state then consecutive entries up to the
#      latest sequence, and folds to the total of ret_acks (the full replay);
#  (d) live entries are gap-free from the compaction point + 1 to the latest;
#  (e) nothing lost: each agent's latest sequence = its acknowledged appends
#      (ret_acks holds exactly 1..latest), and their sum = the transactions
#      pgbench reports plus the seeded ones;
#  (b) the entries table (pg_total_relation_size, sampled every second)
#      stays bounded: from the second quarter of the run to the last, its
#      largest size grows by less than a quarter (plus 512 kB) of what the
#      rows appended in between would take without retention (bytes per
#      row measured on the seeded, unbloated table; those rows must amount
#      to at least 1 MB);
#  (a) the worker removed entries (agent_journal_retention_removed_entries_total
#      > 0; nobody else calls apply_retention) and trims every agent to
#      exactly keep_last live entries (its latest state is at most 49
#      behind);
#  then: every writer transaction succeeded, no ERROR in the server log.
# To see it fail: AJ_RET_INTERVAL=0 (no retention pass: (b) fails, and
# (a) after it); AJ_RET_KEEP=10 AJ_RET_REQUIRE_STATE=false (entries after
# an agent's latest state go: (c) fails with 55000, and so do writers).
source "$(dirname "$0")/lib.bash"
T0=$SECONDS
PORT=${AJ_RET_PGPORT:-54383}
CLUSTER_DIR=/tmp/aj_ret_cluster.$PORT
RUN_S=${AJ_RET_SECONDS:-35}
INTERVAL=${AJ_RET_INTERVAL:-1}
KEEP=${AJ_RET_KEEP:-200}
REQUIRE_STATE=${AJ_RET_REQUIRE_STATE:-true}
AGENTS=16
WRITERS=8
DB=aj_ret
BENCH_PID=""
cleanup() {
  local st=$?
  if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  if [ $st -ne 0 ] && [ -f "$CLUSTER_DIR/server.log" ]; then
    echo "--- server log (tail)"; tail -30 "$CLUSTER_DIR/server.log"
  fi
  AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" stop >/dev/null 2>&1
  rm -rf "$TMPD"
  exit $st
}
trap cleanup EXIT

# The worker connects to $DB, created below from a template that already
# has the extension; until then it fails to connect and is restarted.
AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR AJ_PG_CONF="shared_preload_libraries = 'agent_journal'
agent_journal.export_database = '$DB'
agent_journal.retention_interval = $INTERVAL
synchronous_commit = off
autovacuum = on
autovacuum_naptime = 1
autovacuum_vacuum_threshold = 500
autovacuum_vacuum_scale_factor = 0.01
autovacuum_vacuum_insert_threshold = 1000
autovacuum_vacuum_insert_scale_factor = 0.01
autovacuum_vacuum_cost_delay = 0
autovacuum_vacuum_cost_limit = 10000" \
  "$AJ_ROOT/scripts/cluster" start >/dev/null || fail "could not start the preloaded cluster"
eval "$(AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" env)"
export PGHOST PGPORT PGUSER PGDATABASE
createdb ${DB}_tmpl
q ${DB}_tmpl "CREATE EXTENSION agent_journal" >/dev/null
createdb -T ${DB}_tmpl $DB

q $DB "
CREATE TABLE ret_acks (agent int NOT NULL, sequence bigint NOT NULL, n int NOT NULL,
                       PRIMARY KEY (agent, sequence));
CREATE FUNCTION ret_agent(i int) RETURNS uuid LANGUAGE sql IMMUTABLE
  AS \$\$ SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid \$\$;
-- resume() folded: the latest state's total plus the n of every entry after it
CREATE FUNCTION ret_fold(a uuid) RETURNS bigint LANGUAGE sql
  AS \$\$ SELECT coalesce(sum(CASE WHEN r.kind = 'state' THEN (r.event->>'total')::bigint
                                   ELSE (r.event->>'n')::bigint END), 0)
          FROM agent_journal.resume(a) r \$\$;
-- one acknowledged append (what each writer transaction does)
CREATE FUNCTION ret_append(i int, n int) RETURNS bigint LANGUAGE plpgsql AS \$\$
DECLARE s bigint;
BEGIN
  s := agent_journal.append(ret_agent(i), 1, jsonb_build_object('type', 'Add', 'n', n));
  INSERT INTO ret_acks VALUES (i, s, n);
  IF s % 50 = 0 THEN
    PERFORM agent_journal.save_state(ret_agent(i), jsonb_build_object('total', ret_fold(ret_agent(i))), s);
  END IF;
  RETURN s;
END \$\$;" >/dev/null

# Seed 300 entries per agent (states at 50, 100, ...), no policy yet: the
# table's size per row, unbloated, is what it would cost without retention.
q $DB "SELECT count(ret_append(i, (random() * 99)::int + 1))
       FROM generate_series(1, 300), generate_series(1, $AGENTS) i" >/dev/null
q $DB "VACUUM ANALYZE agent_journal.entries" >/dev/null
BPR=$(q $DB "SELECT pg_total_relation_size('agent_journal.entries') / count(*) FROM agent_journal.entries")
ok "seeded $AGENTS agents x 300 entries, $BPR bytes per row"
q $DB "SELECT agent_journal.set_retention(NULL, keep_last => $KEEP, require_state => $REQUIRE_STATE)" >/dev/null

worker_connected() {
  [ "$(q $DB "SELECT count(*) FROM pg_stat_activity
              WHERE backend_type = 'agent_journal exporter' AND datname = '$DB'")" = 1 ]
}
all_trimmed() {
  [ "$(q $DB "SELECT count(*) FROM agent_journal.agents WHERE live_entries = $KEEP")" = $AGENTS ]
}
wait_for 20 "the worker is connected to $DB" worker_connected

# 8 writers, one acknowledged append per transaction.
cat >"$TMPD/writer.sql" <<'SQL'
\set a random(1, :agents)
\set n random(1, 100)
SELECT ret_append(:a, :n);
SQL
pgbench -n -M prepared -c $WRITERS -j $WRITERS -T "$RUN_S" -D agents=$AGENTS -f "$TMPD/writer.sql" $DB \
  >"$TMPD/pgbench.log" 2>&1 &
BENCH_PID=$!

# Sample the table's size and the appended rows every second.
t_start=$SECONDS
: >"$TMPD/samples"
while kill -0 "$BENCH_PID" 2>/dev/null; do
  q $DB "SELECT $((SECONDS - t_start)), pg_total_relation_size('agent_journal.entries'),
                sum(latest_sequence), sum(live_entries)
         FROM agent_journal.agents" | tr '|' ' ' >>"$TMPD/samples" || true
  sleep 1
done
st=0
wait "$BENCH_PID" || st=$?
BENCH_PID=""
txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$TMPD/pgbench.log")
failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$TMPD/pgbench.log")
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$TMPD/pgbench.log")
[ -n "$txns" ] || { cat "$TMPD/pgbench.log"; fail "no transaction count from pgbench"; }
ok "$WRITERS writers for ${RUN_S}s: $txns appends ($tps per second), pgbench exit status $st"
if grep -q 'terminated by signal' "$CLUSTER_DIR/server.log"; then
  grep 'terminated by signal' -A1 "$CLUSTER_DIR/server.log" | head -4
  fail "a server process crashed during the run"
fi
# Correctness first ((c), (d), (e)), then the bounds ((b), (a)), then
# whether every writer's transaction succeeded.

# (c) resume(): a state, then consecutive entries up to the latest; folds
# to the full history's total. One row per agent that is not so.
bad=$(q $DB "
WITH r AS (
  SELECT i, x.sequence, x.kind,
         CASE WHEN x.kind = 'state' THEN (x.event->>'total')::bigint ELSE (x.event->>'n')::bigint END AS v,
         row_number() OVER (PARTITION BY i ORDER BY x.sequence) AS k,
         first_value(x.sequence) OVER (PARTITION BY i ORDER BY x.sequence) AS first_seq
  FROM generate_series(1, $AGENTS) i, agent_journal.resume(ret_agent(i)) x)
SELECT string_agg(format('agent %s: %s', i, why), '; ') FROM (
  SELECT i, format('state %s, %s rows, last %s, fold %s, latest %s, acked total %s',
                   (array_agg(sequence ORDER BY k) FILTER (WHERE kind = 'state'))[1], count(*),
                   max(sequence), sum(v), agent_journal.latest_sequence(ret_agent(i)),
                   (SELECT sum(n) FROM ret_acks a WHERE a.agent = r.i)) AS why
  FROM r GROUP BY i
  HAVING NOT (bool_and((kind = 'state') = (k = 1))
              AND bool_and(sequence = first_seq + k - 1)
              AND max(sequence) = agent_journal.latest_sequence(ret_agent(i))
              AND sum(v) = (SELECT sum(n) FROM ret_acks a WHERE a.agent = r.i))
  UNION ALL
  SELECT g.i, 'resume returned nothing' FROM generate_series(1, $AGENTS) g(i)
  WHERE NOT EXISTS (SELECT 1 FROM r WHERE r.i = g.i)) s" 2>&1) \
  || fail "(c) resume failed: $bad"
[ -z "$bad" ] || fail "(c) resume is not the full replay: $bad"
ok "(c) every agent's resume() is a state then consecutive entries, folding to the full history"

# (d) live entries gap-free from the compaction point to the latest
expect_eq "(d) agents whose live entries are not compacted_through+1..latest" "$(q $DB "
SELECT count(*) FROM agent_journal.agents s
WHERE (SELECT count(*) || ',' || min(sequence) || ',' || max(sequence)
       FROM agent_journal.entries e WHERE e.agent_id = s.agent_id)
      IS DISTINCT FROM (s.latest_sequence - s.compacted_through) || ',' || (s.compacted_through + 1) || ',' || s.latest_sequence")" 0

# (e) nothing lost: latest sequence = acknowledged appends, 1..latest each
expect_eq "(e) agents whose latest sequence is not their acknowledged appends 1..latest" "$(q $DB "
SELECT count(*) FROM generate_series(1, $AGENTS) i
WHERE (SELECT count(*) || ',' || count(DISTINCT sequence) || ',' || min(sequence) || ',' || max(sequence)
       FROM ret_acks a WHERE a.agent = i)
      IS DISTINCT FROM (SELECT latest_sequence || ',' || latest_sequence || ',1,' || latest_sequence
                        FROM agent_journal.agents WHERE agent_id = ret_agent(i))")" 0
expect_eq "(e) appends acknowledged to pgbench + seeded = sum of latest sequences" \
  "$(q $DB "SELECT sum(latest_sequence) FROM agent_journal.agents")" "$((txns + AGENTS * 300))"
expect_eq "(e) pgbench failed transactions" "${failed:-0}" 0

# (b) bounded size. Samples: elapsed s, size, appended, live.
echo "samples (elapsed s, entries table bytes, appended rows, live rows), every 4th:"
awk 'NR % 4 == 1 { printf "  %3d %10d %8d %6d\n", $1, $2, $3, $4 }' "$TMPD/samples"
awk -v run="$RUN_S" -v bpr="$BPR" '
  { t[NR] = $1; size[NR] = $2; app[NR] = $3 }
  END {
    # largest size in the second quarter and in the last quarter, and the
    # rows appended between the two (from the end of the second quarter)
    s2 = 0; s4 = 0; amid = 0; aend = app[NR]
    for (i = 1; i <= NR; i++) {
      if (t[i] >= run / 4 && t[i] < run / 2) { if (size[i] > s2) s2 = size[i]; amid = app[i] }
      if (t[i] >= run * 3 / 4 && size[i] > s4) s4 = size[i]
    }
    would = bpr * (aend - amid)
    printf "largest size: %d bytes in the second quarter, %d in the last; the %d rows appended in between would take %d bytes without retention; at the end %d rows would take %d\n",
           s2, s4, aend - amid, would, aend, bpr * aend
    if (s2 == 0 || s4 == 0) { print "no samples in a quarter"; exit 1 }
    if (would < 1048576) { print "too few appends in the second half to judge growth"; exit 1 }
    if (s4 - s2 > 0.25 * would + 524288) { print "the table grows with the appends"; exit 1 }
  }' "$TMPD/samples" || fail "(b) the entries table is not bounded"
ok "(b) the entries table stays bounded"
q $DB "SELECT 'autovacuum of entries: ' || autovacuum_count || ' runs'
       FROM pg_stat_user_tables WHERE relid = 'agent_journal.entries'::regclass"

# (a) the worker removed entries, and trims every agent to keep_last once
# the writers stop (its latest state is at most 49 behind the latest).
removed=$(q $DB "SELECT coalesce(sum(value), 0)::bigint FROM agent_journal.metric_samples
                 WHERE name = 'agent_journal_retention_removed_entries_total'")
[ "$removed" -gt 0 ] 2>/dev/null || fail "(a) the worker removed no entries (removed total '$removed')"
ok "(a) the worker removed $removed entries"
wait_for 15 "(a) the worker trimmed every agent to $KEEP live entries" all_trimmed

# series_ttl (0.6.0): the worker's pass deletes the series nobody wrote
# for longer (row and slots), keeps their families, a series whose slot
# was written recently, and the extension's own families.
psql -X -q -v ON_ERROR_STOP=1 -d $DB >/dev/null <<'SQL'
SELECT agent_journal.gauge_set('ret_stale', 1, '{"k": "a"}');
SELECT agent_journal.gauge_set('ret_stale', 2, '{"k": "b"}');
SELECT agent_journal.gauge_set('ret_fresh', 3);
SELECT agent_journal.counter_add('ret_slotted_total', 4);
INSERT INTO agent_journal.counter_slots (name, labels, slot, value) VALUES ('ret_slotted_total', '{}', 999, 1);
SELECT agent_journal.record_rejection('tenant_limit');
UPDATE agent_journal.metric_series SET updated_at = now() - interval '2 hours'
WHERE name IN ('ret_stale', 'ret_slotted_total', 'agent_journal_rejections_total')
   OR (name = 'ret_stale' AND labels = '{"k": "b"}');
ALTER SYSTEM SET agent_journal.series_ttl = '1h';
SELECT pg_reload_conf();
SQL
expired() { [ "$(q $DB "SELECT count(*) FROM agent_journal.metric_series WHERE name = 'ret_stale'")" = 0 ]; }
wait_for 20 "series_ttl: the worker deleted the series not written for 2 hours" expired
expect_eq "series_ttl: what is kept" \
  "$(q $DB "SELECT string_agg(name, ',' ORDER BY name) FROM agent_journal.metric_series WHERE name ~ '^(ret_|agent_journal_rej)'")" \
  "agent_journal_rejections_total,ret_fresh,ret_slotted_total"
expect_eq "series_ttl: the family stays" \
  "$(q $DB "SELECT count(*) FROM agent_journal.metric_families WHERE name = 'ret_stale'")" "1"
psql -X -q -d $DB -c "ALTER SYSTEM RESET agent_journal.series_ttl" -c "SELECT pg_reload_conf()" >/dev/null

# The change feed (0.7.0) under retention: the worker ticks every append
# into the feed (nothing stays pending), every live entry is in exactly one
# feed range, and its retention pass deletes the rows whose entries are all
# gone once no consumer needs them; a consumer that has not acknowledged
# them keeps them (it must get its gap row). A live agent's last feed row
# of entries stays (0.10.0: it says how far the feed covers the agent, which
# a tick rebuilding notes a crash lost reads).
nothing_pending() { [ "$(q $DB "SELECT (SELECT count(*) FROM agent_journal.feed_pending)
  + (SELECT count(*) FROM agent_journal.feed_appends WHERE first_sequence <> 0)")" = 0 ]; }
wait_for 10 "feed: the worker's ticks left nothing pending" nothing_pending
expect_eq "feed: live entries in no feed range, or in more than one" "$(q $DB "
  SELECT count(*) FROM agent_journal.entries e
  WHERE (SELECT count(*) FROM agent_journal.feed f WHERE f.agent_id = e.agent_id AND f.gap IS NULL
           AND e.sequence BETWEEN f.first_sequence AND f.last_sequence) <> 1")" "0"
stale_rows() { q $DB "SELECT count(*) FROM agent_journal.feed f JOIN agent_journal.agent_state a USING (agent_id)
                      WHERE f.last_sequence <= a.compacted_through
                        AND (f.gap IS NOT NULL OR EXISTS (SELECT FROM agent_journal.feed n
                             WHERE n.agent_id = f.agent_id AND n.gap IS NULL AND n.last_position > f.last_position))"; }
no_stale_rows() { [ "$(stale_rows)" = 0 ]; }
removed_rows() { q $DB "SELECT count(*) FROM agent_journal.feed f JOIN agent_journal.agent_state a USING (agent_id)
                        WHERE f.last_sequence <= a.compacted_through AND f.gap IS NULL"; }
wait_for 20 "feed: the worker's pass deleted the rows of entries retention removed" no_stale_rows
q $DB "SELECT agent_journal.subscribe('ret_consumer', true)" >/dev/null
q $DB "SELECT agent_journal.compact(agent_id) FROM agent_journal.agent_state ORDER BY agent_id LIMIT 1" >/dev/null
sleep $((INTERVAL * 3))
[ "$(removed_rows)" -gt 0 ] || fail "feed: rows of removed entries were deleted while a consumer had not acknowledged them"
expect_eq "feed: the consumer gets a gap for them" \
  "$(q $DB "SELECT count(*) > 0 FROM agent_journal.read_feed('ret_consumer', 100000) WHERE kind = 'gap'")" "t"
q $DB "SELECT agent_journal.ack_feed('ret_consumer', (SELECT last_position FROM agent_journal.feed_state))" >/dev/null
wait_for 20 "feed: acknowledged, they are deleted" no_stale_rows
expect_eq "feed: the compacted agent keeps its last row of entries (what a rebuild after a crash reads)" \
  "$(q $DB "SELECT count(*) FROM agent_journal.feed WHERE gap IS NULL AND agent_id =
              (SELECT agent_id FROM agent_journal.agent_state ORDER BY agent_id LIMIT 1)")" "1"
# What a crash does to the unlogged feed_appends (0.10.0), done by an
# operator while the writers go on: the notes of appends not yet ticked
# and the marker are gone. The worker's next tick rebuilds the notes from
# the journal: afterwards every live entry is in exactly one feed range,
# and the compacted agent (whose earlier rows the pass deleted) gets no
# new row.
kept_row() { q $DB "SELECT string_agg(last_position || ' ' || coalesce(gap, 'entries'), ',') FROM agent_journal.feed
                    WHERE agent_id = (SELECT agent_id FROM agent_journal.agent_state ORDER BY agent_id LIMIT 1)"; }
KEPT=$(kept_row)
# tally_deltas goes with it (the writers' notes carry their appends'
# counts, 0.11.0: the library is preloaded and the worker ticks this
# database; the notes lost carry counts not yet in tallies). In one
# REPEATABLE READ transaction: agent_journal_appended_entries_total
# before and after the TRUNCATE (one snapshot, no tick can run in between)
# must be the same: the render counts from the journal then.
APPENDED="SELECT value::bigint FROM agent_journal.metric_samples WHERE name = 'agent_journal_appended_entries_total'"
expect_eq "the appends' notes carry their counts here (no tally row)" \
  "$(q $DB "SELECT count(*) FROM agent_journal.tally_deltas WHERE name = 'journal_appended'")" "0"
both=$(psql -X -q -At -v ON_ERROR_STOP=1 -d $DB -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "$APPENDED" \
  -c "TRUNCATE agent_journal.feed_appends, agent_journal.tally_deltas" -c "$APPENDED" -c "COMMIT" | paste -sd' ')
[ "${both% *}" = "${both#* }" ] || fail "agent_journal_appended_entries_total before and after emptying tally_deltas: $both"
ok "agent_journal_appended_entries_total the same before and after emptying tally_deltas: $both"
marker_back() { [ "$(q $DB "SELECT count(*) FROM agent_journal.feed_appends WHERE first_sequence = 0")" = 1 ]; }
wait_for 10 "feed: after feed_appends was emptied under load, a tick put its marker back" marker_back
wait_for 10 "feed: and the ticks left nothing pending" nothing_pending
# (one statement: one snapshot, while the writers go on)
counted_right() { [ "$(q $DB "SELECT ($APPENDED) = (SELECT sum(latest_sequence) FROM agent_journal.agents)
  + (SELECT coalesce(sum(value), 0) FROM agent_journal.tallies WHERE name = 'forgotten_appended_entries')")" = t ]; }
wait_for 10 "the tick made up for the emptied tally_deltas: agent_journal_appended_entries_total is the journal's count" counted_right
expect_eq "feed: after the rebuild, live entries in no feed range, or in more than one" "$(q $DB "
  SELECT count(*) FROM agent_journal.entries e
  WHERE (SELECT count(*) FROM agent_journal.feed f WHERE f.agent_id = e.agent_id AND f.gap IS NULL
           AND e.sequence BETWEEN f.first_sequence AND f.last_sequence) <> 1")" "0"
expect_eq "feed: after the rebuild, the compacted agent has the same one row (no new one for its removed entries)" \
  "$(kept_row)" "$KEPT"

[ $st -eq 0 ] || { tail -20 "$TMPD/pgbench.log"; fail "pgbench exited with $st"; }
ok "every writer transaction succeeded"

errs=$(grep -c 'ERROR:' "$CLUSTER_DIR/server.log" || true)
[ "$errs" = 0 ] || { grep 'ERROR:' "$CLUSTER_DIR/server.log" | head -5; fail "$errs errors in the server log"; }
ok "no ERROR in the server log"
echo "retention test took $((SECONDS - T0)) s"
