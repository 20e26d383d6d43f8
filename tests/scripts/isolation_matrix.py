#!/usr/bin/python3
"""Every journal writer at every isolation level, against every partner.

Run by isolation_matrix.sh:  isolation_matrix.py DBNAME OWNER_ROLE

Writers come from the catalog: every VOLATILE function of the extension
whose first argument is `agent_id uuid`, or `source_agent uuid` (fork_agent
writes a new agent from the agent's journal, under its lock). Each needs
sample calls in SAMPLES
(a writer without one is a failure, so a new writer cannot slip out of the
matrix). For each sample W, each partner P in {W, append, forget_agent},
each isolation level L of W's session, the partner at READ COMMITTED and at
L, and two orders:

  blocked          s2: BEGIN; P            (holds the agent's lock)
                   s1: BEGIN ISOLATION LEVEL L; SELECT 1; W   (waits)
                   s2: COMMIT -> s1 gets its answer -> s1: COMMIT/ROLLBACK
  snapshot-before  s1: BEGIN ISOLATION LEVEL L; SELECT 1   (snapshot taken)
                   s2: P, committed
                   s1: W -> COMMIT/ROLLBACK

s1 may succeed or raise 40001 (at the call or at COMMIT); anything else is a
failure. Afterwards the committed state must satisfy, from a new connection:
  (1) the agent's live entries are contiguous from compacted_through+1 to
      their max, no gaps, no duplicates;
  (2) if any entry or idempotency key of the agent exists, its agent_state
      row exists and compacted_through < every live sequence;
  (3) latest_sequence >= every sequence acknowledged to a committed
      transaction (since the last committed forget_agent), and each of those
      above compacted_through is still a live entry; if a forget_agent
      committed last, nothing of the agent remains (entries, keys, state);
  (4) latest_sequence = max(live max, compacted_through) (0 after a complete
      forget), no idempotency key points past it, and the next append in
      autocommit (with the live lease's token when the agent is leased)
      returns exactly latest + 1;
  (5) the lease: a lease in agent_state has its worker and times, and is
      the token of the lease graph's latest attempt (lease_attempts); the
      graph's tokens increase with the attempt and none is above the
      lease_tokens sequence; no graph rows without a state row.
  (6) saved states lie between 1 and latest_sequence; a forget_agent that
      committed last also removed the agent's saved states and retention
      policy (with (3));
  (7) every fork of the agent (fork_agent committed in the scenario, the
      last write before the check) holds exactly the agent's entries up to
      the fork's sequence (numbers, iterations, kinds, times, events), its
      compaction point and the keys of those entries.
  (8) the change feed (0.7.0), after a tick: the agent's ranges that are
      not gaps (its current incarnation's) do not overlap, cover every live
      entry, and cover nothing else but compacted sequences; nothing of the
      agent is left pending (every committed append got its position).

AJ_ISO_ONLY=REGEX runs only the scenarios whose name matches; AJ_ISO_VERBOSE=1
prints every scenario.

On a distributed journal (tests/scripts/citus_attack.sh):
  isolation_matrix.py DBNAME OWNER_ROLE --citus-nodes COORD,W1,W2 --node PORT
(127.0.0.1, user postgres): both sessions connect to the node on PORT and
Citus sends each call to the agent's node (also inside a transaction
block); the partners are append and forget_agent at READ COMMITTED (the
matrix would take too long on a cluster otherwise). s1 may also refuse
with 0A000 where a distributed journal refuses by design (CITUS_REFUSES:
fork_agent; a writer nested in another's arguments runs where it is called
and refuses unless that is the agent's node); never anything else. The
checks read through the coordinator; the lease_tokens sequence and
retention_settings are per node there (max/sum over the nodes), and (7)
and (8) have nothing to check (no forks, no feed).
"""
import argparse
import os
import re
import sys
import threading
import time
import uuid

import psycopg2
import psycopg2.extensions
import psycopg2.extras

psycopg2.extras.register_uuid()

