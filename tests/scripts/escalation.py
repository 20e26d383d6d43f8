"""The privilege-escalation matrix of tests/scripts/escalation.sh (which
creates the roles, the log table and some data, then runs this with
/usr/bin/python3 DB ROLE_PREFIX; PGHOST/PGPORT/PGUSER name the superuser).

For every access level (and a role with no access) and two shadowing modes,
the attacking role plants objects that call an "evil" function, then calls
every SQL-callable function of the extension (three ways) and selects from
every view and table of it. The evil function reports current_user through
a WARNING (survives a rollback) and a log table, and tries to make the
attacker superuser. Any report whose current_user is not the attacker, or
an attacker that became superuser, is an escalation: printed as FAIL, exit 1.

On a distributed journal (tests/scripts/citus_attack.sh):
  escalation.py DB ROLE_PREFIX --citus-nodes COORD,W1,W2 --node PORT
(ports on 127.0.0.1, user postgres): the attackers connect to the node on
PORT and plant there (citus.enable_ddl_propagation off, which any role may
set: on a worker Citus refuses DDL otherwise); the superuser checks, the
log tables and the roles' rolsuper are read on every node (Citus sends the
per-agent calls to the agent's node). The functions that refuse there by
design (CITUS_FAILS) must refuse as superuser with the SQLSTATE given.
"""
import argparse
import collections
import json
import os
import re
import string
import sys

import psycopg2

ap = argparse.ArgumentParser()
ap.add_argument("db")
ap.add_argument("prefix")
ap.add_argument("--citus-nodes", default="", help="a Citus cluster's ports, coordinator first")
ap.add_argument("--node", type=int, help="with --citus-nodes: the port the attackers connect to")
args = ap.parse_args()
DB, PREFIX = args.db, args.prefix
NODES = [int(p) for p in args.citus_nodes.split(",") if p]  # [] on one server
NODE = args.node if NODES else None
if NODES and NODE not in NODES:
    sys.exit("--node must be one of --citus-nodes")
ON_WORKER = bool(NODES) and NODE != NODES[0]
WHERE = "" if not NODES else f" (Citus {'worker' if ON_WORKER else 'coordinator'} {NODE})"
LEVELS = ["none", "scraper", "reader", "writer", "admin"]  # "none": no grant_access at all
MODES = ["pg_temp", "schema"]
EXT = "agent_journal"

# Agents: A has entries (seeded), B is bound by the admin's bind_agent call,
# C is bound to the writer role (seeded), F is appended to and forgotten,
# L is leased (claimed, renewed, written under its lease and released by
# the samples; never A, whose samples write without a lease).
SUBST = {
    "A": "00000000-0000-0000-0000-0000000000e1",
    "B": "00000000-0000-0000-0000-0000000000e2",
    "C": "00000000-0000-0000-0000-0000000000e3",
    "F": "00000000-0000-0000-0000-0000000000e4",
    "L": "00000000-0000-0000-0000-0000000000e5",
    "ADMIN": PREFIX + "admin",
    "DUMMY": PREFIX + "dummy",
}
SNAPSHOT = ('{"timestamp": 1700000100, "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, '
            '"running_agents": 5, "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000, '
            '"load_factor": 0.005}, "task_manager": {"total_tasks": 5, "healthy_tasks": 4, '
            '"average_uptime_seconds": 1800.0, "total_memory_usage": 1024}, "load_balancer": '
            '{"total_allocations": 100, "active_allocations": 5, "memory_utilization": 0.45, '
            '"cpu_utilization": 0.30, "allocation_failures": 2, "average_allocation_time_ms": 1.5}, '
            '"system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0}}')
U = "'$%s'::pg_catalog.uuid"
J = "::pg_catalog.jsonb"
# L's lease for the samples' one worker: the same token while it is live
# (a claim by its holder), a new one after a release. Every sample that
# needs a token claims it in the same call, so each call succeeds alone
# (in its own savepoint, in any order) and the attackers' calls leave no
# lease that another worker would have to wait out.
CLAIM_L = (f"agent_journal.claim_agent({U % 'L'}, 'esc-worker'::pg_catalog.text, "
           "'30 seconds'::pg_catalog.interval)")

