#!/usr/bin/python3
"""The agent_journal benchmark suite, driven by bench/run.

Expects a running throwaway cluster (PGHOST/PGPORT/PGUSER/PGDATABASE in the
environment) with nothing in it yet. Creates the extension and the baseline
objects, runs every workload against its baseline in the same run
(alternating A/B, then B/A, ... for AJ_BENCH_ROUNDS rounds, pgbench
-M prepared on both sides), and writes a Markdown report (and a PNG chart
unless smoke). Standard library only: runs on Debian's /usr/bin/python3.

Exit status: 0 when every workload ran or was skipped as n/a, 1 when one
failed. Goals are reported, never asserted.
"""
import json
import datetime
import math
import os
import re
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
WORKLOADS = os.path.join(BENCH, "workloads")

SMOKE = os.environ.get("AJ_BENCH_SMOKE", "0") not in ("", "0")
ROUNDS = int(os.environ.get("AJ_BENCH_ROUNDS", "1" if SMOKE else "5"))
SECONDS = int(os.environ.get("AJ_BENCH_SECONDS", "2" if SMOKE else "6"))
WORKDIR = os.environ["AJ_BENCH_WORKDIR"]  # files the server reads (COPY, pg_read_file)
OUT_MD = os.environ["AJ_BENCH_OUT_MD"]
OUT_PNG = os.environ.get("AJ_BENCH_OUT_PNG", "")
ONLY = set(filter(None, os.environ.get("AJ_BENCH_ONLY", "").split(",")))
REPLAY_N = 10_000 if SMOKE else 1_000_000
CITUS_REPLAY_N = 10_000 if SMOKE else 100_000
MEMORY_NS = [1_000, 10_000] if SMOKE else [100_000, 1_000_000]
PROM_SIZES = [10_000] if SMOKE else [10_000, 100_000, 1_000_000]
PROM_FAMILIES = 20
BATCH = 1000
RESUME_TAIL = 100 if SMOKE else 1_000        # entries after the latest saved state (workload 11)
KEYED_N = 1_000 if SMOKE else 100_000        # entries of the keyed agent (workload 12)
CHECKPOINT_EVERY = 100                       # every 100th of them is a checkpoint
READ_KW = {"transactions": 20} if SMOKE else {}  # smoke: workloads 11-13 run -t 20, not -T
JOURNAL_AGENTS = 10_000 if SMOKE else 1_000_000  # agents of workload 14's journal-only render
JOURNAL_FEW = 10                                 # and the same render with this many
APPEND_CHUNK = 1_000                             # appends per transaction when loading them
FEED_N = 10_000 if SMOKE else 1_000_000     # entries workload 15b drains (agents of BATCH entries)
FEED_PAGE = 1_000                            # read_feed's max_entries / the baseline's page
FEED_POLL = 0.1                              # the consumer reads at least this often (s)
FEED_CATCHUP = 15                            # s the consumer may take to catch up after the writers
FEED_PRELOAD = os.environ.get("AJ_BENCH_FEED_PRELOAD", "1") not in ("", "0")  # 15: restart preloaded

# One event, the same on every side: a typical tool call (~190 bytes).
EVENT = ('{"type": "tool_call", "tool": "web_search", "call_id": "call-0042", '
         '"args": {"query": "durable execution journal postgres", "max_results": 5}, '
         '"tokens": {"prompt": 812, "completion": 64}, "ok": true}')
# The runtime snapshot of the C++ core's tests (src/core/snapshot.hpp).
SNAPSHOT = ('{"timestamp": 1700000000, '
            '"scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5, '
            '"queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000, "load_factor": 0.005}, '
            '"task_manager": {"total_tasks": 5, "healthy_tasks": 4, '
            '"average_uptime_seconds": 1800.0, "total_memory_usage": 1024}, '
            '"load_balancer": {"total_allocations": 100, "active_allocations": 5, '
            '"memory_utilization": 0.45, "cpu_utilization": 0.30, "allocation_failures": 2, '
            '"average_allocation_time_ms": 1.5}, '
            '"system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0}, '
            '"compaction": {"total_compactions": 7, "total_tokens_saved": 12000, '
            '"compactions_by_tier": {"summarize": 5, "truncate": 2}, '
            '"context_utilization_ratio": 0.62}}')
ONE_AGENT = "00000000-0000-0000-0000-0000000000aa"
REPLAY_AGENT = "00000000-0000-0000-0000-0000000000bb"
KEYED_AGENT = "00000000-0000-0000-0000-0000000000cc"


class Failed(Exception):
    pass


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ psql

def psql(sql, env_extra=None):
    """Runs SQL (several statements allowed); returns stdout, unaligned, tuples only."""
    env = dict(os.environ, **(env_extra or {}))
    p = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise Failed(f"psql: {p.stderr.strip()} (sql: {sql[:200]})")
    return p.stdout.strip()


def psql_file(path):
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", path],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise Failed(f"psql -f {path}: {p.stderr.strip()}")


def quote(text):
    return "'" + text.replace("'", "''") + "'"


def exists(kind, name):
    fn = {"proc": "to_regprocedure", "rel": "to_regclass"}[kind]
    return psql(f"SELECT {fn}('{name}') IS NOT NULL") == "t"


def wait_ready(timeout=90):
    """After a backend crash the server restarts and recovers: wait for it."""
    deadline = time.monotonic() + timeout
    while subprocess.run(["pg_isready", "-q"]).returncode != 0:
        if time.monotonic() > deadline:
            raise Failed("server not accepting connections")
        time.sleep(1)


def reset():
    psql("SELECT bench.reset(); CHECKPOINT;")


# --------------------------------------------------------------- pgbench

def pgbench(script, clients, defines=None, pgoptions=None, seconds=None, transactions=None,
            user=None, mode="prepared", env_extra=None):
    """One pgbench -M prepared run (as `user`, default the superuser; `mode`
    another -M); returns {'tps':, 'lat_ms':}."""
    seconds = seconds or SECONDS
    length = ["-t", str(transactions)] if transactions else ["-T", str(seconds)]
    cmd = ["pgbench", "-n", "-M", mode] + length + [
           "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
           "-f", script if os.path.isabs(script) else os.path.join(WORKLOADS, script)]
    for k, v in (defines or {}).items():
        cmd += ["-D", f"{k}={v}"]
    env = dict(os.environ, **(env_extra or {}))
    if user:
        env["PGUSER"] = user
    if pgoptions:
        env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " " + pgoptions).strip()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    out = p.stdout + p.stderr
    tps = re.search(r"^tps = ([0-9.]+)", out, re.M)
    lat = re.search(r"^latency average = ([0-9.]+) ms", out, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    if p.returncode != 0 or not tps or (failed and int(failed.group(1)) > 0):
        errs = [l for l in out.splitlines() if "ERROR" in l or "error" in l or "aborted" in l]
        raise Failed(f"pgbench {os.path.basename(script)}: " + (errs[0] if errs else out.strip()[-300:]))
    return {"tps": float(tps.group(1)), "lat_ms": float(lat.group(1)) if lat else None}


def warmup(*runs):
    """One untimed execution of each read workload: hint bits set, caches warm."""
    for script, kw in runs:
        pgbench(script, 1, kw.get("defines"), kw.get("pgoptions"), transactions=1)


def alternate(sides, rounds=ROUNDS, before=reset):
    """Runs each side once per round, order rotated every round (A B, B A,
    ...), `before` ahead of every run. sides: [(key, fn)] -> {key: [values]}."""
    samples = {k: [] for k, _ in sides}
    for r in range(rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)] if len(sides) > 2 else \
            (sides if r % 2 == 0 else sides[::-1])
        for key, fn in order:
            if before:
                before()
            samples[key].append(fn())
    return samples


# --------------------------------------------------------------- results

ROWS = []       # rows of the main table
MEMORY = []     # replay memory rows
PROM = []       # (series, ours_ms, sql_ms)
NOTES = []
FOREIGN = []    # (workload key, CPUs used by other processes meanwhile)
FAILED = []
MONITOR = None  # the ForeignCpu monitor (a cluster restart gives it the new postmaster)


def fmt(v):
    if v is None:
        return "n/a"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def add_row(workload, ours, base, unit, clients, sync="on", goal=None, goal_text="—",
            higher_is_better=True, met=None, samples=None, short=None, nobase=False):
    """ratio is always ours' speed over the baseline's (> 1: ours faster);
    short: the chart's label; nobase: a row without a baseline ("—")."""
    ratio = None
    if ours is not None and base is not None and ours > 0 and base > 0:
        ratio = ours / base if higher_is_better else base / ours
    if met is None and goal is not None and ratio is not None:
        met = ratio >= goal
    ROWS.append(dict(workload=workload, ours=ours, base=base, unit=unit, ratio=ratio,
                     goal=goal, goal_text=goal_text, met=met, clients=clients, sync=sync,
                     samples=samples or {}, short=short or workload, nobase=nobase))


def na_row(workload, unit, clients, goal_text, why, sync="on"):
    ROWS.append(dict(workload=workload, ours=None, base=None, unit=unit, ratio=None, goal=None,
                     goal_text=goal_text, met=None, clients=clients, sync=sync, samples={},
                     na=why))


def human(n):
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def med(xs):
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------- workloads

def w1_append_distinct():
    d = {"event": EVENT}
    s = alternate([("ours", lambda: pgbench("append_client_agent.sql", 8, d)["tps"]),
                   ("base", lambda: pgbench("insert_client_agent.sql", 8, d)["tps"])])
    add_row("1. append, 8 agents (1 per client) vs INSERT", med(s["ours"]), med(s["base"]),
            "appends/s", 8, goal=0.90, goal_text="≥ 0.90×", samples=s,
            short="1 append, 8 agents / INSERT")


def w2_append_one_agent():
    d = {"event": EVENT, "agent": ONE_AGENT}
    for sync in ("on", "off"):
        opt = f"-c synchronous_commit={sync}"
        s = alternate([("ours", lambda: pgbench("append_one_agent.sql", 8, d, opt)["tps"]),
                       ("base", lambda: pgbench("insert_one_agent.sql", 8, d, opt)["tps"])])
        add_row(f"2. append, ONE agent, 8 clients vs INSERT", med(s["ours"]), med(s["base"]),
                "appends/s", 8, sync=sync, goal=0.5 if sync == "off" else None,
                goal_text="≥ 0.5× (with off)" if sync == "off" else "— (report)", samples=s,
                short=f"2 append, 1 agent / INSERT, sync {sync}")