ap = argparse.ArgumentParser()
ap.add_argument("db")
ap.add_argument("owner", nargs="?", default="aj_iso_owner")
ap.add_argument("--citus-nodes", default="", help="a Citus cluster's ports, coordinator first")
ap.add_argument("--node", type=int, help="with --citus-nodes: the port the sessions connect to")
args = ap.parse_args()
DB, OWNER = args.db, args.owner
NODES = [int(p) for p in args.citus_nodes.split(",") if p]  # [] on one server
NODE = args.node if NODES else None
ONLY = re.compile(os.environ.get("AJ_ISO_ONLY", ""))
VERBOSE = os.environ.get("AJ_ISO_VERBOSE") == "1"
TIMEOUT_S = 10          # statement_timeout / lock_timeout of both sessions
BLOCK_WAIT_S = 3.0      # how long to wait for s1 to queue on a lock

SERIALIZATION_FAILURE = "40001"

# Sample calls per writer: regprocedure text -> [(label, SQL, result kind)].
# %(a)s is the agent's uuid. Result kinds: ("seq", n) = returns the last of
# n sequences it wrote (acknowledged once committed); "forget" = removes the
# agent; None = nothing to track. A sample that needs a lease claims it in
# the same call (CLAIM: the token of iso-worker's live lease, the same one
# while it lives, so a sample against itself is not fenced).
CLAIM = "agent_journal.claim_agent(%(a)s, 'iso-worker')"
SAMPLES = {
    "agent_journal.append(uuid,integer,jsonb,bigint,text,bigint)": [
        ("append",
         "SELECT agent_journal.append(%(a)s, 1, '{\"type\": \"Step\"}')", ("seq", 1)),
        ("append+key",
         "SELECT agent_journal.append(%(a)s, 1, '{\"type\": \"Keyed\"}', "
         "idempotency_key => 'iso-key')", ("seq", 1)),
        ("append+expected",
         "SELECT agent_journal.append(%(a)s, 1, '{\"type\": \"Opt\"}', "
         "expected_sequence => agent_journal.latest_sequence(%(a)s))", ("seq", 1)),
        ("append+lease",
         "SELECT agent_journal.append(%(a)s, 1, '{\"type\": \"Leased\"}', "
         "lease => " + CLAIM + ")", ("seq", 1)),
    ],
    "agent_journal.append_batch(uuid,integer,jsonb[],bigint,text,bigint)": [
        ("append_batch",
         "SELECT agent_journal.append_batch(%(a)s, 2, "
         "ARRAY['{\"type\": \"B1\"}', '{\"type\": \"B2\"}']::jsonb[])", ("seq", 2)),
        ("append_batch+key",
         "SELECT agent_journal.append_batch(%(a)s, 2, "
         "ARRAY['{\"type\": \"K1\"}', '{\"type\": \"K2\"}']::jsonb[], "
         "idempotency_key => 'iso-batch-key')", ("seq", 2)),
        ("append_batch+lease",
         "SELECT agent_journal.append_batch(%(a)s, 2, "
         "ARRAY['{\"type\": \"L1\"}', '{\"type\": \"L2\"}']::jsonb[], "
         "lease => " + CLAIM + ")", ("seq", 2)),
    ],
    "agent_journal.compact(uuid,bigint,bigint)": [
        ("compact", "SELECT agent_journal.compact(%(a)s)", None),
        ("compact(through 2)", "SELECT agent_journal.compact(%(a)s, 2)", None),
        ("compact+lease", "SELECT agent_journal.compact(%(a)s, lease => " + CLAIM + ")", None),
    ],
    # The lease functions write only the agent's state row (and the lease
    # graph): the journal invariants hold trivially, (5) checks the lease.
    "agent_journal.claim_agent(uuid,text,interval)": [
        ("claim_agent", "SELECT agent_journal.claim_agent(%(a)s, 'iso-worker')", None),
        # a worker per session: against itself, the second claim finds
        # another worker's live lease (NULL)
        ("claim_agent(own worker)",
         "SELECT agent_journal.claim_agent(%(a)s, 'iso-worker-' || pg_backend_pid(), '1 minute')", None),
    ],
    "agent_journal.renew_lease(uuid,bigint,interval)": [
        ("renew_lease", "SELECT agent_journal.renew_lease(%(a)s, " + CLAIM + ", '1 minute')", None),
    ],
    "agent_journal.release_agent(uuid,bigint)": [
        ("release_agent", "SELECT agent_journal.release_agent(%(a)s, " + CLAIM + ")", None),
    ],
    "agent_journal.forget_agent(uuid)": [
        ("forget_agent", "SELECT agent_journal.forget_agent(%(a)s)", "forget"),
    ],
    "agent_journal.bind_agent(uuid,regrole)": [
        ("bind_agent(regrole)",
         "SELECT agent_journal.bind_agent(%(a)s, '" + OWNER + "'::regrole)", None),
    ],
    "agent_journal.bind_agent(uuid,name)": [
        ("bind_agent(name)",
         "SELECT agent_journal.bind_agent(%(a)s, '" + OWNER + "'::name)", None),
    ],
    # save_state and fork_agent need a journal (22023 without one, e.g.
    # after a concurrent forget_agent): their samples append first, in the
    # same call, and return (fork: cover) the sequence that append wrote.
    "agent_journal.save_state(uuid,jsonb,bigint,bigint)": [
        ("save_state",
         "SELECT agent_journal.save_state(%(a)s, '{\"sum\": 1}', "
         "agent_journal.append(%(a)s, 1, '{\"type\": \"Folded\"}'))", ("seq", 1)),
        ("save_state+lease",
         "SELECT agent_journal.save_state(%(a)s, '{\"sum\": 2}', "
         "agent_journal.append(%(a)s, 1, '{\"type\": \"Folded\"}', lease => " + CLAIM + "), "
         "lease => " + CLAIM + ")", ("seq", 1)),
    ],
    # a new agent per call: against itself, two forks
    "agent_journal.fork_agent(uuid,bigint,uuid)": [
        ("fork_agent",
         "SELECT agent_journal.fork_agent(%(a)s, "
         "agent_journal.append(%(a)s, 1, '{\"type\": \"Forked\"}', idempotency_key => 'iso-fork-key'), "
         "gen_random_uuid())", ("seq", 1)),
    ],
    # the policy row only (apply_retention is not per agent)
    "agent_journal.set_retention(uuid,bigint,interval,boolean)": [
        ("set_retention", "SELECT agent_journal.set_retention(%(a)s, keep_last => 1)", None),
        ("set_retention(remove)", "SELECT agent_journal.set_retention(%(a)s)", None),
    ],
}
# Citus: samples that may refuse with 0A000 (by design, see the docstring)
CITUS_REFUSES = {"append+lease", "append_batch+lease", "compact+lease", "renew_lease", "release_agent",
                 "save_state", "save_state+lease", "fork_agent"}