# One or more sample calls (SQL expressions) per function, keyed by
# oid::regprocedure::text. Every type is written schema-qualified so the
# attacker's own statement is not what hits the shadows. $A... are SUBST.
CALLS = {
    "agent_journal.append(uuid,integer,jsonb,bigint,text,bigint)": [
        f"agent_journal.append({U % 'A'}, 3, '{{\"type\": \"Step\"}}'{J})",
        f"agent_journal.append({U % 'A'}, 3, '{{\"type\": \"Step\", \"k\": 1}}'{J}, "
        "NULL::pg_catalog.int8, 'esc-key-1'::pg_catalog.text)",
        f"agent_journal.append({U % 'C'}, 1, '{{\"type\": \"Tenant\"}}'{J})",
        f"agent_journal.append({U % 'L'}, 1, '{{\"type\": \"Leased\"}}'{J}, "
        f"NULL::pg_catalog.int8, 'esc-lease-key-1'::pg_catalog.text, {CLAIM_L})"],
    "agent_journal.append_batch(uuid,integer,jsonb[],bigint,text,bigint)": [
        f"agent_journal.append_batch({U % 'A'}, 4, "
        "ARRAY['{\"type\": \"A\"}', '{\"B\": {}}']::pg_catalog.jsonb[])",
        f"agent_journal.append_batch({U % 'A'}, 4, ARRAY['{{\"type\": \"K\"}}']::pg_catalog.jsonb[], "
        "NULL::pg_catalog.int8, 'esc-batch-1'::pg_catalog.text)",
        f"agent_journal.append_batch({U % 'L'}, 2, ARRAY['{{\"type\": \"Leased\"}}']::pg_catalog.jsonb[], "
        f"NULL::pg_catalog.int8, NULL::pg_catalog.text, {CLAIM_L})"],
    "agent_journal.replay(uuid,bigint,bigint)": [
        f"agent_journal.replay({U % 'A'})",
        f"agent_journal.replay({U % 'A'}, 2::pg_catalog.int8, 5::pg_catalog.int8)"],
    "agent_journal.latest_sequence(uuid)": [f"agent_journal.latest_sequence({U % 'A'})"],
    "agent_journal.next_sequence(uuid)": [f"agent_journal.next_sequence({U % 'C'})"],
    "agent_journal.last_completed_iteration(uuid)": [f"agent_journal.last_completed_iteration({U % 'A'})"],
    "agent_journal.compact(uuid,bigint,bigint)": [
        f"agent_journal.compact({U % 'A'}, 1::pg_catalog.int8)",
        f"agent_journal.compact({U % 'L'}, 1::pg_catalog.int8, {CLAIM_L})"],
    "agent_journal.claim_agent(uuid,text,interval)": [
        CLAIM_L,
        f"agent_journal.claim_agent({U % 'L'}, 'esc-worker'::pg_catalog.text)"],
    "agent_journal.renew_lease(uuid,bigint,interval)": [
        f"agent_journal.renew_lease({U % 'L'}, {CLAIM_L}, '1 minute'::pg_catalog.interval)",
        f"agent_journal.renew_lease({U % 'L'}, {CLAIM_L})"],
    "agent_journal.release_agent(uuid,bigint)": [
        f"agent_journal.release_agent({U % 'L'}, {CLAIM_L})"],
    "agent_journal.forget_agent(uuid)": [
        f"agent_journal.append({U % 'F'}, 1, '{{\"type\": \"Doomed\"}}'{J})",
        f"agent_journal.forget_agent({U % 'F'})"],
    "agent_journal.observability(uuid,integer)": [f"agent_journal.observability({U % 'A'}, 100)"],
    "agent_journal.ingest_snapshot(jsonb,text)": [
        f"agent_journal.ingest_snapshot('{SNAPSHOT}'{J}, 'esc-service'::pg_catalog.text)"],
    "agent_journal.prune_snapshots(interval)": ["agent_journal.prune_snapshots('0 seconds'::pg_catalog.interval)"],
    "agent_journal.counter_add(text,double precision,jsonb,text,jsonb)": [
        f"agent_journal.counter_add('evil_total'::pg_catalog.text, 2::pg_catalog.float8, '{{\"k\": \"v\"}}'{J}, "
        "'Evil things'::pg_catalog.text)",
        f"agent_journal.counter_add('evil_total'::pg_catalog.text, 1::pg_catalog.float8, '{{\"k\": \"v\"}}'{J}, "
        f"NULL::pg_catalog.text, '{{\"trace_id\": \"t\"}}'{J})"],
    "agent_journal.delete_series(text,jsonb)": [
        f"agent_journal.delete_series('evil_gauge'::pg_catalog.text, '{{}}'{J})",
        "agent_journal.delete_series('evil_seconds'::pg_catalog.text, NULL::pg_catalog.jsonb)"],
    "agent_journal.gauge_set(text,double precision,jsonb,text)": [
        f"agent_journal.gauge_set('evil_gauge'::pg_catalog.text, 5::pg_catalog.float8, '{{}}'{J}, "
        "'Evil level'::pg_catalog.text)"],
    "agent_journal.gauge_add(text,double precision,jsonb,text)": [
        f"agent_journal.gauge_add('evil_gauge'::pg_catalog.text, 1::pg_catalog.float8, '{{}}'{J})"],
    "agent_journal.histogram_observe(text,double precision,jsonb,double precision[],text,jsonb)": [
        f"agent_journal.histogram_observe('evil_seconds'::pg_catalog.text, 0.25::pg_catalog.float8, '{{}}'{J}, "
        f"NULL::pg_catalog.float8[], 'Evil latency'::pg_catalog.text, '{{\"sequence\": \"1\"}}'{J})"],
    "agent_journal.record_rejection(text,text,uuid)": [
        f"agent_journal.record_rejection('other'::pg_catalog.text, 'evil detail'::pg_catalog.text, {U % 'A'})"],
    "agent_journal.prometheus_text()": ["agent_journal.prometheus_text()"],
    "agent_journal.openmetrics_text()": ["agent_journal.openmetrics_text()"],
    "agent_journal.otlp_json(text)": [
        "agent_journal.otlp_json(NULL::pg_catalog.text)", "agent_journal.otlp_json('agent-runtime'::pg_catalog.text)"],
    "agent_journal.metric_samples_fn()": ["agent_journal.metric_samples_fn()"],
    "agent_journal.bind_agent(uuid,regrole)": [f"agent_journal.bind_agent({U % 'B'}, '$ADMIN'::pg_catalog.regrole)"],
    "agent_journal.bind_agent(uuid,name)": [f"agent_journal.bind_agent({U % 'B'}, '$ADMIN'::pg_catalog.name)"],
    "agent_journal.agent_visible(uuid)": [f"agent_journal.agent_visible({U % 'C'})"],
    "agent_journal.is_admin()": ["agent_journal.is_admin()"],
    "agent_journal.access_privileges(text)": ["agent_journal.access_privileges('reader'::pg_catalog.text)"],
    "agent_journal.check_access_args(name,text)": [
        "agent_journal.check_access_args('$DUMMY'::pg_catalog.name, 'reader'::pg_catalog.text)"],
    "agent_journal.grant_access(name,text)": [
        "agent_journal.grant_access('$DUMMY'::pg_catalog.name, 'reader'::pg_catalog.text)"],
    "agent_journal.revoke_access(name,text)": [
        "agent_journal.revoke_access('$DUMMY'::pg_catalog.name, 'reader'::pg_catalog.text)"],
    "agent_journal.reapply_access()": ["agent_journal.reapply_access()"],
    # 0.9.0: grant_access's GRANTs on a distributed journal's workers (no
    # commands: nothing to run; on one server it returns at once)
    "agent_journal.on_workers(text[],text[],text[])": [
        "agent_journal.on_workers(ARRAY[]::pg_catalog.text[], ARRAY[]::pg_catalog.text[], ARRAY[]::pg_catalog.text[])",
        "agent_journal.on_workers(ARRAY['SELECT 1']::pg_catalog.text[], ARRAY['FUNCTION']::pg_catalog.text[], "
        "ARRAY['agent_journal.prometheus_text()']::pg_catalog.text[])"],
    "agent_journal.may_replay(uuid)": [f"agent_journal.may_replay({U % 'A'})"],
    "agent_journal.replay_guard(uuid,bigint,bigint)": [
        f"agent_journal.replay_guard({U % 'A'}, 1::pg_catalog.int8, 10::pg_catalog.int8)"],
    # Resume in one call (0.5.0). save_state on A saves at the latest (or at
    # 2); under L's lease it appends first, so it succeeds alone.
    "agent_journal.save_state(uuid,jsonb,bigint,bigint)": [
        f"agent_journal.save_state({U % 'A'}, '{{\"sum\": 1}}'{J})",
        f"agent_journal.save_state({U % 'A'}, '{{\"sum\": 2}}'{J}, 2::pg_catalog.int8)",
        f"agent_journal.save_state({U % 'L'}, '{{\"leased\": true}}'{J}, "
        f"agent_journal.append({U % 'L'}, 3, '{{\"type\": \"BeforeState\"}}'{J}, NULL::pg_catalog.int8, "
        f"NULL::pg_catalog.text, {CLAIM_L}), {CLAIM_L})"],
    "agent_journal.resume(uuid,bigint)": [
        f"agent_journal.resume({U % 'A'})",
        f"agent_journal.resume({U % 'A'}, 2::pg_catalog.int8)"],
    "agent_journal.resume_guard(uuid,bigint)": [
        f"agent_journal.resume_guard({U % 'A'}, NULL::pg_catalog.int8)",
        f"agent_journal.resume_guard({U % 'A'}, 10::pg_catalog.int8)"],
    "agent_journal.resume_from(uuid)": [f"agent_journal.resume_from({U % 'A'})"],
    "agent_journal.entry_by_key(uuid,text)": [
        f"agent_journal.entry_by_key({U % 'A'}, 'seed-1'::pg_catalog.text)",
        f"agent_journal.entry_by_key({U % 'A'}, 'no-such-key'::pg_catalog.text)"],
    "agent_journal.replay_backward(uuid,bigint,bigint,text[])": [
        f"agent_journal.replay_backward({U % 'A'})",
        f"agent_journal.replay_backward({U % 'A'}, 5::pg_catalog.int8, 2::pg_catalog.int8, "
        "ARRAY['Step']::pg_catalog.text[])"],
    "agent_journal.backward_guard(uuid,bigint,bigint)": [
        f"agent_journal.backward_guard({U % 'A'}, 5::pg_catalog.int8, 2::pg_catalog.int8)",
        f"agent_journal.backward_guard({U % 'A'}, NULL::pg_catalog.int8, NULL::pg_catalog.int8)"],
    # a new agent each call (a fork needs one without a journal); from C too
    # (bound to the writer: the fork keeps the binding)
    "agent_journal.fork_agent(uuid,bigint,uuid)": [
        f"agent_journal.fork_agent({U % 'A'}, 3::pg_catalog.int8, pg_catalog.gen_random_uuid())",
        f"agent_journal.fork_agent({U % 'C'}, 1::pg_catalog.int8, pg_catalog.gen_random_uuid())"],
    # A's policy keeps far more than A has, and the default requires a
    # state covering what goes: the samples remove nothing other calls need
    "agent_journal.set_retention(uuid,bigint,interval,boolean)": [
        f"agent_journal.set_retention({U % 'A'}, 1000::pg_catalog.int8)",
        f"agent_journal.set_retention({U % 'A'}, 1000::pg_catalog.int8, '30 days'::pg_catalog.interval, "
        "false::pg_catalog.bool)",
        "agent_journal.set_retention(NULL::pg_catalog.uuid, NULL::pg_catalog.int8, "
        "'30 days'::pg_catalog.interval, true::pg_catalog.bool)",
        f"agent_journal.set_retention({U % 'F'})"],
    "agent_journal.apply_retention(bigint)": [
        "agent_journal.apply_retention()",
        "agent_journal.apply_retention(10::pg_catalog.int8)"],
    # The change feed (0.7.0): a consumer shared by every attacker (the
    # first role to subscribe owns it: the others get 42710 / 42501) and
    # one per role.
    "agent_journal.subscribe(text,boolean)": [
        "agent_journal.subscribe('esc-consumer'::pg_catalog.text)",
        "agent_journal.subscribe(pg_catalog.concat('esc-', CURRENT_USER)::pg_catalog.text, true::pg_catalog.bool)"],
    "agent_journal.read_feed(text,bigint)": [
        "agent_journal.read_feed(pg_catalog.concat('esc-', CURRENT_USER)::pg_catalog.text)",
        "agent_journal.read_feed('esc-consumer'::pg_catalog.text, 10::pg_catalog.int8)"],
    "agent_journal.ack_feed(text,bigint)": [
        "agent_journal.ack_feed(pg_catalog.concat('esc-', CURRENT_USER)::pg_catalog.text, 1::pg_catalog.int8)",
        "agent_journal.ack_feed('esc-consumer'::pg_catalog.text, 1::pg_catalog.int8)"],
    "agent_journal.unsubscribe(text)": [
        "agent_journal.unsubscribe('esc-consumer'::pg_catalog.text)",
        "agent_journal.unsubscribe('esc-no-such-consumer'::pg_catalog.text)"],
    "agent_journal.feed_consumers_fn()": ["agent_journal.feed_consumers_fn()"],
    # 0.8.0: without Citus even the superuser gets 55000 (see SUPERUSER_FAILS)
    "agent_journal.distribute(integer)": ["agent_journal.distribute()",
                                          "agent_journal.distribute(4::pg_catalog.int4)"],
}
# Sample calls that fail even as superuser where this test runs, with these
# SQLSTATEs (distribute() needs Citus): they still run their code for the
# attackers; any other outcome as superuser fails the test.
SUPERUSER_FAILS = {"agent_journal.distribute(integer)": {"55000"}}
# On a distributed journal (README, "Scaling out with Citus") these refuse
# by design, as superuser too; keyed by function, or by function#N for its
# N-th sample call alone. Replaces SUPERUSER_FAILS there.
NA = {"0A000"}
CITUS_FAILS = {
    # no change feed (unsubscribe works: distribute() asks for the consumers
    # to go), retention passes, forks, resume
    **{f"agent_journal.{f}": NA for f in (
        "subscribe(text,boolean)", "read_feed(text,bigint)", "ack_feed(text,bigint)",
        "feed_consumers_fn()", "apply_retention(bigint)", "fork_agent(uuid,bigint,uuid)", "resume(uuid,bigint)")},
    # a writer nested in another's arguments (CLAIM_L) runs where it is
    # called, not on L's node (here: another worker), and refuses there
    **{f"agent_journal.{f}": NA for f in (
        "append(uuid,integer,jsonb,bigint,text,bigint)#4", "append_batch(uuid,integer,jsonb[],bigint,text,bigint)#3",
        "compact(uuid,bigint,bigint)#2", "renew_lease(uuid,bigint,interval)", "release_agent(uuid,bigint)",
        "save_state(uuid,jsonb,bigint,bigint)#3")},
}
CITUS_FAILS_WORKER = {
    # the metric tables are the coordinator's
    **{f"agent_journal.{f}": NA for f in (
        "counter_add(text,double precision,jsonb,text,jsonb)", "delete_series(text,jsonb)",
        "gauge_set(text,double precision,jsonb,text)", "gauge_add(text,double precision,jsonb,text)",
        "histogram_observe(text,double precision,jsonb,double precision[],text,jsonb)",
        "ingest_snapshot(jsonb,text)", "prune_snapshots(interval)", "record_rejection(text,text,uuid)",
        "metric_samples_fn()")},
    "agent_journal.distribute(integer)": {"55000"},
    # their GRANTs: Citus's "operation is not allowed on this node" (XX000),
    # hint "Connect to the coordinator and run it again"
    **{f"agent_journal.{f}": {"XX000"} for f in ("grant_access(name,text)", "revoke_access(name,text)",
                                                  "reapply_access()")},
}
# Citus 13.0.5 crashes the node planning a call of a distributed function
# whose distribution argument is a NULL constant; agent_journal's planner
# hook (citus.cpp) refuses such a call first (22004), as it refuses every
# per-agent function's NULL agent on one server. set_retention(NULL, ...)
# (the default policy) is the one sample that passes a NULL agent.
CITUS_FAILS["agent_journal.set_retention(uuid,bigint,interval,boolean)#3"] = {"22004"}
CITUS_LEFT_OUT: dict = {}
if NODES:
    SUPERUSER_FAILS = {**CITUS_FAILS, **(CITUS_FAILS_WORKER if ON_WORKER else {})}
    for key, why in CITUS_LEFT_OUT.items():
        f, n = key.rsplit("#", 1)
        CALLS[f][int(n) - 1] = None
        print(f"note: sample call {n} of {f} left out on a distributed journal: {why}", flush=True)
    CALLS = {f: [c for c in calls if c is not None] for f, calls in CALLS.items()}
