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
DB=aj_citus
source "$(dirname "$0")/citus_lib.bash"
# the background worker on every node (feed ticks, retention passes every
# second: idle on a distributed journal, checked at the end)
citus_start "${AJ_CITUS_PGPORT:-$((PGPORT + 41))}" "agent_journal.export_database = '$DB'
agent_journal.retention_interval = 1"
# the version before the current one: ALTER EXTENSION ... UPDATE is run
# on the distributed journal below (the upgrade scripts must cope with
# distributed tables)
PREV=0.8.0
CUR=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$AJ_ROOT/agent_journal.control")
n "$C" "CREATE EXTENSION agent_journal VERSION '$PREV'" >/dev/null
for p in "${PORTS[1]}" "${PORTS[2]}"; do
  expect_eq "CREATE EXTENSION reached the worker on port $p" \
    "$(n "$p" "SELECT count(*) FROM pg_extension WHERE extname = 'agent_journal'")" "1"
done

# 1. the tables as plain tables on the coordinator
A=00000000-0000-0000-0000-0000000000c1
n "$C" "SELECT agent_journal.append('$A', i, jsonb_build_object('type', 'Step', 'n', i)) FROM generate_series(1, 5) i" >/dev/null
n "$C" "SELECT agent_journal.append_batch('$A', 6, ARRAY['{\"type\": \"Step\"}', '{\"type\": \"Step\"}']::jsonb[], 5)" >/dev/null
expect_eq "local layout: the feed works (a consumer from the beginning reads the 7 entries)" \
  "$(n "$C" "SELECT agent_journal.subscribe('citus_early', true)" >/dev/null; n "$C" "SELECT count(*) FROM agent_journal.read_feed('citus_early')")" "7"
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
  *"managed by Citus"*"nothing was written"*"distribute()"*"docs/scaling.md"*) ok "the error says why, that nothing was written, and where to read on" ;;
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
chmod 777 "$TMPD"
as_pg pg_dump -Fc --extension=agent_journal -h 127.0.0.1 -p "$C" -U postgres -d $DB -f "$dump"
psql -X -q -h 127.0.0.1 -p "$C" -U postgres -d postgres -c "CREATE DATABASE aj_moved" >/dev/null
as_pg pg_restore -h 127.0.0.1 -p "$C" -U postgres -d aj_moved "$dump"
m() { psql -X -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$C" -U postgres -d aj_moved -c "$1"; }
expect_eq "moved: no Citus in the new database" "$(m "SELECT count(*) FROM pg_extension WHERE extname = 'citus'")" "0"
expect_eq "moved: replay" "$(m "SELECT count(*) || ',' || max(sequence) FROM agent_journal.replay('$D')")" "3,3"
expect_eq "moved: append carries on" "$(m "SELECT agent_journal.append('$D', 4, '{\"type\": \"Step\"}')")" "4"

# 4. distribute(): the supported layout. It completes the hand-made one
#    above (entries and agent_state already distributed, co-located) and
#    is idempotent.
n "$C" "SELECT agent_journal.distribute()" >/dev/null 2>&1 || fail "distribute() failed: $(n "$C" "SELECT agent_journal.distribute()" 2>&1)"
n "$C" "SELECT agent_journal.distribute()" >/dev/null
expect_eq "distribute(): every per-agent table hash-distributed by agent_id, co-located" \
  "$(n "$C" "SELECT count(*) || ',' || count(DISTINCT colocationid) FROM pg_dist_partition WHERE logicalrelid::regclass::text IN ('agent_journal.agent_state', 'agent_journal.entries', 'agent_journal.idempotency_keys', 'agent_journal.saved_states', 'agent_journal.lease_graph', 'agent_journal.feed_pending') AND partmethod = 'h'")" "6,1"
E='{"type": "Step"}'
# the failures issue 11 found, now each a check: the first append through
# the coordinator lands in a shard, the second does not collide, a worker's
# append (delegated or not) lands in the same shards
expect_eq "distributed: the first append through the coordinator" "$(n "$C" "SELECT agent_journal.append('$B', 1, '$E')")" "1"
expect_eq "distributed: the second append through the coordinator" "$(n "$C" "SELECT agent_journal.append('$B', 1, '$E')")" "2"
expect_eq "distributed: an append through worker 1" "$(n "$W1" "SELECT agent_journal.append('$B', 1, '$E')")" "3"
expect_eq "distributed: an append through worker 2" "$(n "$W2" "SELECT agent_journal.append('$B', 1, '$E')")" "4"
expect_eq "distributed: append_batch with expected_sequence and a key" \
  "$(n "$C" "SELECT agent_journal.append_batch('$B', 2, ARRAY['$E', '$E']::jsonb[], 4, 'batch-1')")" "6"
expect_eq "distributed: the same key again answers the same batch" \
  "$(n "$W1" "SELECT agent_journal.append_batch('$B', 2, ARRAY['$E', '$E']::jsonb[], 4, 'batch-1')")" "6"
expect_eq "distributed: a stale expected_sequence is refused (40001)" \
  "$(sqlstate "$C" "SELECT agent_journal.append('$B', 1, '$E', 3)")" "40001"
expect_eq "distributed: the entries are in the shards (plain SELECT through the coordinator)" \
  "$(n "$C" "SELECT count(*) || ',' || max(sequence) FROM agent_journal.entries WHERE agent_id = '$B'")" "6,6"
# ALTER EXTENSION ... UPDATE on the distributed journal (Citus runs it on
# every node), then distribute() again, as the README says
U=00000000-0000-0000-0000-0000000000d1
expect_eq "upgrade: an agent written at $PREV" "$(n "$C" "SELECT agent_journal.append('$U', 1, '$E')")" "1"
n "$C" "ALTER EXTENSION agent_journal UPDATE" >/dev/null
for p in "${PORTS[@]}"; do
  expect_eq "upgrade: port $p runs $CUR" "$(n "$p" "SELECT extversion FROM pg_extension WHERE extname = 'agent_journal'")" "$CUR"
done
expect_eq "upgrade: the journal written at $PREV carries on" "$(n "$W1" "SELECT agent_journal.append('$U', 1, '$E', 1)")" "2"
# the consumer subscribed in section 1 (0.8.0's distribute() did not look):
# distribute() refuses while there is one; unsubscribe works on a
# distributed journal
out=$(psql -X -v VERBOSITY=verbose -At -h 127.0.0.1 -p "$C" -U postgres -d $DB -c "SELECT agent_journal.distribute()" 2>&1 || true)
case "$out" in
  *55000*"has consumers"*) ok "upgrade: distribute() refuses while the feed has a consumer (55000)" ;;
  *) fail "upgrade: distribute() with a feed consumer: $out" ;;
