#!/usr/bin/env bash
# pg_dump / pg_restore keeps every journal entry, idempotency key, agent
# state, lease, snapshot, metric and grant (the tables and lease_tokens are
# marked with pg_extension_config_dump); rows the install script seeds are
# not restored twice; sequences continue after the restore without reuse,
# and no lease token from before a dump or a forget_agent matches again.
source "$(dirname "$0")/lib.bash"
# sqlstate DB SQL [ROLE]: the SQLSTATE the statement fails with (as ROLE,
# an identifier as SET ROLE takes it), or 'ok'
sqlstate() {
  local out role=()
  [ $# -ge 3 ] && role=(-c "SET ROLE $3")
  if out=$(psql -X -q -At -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -d "$1" "${role[@]}" -c "$2" 2>&1 >/dev/null); then
    echo ok
  else
    sed -n 's/^ERROR:  *//p' <<<"$out" | head -1
  fi
}
qi() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
expect_above() {  # expect_above WHAT GOT BOUND: GOT is an integer > BOUND
  [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt "$3" ] || fail "$1: got '$2', want a token > $3"
  ok "$1 ($2 > $3)"
}
SRC=aj_dump_src
DST=aj_dump_dst
fresh_db $SRC
dropdb --if-exists $DST >/dev/null 2>&1 || true
A=00000000-0000-0000-0000-0000000000d1
B=00000000-0000-0000-0000-0000000000d2
psql -X -q -v ON_ERROR_STOP=1 -d $SRC >/dev/null <<SQL
SELECT agent_journal.append('$A', i / 3, jsonb_build_object('type', 'Step', 'i', i), NULL, 'key-' || i) FROM generate_series(1, 30) i;
SELECT agent_journal.compact('$A', 10);
SELECT agent_journal.append_batch('$B', 0, ARRAY['{"type": "A"}', '{"type": "B"}']::jsonb[], 0, 'batch');
SELECT agent_journal.compact('$B');
SELECT agent_journal.ingest_snapshot('{"timestamp": 1700000000, "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5, "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000, "load_factor": 0.005}, "task_manager": {"total_tasks": 5, "healthy_tasks": 4, "average_uptime_seconds": 1800.0, "total_memory_usage": 1024}, "load_balancer": {"total_allocations": 100, "active_allocations": 5, "memory_utilization": 0.45, "cpu_utilization": 0.30, "allocation_failures": 2, "average_allocation_time_ms": 1.5}, "system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0}}') FROM generate_series(1, 3);
SELECT agent_journal.counter_add('dumped_total', 7, '{"k": "v"}', 'Dumped things');
-- a slot row, as counter_add writes under contention (the total becomes 12)
INSERT INTO agent_journal.counter_slots (name, labels, slot, value) VALUES ('dumped_total', '{"k": "v"}', 3, 5);
SELECT agent_journal.histogram_observe('dumped_seconds', 0.3, exemplar => '{"sequence": "7"}');
SELECT agent_journal.counter_add('dumped_total', 0, '{"k": "v"}', exemplar => '{"trace_id": "t"}');
SELECT agent_journal.record_rejection('capacity_limit', 'full');
SELECT agent_journal.record_rejection('tenant_limit');
SQL
# The change feed (0.7.0): a consumer from the beginning that acknowledged
# part of it, ticked rows, and an append not yet ticked (pending) at the dump
q $SRC "SELECT agent_journal.subscribe('dumped_consumer', true)" >/dev/null
FEED_ACK=$(q $SRC "SELECT position FROM agent_journal.read_feed('dumped_consumer') ORDER BY position OFFSET 4 LIMIT 1")
q $SRC "SELECT agent_journal.ack_feed('dumped_consumer', $FEED_ACK)" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d $SRC -c "BEGIN" \
  -c "SELECT agent_journal.append('00000000-0000-0000-0000-0000000000da', 0, '{\"type\": \"Pending\"}')" -c "COMMIT" >/dev/null
expect_eq "source: one append left pending for the dump (noted in the unlogged feed_appends, 0.10.0)" \
  "$(q $SRC "SELECT count(*) FROM agent_journal.feed_appends WHERE first_sequence <> 0")" "1"
# Leases: a token stops being live in every way before the dump: released
# (E), its agent forgotten (F: the token is then in no table), its claim
# rolled back (G: in no table either, only lease_tokens moved). H keeps a
# live lease across the dump. Tokens T1 < TH < T2 < T3.
E=00000000-0000-0000-0000-0000000000d5
F=00000000-0000-0000-0000-0000000000d6
G=00000000-0000-0000-0000-0000000000d7
H=00000000-0000-0000-0000-0000000000d8
T1=$(q $SRC "SELECT agent_journal.claim_agent('$E', 'worker-e', '1 hour')")
q $SRC "SELECT agent_journal.append('$E', 0, '{\"type\": \"Leased\"}', lease => $T1)" >/dev/null
expect_eq "source: the released lease" "$(q $SRC "SELECT agent_journal.release_agent('$E', $T1)")" "t"
TH=$(q $SRC "SELECT agent_journal.claim_agent('$H', 'worker-h', '1 day')")
T2=$(q $SRC "SELECT agent_journal.claim_agent('$F', 'worker-f', '1 hour')")
q $SRC "SELECT agent_journal.append('$F', 0, '{}', lease => $T2)" >/dev/null
expect_eq "source: the forgotten agent (entries removed)" "$(q $SRC "SELECT agent_journal.forget_agent('$F')")" "1"
T3=$(psql -X -q -At -v ON_ERROR_STOP=1 -d $SRC -c "BEGIN" \
       -c "SELECT agent_journal.claim_agent('$G', 'worker-g')" -c "ROLLBACK")
expect_eq "source: tokens increase (T1 < TH < T2 < T3)" \
  "$([ "$T1" -lt "$TH" ] && [ "$TH" -lt "$T2" ] && [ "$T2" -lt "$T3" ] && echo yes || echo "$T1 $TH $T2 $T3")" "yes"
# every token the source ever handed out: the rolled-back claim's was the last
expect_eq "source: lease_tokens is at the last token handed out" \
  "$(q $SRC "SELECT last_value FROM agent_journal.lease_tokens")" "$T3"
expect_eq "source: neither T2 nor T3 is left in any table" \
  "$(q $SRC "SELECT count(*) FROM (SELECT lease FROM agent_journal.agent_state UNION ALL SELECT lease FROM agent_journal.lease_graph) l WHERE lease IN ($T2, $T3)")" "0"
# everything the extension keeps, as one comparable text per table
dump_state() {
  psql -X -At -d "$1" <<'SQL'
SELECT 'entries', md5(string_agg(format('%s|%s|%s|%s|%s|%s', agent_id, sequence, iteration, kind, recorded_at, event), ',' ORDER BY agent_id, sequence)) FROM agent_journal.entries;
SELECT 'state', md5(string_agg(format('%s|%s|%s|%s', agent_id, compacted_through, compacted_iteration, owner), ',' ORDER BY agent_id)) FROM agent_journal.agent_state;
SELECT 'keys', md5(string_agg(format('%s|%s|%s|%s|%s', agent_id, idempotency_key, first_sequence, last_sequence, request_hash), ',' ORDER BY agent_id, idempotency_key)) FROM agent_journal.idempotency_keys;
SELECT 'snapshots', md5(string_agg(format('%s|%s|%s|%s', id, service, snapshot_ts, snapshot), ',' ORDER BY id)) FROM agent_journal.snapshots;
SELECT 'families', md5(string_agg(format('%s|%s|%s|%s', name, type, help, buckets), ',' ORDER BY name)) FROM agent_journal.metric_families;
SELECT 'series', md5(string_agg(format('%s|%s|%s|%s|%s|%s', name, labels, value, bucket_counts, sum, count), ',' ORDER BY name, labels::text)) FROM agent_journal.metric_series;
SELECT 'series 0.6.0', md5(string_agg(format('%s|%s|%s|%s', name, labels, created_at, exemplars), ',' ORDER BY name, labels::text)) FROM agent_journal.metric_series;
SELECT 'exemplar lines', count(*) FROM agent_journal.openmetrics, regexp_split_to_table(exposition, E'\n') l WHERE l LIKE '% # {%';
SELECT 'slots', md5(string_agg(format('%s|%s|%s|%s', name, labels, slot, value), ',' ORDER BY name, labels::text, slot)) FROM agent_journal.counter_slots;
SELECT 'dumped_total', value FROM agent_journal.metric_samples WHERE name = 'dumped_total';
SELECT 'rejections', md5(string_agg(format('%s|%s|%s', id, reason, detail), ',' ORDER BY id)) FROM agent_journal.rejections;
SELECT 'exposition', md5(exposition) FROM agent_journal.prometheus;
SELECT 'leases', md5(string_agg(format('%s|%s|%s|%s|%s|%s', agent_id, lease, lease_worker, lease_claimed_at, lease_expires_at, lease_attempts), ',' ORDER BY agent_id)) FROM agent_journal.agent_state;
SELECT 'lease_graph', md5(string_agg(format('%s|%s|%s|%s|%s', agent_id, attempt, worker, lease, claimed_at), ',' ORDER BY agent_id, attempt)) FROM agent_journal.lease_graph;
SELECT 'lease_tokens', last_value, is_called FROM agent_journal.lease_tokens;
SELECT 'feed', md5(string_agg(format('%s|%s|%s|%s|%s|%s|%s', last_position, agent_id, first_sequence, last_sequence, written_at, gap, owner), ',' ORDER BY last_position)) FROM agent_journal.feed;
SELECT 'feed_pending', md5(string_agg(format('%s|%s|%s|%s', agent_id, first_sequence, last_sequence, written_at), ',' ORDER BY agent_id, first_sequence)) FROM agent_journal.feed_pending;
SELECT 'feed_appends', md5(string_agg(format('%s|%s|%s|%s', agent_id, first_sequence, last_sequence, written_at), ',' ORDER BY agent_id, first_sequence)) FROM agent_journal.feed_appends WHERE first_sequence <> 0;
SELECT 'feed_appends marker', count(*) > 0 FROM agent_journal.feed_appends WHERE first_sequence = 0;
SELECT 'feed_state', last_position FROM agent_journal.feed_state;
SELECT 'feed_consumers', md5(string_agg(format('%s|%s|%s|%s|%s', consumer, owner, position, created_at, last_ack_at), ',' ORDER BY consumer)) FROM agent_journal.feed_subscriptions;
SQL
}
dump_state $SRC > "$TMPD/src.txt"
pg_dump -Fc -d $SRC -f "$TMPD/src.dump"
createdb $DST
pg_restore -d $DST --exit-on-error "$TMPD/src.dump" 2>"$TMPD/restore.err" || { cat "$TMPD/restore.err"; fail "pg_restore"; }
dump_state $DST > "$TMPD/dst.txt"
diff "$TMPD/src.txt" "$TMPD/dst.txt" || fail "restored database differs"
ok "every table and the exposition are identical after restore ($(wc -l < "$TMPD/dst.txt") checks)"
# The journal's counters come back with their values (the exposition
# above); their start (_created) is the restore's: the dump leaves
# journal_since out, so the restored database does not collide with it.
created() { q "$1" "SELECT split_part(l, ' ', 2) FROM agent_journal.openmetrics, regexp_split_to_table(exposition, E'\n') l
                    WHERE l LIKE 'agent_journal_appended_entries_created %'"; }
expect_eq "restored: the journal counters start at the restore (a later _created)" \
  "$(python3 -c "import sys; print(float(sys.argv[2]) > float(sys.argv[1]))" "$(created $SRC)" "$(created $DST)")" "True"
# the consumer carries on from its acknowledged position: the rest of what
# it had not acknowledged, then the pending append, then new ones, each once
expect_eq "restored: the feed consumer continues after its acknowledged position" \
  "$(q $DST "SELECT count(*) FILTER (WHERE position <= $FEED_ACK)::text || '/' || string_agg(kind, ',' ORDER BY position) FILTER (WHERE kind IN ('Pending'))
             FROM agent_journal.read_feed('dumped_consumer', 100000)")" "0/Pending"
expect_eq "restored: its reads and acks work, and new appends come after" \
  "$(q $DST "SELECT agent_journal.ack_feed('dumped_consumer', (SELECT max(position) FROM agent_journal.read_feed('dumped_consumer', 100000)))" >/dev/null
     q $DST "SELECT agent_journal.append('00000000-0000-0000-0000-0000000000da', 1, '{\"type\": \"AfterDump\"}')" >/dev/null
     q $DST "SELECT string_agg(kind, ',') FROM agent_journal.read_feed('dumped_consumer')")" "AfterDump"
expect_eq "seeded family restored once" \
  "$(q $DST "SELECT count(*) FROM agent_journal.metric_families WHERE name = 'agent_journal_rejections_total'")" "1"
expect_eq "journal continues after restore (no reuse after compaction)" \
  "$(q $DST "SELECT agent_journal.append('$A', 99, '{\"type\": \"AfterRestore\"}')")" "31"
expect_eq "fully compacted agent continues" \
  "$(q $DST "SELECT agent_journal.append('$B', 1, '{}')")" "3"
expect_eq "idempotency keys still answer" \
  "$(q $DST "SELECT agent_journal.append('$A', 5, '{\"type\": \"Step\", \"i\": 15}', NULL, 'key-15')")" "15"
expect_eq "snapshot ids continue" \
  "$(q $DST "SELECT agent_journal.ingest_snapshot(snapshot) > (SELECT max(id) FROM agent_journal.snapshots) FROM agent_journal.snapshots LIMIT 1")" "t"
expect_eq "rejection ids continue" \
  "$(q $DST "SELECT agent_journal.record_rejection('tenant_limit') = 3")" "t"
# No old token matches again: refused with 55006 while the agent has no
# live lease, a new claim's token is above every token the source handed
# out, and the old ones stay refused against the new live leases.
for t in "E T1=$T1 $E" "F T2=$T2 $F" "G T3=$T3 $G"; do
  set -- $t
  expect_eq "restored, no live lease: append to $1 with the old $2 refused" \
    "$(sqlstate $DST "SELECT agent_journal.append('$3', 9, '{\"type\": \"Fenced\"}', lease => ${2#*=})")" "55006"
done
written() {  # E's latest sequence and entries / F's and G's entries and latest sequences
  q $DST "SELECT format('%s/%s/%s/%s', agent_journal.latest_sequence('$E'),
    (SELECT count(*) FROM agent_journal.entries WHERE agent_id = '$E'),
    (SELECT count(*) FROM agent_journal.entries WHERE agent_id IN ('$F', '$G')),
    agent_journal.latest_sequence('$F') + agent_journal.latest_sequence('$G'))"
}
expect_eq "restored: the refused appends wrote nothing" "$(written)" "1/1/0/0"
NE=$(q $DST "SELECT agent_journal.claim_agent('$E', 'worker-e', '1 hour')")
NF=$(q $DST "SELECT agent_journal.claim_agent('$F', 'worker-f', '1 hour')")
NG=$(q $DST "SELECT agent_journal.claim_agent('$G', 'worker-g', '1 hour')")
expect_above "restored: a new claim of the released agent is above every source token" "$NE" "$T3"
expect_above "restored: a new claim of the forgotten agent is above every source token" "$NF" "$T3"
expect_above "restored: a new claim of the rolled-back agent is above every source token" "$NG" "$T3"
expect_eq "restored: new tokens are distinct" "$(printf '%s\n' $NE $NF $NG | sort -u | wc -l)" "3"
for t in "E T1=$T1 $E" "F T2=$T2 $F" "G T3=$T3 $G"; do
  set -- $t
  expect_eq "restored, live lease: append to $1 with the old $2 refused" \
    "$(sqlstate $DST "SELECT agent_journal.append('$3', 9, '{\"type\": \"Fenced\"}', lease => ${2#*=})")" "55006"
done
expect_eq "restored: append_batch with the old T1 refused" \
  "$(sqlstate $DST "SELECT agent_journal.append_batch('$E', 9, ARRAY['{}']::jsonb[], lease => $T1)")" "55006"
expect_eq "restored: compact with the old T1 refused" \
  "$(sqlstate $DST "SELECT agent_journal.compact('$E', NULL, $T1)")" "55006"
expect_eq "restored: renew_lease with the old T1 refused" \
  "$(sqlstate $DST "SELECT agent_journal.renew_lease('$E', $T1)")" "55006"
expect_eq "restored: release_agent with the old T1 does nothing" \
  "$(q $DST "SELECT agent_journal.release_agent('$E', $T1)")" "f"
expect_eq "restored: still nothing written" "$(written)" "1/1/0/0"
expect_eq "restored: the new token writes" \
  "$(q $DST "SELECT agent_journal.append('$E', 1, '{}', lease => $NE)")" "2"
expect_eq "restored: the live lease survived (same worker, same token)" \
  "$(q $DST "SELECT agent_journal.claim_agent('$H', 'worker-h', '1 day')")" "$TH"
expect_eq "restored: and fences another worker" \
  "$(q $DST "SELECT coalesce(agent_journal.claim_agent('$H', 'worker-x')::text, 'NULL')")" "NULL"
expect_eq "restored: the live lease writes" \
  "$(q $DST "SELECT agent_journal.append('$H', 0, '{}', lease => $TH)")" "1"
# forget_agent in the restored database: the forgotten holder's token never
# matches the agent's next lease
q $DST "SELECT agent_journal.forget_agent('$E')" >/dev/null
NE2=$(q $DST "SELECT agent_journal.claim_agent('$E', 'worker-e', '1 hour')")
expect_above "restored: after forget_agent a claim of the same worker gets a new token" "$NE2" "$NG"
expect_eq "restored: the forgotten holder's token is refused" \
  "$(sqlstate $DST "SELECT agent_journal.append('$E', 0, '{}', lease => $NE)")" "55006"
dropdb $SRC
dropdb $DST

# A database upgraded from 0.2.0 with a writer granted before the update:
# after dump and restore the writer still appends and replays. (Privileges
# an upgrade script granted would be recorded as the extension's initial
# privileges and left out of the dump; 0.3.0 needs no per-role grant.)
ROLE=aj_dump_writer
qr() { psql -X -q -v ON_ERROR_STOP=1 -At -d $DST -c "SET ROLE $ROLE" -c "$1"; }  # as the writer
psql -X -q -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS $ROLE" -c "CREATE ROLE $ROLE" >/dev/null
dropdb --if-exists $SRC >/dev/null 2>&1 || true
createdb $SRC
psql -X -q -v ON_ERROR_STOP=1 -d $SRC >/dev/null <<SQL
CREATE EXTENSION agent_journal VERSION '0.2.0';
SELECT agent_journal.grant_access('$ROLE', 'writer');
ALTER EXTENSION agent_journal UPDATE;
SELECT agent_journal.append('$A', 0, '{"type": "Upgraded"}');
SQL
pg_dump -Fc -d $SRC -f "$TMPD/upgraded.dump"
createdb $DST
pg_restore -d $DST --exit-on-error "$TMPD/upgraded.dump" 2>"$TMPD/restore.err" || { cat "$TMPD/restore.err"; fail "pg_restore (upgraded)"; }
expect_eq "upgraded + restored: extension version" \
  "$(q $DST "SELECT extversion FROM pg_extension WHERE extname = 'agent_journal'")" "$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$AJ_ROOT/agent_journal.control")"
expect_eq "upgraded + restored: the writer granted under 0.2.0 appends" \
  "$(qr "SELECT agent_journal.append('$A', 1, '{\"type\": \"Restored\"}')")" "2"
expect_eq "upgraded + restored: and replays" \
  "$(qr "SELECT string_agg(kind, ',' ORDER BY sequence) FROM agent_journal.replay('$A')")" "Upgraded,Restored"
dropdb $SRC
dropdb $DST
psql -X -q -c "DROP ROLE $ROLE" >/dev/null

# The upgrade trap of 0.5.0: append, append_batch and compact gain a
# `lease` argument, so the update creates them anew. Roles granted under
# 0.4.0 -- writers by grant_access (one name needs quoting), a role given
# EXECUTE on the old append directly, a reader -- keep their privileges on
# the new functions (and claim_agent, renew_lease, release_agent, leases) as
# ordinary grants that pg_dump keeps: restored without reapply_access(),
# the writer claims and appends with `lease =>`.
WRITER=aj_dump_lease_writer
MIXED='AJ Lease "Writer"'
MIXED_ID='"AJ Lease ""Writer"""'
DIRECT=aj_dump_direct_append
READER=aj_dump_lease_reader
MIXED_LIT=$(printf '%s' "$MIXED" | sed "s/'/''/g")
W=00000000-0000-0000-0000-0000000000d9
dropdb --if-exists $SRC >/dev/null 2>&1 || true
dropdb --if-exists $DST >/dev/null 2>&1 || true
qi -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS $WRITER, $MIXED_ID, $DIRECT, $READER" \
  -c "CREATE ROLE $WRITER" -c "CREATE ROLE $MIXED_ID" -c "CREATE ROLE $DIRECT" -c "CREATE ROLE $READER" >/dev/null
createdb $SRC
qi -d $SRC >/dev/null <<SQL
CREATE EXTENSION agent_journal VERSION '0.4.0';
SELECT agent_journal.grant_access('$WRITER', 'writer');
SELECT agent_journal.grant_access('$MIXED_LIT', 'writer');
SELECT agent_journal.grant_access('$READER', 'reader');
GRANT USAGE ON SCHEMA agent_journal TO $DIRECT;
GRANT EXECUTE ON FUNCTION agent_journal.append(uuid, integer, jsonb, bigint, text) TO $DIRECT;
GRANT EXECUTE ON FUNCTION agent_journal.counter_add(text, double precision, jsonb, text) TO $DIRECT;
SELECT agent_journal.append('$A', 0, '{"type": "Before"}');
ALTER EXTENSION agent_journal UPDATE;
SQL
expect_eq "0.4.0 updated: extension version" \
  "$(q $SRC "SELECT extversion FROM pg_extension WHERE extname = 'agent_journal'")" \
  "$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$AJ_ROOT/agent_journal.control")"
# Who holds what on the extension's functions and relations, one line per
# privilege (order-free: a restore may list an ACL's items differently).
privileges() {
  q "$1" "SELECT string_agg(x, E'\n' ORDER BY x) FROM (
    SELECT format('%s %s %s', p.oid::regprocedure, coalesce(r.rolname, 'PUBLIC'), a.privilege_type) AS x
    FROM pg_proc p, aclexplode(p.proacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
    WHERE p.pronamespace = 'agent_journal'::regnamespace
    UNION ALL
    SELECT format('%s %s %s', c.oid::regclass, coalesce(r.rolname, 'PUBLIC'), a.privilege_type)
    FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
    WHERE c.relnamespace = 'agent_journal'::regnamespace) p"
}
privileges $SRC > "$TMPD/privs_src.txt"
expect_eq "0.4.0 updated: who may execute the new append" \
  "$(q $SRC "SELECT string_agg(r, ',' ORDER BY r COLLATE \"C\") FROM unnest(ARRAY['$WRITER', '$MIXED_LIT', '$DIRECT', '$READER']) r
             WHERE has_function_privilege(r, 'agent_journal.append(uuid, integer, jsonb, bigint, text, bigint)', 'EXECUTE')")" \
  "$MIXED,$DIRECT,$WRITER"
pg_dump -Fc -d $SRC -f "$TMPD/lease_upgrade.dump"
createdb $DST
pg_restore -d $DST --exit-on-error "$TMPD/lease_upgrade.dump" 2>"$TMPD/restore.err" || { cat "$TMPD/restore.err"; fail "pg_restore (updated from 0.4.0)"; }
privileges $DST > "$TMPD/privs_dst.txt"
diff "$TMPD/privs_src.txt" "$TMPD/privs_dst.txt" || fail "updated from 0.4.0 + restored: privileges differ"
ok "updated from 0.4.0 + restored: every privilege on the extension's functions and relations is the source's ($(wc -l < "$TMPD/privs_dst.txt") lines)"
# as ROLE (an identifier) in the restored database; no reapply_access()
as_role() { psql -X -q -v ON_ERROR_STOP=1 -At -d $DST -c "SET ROLE $1" -c "$2"; }
LW=$(as_role $WRITER "SELECT agent_journal.claim_agent('$W', 'writer-1', '1 hour')")
expect_above "restored: the writer granted under 0.4.0 claims" "$LW" "0"
expect_eq "restored: and appends with lease =>" \
  "$(as_role $WRITER "SELECT agent_journal.append('$W', 0, '{\"type\": \"Leased\"}', lease => $LW)")" "1"
expect_eq "restored: append_batch with lease =>" \
  "$(as_role $WRITER "SELECT agent_journal.append_batch('$W', 1, ARRAY['{}', '{}']::jsonb[], lease => $LW)")" "3"
expect_eq "restored: compact with the lease" \
  "$(as_role $WRITER "SELECT agent_journal.compact('$W', 1, $LW)")" "1"
expect_eq "restored: renew_lease" \
  "$(as_role $WRITER "SELECT agent_journal.renew_lease('$W', $LW, '2 hours') > now() + interval '1 hour'")" "t"
expect_eq "restored: the writer's write without the lease is fenced" \
  "$(sqlstate $DST "SELECT agent_journal.append('$W', 2, '{}')" $WRITER)" "55006"
expect_eq "restored: release_agent" "$(as_role $WRITER "SELECT agent_journal.release_agent('$W', $LW)")" "t"
LM=$(as_role "$MIXED_ID" "SELECT agent_journal.claim_agent('$W', 'writer-2')")
expect_above "restored: the quoted writer claims after the release" "$LM" "$LW"
expect_eq "restored: and appends with lease =>" \
  "$(as_role "$MIXED_ID" "SELECT agent_journal.append('$W', 2, '{}', lease => $LM)")" "4"
expect_eq "restored: the role granted EXECUTE on the 0.4.0 append directly appends" \
  "$(as_role $DIRECT "SELECT agent_journal.append('$A', 1, '{\"type\": \"Direct\"}')")" "2"
LD=$(as_role $DIRECT "SELECT agent_journal.claim_agent('$A', 'direct-1')")
expect_eq "restored: and, having claimed, with lease =>" \
  "$(as_role $DIRECT "SELECT agent_journal.append('$A', 2, '{}', lease => $LD)")" "3"
expect_eq "restored: it gained no other writer function" \
  "$(sqlstate $DST "SELECT agent_journal.append_batch('$A', 3, ARRAY['{}']::jsonb[], lease => $LD)" $DIRECT)" "42501"
expect_eq "restored: the reader granted under 0.4.0 sees the leases" \
  "$(as_role $READER "SELECT string_agg(worker, ',' ORDER BY worker) FROM agent_journal.leases")" "direct-1,writer-2"
expect_eq "restored: and may not claim" \
  "$(sqlstate $DST "SELECT agent_journal.claim_agent('$W', 'reader')" $READER)" "42501"
# 0.6.0's trap: counter_add and histogram_observe gain `exemplar`
expect_eq "restored: the writers granted under 0.4.0 add to counters with exemplar =>" \
  "$(as_role $WRITER "SELECT agent_journal.counter_add('dumped_ex_total', 1, exemplar => '{\"sequence\": \"1\"}')")" "1"
expect_eq "restored: and observe histograms with exemplar =>" \
  "$(as_role "$MIXED_ID" "SELECT count(*) FROM agent_journal.histogram_observe('dumped_ex_seconds', 0.1, exemplar => '{\"sequence\": \"2\"}')")" "1"
expect_eq "restored: the role granted the 0.4.0 counter_add directly keeps it, and may delete series" \
  "$(as_role $DIRECT "SELECT agent_journal.counter_add('dumped_ex_total', 2, exemplar => '{\"t\": \"x\"}'), agent_journal.delete_series('dumped_ex_seconds')")" "3|1"
# 0.7.0: the feed's functions come with replay's grants
expect_eq "restored: the writer and the reader granted under 0.4.0 follow the feed" \
  "$(as_role $WRITER "SELECT agent_journal.subscribe('dump_writer_feed', true) >= 0" | tail -1)/$(as_role $READER "SELECT agent_journal.subscribe('dump_reader_feed', true) >= 0" | tail -1)/$(as_role $READER "SELECT count(*) > 0 FROM agent_journal.read_feed('dump_reader_feed')" | tail -1)" "t/t/t"
expect_eq "restored: the role granted only append directly may not" \
  "$(sqlstate $DST "SELECT agent_journal.subscribe('dump_direct_feed')" $DIRECT)" "42501"
expect_eq "restored: the reader may not delete series" \
  "$(sqlstate $DST "SELECT agent_journal.delete_series('dumped_ex_total')" $READER)" "42501"
dropdb $SRC
dropdb $DST
qi -c "DROP ROLE $WRITER, $MIXED_ID, $DIRECT, $READER" >/dev/null

# A restore into a cluster that lacks a bound owner role and a granted role
# (issue 10): every agent's state survives (no sequence is reused, not even
# for an unrelated, unbound, fully compacted agent); the agent bound to the
# missing role is admin-only, never unbound; unresolved_roles reports the
# binding and the grant. Roles need quoting on purpose.
OWNER='AJ Dump "Owner"'
GONE=aj_dump_gone_writer
KEEP=aj_dump_kept_writer
C=00000000-0000-0000-0000-0000000000d3
D=00000000-0000-0000-0000-0000000000d4
qi -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS \"AJ Dump \"\"Owner\"\"\", $GONE, $KEEP" \
  -c "CREATE ROLE \"AJ Dump \"\"Owner\"\"\"" -c "CREATE ROLE $GONE" -c "CREATE ROLE $KEEP" >/dev/null
fresh_db $SRC
qi -d $SRC >/dev/null <<SQL
SELECT agent_journal.grant_access('$GONE', 'writer');
SELECT agent_journal.grant_access('$KEEP', 'writer');
SELECT agent_journal.bind_agent('$C', '$(printf '%s' "$OWNER" | sed "s/'/''/g")');
SELECT agent_journal.append('$C', 0, '{"type": "Bound"}');
SELECT agent_journal.append('$D', 0, jsonb_build_object('i', i)) FROM generate_series(1, 5) i;
SELECT agent_journal.compact('$D');
SET ROLE $GONE;
SELECT agent_journal.subscribe('gone_consumer', true);
RESET ROLE;
SQL
pg_dump -Fc -d $SRC -f "$TMPD/roles.dump"
dropdb $SRC
qi -c "DROP ROLE \"AJ Dump \"\"Owner\"\"\"" -c "DROP ROLE $GONE" >/dev/null
createdb $DST
# GRANTs to the missing role fail (reported); nothing else may
pg_restore -d $DST "$TMPD/roles.dump" 2>"$TMPD/roles.err" || true
if grep -v -i "role .* does not exist\|errors ignored on restore\|Error while PROCESSING TOC\|Error from TOC entry\|Command was:\|^pg_restore: error: could not execute query: ERROR:  role\|^ *$\|GRANT\|REVOKE" "$TMPD/roles.err" | grep -i "error" ; then
  cat "$TMPD/roles.err"; fail "pg_restore failed for another reason than the missing roles"
fi
expect_eq "missing roles: every agent state restored" \
  "$(q $DST "SELECT count(*) FROM agent_journal.agent_state")" "2"
expect_eq "missing roles: the unbound, compacted agent continues without reuse" \
  "$(q $DST "SELECT agent_journal.append('$D', 1, '{}')")" "6"
expect_eq "missing roles: the missing role's feed consumer is an admin's (42501 for another writer)" \
  "$(q $DST "SELECT consumer || ':' || owner FROM agent_journal.feed_consumers")/$(sqlstate $DST "SELECT agent_journal.ack_feed('gone_consumer', 1)" $KEEP)" \
  "gone_consumer:$GONE/42501"
# what the consumer may see is its role's: the unbound agent (its compacted
# entries as one gap, then the entry appended after the restore), not the
# agent bound to the other missing role
expect_eq "missing roles: an admin reads it, with what its role may see" \
  "$(q $DST "SELECT string_agg(coalesce(sequence::text, event->>'reason'), ';' ORDER BY position) FROM agent_journal.read_feed('gone_consumer')")" "compacted;6"
expect_eq "missing roles: unresolved_roles reports the binding and the grant" \
  "$(q $DST "SELECT string_agg(kind || '=' || role, ';' ORDER BY kind) FROM agent_journal.unresolved_roles")" \
  "binding=$OWNER;grant:writer=$GONE"
# pg_restore runs an object's GRANTs as one command: the kept writer lost
# its privileges with the missing one's; reapply_access gives them back.
expect_eq "missing roles: reapply_access re-grants the roles that exist" \
  "$(q $DST "SELECT agent_journal.reapply_access()")" "1"
expect_eq "missing roles: the kept writer appends to an unbound agent" \
  "$(psql -X -At -d $DST -c "SET ROLE $KEEP" -c "SELECT agent_journal.append('$D', 2, '{}')" | tail -1)" "7"
expect_eq "missing roles: the orphaned agent is admin-only (a writer is refused)" \
  "$(psql -X -At -d $DST -c "SET ROLE $KEEP" -c "SELECT agent_journal.append('$C', 1, '{}')" 2>&1 | grep -o 'permission denied for agent')" \
  "permission denied for agent"
expect_eq "missing roles: an admin still appends to it" \
  "$(q $DST "SELECT agent_journal.append('$C', 1, '{}')")" "2"
dropdb $DST
qi -d postgres -c "DROP OWNED BY $KEEP" >/dev/null
qi -d postgres -c "DROP ROLE $KEEP" >/dev/null