# Functions SQL cannot call (an "internal" argument): not in the matrix.
NOT_CALLABLE = {"agent_journal.may_replay_support(internal)"}
# Entries for functions a newer build adds: absent from the database is
# only a note for these (for any other entry it fails the test).
FUTURE: set = set()
# Views and tables need no sample arguments: every one pg_depend lists is
# selected from, so a new one is covered without an entry here.

# Type names shadowed besides those the extension's objects and the
# pg_catalog relations use (the grammar keywords bigint, integer, ... are
# resolved to pg_catalog by the parser; a domain by that name is harmless).
TYPE_EXTRA = ["text", "name", "int2", "int4", "int8", "float4", "float8", "numeric", "bool", "uuid",
              "jsonb", "json", "timestamptz", "timestamp", "date", "interval", "oid", "regrole",
              "regclass", "regproc", "regprocedure", "regtype", "regnamespace", "bytea", "char",
              "bpchar", "varchar", "xid", "xid8", "tid", "jsonpath", "inet", "pg_lsn"]
TYPE_ALIASES = {"bigint": "int8", "integer": "int4", "int": "int4", "smallint": "int2",
                "boolean": "bool", "real": "float4", "float": "float8", "decimal": "numeric",
                "double": "float8"}
# pg_catalog functions shadowed in the owned schema (all their overloads a
# plpgsql wrapper can take: no "any", no internal).
FUNC_NAMES = """now clock_timestamp statement_timestamp transaction_timestamp timeofday lower upper
length octet_length char_length substr substring left right replace split_part btrim ltrim rtrim
format quote_ident quote_literal quote_nullable md5 sha256 encode decode to_char to_timestamp
date_part date_trunc make_interval age round trunc floor ceil abs sqrt power isfinite random
gen_random_uuid unnest generate_series array_length array_upper array_lower cardinality
array_position array_to_string string_to_array array_append jsonb_typeof jsonb_array_length
jsonb_array_elements jsonb_array_elements_text jsonb_each jsonb_each_text jsonb_object_keys
jsonb_extract_path jsonb_extract_path_text jsonb_set jsonb_insert jsonb_strip_nulls jsonb_pretty
to_jsonb to_json jsonb_build_object jsonb_build_array jsonb_object has_function_privilege
has_table_privilege has_schema_privilege has_sequence_privilege has_database_privilege pg_has_role
current_setting set_config to_regrole to_regclass to_regproc to_regprocedure to_regtype
to_regnamespace pg_get_userbyid format_type obj_description pg_advisory_xact_lock
pg_try_advisory_xact_lock pg_advisory_lock nextval currval setval txid_current
pg_current_xact_id hashtext hashtextextended text int8 int4 float8 numeric name pg_backend_pid
pg_notify pg_sleep""".split()
AGG_NAMES = ["count", "sum", "max", "min", "avg", "jsonb_agg", "jsonb_object_agg", "string_agg",
             "array_agg", "bool_and", "bool_or", "every"]