esac
expect_eq "upgrade: unsubscribe on the distributed journal (on the coordinator, where the consumers are)" "$(n "$C" "SELECT agent_journal.unsubscribe('citus_early')")" "t"
n "$C" "SELECT agent_journal.distribute()" >/dev/null
expect_eq "upgrade: distribute() again makes access_grants a reference table" \
  "$(n "$C" "SELECT partmethod::text || repmodel::text FROM pg_dist_partition WHERE logicalrelid = 'agent_journal.access_grants'::regclass")" "nt"
expect_eq "upgrade: and replays after it" "$(n "$W2" "SELECT count(*) || ',' || max(sequence) FROM agent_journal.replay('$U')")" "2,2"
# replay: with literals, prepared parameters, in a select list, from
# plpgsql (not delegated: it pages through Citus), paged, on every node
for p in "${PORTS[@]}"; do
  expect_eq "distributed: replay with literals on port $p" \
    "$(n "$p" "SELECT count(*) || ',' || min(sequence) || ',' || max(sequence) FROM agent_journal.replay('$B')")" "6,1,6"
  expect_eq "distributed: replay paged on port $p" \
    "$(n "$p" "SELECT string_agg(sequence::text, ' ' ORDER BY sequence) FROM agent_journal.replay('$B', 3, 2)")" "3 4"
done
expect_eq "distributed: replay prepared with \$1" \
  "$(n "$C" "PREPARE r(uuid, bigint) AS SELECT count(*) FROM agent_journal.replay(\$1, \$2); EXECUTE r('$B', 2); EXECUTE r('$B', 2); EXECUTE r('$B', 2); EXECUTE r('$B', 2); EXECUTE r('$B', 2); EXECUTE r('$B', 5)" | tail -1)" "2"
expect_eq "distributed: replay in a select list" \
  "$(n "$C" "SELECT count(*) FROM (SELECT agent_journal.replay('$B')) x")" "6"