def batch_files():
    """Workload 3's BATCH events, as a jsonb[] literal (append_batch reads it
    with pg_read_file) and as COPY rows; returns both paths (workload 15b
    loads its agents with the first)."""
    events, rows = [], []
    kinds = ["tool_call", "tool_result", "model_call", "checkpoint"]
    for i in range(BATCH):
        ev = EVENT.replace('"tool_call"', f'"{kinds[i % 4]}"').replace("call-0042", f"call-{i:04d}")
        events.append('"' + ev.replace("\\", "\\\\").replace('"', '\\"') + '"')
        rows.append("\t".join([ONE_AGENT, "1", kinds[i % 4], ev.replace("\\", "\\\\")]))
    batchfile = os.path.join(WORKDIR, "batch_events.txt")
    rowsfile = os.path.join(WORKDIR, "batch_rows.tsv")
    with open(batchfile, "w") as f:
        f.write("{" + ",".join(events) + "}")
    with open(rowsfile, "w") as f:
        f.write("\n".join(rows) + "\n")
    return batchfile, rowsfile


def w3_batch():
    batchfile, rowsfile = batch_files()
    copy_script = os.path.join(WORKDIR, "copy_batch.sql")
    with open(os.path.join(WORKLOADS, "copy_batch.sql")) as f:
        text = f.read().replace("@ROWSFILE@", rowsfile)
    with open(copy_script, "w") as f:
        f.write(text)
    # Same rows on both sides?
    n = psql(f"SELECT cardinality(pg_read_file('{batchfile}')::jsonb[])")
    if int(n) != BATCH:
        raise Failed(f"batch file has {n} events, expected {BATCH}")
    s = alternate([("ours", lambda: BATCH * pgbench("append_batch.sql", 2, {"batchfile": batchfile})["tps"]),
                   ("base", lambda: BATCH * pgbench(copy_script, 2)["tps"])])
    add_row(f"3. append_batch({BATCH}) vs COPY of {BATCH} rows", med(s["ours"]), med(s["base"]),
            "rows/s", 2, goal=0.5, goal_text="≥ 0.5×", samples=s,
            short=f"3 append_batch({BATCH}) / COPY")


def load_replay(agent, n):
    psql(f"""
      INSERT INTO agent_journal.entries
      SELECT '{agent}'::uuid, g, g / 10, 'tool_call', now() + g * interval '1 microsecond',
             '{EVENT}'::jsonb || jsonb_build_object('n', g)
      FROM generate_series(1, {n}) g;
      INSERT INTO agent_journal.agent_state (agent_id) VALUES ('{agent}');
      INSERT INTO bench.replay_plain SELECT '{agent}'::uuid, sequence, iteration, kind, recorded_at, event
      FROM agent_journal.entries WHERE agent_id = '{agent}';""")


def ensure_replay_data():
    """Workload 4's agent (REPLAY_N entries, the same rows in
    bench.replay_plain), loaded unless it is there already: it is when
    workload 4 ran just before (workloads 11 and 13 reuse it)."""
    got = psql(f"SELECT (SELECT count(*) FROM agent_journal.entries WHERE agent_id = '{REPLAY_AGENT}') "
               f"|| '/' || (SELECT count(*) FROM bench.replay_plain WHERE agent_id = '{REPLAY_AGENT}')")
    if got == f"{REPLAY_N}/{REPLAY_N}":
        return
    log(f"  loading {REPLAY_N:,} entries (workload 4's agent)")
    reset()
    psql(f"DELETE FROM bench.replay_plain WHERE agent_id = '{REPLAY_AGENT}'")
    load_replay(REPLAY_AGENT, REPLAY_N)
    vacuum()


def ensure_writer():
    """bench_writer, the role granted 'writer' that the 'w' rows read as."""
    if psql("SELECT count(*) FROM pg_roles WHERE rolname = 'bench_writer'") == "0":
        psql("CREATE ROLE bench_writer LOGIN; "
             "SELECT agent_journal.grant_access('bench_writer', 'writer');")


def vacuum():
    # Visibility maps set on both tables, statistics fresh (one VACUUM per call:
    # VACUUM refuses to run in the implicit transaction of a multi-statement -c).
    psql("VACUUM ANALYZE agent_journal.entries")
    psql("VACUUM ANALYZE bench.replay_plain")


class MemSampler:
    """Peak private memory (RssAnon: palloc'd memory, not shared buffers)
    of one backend, sampled from /proc every 2 ms while a query runs."""

    def __init__(self, pid):
        self.pid, self.peak_anon, self.hwm, self.stop = pid, 0, 0, False
        self.t = threading.Thread(target=self.run, daemon=True)

    def read(self):
        vals = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("RssAnon", "VmHWM"):
                    vals[k] = int(v.split()[0]) // 1024  # MB
        return vals

    def run(self):
        while not self.stop:
            try:
                v = self.read()
            except OSError:
                return
            self.peak_anon = max(self.peak_anon, v.get("RssAnon", 0))
            self.hwm = max(self.hwm, v.get("VmHWM", 0))
            time.sleep(0.002)


def measure_memory(sql):
    """Runs `sql` in a fresh backend; returns (idle MB, peak RssAnon MB,
    VmHWM MB, temp MB, seconds). Temp: the temp blocks written by the same
    query run again under EXPLAIN (ANALYZE, BUFFERS) in that backend."""
    p = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, bufsize=1)

    def ask(q, lines=1):
        p.stdin.write(q + "\n")
        p.stdin.flush()
        out = []
        for _ in range(lines):
            line = p.stdout.readline()
            if not line:
                raise Failed(f"psql: {p.stderr.read().strip()} (sql: {q[:200]})")
            out.append(line.strip())
        return "\n".join(out)

    try:
        pid = int(ask("SELECT pg_backend_pid();"))
        m = MemSampler(pid)
        idle = m.read().get("RssAnon", 0)
        m.t.start()
        t0 = time.monotonic()
        ask(sql)
        secs = time.monotonic() - t0
        m.stop = True
        m.t.join()
        temp = ask(f"SELECT bench.temp_written_blocks({quote(sql.rstrip(';'))});")
        return idle, m.peak_anon, m.hwm, int(temp) * 8192 / 2**20, secs
    finally:
        p.stdin.close()
        p.wait()


def w4_replay():
    reset()
    load_replay(REPLAY_AGENT, REPLAY_N)
    vacuum()
    d = {"agent": REPLAY_AGENT}
    warmup(("replay.sql", {"defines": d}), ("replay_plain.sql", {"defines": d}))
    s = alternate([("ours", lambda: REPLAY_N * pgbench("replay.sql", 1, d)["tps"]),
                   ("base", lambda: REPLAY_N * pgbench("replay_plain.sql", 1, d)["tps"])],
                  before=None)
    add_row(f"4. replay {REPLAY_N:,} entries vs SELECT … ORDER BY sequence", med(s["ours"]),
            med(s["base"]), "rows/s", 1, goal=0.8, goal_text="≥ 0.8×", samples=s,
            short=f"4 replay {human(REPLAY_N)} / SELECT")
    # The same replay as a role granted 'writer' (what a runtime uses): it
    # goes through replay_rows' per-row filter, which a superuser does too,
    # and its privilege checks. The baseline stays the superuser's SELECT.
    if exists("proc", "agent_journal.replay_guard(uuid,bigint,bigint)"):
        ensure_writer()
        warmup(("replay.sql", {"defines": d}))
        s = alternate([("ours", lambda: REPLAY_N * pgbench("replay.sql", 1, d, user="bench_writer")["tps"]),
                       ("base", lambda: REPLAY_N * pgbench("replay_plain.sql", 1, d)["tps"])],
                      before=None)
        add_row(f"4w. replay {REPLAY_N:,} entries as a writer role vs SELECT", med(s["ours"]),
                med(s["base"]), "rows/s", 1, goal=0.8, goal_text="≥ 0.8×", samples=s,
                short=f"4w replay as writer / SELECT")
    # Peak backend memory of one replay, at two sizes (a fresh backend each).
    for i, n in enumerate(MEMORY_NS):
        agent = REPLAY_AGENT if n == REPLAY_N else f"00000000-0000-0000-0000-0000000001{i:02d}"
        if n != REPLAY_N:
            load_replay(agent, n)
            vacuum()
        with open(os.path.join(WORKLOADS, "replay.sql")) as f:
            ours_sql = re.sub(r"^--.*\n", "", f.read(), flags=re.M).replace(":agent", f"'{agent}'")
        with open(os.path.join(WORKLOADS, "replay_plain.sql")) as f:
            base_sql = re.sub(r"^--.*\n", "", f.read(), flags=re.M).replace(":agent", f"'{agent}'")
        ours = measure_memory(" ".join(ours_sql.split()))
        base = measure_memory(" ".join(base_sql.split()))
        MEMORY.append(dict(n=n, ours=ours, base=base))


def w5_ingest():
    if not exists("proc", "agent_journal.ingest_snapshot(jsonb,text)"):
        return na_row("5. ingest_snapshot vs INSERT of the jsonb", "snapshots/s", 8, "≥ 0.7×",
                      "agent_journal.ingest_snapshot(jsonb, text) not in this build")
    d = {"snapshot": SNAPSHOT}
    s = alternate([("ours", lambda: pgbench("ingest_snapshot.sql", 8, d)["tps"]),
                   ("base", lambda: pgbench("insert_snapshot.sql", 8, d)["tps"])])
    add_row("5. ingest_snapshot (8 services) vs INSERT of the jsonb", med(s["ours"]), med(s["base"]),
            "snapshots/s", 8, goal=0.7, goal_text="≥ 0.7×", samples=s,
            short="5 ingest_snapshot / INSERT")


def w6_counter():
    # 0.6.0 recreated counter_add with a last argument (exemplar)
    if not any(exists("proc", f"agent_journal.counter_add(text,double precision,jsonb,text{x})")
               for x in ("", ",jsonb")):
        return na_row("6. counter_add, one series vs UPDATE one row", "increments/s", 8, "≥ 1×",
                      "agent_journal.counter_add(text, float8, jsonb, text) not in this build")
    s = alternate([("ours", lambda: pgbench("counter_add.sql", 8)["tps"]),
                   ("base", lambda: pgbench("counter_update.sql", 8)["tps"])])
    add_row("6. counter_add, one series, 8 clients vs UPDATE one row", med(s["ours"]),
            med(s["base"]), "increments/s", 8, goal=1.0, goal_text="≥ 1×", samples=s,
            short="6 counter_add / UPDATE")