OP_NAMES = ["=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "||", "->", "->>", "#>", "#>>",
            "@>", "<@", "?", "?|", "?&", "~~", "!~~", "~", "&&"]
OP_TYPES = ["text", "name", "int2", "int4", "int8", "float4", "float8", "numeric", "bool", "uuid",
            "jsonb", "json", "timestamptz", "timestamp", "date", "interval", "oid", "regrole",
            "regclass", "bytea", "char", "_text", "_jsonb", "_float8", "_int8", "_oid"]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, flush=True)


def ok(msg):
    print("ok: " + msg, flush=True)


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def ident(s):
    return '"' + s.replace('"', '""') + '"'


def connect(user=None, port=None):
    if NODES:
        conn = psycopg2.connect(dbname=DB, host="127.0.0.1", port=port or NODE, user=user or "postgres")
    else:
        conn = psycopg2.connect(dbname=DB, **({"user": user} if user else {}))
    conn.autocommit = True
    conn.notices = collections.deque(maxlen=100000)
    return conn


def rows(cur, sql, args=None):
    cur.execute(sql, args)
    return cur.fetchall()


# ---------------------------------------------------------------- superuser
su = connect()
sc = su.cursor()
sc.execute("SET search_path = pg_catalog")
EXT_FILTER = f"""refclassid = 'pg_extension'::regclass AND deptype = 'e'
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = {lit(EXT)})"""
functions = [r[0] for r in rows(sc, f"""SELECT objid::regprocedure::text FROM pg_depend
  WHERE classid = 'pg_proc'::regclass AND {EXT_FILTER} ORDER BY 1""")]