expect_eq "distributed: replay from plpgsql" \
  "$(n "$C" "DO \$\$ DECLARE c bigint; BEGIN SELECT count(*) INTO c FROM agent_journal.replay('$B'); RAISE NOTICE 'replayed %', c; END \$\$" 2>&1 | sed -n 's/.*replayed //p')" "6"
expect_eq "distributed: the rows written before any distribution replay" \
  "$(n "$W2" "SELECT count(*) || ',' || max(sequence) FROM agent_journal.replay('$D')")" "3,3"
expect_eq "distributed: latest_sequence, next_sequence in one select list (not delegated: read through Citus)" \
  "$(n "$C" "SELECT agent_journal.latest_sequence('$B') || ',' || agent_journal.next_sequence('$B')")" "6,7"
expect_eq "distributed: last_completed_iteration (the batch was iteration 2)" "$(n "$W1" "SELECT agent_journal.last_completed_iteration('$B')")" "2"
# a writer Citus cannot delegate (from plpgsql) on a node without the
# agent's shards refuses before writing
owner_port=$(n "$C" "SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = get_shard_id_for_distribution_column('agent_journal.entries', '$B')")
expect_eq "distributed: a writer that cannot run on the agent's node refuses (0A000)" \
  "$(sqlstate "$C" "DO \$\$ BEGIN PERFORM agent_journal.append('$B', 1, '{\"type\": \"Step\"}'); END \$\$")" "0A000"
expect_eq "distributed: nothing was written by it" "$(n "$C" "SELECT agent_journal.latest_sequence('$B')")" "6"
# a rolled-back append leaves no gap
n "$C" "BEGIN; SELECT agent_journal.append('$B', 1, '$E'); ROLLBACK" >/dev/null
expect_eq "distributed: rollback leaves no gap" "$(n "$W1" "SELECT agent_journal.append('$B', 1, '$E')")" "7"
expect_eq "distributed: compact" "$(n "$C" "SELECT agent_journal.compact('$B', 2)")" "2"
expect_eq "distributed: replay after compact" "$(n "$W2" "SELECT min(sequence) FROM agent_journal.replay('$B')")" "3"

expect_eq "distributed: save_state" "$(n "$C" "SELECT agent_journal.save_state('$B', '{\"s\": 1}')")" "7"
expect_eq "distributed: resume_from on a worker" "$(n "$W2" "SELECT agent_journal.resume_from('$B')")" "7"
expect_eq "distributed: entry_by_key (the batch's entries)" "$(n "$W1" "SELECT string_agg(sequence::text, ' ' ORDER BY sequence) FROM agent_journal.entry_by_key('$B', 'batch-1')")" "5 6"
tok=$(n "$C" "SELECT agent_journal.claim_agent('$B', 'w1', '1 minute')")
expect_eq "distributed: an append fenced by the lease (through a worker)" \
  "$(n "$W1" "SELECT agent_journal.append('$B', 3, '$E', NULL, NULL, $tok)")" "8"
expect_eq "distributed: an append without the lease is refused" \
  "$(sqlstate "$C" "SELECT agent_journal.append('$B', 3, '$E')")" "55006"
expect_eq "distributed: renew_lease through the other worker" \
  "$(n "$W2" "SELECT agent_journal.renew_lease('$B', $tok, '2 minutes') > now() + interval '1 minute'")" "t"
expect_eq "distributed: release_agent" "$(n "$W2" "SELECT agent_journal.release_agent('$B', $tok)")" "t"
expect_eq "distributed: observability (replay cost = the live entries)" \
  "$(n "$C" "SELECT agent_journal.observability('$B')" | grep -o '"replay_cost": [0-9]*')" '"replay_cost": 6'
expect_eq "distributed: observability where Citus cannot delegate it names the agent's node (0A000)" \
  "$(sqlstate "$C" "SELECT agent_journal.observability('$B')->>'replay_cost'")" "0A000"
expect_eq "distributed: the agents view through the coordinator" \
  "$(n "$C" "SELECT live_entries FROM agent_journal.agents WHERE agent_id = '$B'")" "6"
# not supported on a distributed journal yet: refused before anything is
# written (README, "Scaling out with Citus")
for call in "SELECT agent_journal.subscribe('citus_later')" "SELECT count(*) FROM agent_journal.read_feed('citus_later')" \
            "SELECT agent_journal.apply_retention()" "SELECT count(*) FROM agent_journal.resume('$B')" \
            "SELECT agent_journal.fork_agent('$B', 5, '00000000-0000-0000-0000-0000000000cf')"; do
  expect_eq "distributed, not yet: $call refuses (0A000)" "$(sqlstate "$C" "$call")" "0A000"