APPEND = "agent_journal.append(uuid,integer,jsonb,bigint,text,bigint)"
FORGET = "agent_journal.forget_agent(uuid)"

LEVELS = [("RC", "READ COMMITTED"), ("RR", "REPEATABLE READ"), ("SER", "SERIALIZABLE")]

failures = []


def fail(msg):
    failures.append(msg.split(": ")[0])
    print("FAIL: " + msg, flush=True)


def connect(port=None):
    # every session, the checker's too, is guarded against a hang
    where = {"host": "127.0.0.1", "port": port or NODE, "user": "postgres"} if NODES else {}
    c = psycopg2.connect(dbname=DB, application_name="aj_isolation_matrix",
                         options="-c statement_timeout=%d -c lock_timeout=%d"
                         % (TIMEOUT_S * 1000, TIMEOUT_S * 1000), **where)
    c.autocommit = True  # transactions are explicit BEGIN/COMMIT
    return c


def session():
    c = connect()
    with c.cursor() as cur:
        cur.execute("SET idle_in_transaction_session_timeout = %s", (6 * TIMEOUT_S * 1000,))
    return c


def one(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0] if cur.description else None


def run(conn, sql, agent):
    """(True, value) or (False, psycopg2.Error)."""
    try:
        return True, one(conn, sql, {"a": agent})
    except psycopg2.Error as e:
        return False, e


def describe(e):
    msg = (e.pgerror or str(e)).strip().replace("\n", " | ")
    return "SQLSTATE %s: %s" % (e.pgcode, msg)


def rollback(conn):
    try:
        one(conn, "ROLLBACK")
    except psycopg2.Error:
        pass


# ------------------------------------------------------------ the writers
def writers(ctl):
    with ctl.cursor() as cur:
        cur.execute("""
            SELECT p.oid::regprocedure::text
            FROM pg_depend d
            JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'agent_journal'
            JOIN pg_proc p ON p.oid = d.objid
            WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
              AND d.deptype = 'e' AND p.provolatile = 'v'
              AND p.pronargs >= 1 AND p.proargtypes[0] = 'uuid'::regtype
              AND p.proargnames[1] IN ('agent_id', 'source_agent')
            ORDER BY 1""")
        return [r[0] for r in cur.fetchall()]