relations = rows(sc, f"""SELECT c.oid::regclass::text, c.relkind FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
  WHERE d.classid = 'pg_class'::regclass AND {EXT_FILTER.replace('refclassid', 'd.refclassid')}
    AND c.relkind IN ('v', 'r', 'm', 'p', 'f') ORDER BY c.relkind DESC, 1""")

# --- coverage: every function of the extension is in CALLS or NOT_CALLABLE
for f in functions:
    if f not in CALLS and f not in NOT_CALLABLE:
        fail(f"coverage: function {f} has no sample call in escalation.py (CALLS) and is not in NOT_CALLABLE")
for f in sorted(set(CALLS) | NOT_CALLABLE):
    if f not in functions:
        if f in FUTURE:
            print(f"note: {f} is not in this build (listed in FUTURE)")
        else:
            fail(f"coverage: escalation.py names {f}, which the extension does not have")
called = [f for f in functions if f in CALLS]
views = [r[0] for r in relations if r[1] == "v"]
tables = [r[0] for r in relations if r[1] != "v"]
ok(f"coverage: {len(called)} functions with sample calls, {len(NOT_CALLABLE & set(functions))} not callable "
   f"({', '.join(sorted(NOT_CALLABLE & set(functions)))}), {len(views)} views, {len(tables)} tables")


def expand(sql, me):
    return string.Template(sql).substitute(SUBST, ME=me)


def expected_failure(f, i):
    """The SQLSTATEs sample call i (0-based) of f raises as superuser here (empty: it succeeds)."""
    return SUPERUSER_FAILS.get(f"{f}#{i + 1}", SUPERUSER_FAILS.get(f, set()))


# --- the sample calls work (as superuser, rolled back): they reach the code.
# On Citus each in autocommit, as the attackers call them (Citus sends a
# call inside a transaction block to the agent's node under other rules).
su.autocommit = bool(NODES)
bad = 0
for f in called:
    for i, call in enumerate(CALLS[f]):
        if not NODES:
            sc.execute("SAVEPOINT s")
        try:
            sc.execute("SELECT " + expand(call, "postgres"))
            if not NODES:
                sc.execute("RELEASE SAVEPOINT s")
            if expected_failure(f, i):
                bad += 1
                fail(f"sample call {i + 1} of {f} succeeds as superuser; expected SQLSTATE "
                     f"{sorted(expected_failure(f, i))}{WHERE}")
        except psycopg2.Error as e:
            if not NODES:
                sc.execute("ROLLBACK TO SAVEPOINT s")
            if e.pgcode in expected_failure(f, i):
                continue
            bad += 1
            fail(f"sample call {i + 1} of {f} fails even as superuser{WHERE}: SQLSTATE {e.pgcode}: "
                 f"{str(e).strip().splitlines()[0]}")
if not NODES:
    su.rollback()
su.autocommit = True
if not bad:
    n_calls = sum(len(CALLS[f]) for f in called)
    n_fail = sum(bool(expected_failure(f, i)) for f in called for i in range(len(CALLS[f])))
    ok(f"all {n_calls} sample calls succeed as superuser{WHERE}, but the {n_fail} that refuse by design here")
if os.environ.get("AJ_ESC_SAMPLES_ONLY"):  # while writing sample calls
    sys.exit(1 if failures else 0)

# --- what to shadow (read before any shadow exists)
TYPE_SQL = f"""
WITH ext AS (SELECT classid, objid FROM pg_depend WHERE {EXT_FILTER}),
used AS (
  SELECT unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]) || p.prorettype) AS t
    FROM pg_proc p JOIN ext ON ext.classid = 'pg_proc'::regclass AND ext.objid = p.oid
  UNION SELECT a.atttypid FROM pg_attribute a JOIN ext ON ext.classid = 'pg_class'::regclass AND ext.objid = a.attrelid
   WHERE a.attnum > 0 AND NOT a.attisdropped
  UNION SELECT a.atttypid FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
   WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind IN ('r', 'v') AND a.attnum > 0
  UNION SELECT oid FROM pg_type WHERE typnamespace = 'pg_catalog'::regnamespace AND typname = ANY(%s))
SELECT DISTINCT b.typname, format('%%I.%%I', b.typnamespace::regnamespace, b.typname)
  FROM used JOIN pg_type t ON t.oid = used.t
  JOIN pg_type b ON b.oid = CASE WHEN t.typcategory = 'A' AND t.typname LIKE '\\_%%' THEN t.typelem ELSE t.oid END
 WHERE b.typtype IN ('b', 'e', 'r', 'm') ORDER BY 1"""
shadow_types = rows(sc, TYPE_SQL, (TYPE_EXTRA,))
shadow_types += [(alias, "pg_catalog." + base) for alias, base in TYPE_ALIASES.items()]