done
# replay_backward (a C function on every node after distribute()): the
# latest entries, newest first, by kind, paged by before_sequence
for p in "${PORTS[@]}"; do
  expect_eq "distributed: replay_backward on port $p" \
    "$(n "$p" "SELECT string_agg(sequence::text, ' ') FROM agent_journal.replay_backward('$B', NULL, 3)")" "8 7 6"
  expect_eq "distributed: replay_backward before a sequence, by kind, on port $p" \
    "$(n "$p" "SELECT string_agg(sequence::text, ' ') FROM agent_journal.replay_backward('$B', 7, 2, ARRAY['Step'])")" "6 5"
done
expect_eq "distributed: replay_backward prepared with \$1, from plpgsql's point of view (not delegated)" \
  "$(n "$C" "PREPARE rb(uuid, bigint) AS SELECT count(*) FROM agent_journal.replay_backward(\$1, \$2); EXECUTE rb('$B', 4); EXECUTE rb('$B', 4); EXECUTE rb('$B', 4); EXECUTE rb('$B', 4); EXECUTE rb('$B', 4); EXECUTE rb('$B', 5)" | tail -1)" "2"
expect_eq "distributed: replay_backward's argument check (22023)" \
  "$(sqlstate "$W1" "SELECT count(*) FROM agent_journal.replay_backward('$B', 0)")" "22023"
expect_eq "distributed: the refused calls left the agent intact" "$(n "$W1" "SELECT agent_journal.latest_sequence('$B')")" "8"
expect_eq "distributed: the writers note nothing for a feed (feed_pending stays empty)" \
  "$(n "$C" "SELECT count(*) FROM agent_journal.feed_pending")" "0"

# the renders, on the coordinator: the journal's own families are the sums
# of every node's counts (each call counts where it ran: on the agent's
# node); the metric tables are the coordinator's
metric() {  # metric PORT NAME: its value in the Prometheus render
  n "$1" "SELECT exposition FROM agent_journal.prometheus" | awk -v m="$2" '$1 == m {print $2}'
}
n "$C" "SELECT agent_journal.counter_add('citus_jobs_total', 2)" >/dev/null
expect_eq "renders: a counter_add on the coordinator is rendered" "$(metric "$C" citus_jobs_total)" "2"
expect_eq "renders: agent_journal_agents counts the agents of every node" \
  "$(metric "$C" agent_journal_agents)" "$(n "$C" "SELECT count(*) FROM agent_journal.agents")"
expect_eq "renders: agent_journal_live_entries counts every node's live entries" \
  "$(metric "$C" agent_journal_live_entries)" "$(n "$C" "SELECT sum(live_entries) FROM agent_journal.agents")"
# (every append since the start, on any node: the live agents' and the 7
# of agent A, forgotten in section 1)
expect_eq "renders: agent_journal_appended_entries_total counts every node's appends" \
  "$(metric "$C" agent_journal_appended_entries_total)" "$(n "$C" "SELECT sum(latest_sequence) + 7 FROM agent_journal.agents")"
expect_eq "renders: agent_journal_saved_states" "$(metric "$C" agent_journal_saved_states)" "1"
expect_eq "renders: the OpenMetrics render agrees" \
  "$(n "$C" "SELECT exposition FROM agent_journal.openmetrics" | awk '$1 == "agent_journal_agents" {print $2 + 0}')" \
  "$(metric "$C" agent_journal_agents)"
for p in "$W1" "$W2"; do
  expect_eq "renders: through worker $p the text renders are the coordinator's (Prometheus)" \
    "$(metric "$p" citus_jobs_total),$(metric "$p" agent_journal_agents)" "2,$(metric "$C" agent_journal_agents)"
  expect_eq "renders: through worker $p (OpenMetrics)" \
    "$(n "$p" "SELECT exposition FROM agent_journal.openmetrics" | awk '$1 == "citus_jobs_total" {print $2 + 0}')" "2"
  expect_eq "renders: through worker $p (OTLP JSON)" \
    "$(n "$p" "SELECT count(*) FROM jsonb_path_query(agent_journal.otlp_json(), '\$.resourceMetrics[*].scopeMetrics[*].metrics[*] ? (@.name == \"citus_jobs\")')")" "1"
  expect_eq "renders: the metric_samples view refuses on a worker (0A000)" \
    "$(sqlstate "$p" "SELECT count(*) FROM agent_journal.metric_samples")" "0A000"
  expect_eq "renders: counter_add refuses on a worker rather than count on the side (0A000)" \
    "$(sqlstate "$p" "SELECT agent_journal.counter_add('citus_jobs_total')")" "0A000"