# ------------------------------------------------------------ scenarios
SETUP = [
    ("SELECT agent_journal.append(%(a)s, 1, '{\"type\": \"Setup\", \"n\": 1}', "
     "idempotency_key => 'setup-1')", 1),
    ("SELECT agent_journal.append(%(a)s, 1, '{\"type\": \"Setup\", \"n\": 2}')", 2),
    ("SELECT agent_journal.append(%(a)s, 2, '{\"type\": \"Setup\", \"n\": 3}', "
     "idempotency_key => 'setup-3')", 3),
]


def setup(ctl, agent):
    """A fresh agent: entries 1..3 (two with keys), 1 compacted."""
    for sql, want in SETUP:
        got = one(ctl, sql, {"a": agent})
        if got != want:
            raise RuntimeError("setup append returned %r, want %r" % (got, want))
    one(ctl, "SELECT agent_journal.compact(%(a)s, 1)", {"a": agent})
    return [("commit", "setup")] + [("ack", s) for s in (1, 2, 3)]


def effect(label, kind, value):
    """What a committed call adds to the history, in commit order: its
    commit, and the sequences it acknowledged or the forget it did."""
    if kind == "forget":
        return [("forget", label)]
    if isinstance(kind, tuple) and kind[0] == "seq" and value is not None:
        return [("commit", label)] + [("ack", value - i) for i in range(kind[1])]
    return [("commit", label)]


class Outcome:
    def __init__(self):
        self.ok = None      # True: the call succeeded
        self.value = None
        self.error = None


_gpids = {}  # backend pid -> Citus's global pid, of s1 (set in main)


def gpid(pid):
    return _gpids[pid]


def wait_blocked(ctl, pid, thread):
    """Until s1 waits on a heavyweight lock, or its call has returned."""
    deadline = time.monotonic() + BLOCK_WAIT_S
    while time.monotonic() < deadline:
        if not thread.is_alive():
            return "returned"
        if not NODES and one(ctl, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s "
                                  "AND wait_event_type = 'Lock'", (pid,)):
            return "blocked"
        # on Citus s1's call waits on the agent's node: in s1's backend or
        # in one of Citus's there, named by s1's global pid
        if NODES and any(one(c, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND (pid = %s OR application_name LIKE %s)",
                             (pid, "%%gpid=%d" % gpid(pid))) for c in checkers()):
            return "blocked"
        time.sleep(0.002)
    return "timeout"


def scenario(ctx, name, agent, w, p, level, plevel, order):
    """Runs one scenario; returns s1's outcome label or None on a failure."""
    ctl, s1, s2 = ctx["ctl"], ctx["s1"], ctx["s2"]
    (wlabel, wsql, wkind), (plabel, psql, pkind) = w, p
    history = setup(ctl, agent)
    one(s1, "BEGIN ISOLATION LEVEL " + level)
    one(s1, "SELECT 1")  # the snapshot (REPEATABLE READ, SERIALIZABLE)
    out = Outcome()
    if order == "blocked":
        one(s2, "BEGIN ISOLATION LEVEL " + plevel)
        ok, pval = run(s2, psql, agent)
        if not ok:
            rollback(s2)
            rollback(s1)
            fail("%s: partner %s failed: %s" % (name, plabel, describe(pval)))
            return None

        def call():
            out.ok, v = run(s1, wsql, agent)
            if out.ok:
                out.value = v
            else:
                out.error = v
        t = threading.Thread(target=call, daemon=True)
        t.start()
        state = wait_blocked(ctl, s1.get_backend_pid(), t)
        ctx["blocked"][state] = ctx["blocked"].get(state, 0) + 1
        try:
            one(s2, "COMMIT")
            history += effect(plabel, pkind, pval)
        except psycopg2.Error as e:
            if e.pgcode != SERIALIZATION_FAILURE:
                fail("%s: partner %s COMMIT: %s" % (name, plabel, describe(e)))
        t.join(TIMEOUT_S + 5)
        if t.is_alive():
            one(ctl, "SELECT pg_cancel_backend(%s)", (s1.get_backend_pid(),))
            t.join(5)
            fail("%s: %s still running %ds after the partner committed" % (name, wlabel, TIMEOUT_S + 5))
            rollback(s1)
            return None
    else:
        one(s2, "BEGIN ISOLATION LEVEL " + plevel)
        ok, pval = run(s2, psql, agent)
        if not ok:
            rollback(s2)
            rollback(s1)
            fail("%s: partner %s failed: %s" % (name, plabel, describe(pval)))
            return None
        one(s2, "COMMIT")
        history += effect(plabel, pkind, pval)
        out.ok, v = run(s1, wsql, agent)
        if out.ok:
            out.value = v
        else:
            out.error = v

    if out.ok:
        try:
            one(s1, "COMMIT")
            history += effect(wlabel, wkind, out.value)
            result = "committed"
        except psycopg2.Error as e:
            if e.pgcode != SERIALIZATION_FAILURE:
                fail("%s: %s COMMIT: %s" % (name, wlabel, describe(e)))
                return None
            result = "40001"
    elif NODES and wlabel in CITUS_REFUSES and out.error.pgcode == "0A000":
        rollback(s1)
        result = "0A000"
    else:
        rollback(s1)
        if out.error.pgcode != SERIALIZATION_FAILURE:
            fail("%s: %s raised %s" % (name, wlabel, describe(out.error)))
            return None
        result = "40001"
    problems = check(agent, history)
    if problems:
        fail("%s: s1 %s (%s); %s" % (
            name, result, out.value if out.ok else describe(out.error).split(":")[0],
            "; ".join(problems)))
        return None
    if VERBOSE:
        print("  %s: s1 %s" % (name, result), flush=True)
    return result