REL_SQL = f"""
SELECT n.nspname, c.relname, c.relkind,
       string_agg(CASE WHEN t.typtype = 'p' OR e.typtype = 'c' THEN format('NULL::pg_catalog._text AS %I', a.attname)
                      ELSE format('NULL::%I.%I AS %I', tn.nspname, t.typname, a.attname) END, ', ' ORDER BY a.attnum)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = t.typnamespace
  LEFT JOIN pg_type e ON e.oid = t.typelem
 WHERE (n.nspname = 'pg_catalog' AND c.relkind IN ('r', 'v'))
    OR c.oid IN (SELECT objid FROM pg_depend WHERE classid = 'pg_class'::regclass AND {EXT_FILTER})
       AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
 GROUP BY 1, 2, 3 ORDER BY 1, 2"""
shadow_rels = rows(sc, REL_SQL)

FUNC_SQL = """
SELECT 'pg_catalog.' || p.oid::regprocedure::text, p.proname,
       pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
       p.proretset, coalesce(p.proargmodes::text[], array_fill('i'::text, ARRAY[p.pronargs])),
       p.provariadic <> 0, p.prorettype = 'void'::regtype
  FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f' AND p.proname = ANY(%s)
 ORDER BY 1"""
shadow_funcs = rows(sc, FUNC_SQL, (FUNC_NAMES,))
AGG_SQL = """
SELECT 'pg_catalog.' || p.oid::regprocedure::text, p.proname,
       CASE WHEN p.pronargs = 0 THEN '*' ELSE oidvectortypes(p.proargtypes) END,
       CASE WHEN p.pronargs = 0 THEN '' ELSE ', ' || oidvectortypes(p.proargtypes) END, format_type(p.prorettype, NULL)
  FROM pg_proc p WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'a' AND p.proname = ANY(%s)
   AND NOT EXISTS (SELECT FROM pg_type t WHERE t.oid = p.prorettype AND t.typtype = 'p')
 ORDER BY 1"""
shadow_aggs = rows(sc, AGG_SQL, (AGG_NAMES,))
OP_SQL = """
SELECT o.oprname, format_type(o.oprleft, NULL), format_type(o.oprright, NULL), format_type(o.oprresult, NULL),
       format('pg_catalog.%%I', p.proname)
  FROM pg_operator o JOIN pg_proc p ON p.oid = o.oprcode
  JOIN pg_type l ON l.oid = o.oprleft JOIN pg_type r ON r.oid = o.oprright JOIN pg_type res ON res.oid = o.oprresult
 WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oprkind = 'b' AND o.oprname = ANY(%s)
   AND l.typname = ANY(%s) AND r.typname = ANY(%s) AND res.typtype <> 'p'
 ORDER BY 1, 2, 3"""
shadow_ops = rows(sc, OP_SQL, (OP_NAMES, OP_TYPES, OP_TYPES))

# The superuser's view of every node (one on one server): rolsuper and the
# log table are read on each (on Citus a delegated call runs on the agent's
# node); a role made superuser is reset where it is (on Citus node by node:
# role DDL propagation off).
checkers = [su]
if NODES:
    checkers = [connect(port=p) for p in NODES]
    for c in checkers:
        c.cursor().execute("SET citus.enable_ddl_propagation = off")