done
out=$(psql -X -At -h 127.0.0.1 -p "$W1" -U postgres -d $DB -c "SELECT agent_journal.counter_add('citus_jobs_total')" 2>&1 || true)
case "$out" in
  *"run on the coordinator (127.0.0.1:$C)"*) ok "the worker's refusal names the coordinator" ;;
  *) fail "the worker's refusal does not name the coordinator: $out" ;;
esac
# a lease taken over after it expired is counted on the agent's node
LT=00000000-0000-0000-0000-0000000000d2
n "$W1" "SELECT agent_journal.claim_agent('$LT', 'first', '50 milliseconds')" >/dev/null
sleep 0.3
n "$W2" "SELECT agent_journal.claim_agent('$LT', 'second', '1 minute')" >/dev/null
expect_eq "renders: a lease takeover on a worker is in the coordinator's render" \
  "$(metric "$C" agent_journal_lease_takeovers_total)" "1"

# forget_agent, through a worker and through the coordinator: the agent's
# entries, keys, saved states, lease graph and state go from its shards;
# the counters do not go down
appended=$(metric "$C" agent_journal_appended_entries_total)
agents=$(metric "$C" agent_journal_agents)
forgotten=$(n "$W2" "SELECT agent_journal.forget_agent('$B')")
expect_eq "forget_agent through a worker: the live entries it removed" "$forgotten" "6"
for t in entries idempotency_keys saved_states lease_graph agent_state; do
  expect_eq "forget_agent: nothing of the agent left in $t (read through the coordinator)" \
    "$(n "$C" "SELECT count(*) FROM agent_journal.$t WHERE agent_id = '$B'")" "0"
done
expect_eq "forget_agent: the agent replays nothing on any node" "$(n "$W1" "SELECT count(*) FROM agent_journal.replay('$B')")" "0"
expect_eq "forget_agent: agent_journal_appended_entries_total does not go down" \
  "$(metric "$C" agent_journal_appended_entries_total)" "$appended"
expect_eq "forget_agent: agent_journal_agents counts one agent less" "$(metric "$C" agent_journal_agents)" "$((agents - 1))"
expect_eq "forget_agent: agent_journal_saved_states counts its saved state off" "$(metric "$C" agent_journal_saved_states)" "0"
expect_eq "forget_agent through the coordinator" "$(n "$C" "SELECT agent_journal.forget_agent('$U')")" "2"
expect_eq "forget_agent: the forgotten agent starts again at 1" "$(n "$W1" "SELECT agent_journal.append('$U', 1, '$E')")" "1"
expect_eq "forget_agent: a forget Citus cannot delegate, on a node without the agent, refuses (0A000)" \
  "$(sqlstate "$C" "DO \$\$ BEGIN PERFORM agent_journal.forget_agent('$U'); END \$\$")" "0A000"
expect_eq "forget_agent: and removed nothing" "$(n "$C" "SELECT agent_journal.latest_sequence('$U')")" "1"

# tenants: roles and grant_access on the coordinator (Citus creates the
# roles and copies the function grants to the workers); an agent bound to
# one writer refuses another on every node; the admin level (access_grants,
# a reference table from 0.9.0) holds on every node
T=00000000-0000-0000-0000-0000000000cb
n "$C" "CREATE ROLE \"Citus Writer\" LOGIN; CREATE ROLE citus_other LOGIN; CREATE ROLE citus_admin LOGIN" >/dev/null
n "$C" "SELECT agent_journal.grant_access('Citus Writer', 'writer'), agent_journal.grant_access('citus_other', 'writer'), agent_journal.grant_access('citus_admin', 'admin')" >/dev/null
expect_eq "tenants: a writer appends through the coordinator" "$(as_role "$C" "Citus Writer" "SELECT agent_journal.append('$T', 1, '$E')")" "1"
expect_eq "tenants: and through a worker" "$(as_role "$W1" "Citus Writer" "SELECT agent_journal.append('$T', 1, '$E')")" "2"
n "$C" "SELECT agent_journal.bind_agent('$T', '\"Citus Writer\"'::regrole)" >/dev/null
for p in "${PORTS[@]}"; do
  expect_eq "tenants: the bound agent refuses another writer on port $p" \
    "$(as_role "$p" citus_other "SELECT agent_journal.append('$T', 1, '$E')")" "42501"
  expect_eq "tenants: and its replay on port $p" \
    "$(as_role "$p" citus_other "SELECT count(*) FROM agent_journal.replay('$T')")" "42501"