_checkers = []


def checkers():
    """Connections to every node (Citus), or the one server."""
    if not _checkers:
        _checkers.extend([connect(p) for p in NODES] if NODES else [connect()])
    return _checkers


def check(agent, history):
    """The invariants on the committed state; a list of violations."""
    problems = []
    # a new session: sees exactly what is committed (on Citus one kept
    # open, autocommit as well: a new one costs Citus new connections)
    conn = connect() if not NODES else checkers()[NODES.index(NODE)]
    try:
        with conn.cursor() as cur:
            cur.execute("""
                SELECT (SELECT count(*) FROM agent_journal.entries WHERE agent_id = %(a)s),
                       (SELECT count(DISTINCT sequence) FROM agent_journal.entries WHERE agent_id = %(a)s),
                       (SELECT min(sequence) FROM agent_journal.entries WHERE agent_id = %(a)s),
                       (SELECT max(sequence) FROM agent_journal.entries WHERE agent_id = %(a)s),
                       (SELECT count(*) FROM agent_journal.agent_state WHERE agent_id = %(a)s),
                       (SELECT compacted_through FROM agent_journal.agent_state WHERE agent_id = %(a)s),
                       (SELECT count(*) FROM agent_journal.idempotency_keys WHERE agent_id = %(a)s),
                       (SELECT max(last_sequence) FROM agent_journal.idempotency_keys WHERE agent_id = %(a)s),
                       agent_journal.latest_sequence(%(a)s)""", {"a": agent})
            n, distinct, lo, hi, states, ct, keys, key_hi, latest = cur.fetchone()
            cur.execute("SELECT sequence FROM agent_journal.entries WHERE agent_id = %(a)s",
                        {"a": agent})
            live = {r[0] for r in cur.fetchall()}
            cur.execute("""
                SELECT s.lease, s.lease_worker IS NOT NULL AND s.lease_claimed_at IS NOT NULL
                                AND s.lease_expires_at IS NOT NULL,
                       s.lease_attempts,
                       (SELECT g.lease FROM agent_journal.lease_graph g
                         WHERE g.agent_id = s.agent_id AND g.attempt = s.lease_attempts),
                       (SELECT max(g.attempt) FROM agent_journal.lease_graph g WHERE g.agent_id = s.agent_id),
                       (SELECT l.lease FROM agent_journal.leases l WHERE l.agent_id = s.agent_id)
                  FROM agent_journal.agent_state s WHERE s.agent_id = %(a)s""", {"a": agent})
            lease_row = cur.fetchone()
            cur.execute("""
                SELECT count(*),
                       coalesce(bool_and(ordered), true),
                       coalesce(max(lease) <= %(issued)s, true)
                  FROM (SELECT lease, lease > lag(lease) OVER (ORDER BY attempt)
                               OR lag(lease) OVER (ORDER BY attempt) IS NULL AS ordered
                          FROM agent_journal.lease_graph WHERE agent_id = %(a)s) g""",
                        {"a": agent, "issued": max(one(c, "SELECT last_value FROM agent_journal.lease_tokens")
                                                   for c in checkers())})
            graph_n, graph_ordered, graph_issued = cur.fetchone()
            # 0.5.0: saved states, retention policies, forks (absent before)
            saved = policies = 0
            saved_out = forks = None
            cur.execute("SELECT to_regclass('agent_journal.saved_states') IS NOT NULL")
            has_saved = cur.fetchone()[0]
            if has_saved:
                cur.execute("""
                    SELECT (SELECT count(*) FROM agent_journal.saved_states WHERE agent_id = %(a)s),
                           (SELECT count(*) FROM agent_journal.saved_states WHERE agent_id = %(a)s
                              AND (through_sequence < 1
                                   OR through_sequence > agent_journal.latest_sequence(%(a)s))),
                           0""",
                            {"a": agent})
                saved, saved_out, policies = cur.fetchone()
                policies = sum(one(c, "SELECT count(*) FROM agent_journal.retention_settings WHERE agent_id = %s",
                                   (agent,)) for c in checkers())
            if has_saved and not NODES:  # (no forks on a distributed journal)
                cur.execute("""
                    SELECT f.agent_id, f.forked_from_sequence,
                           f.compacted_through IS NOT DISTINCT FROM s.compacted_through,
                           (SELECT count(*) FROM (
                              (SELECT sequence, iteration, kind, recorded_at, event FROM agent_journal.entries
                                WHERE agent_id = f.agent_id
                               EXCEPT ALL
                               SELECT sequence, iteration, kind, recorded_at, event FROM agent_journal.entries
                                WHERE agent_id = %(a)s AND sequence <= f.forked_from_sequence)
                              UNION ALL
                              (SELECT sequence, iteration, kind, recorded_at, event FROM agent_journal.entries
                                WHERE agent_id = %(a)s AND sequence <= f.forked_from_sequence
                               EXCEPT ALL
                               SELECT sequence, iteration, kind, recorded_at, event FROM agent_journal.entries
                                WHERE agent_id = f.agent_id)) d),
                           (SELECT count(*) FROM (
                              (SELECT idempotency_key, first_sequence, last_sequence FROM agent_journal.idempotency_keys
                                WHERE agent_id = f.agent_id
                               EXCEPT ALL
                               SELECT idempotency_key, first_sequence, last_sequence FROM agent_journal.idempotency_keys
                                WHERE agent_id = %(a)s AND last_sequence <= f.forked_from_sequence)
                              UNION ALL
                              (SELECT idempotency_key, first_sequence, last_sequence FROM agent_journal.idempotency_keys
                                WHERE agent_id = %(a)s AND last_sequence <= f.forked_from_sequence
                               EXCEPT ALL
                               SELECT idempotency_key, first_sequence, last_sequence FROM agent_journal.idempotency_keys
                                WHERE agent_id = f.agent_id)) k)
                      FROM agent_journal.agent_state f
                      LEFT JOIN agent_journal.agent_state s ON s.agent_id = %(a)s
                     WHERE f.forked_from = %(a)s ORDER BY 1""", {"a": agent})
                forks = cur.fetchall()
            # 0.7.0: the change feed, after a tick (read_feed outside a
            # transaction block moves every committed append into the feed)
            feed_ranges = feed_pending = None
            cur.execute("SELECT to_regclass('agent_journal.feed') IS NOT NULL")
            if cur.fetchone()[0] and not NODES:  # (no feed on a distributed journal)
                cur.execute("SELECT count(*) FROM agent_journal.read_feed('iso_matrix', 0)")
                cur.execute("""SELECT first_sequence, last_sequence FROM agent_journal.feed
                                WHERE agent_id = %(a)s AND gap IS NULL""", {"a": agent})
                feed_ranges = cur.fetchall()
                cur.execute("""SELECT (SELECT count(*) FROM agent_journal.feed_pending WHERE agent_id = %(a)s)
                                 + (SELECT count(*) FROM agent_journal.feed_appends
                                    WHERE agent_id = %(a)s AND first_sequence <> 0)""",
                            {"a": agent})
                feed_pending = cur.fetchone()[0]
        base = ct or 0
        shape = ("entries %s (%d, %d distinct), compacted_through %s, state rows %d, keys %d "
                 "(max last_sequence %s), latest_sequence %s"
                 % ("%s..%s" % (lo, hi) if n else "none", n, distinct,
                    ct, states, keys, key_hi, latest))

        # (1) contiguous from compacted_through+1
        if n and not (distinct == n and lo == base + 1 and hi == base + n):
            problems.append("(1) live entries not contiguous from compacted_through+1")
        # (2) state row for anything that exists, below every live sequence
        if (n or keys) and states != 1:
            problems.append("(2) entries or keys without an agent_state row")
        if n and ct is not None and not ct < lo:
            problems.append("(2) compacted_through >= a live sequence")
        # (3) acknowledged sequences since the last committed forget
        last_forget = max((i for i, h in enumerate(history) if h[0] == "forget"), default=-1)
        acks = [h[1] for h in history[last_forget + 1:] if h[0] == "ack"]
        calls = [h for h in history if h[0] in ("commit", "forget")]
        if calls and calls[-1][0] == "forget" and (n or keys or states or saved or policies):
            problems.append("(3) forget_agent committed last but the agent was not removed "
                            "completely (half a deletion)")
        if acks and latest < max(acks):
            problems.append("(3) latest_sequence %s below acknowledged sequence %d"
                            % (latest, max(acks)))
        lost = sorted({s for s in acks if s > base and s not in live})
        if lost:
            problems.append("(3) acknowledged sequences %s lost (above compacted_through %s)"
                            % (lost, base))
        # (5) the lease
        live_lease = None
        if lease_row is None:
            if graph_n:
                problems.append("(5) lease graph rows without an agent_state row")
        else:
            lease, complete, attempts, graph_lease, graph_max, live_lease = lease_row
            if lease is not None and not complete:
                problems.append("(5) lease %s without its worker, claimed_at or expires_at" % lease)
            if lease is not None and graph_lease != lease:
                problems.append("(5) lease %s is not the token of attempt %s in the lease graph (%s)"
                                % (lease, attempts, graph_lease))
            if graph_n and graph_max != attempts:
                problems.append("(5) lease graph's last attempt %s, lease_attempts %s"
                                % (graph_max, attempts))
        if not graph_ordered:
            problems.append("(5) lease graph tokens do not increase with the attempt")
        if not graph_issued:
            problems.append("(5) a lease graph token above the lease_tokens sequence")
        # (6) saved states within the journal
        if saved_out:
            problems.append("(6) %d saved state(s) outside 1..latest_sequence" % saved_out)
        # (7) forks: the agent's journal up to the fork's sequence
        for fork, through, same_point, entry_diff, key_diff in forks or []:
            if entry_diff:
                problems.append("(7) fork %s (through %s) differs from the agent's entries up to it "
                                "in %d row(s)" % (fork, through, entry_diff))
            if not same_point:
                problems.append("(7) fork %s has another compaction point than the agent" % fork)
            if key_diff:
                problems.append("(7) fork %s differs from the agent's keys up to %s in %d row(s)"
                                % (fork, through, key_diff))
        # (8) the feed covers the live entries exactly once
        if feed_ranges is not None:
            covered = []
            for a, b in feed_ranges:
                covered.extend(range(a, b + 1))
            if len(covered) != len(set(covered)):
                problems.append("(8) the agent's feed ranges overlap: %s" % sorted(feed_ranges))
            if not live <= set(covered):
                problems.append("(8) live entries missing from the feed: %s (ranges %s)"
                                % (sorted(live - set(covered))[:10], sorted(feed_ranges)))
            extra = {x for x in set(covered) - live if ct is None or x > ct}
            if extra:
                problems.append("(8) the feed covers sequences that are neither live nor compacted: %s "
                                "(ranges %s)" % (sorted(extra)[:10], sorted(feed_ranges)))
            if feed_pending:
                problems.append("(8) %d pending feed row(s) left after a tick" % feed_pending)
        # (4) numbering continues from what is committed
        want_latest = max(hi or 0, base)
        if latest != want_latest:
            problems.append("(4) latest_sequence %s, but the tables say %d"
                            % (latest, want_latest))
        if key_hi is not None and key_hi > want_latest:
            problems.append("(4) an idempotency key holds sequence %s past the latest %d"
                            % (key_hi, want_latest))
        try:
            nxt = one(conn, "SELECT agent_journal.append(%(a)s, 9, '{\"type\": \"Check\"}', "
                            "lease => %(l)s)", {"a": agent, "l": live_lease})
            if nxt != want_latest + 1:
                problems.append("(4) next append got %s, want %d" % (nxt, want_latest + 1))
            if nxt in acks:
                problems.append("(4) next append reused acknowledged sequence %s" % nxt)
        except psycopg2.Error as e:
            problems.append("(4) next append failed: %s" % describe(e))
        if problems:
            problems.append("state before the check append: " + shape)
    finally:
        if not NODES:
            conn.close()
    return problems