def reset_superuser(role):
    """True if the role is superuser on some node; makes it NOSUPERUSER there."""
    was = False
    for c in checkers:
        cur = c.cursor()
        if rows(cur, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s", (role,))[0][0]:
            cur.execute(f"ALTER ROLE {ident(role)} NOSUPERUSER")
            was = True
    return was


def superusers():
    # on Citus other runs' roles (another prefix, attacking another node
    # meanwhile) are that run's business: their positive controls
    others = "rolname NOT LIKE 'aj\\_esc%%' OR rolname LIKE %s" if NODES else "true"
    return {(c.info.port, r[0]) for c in checkers for r in rows(
        c.cursor(), f"SELECT rolname FROM pg_roles WHERE rolsuper AND ({others})",
        (PREFIX.replace("_", "\\_") + "%",) if NODES else None)}


superusers_before = superusers()


# ------------------------------------------------------------------ attacker
EVIL = """CREATE FUNCTION {s}.evil(shadow pg_catalog.text) RETURNS pg_catalog.bool
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $evil$
BEGIN
  RAISE WARNING 'AJ_ESC_EVIL %', pg_catalog.json_build_object('attacker', {me}, 'cur', current_user,
    'sess', session_user, 'ctx', pg_catalog.current_setting('aj_esc.ctx', true), 'shadow', shadow);
  BEGIN
    INSERT INTO public.aj_esc_log (attacker, cur_user, sess_user, ctx, shadow)
    VALUES ({me}, current_user, session_user, pg_catalog.current_setting('aj_esc.ctx', true), shadow);
  EXCEPTION WHEN OTHERS THEN RAISE WARNING 'AJ_ESC log insert failed: %', SQLERRM;
  END;
  BEGIN
    EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', {me});
  EXCEPTION WHEN OTHERS THEN
    BEGIN  -- a Citus worker refuses role DDL while DDL propagation is on
      IF pg_catalog.current_setting('citus.enable_ddl_propagation', true) IS NOT NULL THEN
        PERFORM pg_catalog.set_config('citus.enable_ddl_propagation', 'off', true);
        EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', {me});
      END IF;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
  END;
  RETURN true;
END $evil$"""
WRAP = """CREATE FUNCTION {s}.{name}({args}) RETURNS {res} LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $w$ BEGIN PERFORM {s}.evil({tag}); {body} END $w$"""


class Attack:
    """One attacker session: a role, a mode, the shadows, then the calls."""

    def __init__(self, level, mode):
        self.level, self.mode = level, mode
        self.role = PREFIX + level
        self.conn = connect(self.role)
        self.cur = self.conn.cursor()
        self.reports = []           # evil reports: dicts from the WARNINGs
        self.escalated = []         # ctx after which rolsuper was true
        self.counts = collections.Counter()
        self.s = "pg_temp" if mode == "pg_temp" else ident("evil_" + PREFIX + level)
        self.cur.execute("SET synchronous_commit = off")
        self.cur.execute("SET statement_timeout = '5s'")

    def ddl(self, kind, sql):
        try:
            self.cur.execute(sql)
            self.counts[kind] += 1
            return True
        except psycopg2.Error as e:
            self.counts[kind + " (not creatable)"] += 1
            if os.environ.get("AJ_ESC_DEBUG"):
                print(f"debug: {sql}\n  -> {str(e).strip()}", file=sys.stderr)
            return False

    def plant(self):
        s, me = self.s, lit(self.role)
        if NODES:  # plant on this node only (a worker refuses DDL otherwise)
            self.cur.execute("SET citus.enable_ddl_propagation = off")
        if self.mode == "schema":
            self.cur.execute("SET search_path = pg_catalog, pg_temp")
        self.cur.execute(EVIL.format(s=s, me=me))
        for tname, base in shadow_types:
            self.ddl("domains", f"CREATE DOMAIN {s}.{ident(tname)} AS {base} "
                                f"CHECK ({s}.evil({lit('domain ' + tname)}))")
        for nsp, rel, kind, cols in shadow_rels:
            tag = lit(f"view {nsp}.{rel}")
            view = f"{s}.{ident(rel)}"
            if not self.ddl("views", f"CREATE VIEW {view} AS SELECT {cols}, {s}.evil({tag}) AS aj_esc_evil "
                                     f"WHERE {s}.evil({tag})"):
                continue
            if nsp != "pg_catalog":  # writes through the shadow run INSTEAD OF triggers
                trg = f"{s}.{ident('trg_' + rel)}"
                self.ddl("trigger functions", f"CREATE FUNCTION {trg}() RETURNS pg_catalog.trigger LANGUAGE plpgsql "
                                              f"AS $t$ BEGIN PERFORM {s}.evil({tag}); RETURN NULL; END $t$")
                for op in ("INSERT", "UPDATE", "DELETE"):
                    self.ddl("triggers", f"CREATE TRIGGER aj_esc_{op.lower()} INSTEAD OF {op} ON {view} "
                                         f"FOR EACH ROW EXECUTE FUNCTION {trg}()")
        if self.mode == "schema":  # pg_temp is never searched for functions and operators
            self.plant_routines()
            self.cur.execute(f"SET search_path = {s}, pg_catalog, agent_journal, public")
        if NODES:
            self.cur.execute("RESET citus.enable_ddl_propagation")
        ok(f"{self.role} ({self.level}), {self.mode}: planted " +
           ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items())))
        self.counts.clear()

    def plant_routines(self):
        s = self.s
        for sig, name, args, res, retset, modes, variadic, void in shadow_funcs:
            ins = [i for i, m in enumerate(modes) if m in ("i", "b", "v")]
            passed = ", ".join(("VARIADIC " if variadic and i == ins[-1] else "") + f"${i + 1}" for i in ins)
            call = f"pg_catalog.{ident(name)}({passed})"
            if retset:
                body = f"RETURN QUERY SELECT * FROM {call};"
            elif void:
                body = f"PERFORM {call}; RETURN;"
            elif any(m in ("o", "b", "t") for m in modes):
                continue  # a non-set function with OUT parameters: none that matters here
            else:
                body = f"RETURN {call};"
            self.ddl("functions", WRAP.format(s=s, name=ident(name), args=args, res=res,
                                              tag=lit("function " + sig), body=body))
        for i, (sig, name, argtypes, sfargs, res) in enumerate(shadow_aggs):
            sf = f"{s}.aj_esc_sf{i}"
            if self.ddl("aggregate state functions",
                        WRAP.format(s=s, name=f"aj_esc_sf{i}", args=f"{res}{sfargs}", res=res,
                                    tag=lit("aggregate " + sig), body="RETURN $1;")):
                self.ddl("aggregates", f"CREATE AGGREGATE {s}.{ident(name)}({argtypes}) (SFUNC = {sf}, STYPE = {res})")
        for i, (op, left, right, res, fn) in enumerate(shadow_ops):
            if self.ddl("operator functions",
                        WRAP.format(s=s, name=f"aj_esc_op{i}", args=f"{left}, {right}", res=res,
                                    tag=lit(f"operator {op}({left},{right})"), body=f"RETURN {fn}($1, $2);")):
                self.ddl("operators", f"CREATE OPERATOR {s}.{op} (LEFTARG = {left}, RIGHTARG = {right}, "
                                      f"FUNCTION = {s}.aj_esc_op{i})")

    def collect(self):
        for n in list(self.conn.notices):
            for m in re.finditer(r"AJ_ESC_EVIL (\{[^\n]*\})", n):
                self.reports.append(json.loads(m.group(1)))
        self.conn.notices.clear()

    def run(self, ctx, sql):
        """One statement as the attacker; errors are expected: returns the
        error's first line, or None."""
        self.cur.execute("SELECT pg_catalog.set_config('aj_esc.ctx', %s, false)", (ctx,))
        try:
            self.cur.execute(sql)
            err = None
        except psycopg2.Error as e:
            err = (str(e).strip().splitlines() or ["?"])[0]
        self.collect()
        if reset_superuser(self.role):
            self.escalated.append(ctx)
        return err

    def selfcheck(self):
        """The shadows work: the attacker's own unqualified names hit them."""
        checks = [("SELECT 'x'::text", "domain text"),
                  ("SELECT '{}'::jsonb", "domain jsonb"),
                  ("SELECT '1'::int8", "domain int8"),
                  ("SELECT 1 FROM pg_roles", "view pg_catalog.pg_roles"),
                  ("SELECT 1 FROM pg_class", "view pg_catalog.pg_class"),
                  ("SELECT 1 FROM entries", "view agent_journal.entries"),
                  ("INSERT INTO access_grants DEFAULT VALUES", "view agent_journal.access_grants")]
        if self.mode == "schema":
            checks += [("SELECT lower('X'::pg_catalog.text)", "function pg_catalog.lower(text)"),
                       ("SELECT now()", "function pg_catalog.now()"),
                       ("SELECT unnest(ARRAY[1])", "function pg_catalog.unnest(anyarray)"),
                       ("SELECT count(*) FROM pg_catalog.pg_am", "aggregate pg_catalog.count()"),
                       ("SELECT jsonb_agg(1)", "aggregate pg_catalog.jsonb_agg(anyelement)"),
                       ("SELECT pg_catalog.gen_random_uuid() = pg_catalog.gen_random_uuid()",
                        "operator =(uuid,uuid)"),
                       ("SELECT 1::pg_catalog.int8 + 1::pg_catalog.int8", "operator +(bigint,bigint)"),
                       ("SELECT 'a'::pg_catalog.text || 'b'::pg_catalog.text", "operator ||(text,text)")]
        for sql, shadow in checks:
            ctx = f"{self.level}/{self.mode}/selfcheck/{shadow}"
            self.run(ctx, sql)
            if not any(r["ctx"] == ctx and r["shadow"] == shadow and r["cur"] == self.role for r in self.reports):
                fail(f"{self.role}, {self.mode}: shadow '{shadow}' did not run for the attacker's own `{sql}`"
                     " (the matrix would prove nothing)")

    def matrix(self):
        """Every call in every form; returns {"object/callN/form": error or None}."""
        out = {}
        for f in called:
            for i, call in enumerate(CALLS[f]):
                expr = expand(call, self.role)
                key = f"{f}/call{i + 1}"
                out[key + "/select"] = self.run(self.ctx(key + "/select"), "SELECT " + expr)
                out[key + "/from"] = self.run(self.ctx(key + "/from"), f"SELECT * FROM {expr} AS aj_esc_f")
                out[key + "/prepared"] = self.prepared(self.ctx(key + "/prepared"), "SELECT " + expr)
        for rel in views + tables:
            out[rel + "/select"] = self.run(self.ctx(rel + "/select"), f"SELECT * FROM {rel}")
            out[rel + "/prepared"] = self.prepared(self.ctx(rel + "/prepared"), f"SELECT * FROM {rel}")
        return out

    def ctx(self, key):
        return f"{self.level}/{self.mode}/{key}"

    def prepared(self, ctx, sql):
        """PREPARE, EXECUTE twice (the second reuses the cached plan)."""
        err = self.run(ctx, f"PREPARE aj_esc_p AS {sql}")
        if err:
            return err
        err = self.run(ctx, "EXECUTE aj_esc_p") or self.run(ctx, "EXECUTE aj_esc_p")
        self.run(ctx, "DEALLOCATE aj_esc_p")
        return err