done
expect_eq "tenants: the owner replays through a worker" "$(as_role "$W2" "Citus Writer" "SELECT count(*) FROM agent_journal.replay('$T')")" "2"
expect_eq "tenants: nothing written by the refused calls" "$(n "$C" "SELECT agent_journal.latest_sequence('$T')")" "2"
for p in "${PORTS[@]}"; do
  expect_eq "tenants: the admin level granted on the coordinator holds on port $p (access_grants is a reference table)" \
    "$(as_role "$p" citus_admin "SELECT count(*) FROM agent_journal.replay('$T')")" "2"
done
expect_eq "tenants: an admin appends to the bound agent on its node" "$(as_role "$C" citus_admin "SELECT agent_journal.append('$T', 1, '$E')")" "3"
n "$C" "SELECT agent_journal.revoke_access('citus_admin', 'admin')" >/dev/null
for p in "${PORTS[@]}"; do
  expect_eq "tenants: revoked on the coordinator, the admin level is gone on port $p" \
    "$(as_role "$p" citus_admin "SELECT count(*) FROM agent_journal.replay('$T')")" "42501"
done

# concurrent writers on one agent through the coordinator and both
# workers: every acknowledged sequence present, gap-free, unique
CW=00000000-0000-0000-0000-0000000000c9
for p in "${PORTS[@]}"; do
  ( for i in $(seq 1 150); do
      n "$p" "SELECT agent_journal.append('$CW', 1, '$E')" 2>/dev/null || echo "err"
    done > "$TMPD/acks.$p" ) &
done
wait
acks=$(cat "$TMPD"/acks.* | grep -cv err || true)
expect_eq "distributed: concurrent writers through three nodes: no errors" "$(cat "$TMPD"/acks.* | grep -c err || true)" "0"
expect_eq "distributed: every acknowledged sequence is there, once, gap-free" \
  "$(n "$W2" "SELECT count(*) || ',' || count(DISTINCT sequence) || ',' || min(sequence) || ',' || max(sequence) FROM agent_journal.entries WHERE agent_id = '$CW'")" "$acks,$acks,1,$acks"
expect_eq "distributed: the acknowledgements are the sequences" \
  "$(sort -n "$TMPD"/acks.* | uniq | wc -l)" "$acks"

# a worker killed with kill -9 while writers append through the
# coordinator: every acknowledged append is there after its restart
KW=00000000-0000-0000-0000-0000000000ca
kport=$(n "$C" "SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = get_shard_id_for_distribution_column('agent_journal.entries', '$KW')")
( for i in $(seq 1 400); do
    n "$C" "SELECT agent_journal.append('$KW', 1, '$E')" 2>/dev/null || true
  done > "$TMPD/kill.acks" ) &
writer=$!
sleep 2
# the whole worker dies at once (postmaster and backends, as in a power
# cut), then comes back on the same data directory: crash recovery
pm=$(head -1 "$CITUS_DIR.$kport/data/postmaster.pid")
kids=$(pgrep -P "$pm" | tr '\n' ' ')
kill -STOP "$pm" && pkill -9 -P "$pm"; kill -9 "$pm" || fail "no worker postmaster to kill on port $kport"
for i in $(seq 1 50); do kill -0 "$pm" $kids 2>/dev/null || break; sleep 0.1; done
sleep 1
as_pg "$(pg_config --bindir)/pg_ctl" -D "$CITUS_DIR.$kport/data" -l "$CITUS_DIR.$kport/server.log" -w -t 60 start \
  >/dev/null || fail "the killed worker did not restart"
grep -q "database system was interrupted\|not properly shut down" "$CITUS_DIR.$kport/server.log" \
  || fail "the worker on port $kport did not run crash recovery"