def load_series(n):
    reset()
    psql(f"""
      INSERT INTO agent_journal.metric_families (name, type, help)
      SELECT CASE WHEN f < {PROM_FAMILIES // 2} THEN format('bench_family_%s_total', lpad(f::text, 2, '0'))
                  ELSE format('bench_family_%s', lpad(f::text, 2, '0')) END,
             CASE WHEN f < {PROM_FAMILIES // 2} THEN 'counter' ELSE 'gauge' END,
             format(E'Bench family %s: a "quoted" word, a back\\\\slash', f)
      FROM generate_series(0, {PROM_FAMILIES - 1}) f;
      INSERT INTO agent_journal.metric_series (name, labels, value)
      SELECT fam.name,
             jsonb_build_object('instance', 'host-' || (i % 1000), 'path', '/api/v1/items/' || i,
                                'status', (200 + i % 5)::text),
             i * 1.5
      FROM generate_series(0, {n - 1}) i
      JOIN (SELECT name, (row_number() OVER (ORDER BY name) - 1)::int AS f
            FROM agent_journal.metric_families WHERE name LIKE 'bench\\_family\\_%') fam
        ON fam.f = i % {PROM_FAMILIES};""")
    psql("VACUUM ANALYZE agent_journal.metric_families")
    psql("VACUUM ANALYZE agent_journal.metric_series")


def w7_prometheus():
    missing = [x for x in ("agent_journal.prometheus", "agent_journal.metric_series",
                           "agent_journal.metric_families") if not exists("rel", x)]
    if missing:
        for n, goal in zip(PROM_SIZES, ["≤ 10 ms", "≤ 100 ms", "—"]):
            na_row(f"7. prometheus view, {n:,} series vs pure SQL", "ms", 1, goal,
                   ", ".join(missing) + " not in this build")
        return
    # Render every series (the default cap is 10,000 per family).
    opt = "-c agent_journal.max_series_per_family=2147483647"
    for n, goal in zip(PROM_SIZES, [10.0, 100.0, None]):
        load_series(n)
        got = psql("SELECT count(*) FROM agent_journal.metric_series")
        if int(got) != n:
            raise Failed(f"loaded {got} series, expected {n}")
        warmup(("prometheus.sql", {"pgoptions": opt}), ("prometheus_sql.sql", {"pgoptions": opt}))
        s = alternate([("ours", lambda: pgbench("prometheus.sql", 1, pgoptions=opt)["lat_ms"]),
                       ("base", lambda: pgbench("prometheus_sql.sql", 1, pgoptions=opt)["lat_ms"])],
                      before=None)
        ours, base = med(s["ours"]), med(s["base"])
        add_row(f"7. prometheus view, {n:,} series / {PROM_FAMILIES} families vs pure SQL", ours, base,
                "ms", 1, goal=None, goal_text=f"≤ {goal:.0f} ms" if goal else "— (report)",
                higher_is_better=False, met=(ours <= goal) if goal else None, samples=s)
        PROM.append((n, ours, base))
        if n > 100_000 or not exists("rel", "agent_journal.openmetrics") or \
                psql("SELECT count(*) FROM pg_attribute WHERE attrelid = 'agent_journal.metric_series'::regclass "
                     "AND attname = 'exemplars'") != "1":
            continue
        # 7o (0.6.0): OpenMetrics with a _created and an exemplar on every
        # counter series (half the families), against the 0.0.4 render of
        # the same series in the same run.
        psql("UPDATE agent_journal.metric_series SET exemplars = jsonb_build_object('0', jsonb_build_object("
             "'labels', jsonb_build_object('agent_id', md5(labels::text), 'sequence', (value * 2)::bigint::text), "
             "'value', '1.5', 'ts', extract(epoch FROM now())::float8::text)) WHERE name LIKE '%\\_total'")
        psql("VACUUM ANALYZE agent_journal.metric_series")  # no dead versions left by the UPDATE
        ex = psql("SELECT count(*) FROM agent_journal.openmetrics, regexp_split_to_table(exposition, E'\\n') l "
                  "WHERE l LIKE '% # {agent_id=%'")
        if int(ex) != n // 2:
            raise Failed(f"7o: {ex} exemplars rendered, expected {n // 2}")
        warmup(("openmetrics.sql", {"pgoptions": opt}), ("prometheus.sql", {"pgoptions": opt}))
        s = alternate([("ours", lambda: pgbench("openmetrics.sql", 1, pgoptions=opt)["lat_ms"]),
                       ("base", lambda: pgbench("prometheus.sql", 1, pgoptions=opt)["lat_ms"])],
                      before=None)
        ours, base = med(s["ours"]), med(s["base"])
        add_row(f"7o. openmetrics view with _created and {n // 2:,} exemplars, {n:,} series vs the 0.0.4 view",
                ours, base, "ms", 1, goal=None, goal_text=f"≤ {goal:.0f} ms" if goal else "— (report)",
                higher_is_better=False, met=(ours <= goal) if goal else None, samples=s,
                short=f"7o openmetrics+exemplars {human(n)} / 0.0.4")


def w8_peers():
    d = {"event": EVENT}
    sides = [("ours", lambda: pgbench("append_client_agent.sql", 8, d)["tps"]),
             ("classic", lambda: pgbench("classic_append.sql", 8, d)["tps"])]
    have_pgq = exists("rel", "pgq.queue")
    if have_pgq:
        sides.append(("pgq", lambda: pgbench("pgq_insert_event.sql", 8, d)["tps"]))
    s = alternate(sides)
    add_row("8a. append vs classic PL/pgSQL event store (advisory lock + max+1)",
            med(s["ours"]), med(s["classic"]), "appends/s", 8, goal=1.0, goal_text="> 1× (faster)",
            met=None, samples={"ours": s["ours"], "base": s["classic"]},
            short="8a append / classic event store")
    ROWS[-1]["met"] = ROWS[-1]["ratio"] is not None and ROWS[-1]["ratio"] > 1.0
    if have_pgq:
        add_row("8b. append vs PgQ insert_event (one queue)", med(s["ours"]), med(s["pgq"]),
                "appends/s", 8, goal=0.9, goal_text="≥ 0.9× (within 10%)",
                samples={"ours": s["ours"], "base": s["pgq"]}, short="8b append / PgQ insert_event")
    else:
        na_row("8b. append vs PgQ insert_event (one queue)", "appends/s", 8, "≥ 0.9× (within 10%)",
               "extension pgq not available (bench/install-deps installs postgresql-15-pgq3)")


def leases_taken(expected):
    """After a lease run: one claim per client (the same worker got its
    token back every time after the first), each still live."""
    got = psql("SELECT format('%s/%s', (SELECT count(*) FROM agent_journal.lease_graph), "
               "(SELECT count(*) FROM agent_journal.leases))")
    if got != f"{expected}/{expected}":
        raise Failed(f"lease graph / live leases after the run: {got}, expected {expected}/{expected}")


def w9_append_leased():
    if not exists("proc", "agent_journal.claim_agent(uuid,text,interval)"):
        return na_row("9. append with a lease, 8 agents (1 per client) vs INSERT", "appends/s", 8,
                      "≥ 0.85×", "agent_journal.claim_agent(uuid, text, interval) not in this build")

    def leased():
        tps = pgbench("append_lease_client_agent.sql", 8, {"event": EVENT, "token": 0})["tps"]
        leases_taken(8)
        return tps
    d = {"event": EVENT}
    s = alternate([("ours", leased),
                   ("base", lambda: pgbench("insert_client_agent.sql", 8, d)["tps"]),
                   ("nolease", lambda: pgbench("append_client_agent.sql", 8, d)["tps"])])
    add_row("9. append with a lease, 8 agents (1 per client, claimed) vs INSERT", med(s["ours"]),
            med(s["base"]), "appends/s", 8, goal=0.85, goal_text="≥ 0.85×",
            samples={"ours": s["ours"], "base": s["base"]}, short="9 append with lease / INSERT")
    add_row("9b. append with a lease vs append without (the same run)", med(s["ours"]),
            med(s["nolease"]), "appends/s", 8, goal_text="— (report: the lease check)",
            samples={"ours": s["ours"], "base": s["nolease"]}, short="9b append with / without lease")


def w10_claim_renew():
    """A worker's lease calls: claim_agent (the same worker again: its token
    back, extended) then renew_lease, each its own transaction; the rate is
    of calls (two per pgbench script run)."""
    goal = 5000
    if not exists("proc", "agent_journal.claim_agent(uuid,text,interval)"):
        return na_row("10. claim_agent + renew_lease calls, 8 agents vs upsert + UPDATE", "calls/s", 8,
                      f"≥ {goal:,}/s", "agent_journal.claim_agent(uuid, text, interval) not in this build")

    def ours():
        tps = pgbench("claim_renew.sql", 8)["tps"]
        leases_taken(8)
        return 2 * tps
    s = alternate([("ours", ours), ("base", lambda: 2 * pgbench("claim_renew_plain.sql", 8)["tps"])])
    add_row("10. claim_agent + renew_lease calls (autocommit), 8 agents vs upsert + UPDATE",
            med(s["ours"]), med(s["base"]), "calls/s", 8, goal_text=f"≥ {goal:,}/s (ours)",
            met=med(s["ours"]) >= goal, samples=s, short="10 claim + renew / upsert + UPDATE")


def w11_resume():
    title = (f"11. resume: a saved state + the {RESUME_TAIL:,} entries after it (agent of "
             f"{REPLAY_N:,}) vs SELECT of those entries")
    if not exists("proc", "agent_journal.resume(uuid,bigint)"):
        return na_row(title, "resumes/s", 1, "≥ 0.8×", "agent_journal.resume(uuid, bigint) not in this build")
    ensure_replay_data()
    after = REPLAY_N - RESUME_TAIL
    psql(f"DELETE FROM agent_journal.saved_states WHERE agent_id = '{REPLAY_AGENT}'")
    psql(f"SELECT agent_journal.save_state('{REPLAY_AGENT}', "
         f"'{{\"type\": \"state\", \"through\": {after}}}', {after})")
    psql("ANALYZE agent_journal.saved_states")

    def check(states):
        got = psql(f"SELECT format('%s/%s/%s', count(*), min(sequence), count(*) FILTER (WHERE kind = 'state')) "
                   f"FROM agent_journal.resume('{REPLAY_AGENT}')")
        n = psql(f"SELECT count(*) FROM agent_journal.saved_states WHERE agent_id = '{REPLAY_AGENT}'")
        if got != f"{RESUME_TAIL + 1}/{after}/1" or int(n) != states:
            raise Failed(f"resume returned rows/first sequence/states {got} with {n} saved states, "
                         f"expected {RESUME_TAIL + 1}/{after}/1 with {states}")
    check(1)
    ensure_writer()
    d, db = {"agent": REPLAY_AGENT}, {"agent": REPLAY_AGENT, "after": after}
    warmup(("resume.sql", {"defines": d}), ("resume_plain.sql", {"defines": db}))
    ours = lambda: pgbench("resume.sql", 1, d, **READ_KW)["tps"]
    base = lambda: pgbench("resume_plain.sql", 1, db, **READ_KW)["tps"]
    s = alternate([("ours", ours),
                   ("writer", lambda: pgbench("resume.sql", 1, d, **READ_KW,
                                              user="bench_writer")["tps"]),
                   ("base", base)], before=None)
    add_row(title, med(s["ours"]), med(s["base"]), "resumes/s", 1, goal=0.8, goal_text="≥ 0.8×",
            samples={"ours": s["ours"], "base": s["base"]},
            short=f"11 resume ({RESUME_TAIL:,} after state) / SELECT")
    add_row("11w. the same resume as a writer role vs SELECT", med(s["writer"]), med(s["base"]),
            "resumes/s", 1, goal=0.8, goal_text="≥ 0.8×",
            samples={"ours": s["writer"], "base": s["base"]}, short="11w resume as writer / SELECT")
    # An agent that saved a state every RESUME_TAIL entries: resume must
    # still start from the latest (and not pay for the older ones).
    psql(f"INSERT INTO agent_journal.saved_states (agent_id, through_sequence, iteration, state) "
         f"SELECT '{REPLAY_AGENT}', g, g / 10, jsonb_build_object('type', 'state', 'through', g) "
         f"FROM generate_series({RESUME_TAIL}, {after - 1}, {RESUME_TAIL}) g")
    psql("ANALYZE agent_journal.saved_states")
    states = after // RESUME_TAIL
    check(states)
    warmup(("resume.sql", {"defines": d}))
    s = alternate([("ours", ours), ("base", base)], before=None)
    add_row(f"11s. the same resume, {states:,} saved states (one every {RESUME_TAIL:,} entries) vs SELECT",
            med(s["ours"]), med(s["base"]), "resumes/s", 1, goal=0.8, goal_text="≥ 0.8×", samples=s,
            short=f"11s resume, {states:,} states / SELECT")