# For each call (its ctx: level/mode/object/form) that escalated: the
# shadows that ran as another user, and whether the role became superuser.
escalations = {}


def escalation(ctx, what, level="?", mode="?"):
    escalations.setdefault(ctx or f"{level}/{mode}/(outside any call)/-", set()).add(what)


sc.execute("SELECT pg_catalog.set_config('aj_esc.ctx', 'control', false)")
for level in LEVELS:
    # Baseline: the same calls without shadows, to tell which calls the
    # shadows break (reported as notes; calls may raise, that is fine).
    baseline = {}
    if not NODES:  # (on Citus left out: too slow there for a note)
        plain = Attack(level, "plain")
        baseline = plain.matrix()
        plain.conn.close()
    for mode in MODES:
        a = Attack(level, mode)
        a.plant()
        a.selfcheck()
        out = a.matrix()
        foreign = [r for r in a.reports if r["cur"] != a.role or r["sess"] != a.role]
        for r in foreign:
            escalation(r["ctx"], f"'{r['shadow']}' ran as {r['cur']}", level, mode)
        for ctx in a.escalated:
            escalation(ctx, f"{a.role} became superuser")
        good = sum(err is None for err in out.values())
        line = (f"{a.role} ({level}), {mode}: {len(out)} calls ({good} succeeded, the rest raised), "
                f"{len(a.reports)} evil runs, ")
        if not foreign and not a.escalated:
            ok(line + "none as another user")
        else:
            print(f"     {line}{len(foreign)} as another user, {len(a.escalated)} calls made it superuser", flush=True)
        for key, err in out.items():
            if err and key in baseline and baseline[key] is None:
                print(f"note: {a.role}, {mode}: {key} succeeds without shadows but raised: {err}", flush=True)
        a.conn.close()
        if mode == "schema":
            # Positive control: the same evil function, run with superuser
            # rights, does make the role superuser (so quoting etc. work).
            sc.execute(f"SELECT {a.s}.evil('control')")
            became = reset_superuser(a.role)
            sc.execute("DELETE FROM public.aj_esc_log WHERE ctx = 'control'")
            if not became:
                fail(f"positive control: {a.role}'s evil function run as superuser did not make it superuser")
if not any(f.startswith("positive control") for f in failures):
    ok("positive control: each role's evil function makes it superuser when run with superuser rights")

# The log table holds what committed calls logged (the WARNINGs also
# report what a failing call rolled back).
for c in checkers:
    for attacker, cur_user, ctx, shadow in rows(c.cursor(), """SELECT attacker, cur_user, ctx, shadow
            FROM public.aj_esc_log WHERE (cur_user <> attacker OR sess_user <> attacker)
             AND ctx IS DISTINCT FROM 'control' ORDER BY id"""):
        escalation(ctx, f"'{shadow}' ran as {cur_user}" + (f" on node {c.info.port}" if NODES else ""),
                   attacker[len(PREFIX):])
for ctx, what in escalations.items():
    level, mode, obj, form = (ctx.split("/", 3) + ["?"] * 3)[:4]
    kind = "function" if "(" in obj else "relation"
    fail(f"ESCALATION: role {PREFIX}{level}, mode {mode}, {kind} {obj} [{form}]: " + "; ".join(sorted(what)))
superusers_after = superusers()
if superusers_after != superusers_before:
    fail(f"superusers changed: before {sorted(superusers_before)}, after {sorted(superusers_after)}")
if escalations:
    objs = sorted({c.split("/")[2] for c in escalations if c.count("/") >= 3})
    print(f"summary: {len(escalations)} escalating calls, levels "
          f"{sorted({c.split('/')[0] for c in escalations})}, objects: {', '.join(objs)}", flush=True)
else:
    ok(f"no role became superuser and no shadowing object ran as another user "
       f"({len(LEVELS)} roles x {len(MODES)} modes)")
su.close()
if failures:
    print(f"{len(failures)} failure(s)", file=sys.stderr)
    sys.exit(1)
