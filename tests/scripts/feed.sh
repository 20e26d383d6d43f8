#!/usr/bin/env bash
# The change feed under load, through crashes, in a cluster of its own that
# preloads the library (the background worker ticks the feed every 100 ms
# and NOTIFYs agent_journal_feed; the retention pass runs every second).
# For AJ_FEED_SECONDS (default 30), 8 writers append to 100 agents: single
# appends, batches (append_batch), two agents in one transaction, pauses
# before COMMIT (late commits), and deliberate rollbacks. Each retries with
# idempotency keys after a lost connection and logs what was acknowledged
# (COMMIT returned). Three consumers, subscribed from the beginning, store
# what they read in feed_sink and acknowledge in the same transaction:
#   a: one autocommit statement (read_feed + INSERT + ack_feed in CTEs); its
#      read_feed ticks the feed itself;
#   b: BEGIN; read_feed; INSERT; ack_feed; COMMIT: never ticks, relies on the
#      worker, sleeps until LISTEN agent_journal_feed wakes it;
#   c: an autocommit call of a plpgsql function (read_feed + INSERT, then
#      ack_feed); its client is killed with SIGKILL mid-run and restarted,
#      later its backend is ended with pg_terminate_backend (it reconnects).
# Batch sizes vary (1 .. 1000) so that reads stop inside a feed row. Every
# client logs what the server acknowledged. Mid-run, a backend serving a
# writer is killed with SIGKILL (the postmaster restarts everything) and
# later the server is stopped with `pg_ctl stop -m immediate` and started;
# after each, every consumer's stored position must be at least every
# acknowledgement its client logged before (no acknowledged position lost).
# Then the writers stop, the consumers drain, and the checks:
#  (j) the journal: every acknowledged append is there with its event, no
#      entry nobody acknowledged, no rolled-back one, each agent 1..latest;
#  (c) for each consumer: no gap rows; the multiset of (agent, sequence,
#      token) it stored equals the journal's (nothing missing, nothing
#      twice, nothing rolled back); positions strictly increase in the order
#      it read them; per agent, in position order, the sequences are 1, 2,
#      3, ...; its stored position is the largest it stored and the feed's
#      last (feed_consumers: no lag); the batches its client logged are
#      disjoint and increasing, each stored with its row count (an
#      acknowledgement lost in a crash would be read again: overlap); a last
#      read_feed returns nothing;
#  (x) an entry has the same position for every consumer, a position is one
#      entry's; b was woken by notifications (the worker also came back
#      after each restart); no server process died but the one killed; no
#      unexpected ERROR in the server log; a's single statements never
#      failed (with 22023: ack_feed in the statement whose read_feed ticked
#      must accept the positions that tick handed out).
# Informational: rows, transactions, p50/p99/max of (read time -
# recorded_at) per consumer, clients' errors. Takes AJ_FEED_SECONDS + ~17 s.
# To see it fail: AJ_FEED_BREAK=unstored (consumer b acknowledges its 10th
# batch without storing it: (c) "missing" fails for b); AJ_FEED_BREAK=unacked
# (b stores its 10th batch without acknowledging it, then reads it again:
# (c) "stored twice" fails for b).
source "$(dirname "$0")/lib.bash"
T0=$SECONDS
PORT=${AJ_FEED_PGPORT:-54393}
CLUSTER_DIR=/tmp/aj_feed_cluster.$PORT
DATA=$CLUSTER_DIR/data
RUN_S=${AJ_FEED_SECONDS:-30}
SEED=${AJ_FEED_SEED:-$RANDOM}
BREAK=${AJ_FEED_BREAK:-}
AGENTS=100
WRITERS=8
CONSUMERS="a b c"
DB=aj_feed
PGBIN=$(pg_config --bindir)
PY=/usr/bin/python3
export PGCONNECT_TIMEOUT=3
[ "$RUN_S" -ge 10 ] 2>/dev/null || fail "AJ_FEED_SECONDS must be at least 10"
$PY -c 'import psycopg2' 2>/dev/null || fail "python3-psycopg2 needed (scripts/install-deps)"

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