def main():
    t0 = time.monotonic()
    ctl = connect()
    with ctl.cursor() as cur:  # the consumer whose reads tick the feed for (8)
        cur.execute("SELECT to_regclass('agent_journal.feed') IS NOT NULL")
        if cur.fetchone()[0] and not NODES:
            cur.execute("SELECT agent_journal.subscribe('iso_matrix')")
    ctl.commit()
    found = writers(ctl)
    print("writers (volatile, first argument agent_id or source_agent uuid): " + ", ".join(found), flush=True)
    missing = [wr for wr in found if wr not in SAMPLES]
    for wr in missing:
        fail("writer %s has no sample call in isolation_matrix.py SAMPLES: add one" % wr)
    for wr in SAMPLES:
        if wr not in found:
            print("info: sample for %s, which is not a writer of the installed extension" % wr)
    for need in (APPEND, FORGET):
        if need not in found:
            fail("partner writer %s is missing" % need)
            return finish(0, t0)
    ctx = {"ctl": ctl, "s1": session(), "s2": session(), "blocked": {}}
    if NODES:
        _gpids[ctx["s1"].get_backend_pid()] = one(ctx["s1"], "SELECT pg_catalog.citus_backend_gpid()")
    default = {wr: SAMPLES[wr][0] for wr in SAMPLES}
    total = 0
    for wr in found:
        for w in SAMPLES.get(wr, []):
            partners = []
            for p in ((default[APPEND], default[FORGET]) if NODES else (w, default[APPEND], default[FORGET])):
                if p[0] not in [x[0] for x in partners]:
                    partners.append(p)
            for p in partners:
                counts = {}
                bad = 0
                for lname, level in LEVELS:
                    plevels = [("RC", "READ COMMITTED")] + ([(lname, level)] if lname != "RC" and not NODES else [])
                    for pname, plevel in plevels:
                        for order in ("blocked", "snapshot-before"):
                            name = "[%s] s1 %s (%s) vs s2 %s (%s)" % (
                                order, w[0], lname, p[0], pname)
                            if not ONLY.search(name):
                                continue
                            total += 1
                            # (a run per node at once on Citus: agents of its own)
                            run_id = os.getpid() & 0xffff if NODES else 0
                            agent = uuid.UUID("0015a000-%04x-4000-8000-%012x" % (run_id, total))
                            try:
                                r = scenario(ctx, name, agent, w, p, level, plevel, order)
                            except psycopg2.Error as e:
                                fail("%s: unexpected error in the harness: %s" % (name, describe(e)))
                                rollback(ctx["s1"])
                                rollback(ctx["s2"])
                                r = None
                            if r is None:
                                bad += 1
                            else:
                                counts[r] = counts.get(r, 0) + 1
                n = sum(counts.values()) + bad
                if n and not bad:
                    print("ok: %s vs %s: %d scenarios (%s)" % (
                        w[0], p[0], n, ", ".join("%d %s" % (v, k) for k, v in sorted(counts.items()))),
                        flush=True)
                elif n:
                    print("not ok: %s vs %s: %d of %d scenarios failed" % (w[0], p[0], bad, n),
                          flush=True)
    print("info: s1 in the blocked order: %s" % ", ".join(
        "%d %s" % (v, k) for k, v in sorted(ctx["blocked"].items())))
    return finish(total, t0)


def finish(total, t0):
    print("isolation_matrix: %d scenarios in %.1fs, %d failures" % (
        total, time.monotonic() - t0, len(failures)), flush=True)
    if failures:
        print("failure summary:")
        for f in failures:
            print("  " + f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