def load_keyed():
    """KEYED_N entries of KEYED_AGENT, each under its own idempotency key
    ('key-<sequence>'), every CHECKPOINT_EVERY-th a checkpoint, the latest
    one CHECKPOINT_EVERY / 2 entries back. The journal then holds workload
    4's agent and this one only (no reset: workload 4's agent stays, other
    agents go)."""
    a = KEYED_AGENT
    psql(f"""
      DELETE FROM agent_journal.entries WHERE agent_id <> '{REPLAY_AGENT}';
      DELETE FROM agent_journal.idempotency_keys WHERE agent_id <> '{REPLAY_AGENT}';
      DELETE FROM agent_journal.agent_state WHERE agent_id <> '{REPLAY_AGENT}';
      INSERT INTO agent_journal.entries
      SELECT '{a}'::uuid, g, g / 10, x.kind, now() + g * interval '1 microsecond',
             jsonb_set('{EVENT}'::jsonb, '{{type}}', to_jsonb(x.kind)) || jsonb_build_object('n', g)
      FROM generate_series(1, {KEYED_N}) g,
           LATERAL (SELECT CASE WHEN g % {CHECKPOINT_EVERY} = {CHECKPOINT_EVERY // 2}
                                THEN 'checkpoint' ELSE 'tool_call' END AS kind) x;
      INSERT INTO agent_journal.idempotency_keys
        (agent_id, idempotency_key, first_sequence, last_sequence, request_hash)
      SELECT '{a}'::uuid, 'key-' || g, g, g, sha224(g::text::bytea)
      FROM generate_series(1, {KEYED_N}) g;
      INSERT INTO agent_journal.agent_state (agent_id) VALUES ('{a}');""")
    psql("VACUUM ANALYZE agent_journal.entries")
    psql("VACUUM ANALYZE agent_journal.idempotency_keys")


def w12_point_reads():
    key_title = f"12a. entry_by_key, agent of {KEYED_N:,} entries (random key) vs plain SQL join"
    kind_title = (f"12b. latest checkpoint: replay_backward(…, max_entries 1, kinds checkpoint), agent of "
                  f"{KEYED_N:,} vs SELECT … ORDER BY sequence DESC LIMIT 1")
    latest_title = (f"12c. the 10 latest entries: replay_backward(…, max_entries 10), agent of {KEYED_N:,} "
                    f"vs SELECT … ORDER BY sequence DESC LIMIT 10")
    if not exists("proc", "agent_journal.entry_by_key(uuid,text)"):
        for t, g in ((key_title, "≤ 1 ms"), (kind_title, "≤ 1 ms"), (latest_title, "— (report)")):
            na_row(t, "ms", 1, g, "agent_journal.entry_by_key(uuid, text) not in this build")
        return
    # The keyed agent next to workload 4's: plans depend on the agent's share
    # of the journal, so it is always the same (1M + 100k; smoke 10k + 1k).
    ensure_replay_data()
    load_keyed()
    last_cp = KEYED_N - CHECKPOINT_EVERY // 2
    got = psql(f"SELECT format('%s/%s', (SELECT string_agg(sequence::text, ',') FROM "
               f"agent_journal.entry_by_key('{KEYED_AGENT}', 'key-77')), (SELECT string_agg(sequence::text, ',') "
               f"FROM agent_journal.replay_backward('{KEYED_AGENT}', max_entries => 1, "
               f"kinds => ARRAY['checkpoint'])))")
    if got != f"77/{last_cp}":
        raise Failed(f"entry_by_key 'key-77' / latest checkpoint: {got}, expected 77/{last_cp}")
    d = {"agent": KEYED_AGENT, "n": KEYED_N}
    dk = {"agent": KEYED_AGENT}
    for title, ours_sql, base_sql, defs, goal, short in (
            (key_title, "entry_by_key.sql", "entry_by_key_plain.sql", d, 1.0, "12a entry_by_key / join"),
            (kind_title, "latest_kind.sql", "latest_kind_plain.sql", dk, 1.0, "12b latest checkpoint / SELECT"),
            (latest_title, "latest_entries.sql", "latest_entries_plain.sql", dk, None,
             "12c latest 10 entries / SELECT")):
        warmup((ours_sql, {"defines": defs}), (base_sql, {"defines": defs}))
        s = alternate([("ours", lambda: pgbench(ours_sql, 1, defs, **READ_KW)["lat_ms"]),
                       ("base", lambda: pgbench(base_sql, 1, defs, **READ_KW)["lat_ms"])],
                      before=None)
        ours = med(s["ours"])
        add_row(title, ours, med(s["base"]), "ms", 1,
                goal_text="≤ 1 ms (ours)" if goal else "— (report)", higher_is_better=False,
                met=(ours <= goal) if goal else None, samples=s, short=short)
    # 12c again as a driver without a statement cache sends it: unnamed
    # statements, so a plan for every call made with the call's values
    # (with -M prepared, the generic plan may be chosen after 5 calls).
    s = alternate([("ours", lambda: pgbench("latest_entries.sql", 1, dk, **READ_KW,
                                            mode="extended")["lat_ms"]),
                   ("base", lambda: pgbench("latest_entries_plain.sql", 1, dk, **READ_KW,
                                            mode="extended")["lat_ms"])], before=None)
    add_row("12cx. the same 10 latest entries, pgbench -M extended (a plan per call) vs the same SELECT",
            med(s["ours"]), med(s["base"]), "ms", 1, goal_text="— (report)", higher_is_better=False,
            samples=s, short="12cx latest 10, -M extended / SELECT")


def w13_replay_backward():
    title = f"13. replay_backward {REPLAY_N:,} entries vs SELECT … ORDER BY sequence DESC"
    if not exists("proc", "agent_journal.replay_backward(uuid,bigint,bigint,text[])"):
        return na_row(title, "rows/s", 1, "≥ 0.8×",
                      "agent_journal.replay_backward(uuid, bigint, bigint, text[]) not in this build")
    ensure_replay_data()
    ensure_writer()
    d = {"agent": REPLAY_AGENT}
    warmup(("replay_backward.sql", {"defines": d}), ("replay_backward_plain.sql", {"defines": d}))
    s = alternate([("ours", lambda: REPLAY_N * pgbench("replay_backward.sql", 1, d,
                                                       **READ_KW)["tps"]),
                   ("writer", lambda: REPLAY_N * pgbench("replay_backward.sql", 1, d, **READ_KW,
                                                         user="bench_writer")["tps"]),
                   ("base", lambda: REPLAY_N * pgbench("replay_backward_plain.sql", 1, d,
                                                       **READ_KW)["tps"])],
                  before=None)
    add_row(title, med(s["ours"]), med(s["base"]), "rows/s", 1, goal=0.8, goal_text="≥ 0.8×",
            samples={"ours": s["ours"], "base": s["base"]},
            short=f"13 replay_backward {human(REPLAY_N)} / SELECT DESC")
    add_row("13w. the same replay_backward as a writer role vs SELECT", med(s["writer"]), med(s["base"]),
            "rows/s", 1, goal=0.8, goal_text="≥ 0.8×", samples={"ours": s["writer"], "base": s["base"]},
            short="13w replay_backward as writer / SELECT DESC")