declare -A CPID=()
WPIDS=()
cleanup() {
  local st=$?
  touch "$TMPD/writers.stop" "$TMPD/consumers.stop" 2>/dev/null || true
  for p in "${WPIDS[@]}" "${CPID[@]}"; do
    { kill -KILL "$p" && wait "$p"; } 2>/dev/null || true
  done
  if [ $st -ne 0 ] && [ -f "$CLUSTER_DIR/server.log" ]; then
    echo "--- server log (tail)"; tail -30 "$CLUSTER_DIR/server.log"
    for f in "$TMPD"/*.err; do
      [ -s "$f" ] && { echo "--- $(basename "$f") (tail)"; tail -3 "$f"; }
    done
  fi
  AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" stop >/dev/null 2>&1
  rm -rf "$TMPD"
  exit $st
}
trap cleanup EXIT

# ------------------------------------------------------------ the clients
cat >"$TMPD/feed.py" <<'PY'
# feed.py writer W SEED | feed.py consumer NAME STYLE SEED
import json, os, random, select, sys, time
import psycopg2
import psycopg2.extensions

DB = os.environ["AJ_FEED_DB"]
TMPD = os.environ["AJ_FEED_TMPD"]
AGENTS = int(os.environ["AJ_FEED_AGENTS"])
BREAK = os.environ.get("AJ_FEED_BREAK", "")


def agent(i):
    return "00000000-0000-0000-0000-%012d" % i


def connect(app, give_up):
    while True:
        try:
            c = psycopg2.connect(dbname=DB, application_name=app, connect_timeout=3)
            c.autocommit = True  # transactions are explicit BEGIN ... COMMIT
            return c
        except psycopg2.OperationalError:
            if time.time() > give_up:
                raise
            time.sleep(0.2)


def abandon(conn):
    """After an error: end the transaction, or drop a broken connection."""
    if conn is None or conn.closed:
        return None
    try:
        if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            conn.cursor().execute("ROLLBACK")
        return conn
    except psycopg2.Error:
        try:
            conn.close()
        except psycopg2.Error:
            pass
        return None


def log_file(client, what):
    """A client's line-buffered log in TMPD (<client>.<what>), appended to."""
    return open(os.path.join(TMPD, "%s.%s" % (client, what)), "a", buffering=1)


def writer(w, seed):
    rng = random.Random(seed)
    stop = os.path.join(TMPD, "writers.stop")
    acks, rolled, errs = (log_file("w%d" % w, x) for x in ("acks", "rolledback", "err"))
    app = "aj_feed_w%d" % w
    conn = None
    n = 0
    while not os.path.exists(stop):
        n += 1
        key = "w%d-%d" % (w, n)
        r = rng.random()
        rollback = r < 0.10
        if r < 0.25 and not rollback:  # a batch
            parts = [(rng.randint(1, AGENTS), rng.randint(2, 4))]
        elif r < 0.35:  # two agents in one transaction (locked in order)
            a1, a2 = sorted(rng.sample(range(1, AGENTS + 1), 2))
            parts = [(a1, 1), (a2, 1)]
        else:
            parts = [(rng.randint(1, AGENTS), 1)]
        pause = rng.random() < 0.3
        attempts, deadline = 0, time.time() + 60
        while True:
            attempts += 1
            try:
                if conn is None or conn.closed:
                    conn = connect(app, deadline)
                cur = conn.cursor()
                cur.execute("BEGIN")
                done = []
                for j, (a, k) in enumerate(parts):
                    pk = "%s-%d" % (key, j)
                    ev = [json.dumps({"type": "Step", "token": pk, "i": i}) for i in range(k)]
                    if k == 1:
                        cur.execute("SELECT agent_journal.append(%s, %s, %s::jsonb, NULL, %s)",
                                    (agent(a), n, ev[0], pk))
                    else:
                        cur.execute("SELECT agent_journal.append_batch(%s, %s, %s::jsonb[], NULL, %s)",
                                    (agent(a), n, ev, pk))
                    done.append((a, cur.fetchone()[0], k, pk))
                if pause:
                    cur.execute("SELECT pg_sleep(0.01)")
                if rollback:
                    cur.execute("ROLLBACK")
                    for a, s, k, pk in done:
                        rolled.write("%s\t%s\n" % (agent(a), pk))
                else:
                    cur.execute("COMMIT")
                    for a, s, k, pk in done:
                        acks.write("%s\t%d\t%d\t%s\t%d\n" % (agent(a), s, k, pk, attempts))
                break
            except psycopg2.Error as e:
                errs.write("%s attempt %d: %s %s %s\n" % (key, attempts, type(e).__name__, e.pgcode,
                                                          str(e).strip().replace("\n", " | ")))
                conn = abandon(conn)
                if rollback:
                    break  # it never commits anyway
                if time.time() > deadline:
                    errs.write("%s: not acknowledged after %d attempts\n" % (key, attempts))
                    sys.exit(1)
                time.sleep(0.05)
    sys.exit(0)


SINK = ("INSERT INTO feed_sink (consumer, position, agent_id, sequence, kind, recorded_at, read_at, token) "
        "SELECT %(c)s, position, agent_id, sequence, kind, recorded_at, clock_timestamp(), event->>'token' "
        "FROM agent_journal.read_feed(%(c)s, %(n)s)")
# a: one statement, autocommit: read (which ticks), store, acknowledge
STMT = ("WITH s AS (" + SINK + " RETURNING position), "
        "m AS (SELECT count(*) AS k, min(position) AS lo, max(position) AS hi FROM s) "
        "SELECT m.k, m.lo, m.hi FROM m, "
        "LATERAL (SELECT agent_journal.ack_feed(%(c)s, m.hi) WHERE m.hi IS NOT NULL) x")


def consumer(name, style, seed):
    rng = random.Random(seed)
    stop = os.path.join(TMPD, "consumers.stop")
    acks, errs, notes = (log_file(name, x) for x in ("acks", "err", "notified"))
    app = "aj_feed_%s" % name
    conn = None
    batches = 0
    while True:
        try:
            if conn is None or conn.closed:
                conn = connect(app, time.time() + 60)
                cur = conn.cursor()
                cur.execute("SELECT agent_journal.subscribe(%s, true)", (name,))
                if style == "txn":
                    cur.execute("LISTEN agent_journal_feed")
            cur = conn.cursor()
            n = rng.choice([1, 3, 17, 100, 250, 500, 1000])
            k, lo, hi = 0, None, None
            if style == "stmt":
                cur.execute(STMT, {"c": name, "n": n})
                row = cur.fetchone()
                if row:
                    k, lo, hi = row
            elif style == "func":
                pause = 0.02 if rng.random() < 0.25 else 0
                cur.execute("SELECT k, lo, hi FROM feed_consume(%s, %s, %s)", (name, n, pause))
                k, lo, hi = cur.fetchone()
            else:
                cur.execute("BEGIN")
                broken = BREAK and batches == 9
                if broken and BREAK == "unstored":  # acknowledged, never stored
                    cur.execute("SELECT position FROM agent_journal.read_feed(%(c)s, %(n)s)",
                                {"c": name, "n": n})
                else:
                    cur.execute(SINK + " RETURNING position", {"c": name, "n": n})
                pos = [p for (p,) in cur.fetchall()]
                if pos:
                    k, lo, hi = len(pos), min(pos), max(pos)
                    if not (broken and BREAK == "unacked"):  # stored, never acknowledged
                        cur.execute("SELECT agent_journal.ack_feed(%s, %s)", (name, hi))
                cur.execute("COMMIT")
                if broken and BREAK == "unacked" and k:
                    batches += 1
                    continue  # nothing acknowledged: not logged
            if k:
                batches += 1
                acks.write("%d\t%d\t%d\t%.6f\n" % (lo, hi, k, time.time()))
                continue
            if os.path.exists(stop):
                break
            if style == "txn":  # sleep until the worker's tick notifies
                if select.select([conn], [], [], 1.0)[0]:
                    conn.poll()
                    if conn.notifies:
                        notes.write("%d\n" % len(conn.notifies))
                        del conn.notifies[:]
            else:
                time.sleep(0.02)
        except psycopg2.Error as e:
            errs.write("%s\t%s\t%s\n" % (type(e).__name__, e.pgcode, str(e).strip().replace("\n", " | ")))
            conn = abandon(conn)
            time.sleep(0.05)
    sys.exit(0)


if sys.argv[1] == "writer":
    writer(int(sys.argv[2]), int(sys.argv[3]))
else:
    consumer(sys.argv[2], sys.argv[3], int(sys.argv[4]))
PY
export AJ_FEED_DB=$DB AJ_FEED_TMPD=$TMPD AJ_FEED_AGENTS=$AGENTS AJ_FEED_BREAK=$BREAK

# ------------------------------------------------------------ the cluster
# The worker connects to $DB, created below from a template that already
# has the extension; until then it fails to connect and is restarted.
AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR AJ_PG_CONF="shared_preload_libraries = 'agent_journal'
agent_journal.export_database = '$DB'
agent_journal.feed_tick_interval = 100
agent_journal.retention_interval = 1
restart_after_crash = on" \
  "$AJ_ROOT/scripts/cluster" start >/dev/null || fail "could not start the preloaded cluster"
eval "$(AJ_PGPORT=$PORT AJ_CLUSTER_DIR=$CLUSTER_DIR "$AJ_ROOT/scripts/cluster" env)"
export PGHOST PGPORT PGUSER PGDATABASE
createdb ${DB}_tmpl
q ${DB}_tmpl "CREATE EXTENSION agent_journal" >/dev/null
createdb -T ${DB}_tmpl $DB

# feed_sink: what the consumers stored, in the order they read it (id). No
# unique key: a row stored twice must be counted, not refused.
psql -X -q -v ON_ERROR_STOP=1 -d $DB >/dev/null <<'SQL'
CREATE TABLE feed_sink (id bigserial PRIMARY KEY, consumer text NOT NULL, position bigint NOT NULL,
  agent_id uuid NOT NULL, sequence bigint, kind text NOT NULL, recorded_at timestamptz,
  read_at timestamptz NOT NULL, token text, xact bigint NOT NULL DEFAULT txid_current());
CREATE INDEX ON feed_sink (consumer, position);
-- c: read_feed (outside a transaction block: it ticks), store, then
-- acknowledge in a later statement of the same transaction
CREATE FUNCTION feed_consume(c text, n bigint, pause float8, OUT k bigint, OUT lo bigint, OUT hi bigint)
LANGUAGE plpgsql AS $$
BEGIN
  WITH s AS (INSERT INTO feed_sink (consumer, position, agent_id, sequence, kind, recorded_at, read_at, token)
             SELECT c, r.position, r.agent_id, r.sequence, r.kind, r.recorded_at, clock_timestamp(), r.event->>'token'
             FROM agent_journal.read_feed(c, n) r RETURNING position)
  SELECT count(*), min(position), max(position) INTO k, lo, hi FROM s;
  IF k > 0 THEN
    IF pause > 0 THEN PERFORM pg_sleep(pause); END IF;
    PERFORM agent_journal.ack_feed(c, hi);
  END IF;
END $$;
SQL
for c in $CONSUMERS; do
  expect_eq "consumer $c subscribed from the beginning" "$(q $DB "SELECT agent_journal.subscribe('$c', true)")" 0
done

worker_connected() {
  [ "$(q $DB "SELECT count(*) FROM pg_stat_activity
              WHERE backend_type = 'agent_journal exporter' AND datname = '$DB'")" = 1 ]
}
wait_for 20 "the worker is connected to $DB" worker_connected

log_size() { stat -c %s "$CLUSTER_DIR/server.log" 2>/dev/null || echo 0; }
# log_has PATTERN: server.log has PATTERN after byte offset $log_at
log_has() { tail -c +"$((log_at + 1))" "$CLUSTER_DIR/server.log" >"$TMPD/server.new"; grep -q -- "$1" "$TMPD/server.new"; }
wait_ready() {  # wait_ready SECONDS
  local end=$((SECONDS + $1))
  until pg_isready -q -d $DB && q $DB "SELECT 1" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}
acked() { cat "$TMPD"/w*.acks 2>/dev/null | wc -l; }
batches() { cat "$TMPD/$1.acks" 2>/dev/null | wc -l; }
style() { case $1 in a) echo stmt ;; b) echo txn ;; c) echo func ;; esac; }
start_consumer() {  # start_consumer NAME SEED
  $PY "$TMPD/feed.py" consumer "$1" "$(style "$1")" "$2" &
  CPID[$1]=$!
}
# positions_kept WHAT: every consumer's stored position is at least the
# largest acknowledgement its client logged so far (logs first: whatever
# they hold was committed before the query).
positions_kept() {
  local c logged stored sunk
  for c in $CONSUMERS; do
    logged=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { print m }' "$TMPD/$c.acks")
    read -r stored sunk <<<"$(q $DB "SELECT position, (SELECT coalesce(max(position), 0) FROM feed_sink
                                     WHERE consumer = '$c') FROM agent_journal.feed_subscriptions
                                   WHERE consumer = '$c'" | tr '|' ' ')"
    [ "$stored" -ge "$logged" ] 2>/dev/null \
      || fail "$1: consumer $c's stored position is $stored, but its client had an acknowledgement of $logged"
    [ "$stored" = "$sunk" ] || fail "$1: consumer $c's stored position is $stored, the largest it stored $sunk"
    ok "$1: consumer $c's stored position $stored = the largest it stored, >= its last logged acknowledgement $logged"
  done
}

# ------------------------------------------------------------ the run
for c in $CONSUMERS; do
  : >"$TMPD/$c.acks"
  start_consumer $c $((SEED * 10 + $(printf '%d' "'$c")))
done
for w in $(seq 1 $WRITERS); do
  : >"$TMPD/w$w.acks"
  $PY "$TMPD/feed.py" writer "$w" $((SEED * 100 + w)) &
  WPIDS+=($!)
done
t_start=$SECONDS
el() { echo "at $((SECONDS - t_start)) s"; }
at() { while [ $((SECONDS - t_start)) -lt "$1" ]; do sleep 0.2; done; }  # at SECONDS-into-the-run
ok "run: $WRITERS writers over $AGENTS agents for ${RUN_S}s, consumers $CONSUMERS (seed $SEED${BREAK:+, break $BREAK})"

# 1. kill consumer c's client (SIGKILL: its statement in flight may still
# commit), restart it
at $((RUN_S * 20 / 100))
[ "$(acked)" -gt 0 ] || fail "writers acknowledged nothing"
[ "$(batches c)" -gt 0 ] || fail "consumer c stored nothing in $((SECONDS - t_start)) s"
kill -KILL "${CPID[c]}"; wait "${CPID[c]}" 2>/dev/null || true
ok "consumer c's client killed with SIGKILL after $(batches c) batches ($(el))"
sleep 1
start_consumer c $((SEED + 77))
ok "consumer c restarted"

# 2. end consumer c's backend; the client reconnects
at $((RUN_S * 33 / 100))
c_connected() { [ "$(q $DB "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aj_feed_c'")" = 1 ]; }
wait_for 10 "the restarted consumer c is connected" c_connected
expect_eq "pg_terminate_backend of consumer c's backend ($(el))" \
  "$(q $DB "SELECT bool_and(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'aj_feed_c'")" t

# agent_journal_appended_entries_total as rendered now (0.10.0: partly
# from the unlogged tally_deltas, which a crash empties)
appended_metric() { q $DB "SELECT value::bigint FROM agent_journal.metric_samples
                           WHERE name = 'agent_journal_appended_entries_total'"; }
# 3. SIGKILL a backend serving a writer, preferably inside a write
# transaction: the postmaster restarts every process (crash recovery)
at $((RUN_S * 45 / 100))
appended_before_crash=$(appended_metric)
log_at=$(log_size)
victim=""
end=$((SECONDS + 20))
while [ -z "$victim" ]; do
  [ $SECONDS -lt $end ] || fail "could not kill a writer backend (postmaster never reported one)"
  row=$(q $DB "SELECT pid || ' ' || application_name FROM pg_stat_activity
               WHERE application_name LIKE 'aj_feed_w%' AND backend_xid IS NOT NULL LIMIT 1" 2>/dev/null || true)
  [ -n "$row" ] && kill -KILL "${row%% *}" 2>/dev/null || continue
  for _ in $(seq 1 20); do
    if log_has "(PID ${row%% *}) was terminated by signal 9"; then victim=$row; break; fi
    sleep 0.1
  done
done
ok "killed backend ${victim%% *} (serving ${victim#* }, in a write transaction) with SIGKILL ($(el))"
wait_ready 30 || fail "server did not come back after crash recovery"
log_has "all server processes terminated; reinitializing" || fail "server.log does not show a crash restart"
ok "crash recovery: every server process restarted ($(el))"
appended_after_crash=$(appended_metric)
[ "$appended_after_crash" -ge "$appended_before_crash" ] ||
  fail "agent_journal_appended_entries_total went down in the crash: $appended_before_crash, then $appended_after_crash"
ok "agent_journal_appended_entries_total did not go down in the crash ($appended_before_crash, then $appended_after_crash)"
positions_kept "after the crash"
wait_for 20 "the worker is back after the crash" worker_connected

# 4. immediate stop while everything runs, then start
at $((RUN_S * 70 / 100))
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null || fail "pg_ctl stop -m immediate"
ok "server stopped with -m immediate under load ($(el))"
sleep 1
as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$CLUSTER_DIR/server.log" -w -t 60 start >/dev/null \
  || fail "pg_ctl start after the immediate stop"
wait_ready 30 || fail "server not ready after the restart"
ok "server restarted, recovered from the immediate stop ($(el))"
positions_kept "after the immediate stop"
wait_for 20 "the worker is back after the immediate stop" worker_connected

# 5. the writers stop (each finishes the operation it is in)
at "$RUN_S"
touch "$TMPD/writers.stop"
wait_writers 70 "${WPIDS[@]}"
WPIDS=()
ok "writers stopped after $((SECONDS - t_start)) s: $(acked) appends acknowledged (test time $((SECONDS - T0)) s)"

# 6. the consumers drain: nothing pending, every position at the feed's end
drained() {
  [ "$(q $DB "SELECT (SELECT count(*) FROM agent_journal.feed_pending) = 0
                 AND (SELECT count(*) FROM agent_journal.feed_appends WHERE first_sequence <> 0) = 0
                 AND (SELECT bool_and(c.position = s.last_position)
                      FROM agent_journal.feed_subscriptions c, agent_journal.feed_state s
                      WHERE c.consumer IN ('a', 'b', 'c'))")" = t ]
}
wait_for 30 "the consumers drained the feed" drained
touch "$TMPD/consumers.stop"
end=$((SECONDS + 20))
for c in $CONSUMERS; do
  while kill -0 "${CPID[$c]}" 2>/dev/null; do
    [ $SECONDS -lt $end ] || fail "consumer $c did not stop"
    sleep 0.1
  done
  wait "${CPID[$c]}" || fail "consumer $c exited with an error"
  unset "CPID[$c]"
done
ok "consumers stopped"
for c in $CONSUMERS; do  # outside a transaction block: this read ticks
  expect_eq "consumer $c: a last read_feed returns" "$(q $DB "SELECT count(*) FROM agent_journal.read_feed('$c')")" 0
done

# ------------------------------------------------------------ the checks
ok "drained at test time $((SECONDS - T0)) s"
cat "$TMPD"/w*.acks >"$TMPD/acks.tsv"
cat "$TMPD"/w*.rolledback >"$TMPD/rolledback.tsv" 2>/dev/null || : >"$TMPD/rolledback.tsv"
for c in $CONSUMERS; do sed "s/^/$c\t/" "$TMPD/$c.acks"; done >"$TMPD/cacks.tsv"
psql -X -q -v ON_ERROR_STOP=1 -d $DB >/dev/null <<SQL || fail "loading the clients' logs"
CREATE TABLE w_acks (agent_id uuid, last_seq bigint, k int, token text, attempts int);
CREATE TABLE w_rolledback (agent_id uuid, token text);
CREATE TABLE c_acks (consumer text, lo bigint, hi bigint, k int, t float8);
\copy w_acks FROM '$TMPD/acks.tsv'
\copy w_rolledback FROM '$TMPD/rolledback.tsv'
\copy c_acks FROM '$TMPD/cacks.tsv'
-- the acknowledged entries, one row each
CREATE VIEW w_acked AS
  SELECT agent_id, last_seq - k + 1 + i AS sequence, token, i FROM w_acks, generate_series(0, k - 1) i;
SQL
read -r n_acks n_entries n_batch n_multi n_retried <<<"$(q $DB "
  SELECT (SELECT count(*) FROM w_acked), (SELECT count(*) FROM agent_journal.entries),
         (SELECT count(*) FROM w_acks WHERE k > 1),
         (SELECT count(*) FROM w_acks WHERE token !~ '-0\$'),
         (SELECT count(*) FROM w_acks WHERE attempts > 1)" | tr '|' ' ')"
n_rb=$(q $DB "SELECT count(*) FROM w_rolledback")
ok "writers: $n_acks entries acknowledged ($n_batch batches, $n_multi second appends of two-agent transactions, $n_rb appends rolled back, $n_retried acknowledged after retries); the journal has $n_entries"
[ "$n_batch" -gt 0 ] && [ "$n_multi" -gt 0 ] && [ "$n_rb" -gt 0 ] || fail "the writers' mix lacks batches, two-agent transactions or rollbacks"
[ "$n_retried" -gt 0 ] || fail "no append needed a retry: the crash and the restart were not exercised"

# (j) the journal
expect_eq "(j) acknowledged entries missing or with another event" "$(q $DB "
  SELECT count(*) FROM w_acked a LEFT JOIN agent_journal.entries e
    ON e.agent_id = a.agent_id AND e.sequence = a.sequence
   AND e.event->>'token' = a.token AND (e.event->>'i')::int = a.i
  WHERE e.sequence IS NULL")" 0
expect_eq "(j) (agent, sequence) acknowledged twice" \
  "$(q $DB "SELECT count(*) - count(DISTINCT (agent_id, sequence)) FROM w_acked")" 0
expect_eq "(j) entries nobody acknowledged" "$(q $DB "
  SELECT count(*) FROM agent_journal.entries e
  WHERE NOT EXISTS (SELECT FROM w_acked a WHERE a.agent_id = e.agent_id AND a.sequence = e.sequence)")" 0
expect_eq "(j) rolled-back appends in the journal" "$(q $DB "
  SELECT count(*) FROM agent_journal.entries e JOIN w_rolledback r ON r.token = e.event->>'token'")" 0
expect_eq "(j) agents whose entries are not 1..latest" "$(q $DB "
  SELECT count(*) FROM (SELECT agent_id FROM agent_journal.entries GROUP BY 1
    HAVING min(sequence) <> 1 OR max(sequence) <> count(*) OR count(DISTINCT sequence) <> count(*)) g")" 0

# (c) each consumer
last=$(q $DB "SELECT last_position FROM agent_journal.feed_state")
for c in $CONSUMERS; do
  expect_eq "(c) $c: gap rows" "$(q $DB "SELECT count(*) FROM feed_sink WHERE consumer = '$c' AND kind = 'gap'")" 0
  expect_eq "(c) $c: (agent, sequence) stored twice" "$(q $DB "
    SELECT count(*) - count(DISTINCT (agent_id, sequence)) FROM feed_sink WHERE consumer = '$c'")" 0
  expect_eq "(c) $c: journal entries missing from what it stored" "$(q $DB "
    SELECT count(*) FROM (SELECT agent_id, sequence, event->>'token' FROM agent_journal.entries
      EXCEPT ALL SELECT agent_id, sequence, token FROM feed_sink WHERE consumer = '$c') d")" 0
  expect_eq "(c) $c: stored rows not in the journal (or stored twice)" "$(q $DB "
    SELECT count(*) FROM (SELECT agent_id, sequence, token FROM feed_sink WHERE consumer = '$c'
      EXCEPT ALL SELECT agent_id, sequence, event->>'token' FROM agent_journal.entries) d")" 0
  expect_eq "(c) $c: rolled-back appends delivered" "$(q $DB "
    SELECT count(*) FROM feed_sink s JOIN w_rolledback r ON r.token = s.token WHERE s.consumer = '$c'")" 0
  expect_eq "(c) $c: rows whose position does not exceed the one read before" "$(q $DB "
    SELECT count(*) FROM (SELECT position, lag(position) OVER (ORDER BY id) AS prev
      FROM feed_sink WHERE consumer = '$c') s WHERE position <= prev")" 0
  expect_eq "(c) $c: rows out of per-agent order (in position order, sequences are not 1, 2, 3, ...)" "$(q $DB "
    SELECT count(*) FROM (SELECT sequence, row_number() OVER (PARTITION BY agent_id ORDER BY position) AS rn
      FROM feed_sink WHERE consumer = '$c') s WHERE sequence <> rn")" 0
  expect_eq "(c) $c: stored position, largest position stored, feed's last" "$(q $DB "
    SELECT (SELECT position FROM agent_journal.feed_subscriptions WHERE consumer = '$c') || ','
           || (SELECT max(position) FROM feed_sink WHERE consumer = '$c')")" "$last,$last"
  expect_eq "(c) $c: feed_consumers position, lag_entries, lag_seconds" "$(q $DB "
    SELECT position || ',' || lag_entries || ',' || lag_seconds FROM agent_journal.feed_consumers
    WHERE consumer = '$c'")" "$last,0,0"
  expect_eq "(c) $c: logged batches overlapping the one before (an acknowledgement lost, read again)" "$(q $DB "
    SELECT count(*) FROM (SELECT lo, lag(hi) OVER (ORDER BY t) AS prev_hi FROM c_acks WHERE consumer = '$c') b
    WHERE lo <= prev_hi")" 0
  expect_eq "(c) $c: logged batches not stored as logged" "$(q $DB "
    SELECT count(*) FROM c_acks b WHERE consumer = '$c' AND b.k <> (SELECT count(*) FROM feed_sink s
      WHERE s.consumer = '$c' AND s.position BETWEEN b.lo AND b.hi)")" 0
done
expect_eq "(x) entries with different positions for different consumers" "$(q $DB "
  SELECT count(*) FROM (SELECT agent_id, sequence FROM feed_sink GROUP BY 1, 2
                        HAVING count(DISTINCT position) <> 1) d")" 0
expect_eq "(x) entries sharing a position" "$(q $DB "
  SELECT count(*) FROM (SELECT position FROM feed_sink GROUP BY 1 HAVING count(DISTINCT (agent_id, sequence)) <> 1) d")" 0
q $DB "SELECT format('consumer %s: %s rows in %s transactions (%s logged by its client), read - recorded_at p50 %s ms, p99 %s ms, max %s ms',
         consumer, count(*), count(DISTINCT xact),
         (SELECT count(*) FROM c_acks b WHERE b.consumer = s.consumer),
         round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM read_at - recorded_at) * 1000)::numeric, 1),
         round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM read_at - recorded_at) * 1000)::numeric, 1),
         round(max(extract(epoch FROM read_at - recorded_at) * 1000)::numeric, 1))
       FROM feed_sink s GROUP BY consumer ORDER BY consumer" | sed 's/^/info: /'

notified=$(cat "$TMPD/b.notified" 2>/dev/null | wc -l)
[ "$notified" -gt 0 ] || fail "(x) consumer b was never woken by NOTIFY agent_journal_feed"
ok "(x) consumer b was woken by notifications $notified times"
for c in $CONSUMERS; do
  [ -s "$TMPD/$c.err" ] && echo "info: consumer $c's errors by SQLSTATE: $(cut -f1,2 "$TMPD/$c.err" | sort | uniq -c | tr -s ' \n' ' ')"
done
cat "$TMPD"/w*.err 2>/dev/null | awk '{ print $4, $5 }' | sort | uniq -c | sed 's/^ */info: writer errors: /'

signals=$(grep 'terminated by signal' "$CLUSTER_DIR/server.log" | grep -v -- "(PID ${victim%% *}) was terminated by signal 9" || true)
[ -z "$signals" ] || { echo "$signals" | head -4; fail "(x) a server process died other than the one killed"; }
ok "(x) no server process died other than the one killed"
# Expected ERRORs: what the kills and the restarts interrupted.
grep 'ERROR:' "$CLUSTER_DIR/server.log" \
  | grep -v -e 'canceling statement due to user request' -e 'terminating connection' \
            -e "beyond the feed's last position" >"$TMPD/errors" || true
[ ! -s "$TMPD/errors" ] || { head -5 "$TMPD/errors"; fail "(x) $(wc -l <"$TMPD/errors") unexpected ERRORs in the server log"; }
ok "(x) no unexpected ERROR in the server log"
# a's statement: read_feed (which ticks), INSERT and ack_feed in one
# autocommit statement. Every acknowledgement is of a position it read.
n22023=$(grep -c $'\t22023\t' "$TMPD/a.err" || true)
[ "$n22023" = 0 ] || fail "(x) consumer a: $n22023 of its single statements failed with 22023 ($(grep -m1 $'\t22023\t' "$TMPD/a.err" | cut -f3))"
ok "(x) consumer a's single statements never failed with 22023"
# journal_appended: the writers' notes carried their counts (0.11.0: the
# library is preloaded and its worker ticks here) and the ticks added them
# to tallies; each restart emptied feed_appends and the worker's first
# tick made up for what the lost notes carried, so the counter is the
# journal's own count (the agents' latest sequences; none was forgotten)
expect_eq "(x) the writers wrote no tally row (their notes carried the counts)" \
  "$(q $DB "SELECT count(*) FROM agent_journal.tally_deltas WHERE name = 'journal_appended'")" "0"
log_has "agent_journal: the feed's unlogged notes were lost" || fail "(x) no tick rebuilt the feed's notes after the restarts"
ok "(x) a tick rebuilt the feed's notes and the count after a restart"
expect_eq "(x) agent_journal_appended_entries_total is the journal's count after the crash and the immediate stop" \
  "$(appended_metric)" "$(q $DB "SELECT sum(latest_sequence) FROM agent_journal.agents")"
echo "feed: all checks passed in $((SECONDS - T0)) s"
