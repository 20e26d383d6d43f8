"""Writes mutated snapshots, events and labels, one JSON text per line
(tab-free, COPY text format), for tests/scripts/sql_fuzz.sh. Deterministic:
the seed is the first argument."""
import json
import random
import sys

rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
BASE = {"timestamp": 1700000000,
        "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5,
                      "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000,
                      "load_factor": 0.005},
        "task_manager": {"total_tasks": 5, "healthy_tasks": 4,
                         "average_uptime_seconds": 1800.0, "total_memory_usage": 1024},
        "load_balancer": {"total_allocations": 100, "active_allocations": 5,
                          "memory_utilization": 0.45, "cpu_utilization": 0.30,
                          "allocation_failures": 2, "average_allocation_time_ms": 1.5},
        "system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0},
        "compaction": {"total_compactions": 7, "total_tokens_saved": 12000,
                       "compactions_by_tier": {"summarize": 5, "truncate": 2},
                       "context_utilization_ratio": 0.62}}
ODD = ["", "five", "\u0000x"[1:], "\u00e9\u4e2d\U0001F600", "\u202e\u200b", "a" * 5000,
       "\\\"\n\t", "null", "NaN", "-0", "1e308", "\ud7ff"]
NUMS = [0, -1, 1.5, 2**63, 2**64 + 1, -2**63, 1e308, 1e-320, 10**30, 0.1, 5.0]


def deep(n):
    v = 1
    for _ in range(n):
        v = [v] if rng.random() < 0.5 else {"k": v}
    return v


def odd_value():
    r = rng.random()
    if r < 0.3:
        return rng.choice(NUMS)
    if r < 0.5:
        return rng.choice(ODD)
    if r < 0.6:
        return None
    if r < 0.7:
        return rng.choice([True, False])
    if r < 0.8:
        return deep(rng.choice([3, 50, 200]))
    if r < 0.9:
        return {rng.choice(ODD): rng.choice(NUMS)}
    return [rng.choice(NUMS) for _ in range(rng.randint(0, 5))]


def mutate(doc, n):
    doc = json.loads(json.dumps(doc))
    for _ in range(n):
        path = [doc]
        cur = doc
        while isinstance(cur, dict) and cur and rng.random() < 0.7:
            k = rng.choice(list(cur))
            if not isinstance(cur[k], dict):
                break
            cur = cur[k]
        if not isinstance(cur, dict) or not cur:
            continue
        k = rng.choice(list(cur))
        op = rng.random()
        if op < 0.5:
            cur[k] = odd_value()
        elif op < 0.7:
            del cur[k]
        elif op < 0.85:
            cur[rng.choice(ODD) or "x"] = odd_value()
        else:
            cur[k] = rng.choice(NUMS)
    return doc


def line(v):
    text = json.dumps(v, ensure_ascii=rng.random() < 0.5)
    # COPY text format: escape backslash, newline, tab
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


kind = sys.argv[2] if len(sys.argv) > 2 else "snapshot"
count = int(sys.argv[3]) if len(sys.argv) > 3 else 300
for i in range(count):
    if kind == "snapshot":
        print(line(mutate(BASE, rng.randint(0, 3)) if i % 10 else BASE))
    elif kind == "event":
        r = rng.random()
        if r < 0.2:
            ev = odd_value()
        elif r < 0.4:
            ev = {"type": odd_value()}
        elif r < 0.6:
            ev = {rng.choice(ODD) or "k": odd_value()}
        else:
            ev = {"type": "Step", "payload": odd_value(), "n": rng.choice(NUMS)}
        print(line(ev))
    else:  # labels
        r = rng.random()
        if r < 0.5:
            lab = {rng.choice(["a", "le", "__x", "A_b", "0a", "ok_name", "bad-name", ""]): rng.choice(ODD)}
        else:
            lab = odd_value()
        print(line(lab))