wait "$writer"
got=$(wc -l < "$TMPD/kill.acks")
[ "$got" -gt 0 ] || fail "no append was acknowledged around the kill"
missing=$(for s in $(cat "$TMPD/kill.acks"); do echo "$s"; done | while read -r s; do
  [ "$(n "$C" "SELECT count(*) FROM agent_journal.entries WHERE agent_id = '$KW' AND sequence = $s")" = 1 ] || echo "$s"; done | wc -l)
expect_eq "distributed: worker killed -9: every one of $got acknowledged appends is there" "$missing" "0"
expect_eq "distributed: and the agent's sequences are gap-free" \
  "$(n "$C" "SELECT (count(*) = max(sequence))::text FROM agent_journal.entries WHERE agent_id = '$KW'")" "true"

# the agent's shards moved to the other worker (citus_move_shard_placement,
# as the rebalancer does) while writers append through the coordinator and
# both workers: every acknowledged append is there, gap-free, and the
# agent carries on on its new node
MV=00000000-0000-0000-0000-0000000000cc
n "$C" "SELECT agent_journal.append('$MV', 1, '$E')" >/dev/null
read -r mshard mfrom < <(n "$C" "SELECT s.shardid || ' ' || p.nodeport FROM pg_dist_shard s JOIN pg_dist_shard_placement p USING (shardid) WHERE s.shardid = get_shard_id_for_distribution_column('agent_journal.entries', '$MV')" | tr '|' ' ')
mto=$([ "$mfrom" = "$W1" ] && echo "$W2" || echo "$W1")
: > "$TMPD/move.acks"
for p in "${PORTS[@]}"; do
  ( for i in $(seq 1 150); do
      n "$p" "SELECT agent_journal.append('$MV', 1, '$E')" 2>>"$TMPD/move.errors" || true
    done >> "$TMPD/move.acks.$p" ) &
done
sleep 1
n "$C" "SELECT citus_move_shard_placement($mshard, '127.0.0.1', $mfrom, '127.0.0.1', $mto, shard_transfer_mode => 'block_writes')" >/dev/null \
  || fail "citus_move_shard_placement failed"
wait
expect_eq "shard move: the agent's shards are on port $mto now" \
  "$(n "$C" "SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = $mshard")" "$mto"
macks=$(cat "$TMPD"/move.acks.* | wc -l)
[ "$macks" -gt 0 ] || fail "no append was acknowledged around the move"
expect_eq "shard move: every one of $macks acknowledged appends is there, once, gap-free" \
  "$(n "$C" "SELECT count(*) || ',' || count(DISTINCT sequence) || ',' || max(sequence) FROM agent_journal.entries WHERE agent_id = '$MV'")" \
  "$((macks + 1)),$((macks + 1)),$((macks + 1))"
expect_eq "shard move: the acknowledgements are distinct sequences" "$(cat "$TMPD"/move.acks.* | sort -n | uniq | wc -l)" "$macks"
expect_eq "shard move: the agent carries on through the old node" "$(n "$mfrom" "SELECT agent_journal.append('$MV', 1, '$E')")" "$((macks + 2))"
echo "shard move: $macks appends acknowledged, $(grep -c ERROR "$TMPD/move.errors" || true) refused during the move"

# never written into a shell: every per-agent table's shell is empty on
# every node
for p in "${PORTS[@]}"; do
  expect_eq "distributed: the shells on port $p are empty (pg_relation_size)" \
    "$(n "$p" "SELECT coalesce(string_agg(t || ' ' || pg_relation_size(('agent_journal.' || t)::regclass), ', '), 'none') FROM unnest(ARRAY['agent_state', 'entries', 'idempotency_keys', 'saved_states', 'lease_graph', 'feed_pending', 'access_grants']) t WHERE pg_relation_size(('agent_journal.' || t)::regclass) > 0")" "none"
done
# the preloaded background worker (feed ticks, retention passes every
# second) stays idle on a distributed journal rather than fail
for p in "${PORTS[@]}"; do
  wpid=$(n "$p" "SELECT pid FROM pg_stat_activity WHERE backend_type = 'agent_journal exporter'")
  [ -n "$wpid" ] || fail "no agent_journal background worker on port $p"
  errs=$(grep -A2 "\[$wpid\] ERROR" "/tmp/aj_citus.$p/server.log" | head -6 || true)
  [ -z "$errs" ] || echo "$errs"
  expect_eq "the background worker (pid $wpid) logged no error on port $p" \
    "$(grep -c "\[$wpid\] ERROR" "/tmp/aj_citus.$p/server.log" || true)" "0"
done
echo "citus: ok"