def load_agents(n):
    """Workload 14's database: n agents, one entry each, made by append (so
    whatever the extension counts on the way is exact) from emptied tables:
    no user series, no snapshots, no saved states. Returns the seconds the
    appends took and the clients that made them."""
    reset()
    chunk = min(n, APPEND_CHUNK)
    if n % chunk:
        raise Failed(f"{n:,} agents are not a multiple of {chunk:,}")
    txns = n // chunk
    clients = 2 if txns % 2 == 0 else 1
    t0 = time.monotonic()
    pgbench("append_new_agents.sql", clients, {"n": chunk}, transactions=txns // clients)
    secs = time.monotonic() - t0
    for t in ("agent_state", "entries", "tallies"):
        if exists("rel", f"agent_journal.{t}"):
            psql(f"VACUUM ANALYZE agent_journal.{t}")
    psql("CHECKPOINT")
    parts = ["(SELECT count(*) FROM agent_journal.agent_state)", "(SELECT count(*) FROM agent_journal.entries)"]
    parts += [f"(SELECT count(*) FROM agent_journal.{t})" for t in ("metric_series", "snapshots", "saved_states")
              if exists("rel", f"agent_journal.{t}")]
    got = psql("SELECT concat_ws('/', " + ", ".join(parts) + ")")
    want = "/".join([str(n), str(n)] + ["0"] * (len(parts) - 2))
    if got != want:
        raise Failed(f"agents/entries/user series/snapshots/saved states after the load: {got}, expected {want}")
    return secs, clients


def check_journal_families(n):
    """The render must say what was made: n agents, n live entries, n appended."""
    text = psql("SELECT exposition FROM agent_journal.prometheus")
    want = {"agent_journal_agents": n, "agent_journal_live_entries": n,
            "agent_journal_appended_entries_total": n}
    got = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in want:
            got[name] = float(value)
    bad = {k: got.get(k) for k, v in want.items() if got.get(k) != v}
    if bad:
        raise Failed(f"render with {n:,} agents: {bad}, expected {n:,} each")
    return len(text.encode())


def w14_journal_render():
    """The render of an exposition whose families are the journal's own only
    (no user series), at JOURNAL_FEW and at JOURNAL_AGENTS agents, against
    today's walk of every agent (the agents view summed) in the same
    database: the journal families should cost the same at both sizes."""
    n = JOURNAL_AGENTS
    title = f"14. render with {n:,} agents (journal only, no user series) vs today's walk of every agent"
    few_title = (f"14f. the same render with {JOURNAL_FEW} agents vs the walk (ours: the same cost as "
                 f"at {human(n)}?)")
    goal_text = "≤ 10 ms at 1M agents" + (" (smoke: report)" if SMOKE else "")
    if not exists("rel", "agent_journal.prometheus"):
        na_row(title, "ms", 1, goal_text, "agent_journal.prometheus not in this build")
        na_row(few_title, "ms", 1, "— (report)", "agent_journal.prometheus not in this build")
        return
    res = {}
    try:
        for size in (JOURNAL_FEW, n):
            secs, clients = load_agents(size)
            if size == n:
                log(f"  {size:,} agents appended in {secs:.1f} s")
                NOTES.append(f"workload 14: {size:,} agents (one entry each) appended in {secs:.1f} s, "
                             f"{min(size, APPEND_CHUNK):,} appends per transaction, {clients} client(s)")
            length = check_journal_families(size)
            warmup(("prometheus.sql", {}), ("journal_walk.sql", {}))
            s = alternate([("ours", lambda: pgbench("prometheus.sql", 1)["lat_ms"]),
                           ("base", lambda: pgbench("journal_walk.sql", 1)["lat_ms"])], before=None)
            res[size] = (s, length)
    finally:
        reset()   # later workloads start from emptied tables, as after any write workload
    s, length = res[n]
    ours = med(s["ours"])
    add_row(title, ours, med(s["base"]), "ms", 1, goal_text=goal_text, higher_is_better=False,
            met=None if SMOKE else ours <= 10.0, samples=s, short=f"14 render, {human(n)} agents / walk")
    fs, flength = res[JOURNAL_FEW]
    few = med(fs["ours"])
    add_row(few_title, few, med(fs["base"]), "ms", 1, goal_text="— (report)", higher_is_better=False,
            samples=fs, short=f"14f render, {JOURNAL_FEW} agents / walk")
    NOTES.append(f"workload 14: ours {fmt(few)} ms at {JOURNAL_FEW} agents, {fmt(ours)} ms at {n:,} "
                 f"({ours / few:.2f}× the cost at {JOURNAL_FEW}; the same cost: ≈ 1×); exposition "
                 f"{flength:,} and {length:,} bytes; the walk {fmt(med(fs['base']))} ms and "
                 f"{fmt(med(s['base']))} ms")


# ------------------------------------------------------- workload 15: feed

class PgConn:
    """A minimal PostgreSQL client for workload 15's consumer (standard
    library only, no driver): protocol 3 over the cluster's Unix socket,
    trust authentication, simple queries, and the asynchronous
    notifications of LISTEN, waited for with select() (those this session
    sent itself are ignored)."""

    def __init__(self, application_name="bench feed consumer"):
        path = os.path.join(os.environ["PGHOST"], f".s.PGSQL.{os.environ['PGPORT']}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf, self.pos, self.notifies, self.pid = b"", 0, 0, None
        params = [("user", os.environ.get("PGUSER", "postgres")),
                  ("database", os.environ.get("PGDATABASE", "postgres")),
                  ("application_name", application_name)]
        body = struct.pack("!i", 196608) + b"".join(
            k.encode() + b"\0" + v.encode() + b"\0" for k, v in params) + b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        while True:
            t, m = self._next()
            if t == b"R" and struct.unpack_from("!i", m)[0] != 0:
                raise Failed("consumer connection: the server asks for a password "
                             "(the bench cluster trusts local connections)")
            if t == b"E":
                raise Failed("consumer connection: " + self._error(m))
            if t == b"K":
                self.pid = struct.unpack_from("!i", m)[0]
            if t == b"Z":
                return

    def _read_more(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise Failed("consumer connection closed by the server")
        self.buf = self.buf[self.pos:] + data
        self.pos = 0

    def _complete(self):
        left = len(self.buf) - self.pos
        return left >= 5 and left >= struct.unpack_from("!i", self.buf, self.pos + 1)[0] + 1

    def _next(self):
        while not self._complete():
            self._read_more()
        p = self.pos
        n = struct.unpack_from("!i", self.buf, p + 1)[0]
        self.pos = p + n + 1
        return self.buf[p:p + 1], self.buf[p + 5:p + n + 1]

    @staticmethod
    def _error(m):
        fields = dict((f[:1], f[1:].decode(errors="replace")) for f in m.split(b"\0") if f)
        return f"{fields.get(b'S', 'ERROR')}: {fields.get(b'M', '?')} (SQLSTATE {fields.get(b'C', '?')})"

    def _notified(self, m):
        """A notification counts unless this session sent it (its own
        tick's: it reads right after that tick anyway)."""
        if struct.unpack_from("!i", m)[0] != self.pid:
            self.notifies += 1

    def query(self, sql):
        """Runs `sql` (simple query protocol); returns the rows of its
        result, each a list of bytes (None: NULL). Notifications that
        arrive meanwhile are counted."""
        m = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", len(m) + 4) + m)
        rows, err = [], None
        while True:
            t, m = self._next()
            if t == b"D":
                n, off, row = struct.unpack_from("!h", m)[0], 2, []
                for _ in range(n):
                    ln = struct.unpack_from("!i", m, off)[0]
                    off += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(m[off:off + ln])
                        off += ln
                rows.append(row)
            elif t == b"E":
                err = self._error(m)
            elif t == b"A":
                self._notified(m)
            elif t == b"Z":
                break
        if err:
            raise Failed(f"consumer: {err} (sql: {sql[:200]})")
        return rows

    def wait(self, timeout):
        """Waits up to `timeout` s for a notification; True when one came
        (or came during an earlier query)."""
        deadline = time.monotonic() + timeout
        while True:
            while self._complete():
                t, m = self._next()
                if t == b"A":
                    self._notified(m)
                elif t == b"E":
                    raise Failed("consumer connection: " + self._error(m))
            if self.notifies:
                self.notifies = 0
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if select.select([self.sock], [], [], left)[0]:
                self._read_more()

    def close(self):
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
        except OSError:
            pass
        self.sock.close()


class FeedConsumer(threading.Thread):
    """Workload 15's consumer, in its own connection, as
    examples/feed_consumer.cpp does it: subscribes (from now), LISTENs on
    agent_journal_feed, and drains: each batch (read_feed of FEED_PAGE
    rows, every column to the client, then ack_feed of its last position)
    in one transaction, which does not tick; until a short batch. Then
    waits for a notification (a tick, the worker's, moved entries in) at
    most FEED_POLL s; after a timeout it ticks itself with an autocommit
    read_feed(consumer, 0) before draining. Records each entry's lag:
    clock_timestamp() at the read minus its recorded_at. Checks that
    positions come one after the other (nothing skipped, nothing twice)
    and that no row is a gap."""

    def __init__(self, consumer):
        super().__init__(daemon=True)
        self.consumer = consumer
        self.ready = threading.Event()
        self.target, self.deadline, self.abort = None, None, False
        self.count, self.last, self.lags = 0, None, []
        self.woken = self.polls = self.reads = self.batches = 0
        self.error = None
        c = quote(consumer)
        self.tick_sql = f"SELECT FROM agent_journal.read_feed({c}, 0)"
        self.read_sql = (f"BEGIN; SELECT position, kind, (extract(epoch FROM clock_timestamp() - recorded_at) "
                         f"* 1000)::float8, agent_id, sequence, iteration, event "
                         f"FROM agent_journal.read_feed({c}, {FEED_PAGE})")

    def run(self):
        conn = None
        try:
            conn = PgConn()
            self.last = int(conn.query(f"SELECT agent_journal.subscribe({quote(self.consumer)})")[0][0])
            conn.query("LISTEN agent_journal_feed")
            self.ready.set()
            notified = False
            while not self.abort:
                if self.target is not None:
                    if self.count >= self.target:
                        break
                    if time.monotonic() > self.deadline:
                        raise Failed(f"consumer read {self.count:,} entries, {self.target:,} appended "
                                     f"(waited {FEED_CATCHUP} s after the writers stopped)")
                if not notified:
                    conn.query(self.tick_sql)
                self.drain(conn)
                notified = conn.wait(FEED_POLL)
                if notified:
                    self.woken += 1
                else:
                    self.polls += 1
            conn.query(f"SELECT agent_journal.unsubscribe({quote(self.consumer)})")
        except Exception as e:  # reported by finish()
            self.error = str(e).splitlines()[0] if str(e) else repr(e)
        finally:
            self.ready.set()
            if conn:
                conn.close()

    def drain(self, conn):
        while not self.abort:
            rows = conn.query(self.read_sql)
            self.reads += 1
            for r in rows:
                pos = int(r[0])
                if pos != self.last + 1 or r[1] == b"gap":
                    raise Failed(f"feed row at position {pos} ({r[1].decode()}) after position {self.last}")
                self.last = pos
                self.lags.append(float(r[2]))
            if not rows:
                conn.query("COMMIT")
                return
            conn.query(f"SELECT agent_journal.ack_feed({quote(self.consumer)}, {self.last}); COMMIT")
            self.count += len(rows)
            self.batches += 1
            if len(rows) < FEED_PAGE:
                return

    def finish(self, appended):
        """The writers have stopped: read until every one of `appended`
        entries is in, then stop; fails unless exactly those were read."""
        self.deadline = time.monotonic() + FEED_CATCHUP
        self.target = appended
        self.join(FEED_CATCHUP + 10)
        if self.is_alive():
            self.abort = True
            raise Failed("feed consumer did not stop")
        if self.error:
            raise Failed(f"feed consumer: {self.error}")
        if self.count != appended:
            raise Failed(f"feed consumer read {self.count:,} entries, {appended:,} appended")

    def stop(self):
        self.abort = True
        self.join(10)


def pct(xs, q):
    """Nearest-rank percentile of a sorted list."""
    return xs[max(0, min(len(xs) - 1, math.ceil(q * len(xs)) - 1))] if xs else None


def restart_cluster():
    """pg_ctl restart of the bench cluster (as the postgres user when root):
    postgresql.auto.conf's settings apply. The new postmaster is the
    cluster's for the foreign-CPU monitor."""
    d = os.environ["AJ_CLUSTER_DIR"]
    data = os.path.join(d, "data")
    bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
    cmd = [os.path.join(bindir, "pg_ctl"), "-D", data, "-l", os.path.join(d, "server.log"),
           "-m", "fast", "-w", "-t", "120", "restart"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise Failed(f"pg_ctl restart: {(p.stderr or p.stdout).strip()[-300:]}")
    wait_ready()
    try:
        with open(os.path.join(data, "postmaster.pid")) as f:
            pid = int(f.readline())
        if MONITOR is not None:
            MONITOR.roots.add(pid)
    except (OSError, ValueError):
        pass


FEED_GUCS = ("shared_preload_libraries", "agent_journal.export_database",
             "agent_journal.retention_interval", "agent_journal.export_interval")


def set_feed_preload(on):
    """Restarts the cluster with the library preloaded (on) or as bench/run
    started it (off). Preloaded, its background worker ticks the feed in the
    bench database; exports and retention passes are off (no export
    target is set; retention_interval 0, export_interval a day)."""
    db = psql("SELECT current_database()")
    if on:
        libs = [x.strip().strip('"') for x in psql("SHOW shared_preload_libraries").split(",") if x.strip()]
        libs = ", ".join(quote(x) for x in libs + ["agent_journal"])
        stmts = ["LOAD 'agent_journal'",
                 f"ALTER SYSTEM SET shared_preload_libraries = {libs}",
                 f"ALTER SYSTEM SET agent_journal.export_database = {quote(db)}",
                 "ALTER SYSTEM SET agent_journal.retention_interval = 0",
                 "ALTER SYSTEM SET agent_journal.export_interval = 86400"]
    else:
        stmts = [f"ALTER SYSTEM RESET {g}" for g in FEED_GUCS]
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for s in stmts:
        cmd += ["-c", s]   # each its own transaction: ALTER SYSTEM refuses a transaction block
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise Failed(f"psql: {p.stderr.strip()}")
    restart_cluster()


def feed_ticker():
    """'worker' when the library is preloaded and its background worker is
    connected to this database (it ticks the feed every
    feed_tick_interval ms and sends NOTIFY), else 'consumer' (only
    read_feed / subscribe outside a transaction block tick)."""
    if "agent_journal" not in psql("SHOW shared_preload_libraries"):
        return "consumer", None
    interval = psql("SHOW agent_journal.feed_tick_interval")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:   # the worker starts after recovery
        if psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'agent_journal exporter' "
                "AND datname = current_database()") == "1":
            return ("worker", interval) if interval not in ("0", "0ms") else ("consumer", None)
        time.sleep(0.2)
    return "consumer", None


def w15_feed():
    titles = [("15a. append, 8 agents, one consumer LISTENing and draining vs INSERT", "appends/s", 8, "≥ 0.90×"),
              (f"15b. read_feed drain of {FEED_N:,} entries vs keyset SELECT pages", "rows/s", 1, "≥ 0.5×"),
              ("15c. feed lag under 8 appending clients, p99", "ms", 1, "< 1,000 ms (p99)")]
    if not exists("proc", "agent_journal.read_feed(text,bigint)"):
        for t, unit, clients, goal in titles:
            na_row(t, unit, clients, goal, "agent_journal.read_feed(text, bigint) not in this build")
        return
    ticker, interval = feed_ticker()
    restarted = False
    try:
        if ticker != "worker" and FEED_PRELOAD:
            reset()   # little to write at the shutdown checkpoint
            log("  restarting the cluster with shared_preload_libraries = 'agent_journal'")
            restarted = True
            set_feed_preload(True)
            ticker, interval = feed_ticker()
            if ticker != "worker":
                NOTES.append("workload 15: the library was preloaded but its worker did not start "
                             "in the bench database; the consumer's read_feed ticked")
        how = (f"worker ticks every {interval} + NOTIFY" if ticker == "worker"
               else "no worker: the consumer's read_feed ticks")
        w15_append_with_consumer(how)
        w15_drain(how)
    finally:
        try:
            reset()
        finally:
            if restarted:
                log("  restarting the cluster as bench/run started it")
                set_feed_preload(False)


def w15_append_with_consumer(how):
    """15a and 15c: workload 1's appends with a consumer following the
    feed, against workload 1's INSERT and the appends alone, same rounds;
    the consumer's lags of every round make 15c."""
    d = {"event": EVENT}
    lags, p99s, stats = [], [], []

    def with_consumer():
        c = FeedConsumer("bench_live")
        c.start()
        c.ready.wait(30)
        if c.error or not c.is_alive():
            raise Failed(f"feed consumer: {c.error or 'did not start'}")
        try:
            tps = pgbench("append_client_agent.sql", 8, d)["tps"]
        except BaseException:
            c.stop()
            raise
        c.finish(int(psql("SELECT count(*) FROM agent_journal.entries")))
        xs = sorted(c.lags)
        lags.extend(xs)
        p99s.append(pct(xs, 0.99))
        stats.append((c.count, c.woken, c.polls, c.reads, c.batches))
        return tps

    s = alternate([("ours", with_consumer),
                   ("base", lambda: pgbench("insert_client_agent.sql", 8, d)["tps"]),
                   ("alone", lambda: pgbench("append_client_agent.sql", 8, d)["tps"])])
    add_row(f"15a. append, 8 agents (1 per client), one consumer LISTENing and draining "
            f"(read_feed + ack_feed; {how}) vs INSERT", med(s["ours"]), med(s["base"]),
            "appends/s", 8, goal=0.90, goal_text="≥ 0.90×",
            samples={"ours": s["ours"], "base": s["base"]}, short="15a append + feed consumer / INSERT")
    # workload 1 with every feature on (DEVELOPERS.md's one budget): the
    # library preloaded, its worker ticking the feed, no consumer
    add_row(f"1p. append, 8 agents (1 per client), library preloaded ({how}), no consumer, vs INSERT "
            f"(15a's rounds)", med(s["alone"]), med(s["base"]), "appends/s", 8, goal=0.90, goal_text="≥ 0.90×",
            samples={"ours": s["alone"], "base": s["base"]}, short="1p append preloaded / INSERT")
    add_row("15an. the same appends with the consumer vs without one (same run)", med(s["ours"]),
            med(s["alone"]), "appends/s", 8, goal_text="— (report: the consumer's cost)",
            samples={"ours": s["ours"], "base": s["alone"]}, short="15an append with / without consumer")
    lags.sort()
    p50, p99 = pct(lags, 0.50), pct(lags, 0.99)
    add_row(f"15c. feed lag (read − recorded_at) under 8 appending clients, p50 ({how})", p50, None, "ms", 8,
            goal_text="— (report)", higher_is_better=False, samples={"p50 all rounds": [p50]},
            short="15c feed lag p50", nobase=True)
    add_row(f"15c. feed lag, p99 (the same {len(lags):,} entries, {ROUNDS} round(s))", p99, None, "ms", 8,
            goal_text="< 1,000 ms (p99)", higher_is_better=False, met=p99 is not None and p99 < 1000,
            samples={"p99 per round": p99s}, short="15c feed lag p99", nobase=True)
    NOTES.append(f"workload 15a/15c: per round with the consumer: entries read / wake-ups by NOTIFY / "
                 f"{FEED_POLL * 1000:.0f} ms timeouts (then it ticked itself) / reading transactions / "
                 f"batches acknowledged: "
                 + "; ".join(f"{a:,}/{b}/{c}/{r}/{k}" for a, b, c, r, k in stats)
                 + f". Lag over all rounds: p50 {fmt(p50)} ms, p90 {fmt(pct(lags, 0.90))} ms, "
                   f"p99 {fmt(p99)} ms, max {fmt(lags[-1] if lags else None)} ms ({how}).")


def w15_drain(how):
    """15b: a consumer drains the feed of FEED_N entries (FEED_AGENTS agents
    of FEED_PAGE entries, made by append_batch and ticked into the feed
    before timing): read_feed of FEED_PAGE then ack_feed per step, a fresh
    consumer from the beginning every round; against keyset pages of the
    same rows from the entries table."""
    reset()
    batchfile, _ = batch_files()
    agents = FEED_N // BATCH
    clients = 2 if agents % 2 == 0 else 1
    t0 = time.monotonic()
    pgbench("feed_load_agents.sql", clients, {"batchfile": batchfile}, transactions=agents // clients)
    load_secs = time.monotonic() - t0
    # Every append ticked into the feed (subscribe outside a transaction
    # block ticks; the worker may hold the tick a moment).
    # what is not yet in the feed: feed_pending, and (0.10.0) feed_appends
    # but for its marker
    PENDING_SQL = "(SELECT count(*) FROM agent_journal.feed_pending)"
    if exists("rel", "agent_journal.feed_appends"):
        PENDING_SQL += (" + (SELECT count(*) FROM agent_journal.feed_appends "
                        "WHERE first_sequence <> 0)")
    deadline, got = time.monotonic() + 30, ""
    want = f"{FEED_N}/{agents}/0"
    while time.monotonic() < deadline:
        got = psql("SELECT agent_journal.subscribe('bench_tick') * 0 + (SELECT coalesce(max(last_position), 0) "
                   "FROM agent_journal.feed_state) || '/' || (SELECT count(*) FROM agent_journal.feed) || '/' || "
                   f"({PENDING_SQL})")
        if got == want:
            break
        time.sleep(0.2)
    psql("SELECT agent_journal.unsubscribe('bench_tick')")
    if got != want:
        raise Failed(f"feed last position / feed rows / pending after the load: {got}, expected {want}")
    for t in ("entries", "feed", "feed_pending", "feed_subscriptions", "agent_state"):
        psql(f"VACUUM ANALYZE agent_journal.{t}")
    psql("CHECKPOINT")
    steps = FEED_N // FEED_PAGE
    rounds = iter(range(1_000_000))

    def ours():
        name = f"bench_drain_{next(rounds)}"
        psql(f"SELECT agent_journal.subscribe({quote(name)}, true)")
        tps = pgbench("feed_drain.sql", 1, {"consumer": name, "position": 0}, transactions=steps)["tps"]
        pos = psql(f"SELECT position FROM agent_journal.feed_consumers WHERE consumer = {quote(name)}")
        psql(f"SELECT agent_journal.unsubscribe({quote(name)})")
        if pos != str(FEED_N):
            raise Failed(f"consumer {name} acknowledged position {pos} after {steps} reads, expected {FEED_N}")
        return FEED_PAGE * tps

    zero = "00000000-0000-0000-0000-000000000000"
    base = lambda: FEED_PAGE * pgbench("feed_drain_plain.sql", 1, {"agent_id": zero, "sequence": 0},
                                       transactions=steps)["tps"]
    s = alternate([("ours", ours), ("base", base)], before=None)
    add_row(f"15b. a consumer drains {FEED_N:,} entries ({agents:,} agents × {BATCH:,}): read_feed({FEED_PAGE:,}) "
            f"+ ack_feed per batch vs keyset SELECT pages of {FEED_PAGE:,} from entries", med(s["ours"]),
            med(s["base"]), "rows/s", 1, goal=0.5, goal_text="≥ 0.5×", samples=s,
            short=f"15b read_feed drain {human(FEED_N)} / keyset SELECT")
    NOTES.append(f"workload 15b: {agents:,} agents of {BATCH:,} entries appended (append_batch, {clients} "
                 f"client(s)) in {load_secs:.1f} s; a drain takes {FEED_N / med(s['ours']):.2f} s (ours) and "
                 f"{FEED_N / med(s['base']):.2f} s (baseline), {steps:,} steps ({how})")


def w16_citus():
    """16a/16b (issue 11): a coordinator and two workers of their own
    (ports AJ_PGPORT+101..103), the journal distributed by distribute().
    16a: append through the coordinator (8 clients, an agent each) vs a
    plain INSERT into a table distributed by agent_id. 16b: replay of one
    agent's CITUS_REPLAY_N entries (Citus runs it on the worker holding the
    agent's shards) vs a distributed SELECT ... ORDER BY of the same rows,
    both through the coordinator."""
    titles = [("16a. Citus: append through the coordinator, 8 agents vs INSERT into a distributed table",
               "appends/s", 8, "≥ 0.80×"),
              (f"16b. Citus: replay {CITUS_REPLAY_N:,} entries from the agent's worker vs distributed SELECT ORDER BY",
               "ms", 1, "— (report)")]
    libdir = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
    if not os.path.exists(os.path.join(libdir, "citus.so")):
        for t, unit, clients, goal in titles:
            na_row(t, unit, clients, goal, "Citus not installed (not a Debian package)")
        return
    if not exists("proc", "agent_journal.distribute(integer)"):
        for t, unit, clients, goal in titles:
            na_row(t, unit, clients, goal, "agent_journal.distribute(integer) not in this build")
        return
    base = int(os.environ["AJ_PGPORT"]) + 101
    ports = [base, base + 1, base + 2]
    conf = ("listen_addresses = '127.0.0.1'\nshared_preload_libraries = 'citus,agent_journal'\n"
            "citus.enable_statistics_collection = off\nmax_connections = 100\nmax_prepared_transactions = 100\n" + os.environ.get("AJ_PG_CONF", ""))
    cluster = os.path.join(REPO, "scripts", "cluster")

    def node_env(p):
        return {"PGHOST": "127.0.0.1", "PGPORT": str(p), "PGUSER": "postgres", "PGDATABASE": "aj_bench_citus"}

    def q(p, sql):
        return psql(sql, node_env(p))

    try:
        for p in ports:
            env = dict(os.environ, AJ_PGPORT=str(p), AJ_CLUSTER_DIR=f"/tmp/aj_bench_citus.{p}", AJ_PG_CONF=conf)
            r = subprocess.run([cluster, "start"], env=env, capture_output=True, text=True)
            if r.returncode != 0:
                raise Failed(f"citus node {p}: {(r.stderr or r.stdout).strip()[-300:]}")
            psql("CREATE DATABASE aj_bench_citus", dict(node_env(p), PGDATABASE="postgres"))
            q(p, "CREATE EXTENSION citus")
        c = ports[0]
        q(c, f"SELECT citus_set_coordinator_host('127.0.0.1', {c})")
        for p in ports[1:]:
            q(c, f"SELECT citus_add_node('127.0.0.1', {p})")
        q(c, "CREATE EXTENSION agent_journal")
        q(c, "SELECT agent_journal.distribute()")
        q(c, "CREATE TABLE bench_dist (agent_id uuid NOT NULL, sequence bigserial, iteration integer NOT NULL, "
             "kind text NOT NULL, recorded_at timestamptz NOT NULL, event jsonb NOT NULL, "
             "PRIMARY KEY (agent_id, sequence)); SELECT create_distributed_table('bench_dist', 'agent_id')")
        d = {"event": EVENT}
        cenv = node_env(c)

        def reset_citus():
            q(c, "TRUNCATE bench_dist; TRUNCATE agent_journal.entries, agent_journal.agent_state, "
                 "agent_journal.idempotency_keys, agent_journal.feed_pending")

        s = alternate([("ours", lambda: pgbench("append_client_agent.sql", 8, d, env_extra=cenv)["tps"]),
                       ("base", lambda: pgbench("citus_insert_client_agent.sql", 8, d, env_extra=cenv)["tps"])],
                      before=reset_citus)
        add_row(titles[0][0], med(s["ours"]), med(s["base"]), "appends/s", 8, goal=0.80,
                goal_text="≥ 0.80×", samples=s, short="16a Citus append / distributed INSERT")
        reset_citus()
        agent = "00000000-0000-0000-0000-0000000000b6"
        q(c, "CREATE TABLE bench_dist_replay (LIKE bench_dist INCLUDING ALL); "
             "SELECT create_distributed_table('bench_dist_replay', 'agent_id', colocate_with => 'bench_dist')")
        # the events as a literal: a call whose arguments hold a subquery is
        # not delegated by Citus, and a writer then refuses on the coordinator
        for k in range(CITUS_REPLAY_N // 1000):
            events = ",".join(quote(json.dumps({"type": "tool_call", "n": k * 1000 + i}))
                              for i in range(1000))
            q(c, f"SELECT agent_journal.append_batch('{agent}', 1, ARRAY[{events}]::jsonb[])")
        q(c, f"INSERT INTO bench_dist_replay (agent_id, sequence, iteration, kind, recorded_at, event) "
             f"SELECT agent_id, sequence, iteration, kind, recorded_at, event FROM agent_journal.entries "
             f"WHERE agent_id = '{agent}'")
        got = q(c, f"SELECT count(*) FROM agent_journal.replay('{agent}')")
        if int(got) != CITUS_REPLAY_N:
            raise Failed(f"16b: replay gave {got} entries, expected {CITUS_REPLAY_N}")
        dr = {"agent": agent}
        for script in ("replay.sql", "citus_replay_plain.sql"):
            pgbench(script, 1, dr, transactions=1, env_extra=cenv)
        s = alternate([("ours", lambda: pgbench("replay.sql", 1, dr, env_extra=cenv)["lat_ms"]),
                       ("base", lambda: pgbench("citus_replay_plain.sql", 1, dr, env_extra=cenv)["lat_ms"])],
                      before=None)
        add_row(titles[1][0], med(s["ours"]), med(s["base"]), "ms", 1, goal_text="— (report)",
                higher_is_better=False, samples=s, short="16b Citus replay / distributed SELECT")
    finally:
        for p in ports:
            env = dict(os.environ, AJ_PGPORT=str(p), AJ_CLUSTER_DIR=f"/tmp/aj_bench_citus.{p}")
            subprocess.run([cluster, "stop"], env=env, capture_output=True, text=True)


WORKLOAD_FNS = [("1", w1_append_distinct), ("2", w2_append_one_agent), ("3", w3_batch),
                ("8", w8_peers), ("9", w9_append_leased), ("10", w10_claim_renew),
                ("4", w4_replay), ("11", w11_resume), ("12", w12_point_reads), ("13", w13_replay_backward),
                ("5", w5_ingest), ("6", w6_counter), ("7", w7_prometheus), ("14", w14_journal_render),
                ("16", w16_citus),  # clusters of its own
                ("15", w15_feed)]   # last: it restarts the cluster (library preloaded) and back


# ---------------------------------------------------------------- report

def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        kb = int(f.readline().split()[1])
    return f"{os.cpu_count()} CPUs, {kb / 2**20:.0f} GiB RAM, {cpu}"


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (+ uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


class ForeignCpu(threading.Thread):
    """CPU time used by processes that are neither this driver's (pgbench,
    psql) nor the bench cluster's, sampled from /proc once a second: the
    noise other work on the machine added to the measurements."""

    def __init__(self):
        super().__init__(daemon=True)
        self.roots = {os.getpid()}
        try:
            with open(os.path.join(os.environ["AJ_CLUSTER_DIR"], "data", "postmaster.pid")) as f:
                self.roots.add(int(f.readline()))
        except (OSError, ValueError, KeyError):
            pass
        self.tick = os.sysconf("SC_CLK_TCK")
        self.seen, self.total, self.stop, self.scans = {}, 0.0, False, 0

    def scan(self):
        procs = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rfind(")") + 2:].split()
            # fields[1] = ppid, [11] utime, [12] stime, [19] starttime (stat fields 4, 14, 15, 22)
            procs[int(d)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.tick, fields[19])
        for pid, (ppid, cpu, start) in procs.items():
            p, ours = pid, False
            for _ in range(64):
                if p in self.roots:
                    ours = True
                    break
                if p not in procs or p in (0, 1, 2):
                    break
                p = procs[p][0]
            if ours or ppid == 2 or pid == 2:
                continue
            key = (pid, start)
            prev = self.seen.get(key)
            if prev is None:
                prev = cpu if self.scans == 0 else 0.0
            self.total += cpu - prev
            self.seen[key] = cpu
        self.scans += 1

    def run(self):
        while not self.stop:
            try:
                self.scan()
            except Exception:  # a monitor must never take the run down
                pass
            time.sleep(1)


def so_path():
    libdir = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
    return os.path.join(libdir, "agent_journal.so")


def so_sanitized():
    """True when the installed module is built with ASan/UBSan: its numbers mean nothing."""
    try:
        with open(so_path(), "rb") as f:
            data = f.read()
        return b"__asan_init" in data or b"__ubsan_handle" in data
    except OSError:
        return False


def so_fingerprint():
    """sha256 prefix and mtime of the installed module: a `make install`
    during the run would mix two builds in one report."""
    import hashlib
    path = so_path()
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        mtime = datetime.datetime.utcfromtimestamp(os.path.getmtime(path)).strftime("%Y-%m-%d %H:%M:%S")
        return f"{digest} ({mtime} UTC)"
    except OSError as e:
        return f"unreadable: {e}"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def write_report(started, elapsed, settings):
    mach = machine()
    L = []
    L.append(f"# agent_journal benchmarks{' (smoke)' if SMOKE else ''}")
    L.append("")
    L.append(f"{started:%Y-%m-%d %H:%M} UTC, commit {git_rev()}, {elapsed / 60:.1f} min. "
             f"Made by `bench/run{' --smoke' if SMOKE else ''}`; see bench/README.md.")
    L.append("")
    L.append(f"- machine: {mach}; load average (1/5/15 min) at start {settings.pop('load_start')}, "
             f"at end {loadavg()} (includes the run itself; other work on the machine shows here too: both sides of a "
             f"pair share it, alternation spreads it)")
    L.append(f"- server: {settings['version']}; " +
             ", ".join(f"{k}={v}" for k, v in settings.items() if k != "version"))
    L.append(f"- method: {ROUNDS} round(s) of {SECONDS} s per side (pgbench -M prepared -T), sides "
             f"alternated A/B then B/A; every write round starts from emptied tables and a "
             f"CHECKPOINT; values are medians")
    L.append("- ratio = ours ÷ baseline as a speed (> 1: ours faster; for ms: baseline ms ÷ ours ms)")
    L.append("")
    L.append("| workload | ours | baseline | unit | ratio | goal | met? | clients | machine | synchronous_commit |")
    L.append("|---|---:|---:|---|---:|---|---|---:|---|---|")
    short_mach = f"{os.cpu_count()} CPU / {int(round(int(open('/proc/meminfo').readline().split()[1]) / 2**20))} GiB"
    for r in ROWS:
        if r.get("na"):
            L.append(f"| {r['workload']} | n/a | n/a | {r['unit']} | n/a | {r['goal_text']} | n/a "
                     f"| {r['clients']} | {short_mach} | {r['sync']} |")
            continue
        if r.get("error"):
            L.append(f"| {r['workload']} | error | error | {r['unit']} | — | {r['goal_text']} | error "
                     f"| {r['clients']} | {short_mach} | {r['sync']} |")
            continue
        met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else "—"
        base = "—" if r.get("nobase") else fmt(r["base"])
        L.append(f"| {r['workload']} | {fmt(r['ours'])} | {base} | {r['unit']} | {ratio} "
                 f"| {r['goal_text']} | {met} | {r['clients']} | {short_mach} | {r['sync']} |")
    L.append("")
    L.append(f"Machine: {mach}.")
    skipped = [r for r in ROWS if r.get("na") or r.get("error")]
    if skipped:
        L.append("")
        for r in skipped:
            L.append(f"- {r['workload']}: {'n/a: ' + r['na'] if r.get('na') else 'error: ' + r['error']}")
    if MEMORY:
        L.append("")
        L.append("## Replay: backend memory")
        L.append("")
        L.append("One replay in a fresh backend, sampled every 2 ms from /proc/<pid>/status: RssAnon is "
                 "the backend's private memory (palloc, tuplestore), VmHWM its peak resident set "
                 "including the shared buffers it touched. Temp = bytes spilled to temporary files "
                 "(temp blocks written, from the same query under EXPLAIN (ANALYZE, BUFFERS)).")
        L.append("")
        L.append("| entries | side | idle RssAnon MB | peak RssAnon MB | VmHWM MB | temp MB | seconds |")
        L.append("|---:|---|---:|---:|---:|---:|---:|")
        for m in MEMORY:
            for side, v in (("replay()", m["ours"]), ("plain SELECT", m["base"])):
                L.append(f"| {m['n']:,} | {side} | {v[0]} | {v[1]} | {v[2]} | {v[3]:.0f} | {v[4]:.2f} |")
        if len(MEMORY) >= 2:
            a, b = MEMORY[0]["ours"][1], MEMORY[-1]["ours"][1]
            flat = b <= a * 1.25 + 16
            L.append("")
            L.append(f"Flat? replay() peak private memory {a} MB at {MEMORY[0]['n']:,} entries, {b} MB at "
                     f"{MEMORY[-1]['n']:,}: {'yes' if flat else '**no**'} (criterion: ≤ 1.25× + 16 MB).")
    L.append("")
    L.append("## Samples (one per round, in run order)")
    L.append("")
    for r in ROWS:
        if r["samples"]:
            parts = "; ".join(f"{k}: " + ", ".join(fmt(x) for x in v) for k, v in r["samples"].items())
            L.append(f"- {r['workload']} [{r['unit']}, sync {r['sync']}]: {parts}")
    if FOREIGN:
        L.append("")
        L.append("Other processes on the machine (not this driver, not the bench cluster) used, on "
                 f"average, in CPUs out of {os.cpu_count()}: " +
                 ", ".join(f"workload {k} {v:.2f}" for k, v in FOREIGN) + ".")
    if NOTES:
        L.append("")
        L.append("## Notes")
        L.append("")
        L.extend(f"- {n}" for n in NOTES)
    L.append("")
    os.makedirs(os.path.dirname(OUT_MD), exist_ok=True)
    with open(OUT_MD, "w") as f:
        f.write("\n".join(L))
    # The table to the terminal too.
    print("\n".join(l for l in L if l.startswith("|") or l.startswith("Flat")), flush=True)


def write_chart():
    if not OUT_PNG:
        return
    if not shutil.which("gnuplot"):
        log("gnuplot not found (bench/install-deps installs it): no chart")
        return
    bars = [r for r in ROWS if r["ratio"] is not None and r["unit"] != "ms"]
    dat = os.path.join(WORKDIR, "ratios.dat")
    with open(dat, "w") as f:
        for i, r in enumerate(bars):
            label = r["short"]
            goal = r["goal"] if r["goal"] is not None else "NaN"
            f.write(f'{i} "{label}" {r["ratio"]:.4f} {goal}\n')
    prom = os.path.join(WORKDIR, "prom.dat")
    with open(prom, "w") as f:
        for n, ours, base in PROM:
            goal = {10_000: 10, 100_000: 100}.get(n, "NaN")
            f.write(f"{n} {ours:.3f} {base:.3f} {goal}\n")
    panels = 2 if PROM else 1
    top = max([1.3] + [r["ratio"] * 1.15 for r in bars])
    gp = f"""
set terminal pngcairo noenhanced size {700 * panels + 200},620 font "DejaVu Sans,10"
set output "{OUT_PNG}"
set multiplot layout 1,{panels} title "agent_journal vs baselines — {machine()}" font ",11"
set title "throughput ratio ours / baseline (median of {ROUNDS}; dots = goal)"
set style fill solid 0.7 border -1
set boxwidth 0.6
set yrange [0:{top:.2f}]
set xrange [-0.6:{len(bars) - 0.4}]
set grid ytics
set xtics rotate by -35 left font ",8"
set bmargin 11
unset key
plot "{dat}" using 1:3:xtic(2) with boxes lc rgb "#3b78b0", \\
     "" using 1:3:(sprintf("%.2f", $3)) with labels offset 0,0.7 font ",8", \\
     "" using 1:4 with points pt 7 ps 1.3 lc rgb "#d03030", \\
     1 with lines dt 2 lw 1.5 lc rgb "#505050"
"""
    if PROM:
        gp += f"""
set title "prometheus exposition: ms per render (log scales)"
set logscale xy
set xrange [5000:2000000]
set yrange [*:*]
set xtics norotate font ",9" (10000, 100000, 1000000)
set format x "%.0s%c"
set xlabel "series ({PROM_FAMILIES} families)"
set ylabel "ms"
set bmargin 5
set key top left
plot "{prom}" using 1:2 with linespoints pt 7 lw 2 title "agent_journal.prometheus", \\
     "" using 1:3 with linespoints pt 5 lw 2 title "pure SQL", \\
     "" using 1:4 with points pt 9 ps 1.6 lc rgb "#d03030" title "goal"
"""
    gp += "unset multiplot\n"
    p = subprocess.run(["gnuplot"], input=gp, capture_output=True, text=True)
    if p.returncode != 0:
        log(f"gnuplot failed: {p.stderr.strip()}")
    else:
        log(f"chart: {OUT_PNG}")


def keep_server_log():
    """The cluster is removed on exit: keep the server log of a failed run."""
    src = os.path.join(os.environ.get("AJ_CLUSTER_DIR", ""), "server.log")
    dst = os.path.splitext(OUT_MD)[0] + ".server.log"
    try:
        shutil.copyfile(src, dst)
        NOTES.append(f"server log of this run: {os.path.relpath(dst, REPO)}")
        log(f"server log kept: {dst}")
    except OSError:
        pass


def main():
    started = datetime.datetime.utcnow()
    t0 = time.monotonic()
    log(f"{'smoke' if SMOKE else 'full'} run: {ROUNDS} round(s) x {SECONDS} s per side; "
        f"load average {loadavg()}")
    if so_sanitized():
        msg = ("the installed agent_journal.so is built with sanitizers (ASan/UBSan): "
               "these numbers do not describe a release build")
        log("WARNING: " + msg)
        NOTES.insert(0, "**WARNING**: " + msg)
    try:
        psql("CREATE EXTENSION agent_journal")
    except Failed as e:
        log(f"setup failed: {e}")
        keep_server_log()
        return 1
    psql_file(os.path.join(WORKLOADS, "setup.sql"))
    if psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'pgq'") == "1":
        psql("CREATE EXTENSION pgq; SELECT pgq.create_queue('bench_q');")
    else:
        NOTES.append("PgQ not installed: run bench/install-deps (postgresql-15-pgq3)")
    settings = {"version": psql("SHOW server_version"), "load_start": loadavg()}
    build = so_fingerprint()
    extversion = psql("SELECT extversion FROM pg_extension WHERE extname = 'agent_journal'")
    NOTES.append(f"agent_journal {extversion}, module sha256 {build}")
    for g in ("synchronous_commit", "shared_buffers", "max_wal_size", "fsync", "wal_level", "jit"):
        settings[g] = psql(f"SHOW {g}")
    fns = psql("SELECT string_agg(p.proname, ', ' ORDER BY p.proname) FROM pg_proc p "
               "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'agent_journal'")
    NOTES.append(f"agent_journal functions in this build: {fns}")
    global MONITOR
    foreign = MONITOR = ForeignCpu()
    foreign.start()
    for key, fn in WORKLOAD_FNS:
        if ONLY and key not in ONLY:
            continue
        log(f"workload {key}: {fn.__name__}")
        before = len(ROWS)
        w0, f0 = time.monotonic(), foreign.total
        try:
            wait_ready()
            fn()
        except Failed as e:
            msg = str(e).splitlines()[0][:300]
            log(f"workload {key} failed: {msg}")
            FAILED.append(key)
            if len(ROWS) == before:
                ROWS.append(dict(workload=f"{key}. {fn.__name__}", ours=None, base=None, unit="",
                                 ratio=None, goal=None, goal_text="", met=None, clients="",
                                 sync="on", samples={}, error=msg))
        now = so_fingerprint()
        if now.split()[0] != build.split()[0]:  # the hash; a re-install of the same build is fine
            msg = (f"the installed agent_journal.so changed during workload {key} ({build} -> {now}): "
                   f"this report mixes builds; run again")
            log("WARNING: " + msg)
            NOTES.insert(0, "**WARNING**: " + msg)
            build = now
        other = (foreign.total - f0) / max(time.monotonic() - w0, 1e-9)
        FOREIGN.append((key, other))
        if other >= 0.2:
            log(f"  other processes on the machine used {other:.1f} CPUs meanwhile")
        for r in ROWS[before:]:
            if r.get("na"):
                log(f"  {r['workload']}: n/a ({r['na']})")
            elif not r.get("error"):
                ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
                log(f"  {r['workload']} [sync {r['sync']}]: ours {fmt(r['ours'])} / "
                    f"baseline {fmt(r['base'])} {r['unit']} = {ratio}")
    if FAILED:
        keep_server_log()
    write_report(started, time.monotonic() - t0, settings)
    if not SMOKE:
        write_chart()
    log(f"report: {OUT_MD} ({(time.monotonic() - t0) / 60:.1f} min)")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
