// agent_loop: a durable agent loop on agent_journal, the pattern the README
// teaches. One file, C++17 and libpq, nothing else.
//
//   agent_loop --conninfo "<libpq conninfo>" --agent <uuid> --iterations N
//              [--step-ms M] [--service NAME] [--state-every K]
//              [--worker NAME [--lease-ttl-ms T] [--claim-wait-ms W]]
//
// The loop keeps nothing that matters in memory only: everything it knows
// is rebuilt from the agent's journal, so a process killed at any point
// (kill -9 included) is simply started again with the same arguments and
// carries on where the journal says it stopped. Each iteration k journals
// three steps, where S is the running sum after iteration k-1 (the "work"
// of this toy agent):
//
//   {"type": "Thought", "iteration": k, "text": "..."}
//   {"type": "ToolCall", "iteration": k, "tool": "add", "args": {"a": S, "b": k}, "result": S+k}
//   {"type": "IterationCompleted", "iteration": k, "result": S+k}
//
// and every K iterations (--state-every, default 5, 0 = never) it saves the
// state those steps fold into, so that a restart reads only what follows it:
//
//   save_state(agent, {"iteration": k, "sum": S+k, "sequence": q}, through_sequence => q)
//
// where q is the sequence of iteration k's IterationCompleted.
// Iterations count from 1: last_completed_iteration() answers 0 for "none".
// The rules that make it safe:
//
// 1. State changes only by folding the journal. On start the loop calls
//    resume() once: its first row, the latest saved state (if any), is the
//    fold of every entry up to that state's sequence, and the entries after
//    it are folded in one by one; without a state it is a replay from the
//    first entry. After every append the loop replays from the last
//    sequence it knows (if compaction removed entries it has not folded, it
//    calls resume() again). So a running process and a restarted one
//    compute their state the same way, and a restart reads O(entries since
//    the latest state), not the agent's whole life.
// 2. Every append passes expected_sequence = the latest sequence folded.
//    If anyone else appended meanwhile, the call fails with SQLSTATE 40001:
//    the loop replays what it missed and decides again.
// 3. Every append carries an idempotency key derived from (agent, iteration,
//    step), and events are built only from folded state, so repeating a
//    call whose reply was lost (connection failure) returns the original
//    sequence instead of journaling the step twice.
// 4. A step and its metrics commit in one transaction: a crash never keeps
//    one without the other. A transaction repeated after a lost reply may
//    record its metrics twice: metrics are at least once, steps exactly once.
//    So does a saved state with the IterationCompleted it covers. The state
//    is what folding that entry gives (the same fold as a replay: only
//    journaled data), so a restarted process, or a repeated transaction,
//    saves the same one; saving again at the same sequence replaces it.
//    Entries up to the latest state may then be compacted (compact(agent,
//    through), or a retention policy): the loop never needs them again.
// 5. With --worker, the loop claims the agent's lease (claim_agent) before
//    it resumes, and every append and save_state carries the lease's
//    token. The lease is renewed in a step's transaction, after its
//    append, once a third of the ttl has passed since the last renewal:
//    a process that stalled (stopped, swapped out, partitioned) wakes up
//    to a write its token fences. A write refused with SQLSTATE 55006 means the lease is no
//    longer this process's (it expired; another worker may have taken the
//    agent over and carried on): the loop stops writing and exits 3, and
//    never retries without the token. The lease is checked before the
//    idempotency key, so even a step that did commit is refused then.
//    While another worker holds a live lease, claiming waits
//    (--claim-wait-ms, by default twice the ttl: long enough for a dead
//    holder's lease to expire), then exits 4. At the end the loop releases
//    the lease; on any other exit it expires after the ttl. Give each
//    process a worker name of its own (host and pid, say): a claim under
//    the holder's name gets the holder's token back, so two processes
//    sharing a name are not fenced from each other.
//
// Without --worker, run one process per agent. A second one does not
// corrupt the journal (same keys, same events: its appends return the
// first one's sequences), but it counts the metrics again. With --worker,
// the lease sees to that: only its holder writes, another worker waits
// for it, and a holder that stalled past the ttl is fenced when it wakes.
// (A loop without --worker is refused too, 55006, while a lease is live:
// exit 3.)
//
// Exit codes: 0 done, 1 usage, 2 database error, 3 fenced (a write was
// refused by a lease, 55006: nothing more is written), 4 the agent is
// leased to another worker (still, after --claim-wait-ms).
#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 1;
constexpr int kExitDatabase = 2;
constexpr int kExitFenced = 3;  // a write refused by a lease (55006)
constexpr int kExitHeld = 4;    // another worker still holds the lease

constexpr int kReplayPage = 500;      // journal entries per resume or replay round trip
constexpr int kConnectAttempts = 40;  // x kConnectDelay: give up after ~10 s
constexpr auto kConnectDelay = std::chrono::milliseconds(250);
constexpr int kMaxConflicts = 1000;             // 40001s in a row before giving up
constexpr int kMaxResumes = 10;                 // resumes in a row that compaction overtook
constexpr int kMaxLeaseTtlMs = 86400000;        // claim_agent takes a ttl of at most a day
const std::string kSqlstateConflict = "40001";  // expected_sequence was not the latest
const std::string kSqlstateFenced = "55006";    // not the agent's live lease

using Clock = std::chrono::steady_clock;

// The steps of an iteration, in order: names of the entry kinds and the
// suffixes of their idempotency keys.
enum Step { kThought = 0, kToolCall = 1, kCompleted = 2 };
const char *const kStepKind[] = {"Thought", "ToolCall", "IterationCompleted"};
const char *const kStepKey[] = {"thought", "tool_call", "completed"};

struct Options {
  std::string conninfo;  // "": PGHOST, PGPORT, PGDATABASE, ... from the environment
  std::string agent;
  int iterations = 0;
  int step_ms = 50;
  std::string service = "agent-loop";
  int state_every = 5;  // save the state every state_every iterations; 0: never
  std::string worker;   // "": no lease
  int lease_ttl_ms = 30000;
  int claim_wait_ms = -1;  // -1: twice the ttl
};

// ------------------------------------------------------------- libpq

// A statement that failed. connection_lost: the session is gone and the
// statement's outcome is unknown (it may have committed).
struct DbError : std::runtime_error {
  DbError(const std::string &msg, std::string state, bool lost)
      : std::runtime_error(msg), sqlstate(std::move(state)), connection_lost(lost) {}
  std::string sqlstate;
  bool connection_lost;
};

// A write refused by a lease (55006): this process must stop writing.
struct Fenced : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Another worker held a live lease for all of --claim-wait-ms.
struct Held : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Result = std::unique_ptr<PGresult, decltype(&PQclear)>;

class Connection {
 public:
  explicit Connection(std::string conninfo) : conninfo_(std::move(conninfo)) {}
  ~Connection() { PQfinish(conn_); }
  Connection(const Connection &) = delete;
  Connection &operator=(const Connection &) = delete;

  // (Re)connects, trying `attempts` times: a server that is restarting
  // takes a few seconds to accept connections again.
  void connect(int attempts = kConnectAttempts) {
    for (int attempt = 1;; ++attempt) {
      PQfinish(conn_);
      conn_ = PQconnectdb(conninfo_.c_str());
      if (PQstatus(conn_) == CONNECTION_OK) return;
      if (attempt >= attempts) throw DbError(one_line(PQerrorMessage(conn_)), "", true);
      std::this_thread::sleep_for(kConnectDelay);
    }
  }

  // Runs one statement with text parameters (PQexecParams: values never
  // become SQL text); throws DbError unless it succeeded.
  Result exec(const char *sql, const std::vector<std::string> &params = {}) {
    std::vector<const char *> values;
    for (const std::string &p : params) values.push_back(p.c_str());
    Result r(PQexecParams(conn_, sql, static_cast<int>(values.size()), nullptr, values.data(),
                          nullptr, nullptr, 0),
             &PQclear);
    const ExecStatusType status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return r;
    const char *state = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
    const char *msg = r ? PQresultErrorMessage(r.get()) : "";
    throw DbError(one_line(*msg ? msg : PQerrorMessage(conn_)), state ? state : "",
                  PQstatus(conn_) != CONNECTION_OK);
  }

  // A statement that is safe to repeat (a read; a claim by the worker that
  // holds the lease returns the same token), so on a lost connection it
  // reconnects and runs it again.
  Result repeatable(const char *sql, const std::vector<std::string> &params) {
    for (int attempt = 1;; ++attempt) {
      try {
        return exec(sql, params);
      } catch (const DbError &e) {
        if (!e.connection_lost || attempt == kConnectAttempts) throw;
        std::fprintf(stderr, "agent_loop: connection lost (%s); reconnecting\n", e.what());
        connect();
      }
    }
  }

  // Ends the current transaction. If the connection is gone, so is the
  // transaction: reconnect.
  void rollback() {
    try {
      exec("ROLLBACK");
    } catch (const DbError &e) {
      if (!e.connection_lost) throw;
      connect();
    }
  }

 private:
  // libpq's messages end in a newline and may span lines: make them one.
  static std::string one_line(const char *msg) {
    std::string out;
    for (const char *c = msg; *c; ++c) {
      const bool space = *c == '\n' || *c == '\t' || *c == ' ';
      if (!space)
        out += *c;
      else if (!out.empty() && out.back() != ' ')
        out += ' ';
    }
    if (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
  }

  std::string conninfo_;
  PGconn *conn_ = nullptr;
};

// ------------------------------------------------------------- state

// What the loop knows, all of it derived from the journal.
struct State {
  int64_t latest = 0;     // the last sequence folded
  bool started = false;   // the journal holds the Started event
  int completed = 0;      // the last iteration with an IterationCompleted
  int steps_done = 0;     // steps of iteration completed + 1 already journaled
  long long sum = 0;      // the running sum after iteration `completed`
  long long pending = 0;  // the ToolCall result of iteration completed + 1
};

// Folds one journal entry into the state. Kinds the loop does not know (an
// operator's note, say) only move `latest`.
void apply(State &st, int64_t sequence, int iteration, const std::string &kind, long long result) {
  st.latest = sequence;
  const bool current = iteration == st.completed + 1;
  if (kind == "Started") {
    st.started = true;
  } else if (kind == kStepKind[kThought] && current) {
    st.steps_done = 1;
  } else if (kind == kStepKind[kToolCall] && current) {
    st.steps_done = 2;
    st.pending = result;
  } else if (kind == kStepKind[kCompleted] && current) {
    st.completed = iteration;
    st.sum = result;
    st.steps_done = 0;
  }
}

// The state to save with save_state: the loop's state right after an
// IterationCompleted (started, `completed` iterations done, nothing of the
// next one journaled), which these three numbers say all of.
std::string state_json(const State &st) {
  return R"({"iteration": )" + std::to_string(st.completed) + R"(, "sum": )" +
         std::to_string(st.sum) + R"(, "sequence": )" + std::to_string(st.latest) + "}";
}

// What the fold reads of a row of replay() or resume(): sequence,
// iteration, kind, a step's result and, for resume()'s state row, the
// state's fields. NULL reads as "".
const std::string kFoldColumns =
    "sequence, iteration, kind, event ->> 'result', "
    "event ->> 'iteration', event ->> 'sum', event ->> 'sequence'";

// Folds row i of a replay() or resume() result. False: the journal has no
// entry st.latest + 1 (it is gap-free, so compaction removed it).
bool fold_row(State &st, const PGresult *r, int i) {
  const int64_t sequence = std::strtoll(PQgetvalue(r, i, 0), nullptr, 10);
  if (sequence != st.latest + 1) return false;
  apply(st, sequence, std::atoi(PQgetvalue(r, i, 1)), PQgetvalue(r, i, 2),
        std::strtoll(PQgetvalue(r, i, 3), nullptr, 10));
  return true;
}

// Replays the journal after st.latest to its end, kReplayPage entries at a
// time. False: an entry the state lacks was compacted (the caller resumes).
bool replay_after(Connection &db, const Options &o, State &st) {
  for (;;) {
    Result r =
        db.repeatable(("SELECT " + kFoldColumns + " FROM agent_journal.replay($1, $2, $3)").c_str(),
                      {o.agent, std::to_string(st.latest + 1), std::to_string(kReplayPage)});
    const int rows = PQntuples(r.get());
    for (int i = 0; i < rows; ++i)
      if (!fold_row(st, r.get(), i)) return false;
    if (rows < kReplayPage) return true;
  }
}

// Where a resume started, for the start-up line.
struct ResumedFrom {
  int64_t state_sequence = 0;  // 0: no saved state
  int state_iteration = 0;
  int64_t entries = 0;  // entries folded after the state (or from the first, without one)
};

// Rebuilds the state from scratch in one round trip: resume() returns the
// latest saved state (the fold of every entry up to its sequence) and then
// the entries after it, kReplayPage at most (more, if any, are replayed).
// Without a state it is a replay from the first entry. resume() reads the
// state and its entries in one snapshot and raises 55000 rather than skip
// entries compacted after the state; a compaction between two pages is
// overtaken by resuming again.
ResumedFrom resume(Connection &db, const Options &o, State &st) {
  for (int attempt = 1;; ++attempt) {
    Result r =
        db.repeatable(("SELECT " + kFoldColumns + " FROM agent_journal.resume($1, $2)").c_str(),
                      {o.agent, std::to_string(kReplayPage)});
    const int rows = PQntuples(r.get());
    State fresh;
    ResumedFrom from;
    int i = 0;
    if (rows > 0 && std::strcmp(PQgetvalue(r.get(), 0, 2), "state") == 0) {
      // The loop's own state (state_json): check that it names the sequence
      // and iteration resume() says it covers, then take it as the fold so far.
      const int64_t through = std::strtoll(PQgetvalue(r.get(), 0, 0), nullptr, 10);
      const int iteration = std::atoi(PQgetvalue(r.get(), 0, 1));
      if (PQgetisnull(r.get(), 0, 4) || PQgetisnull(r.get(), 0, 5) ||
          std::atoi(PQgetvalue(r.get(), 0, 4)) != iteration ||
          std::strtoll(PQgetvalue(r.get(), 0, 6), nullptr, 10) != through)
        throw DbError("the saved state at sequence " + std::to_string(through) +
                          " is not one this loop saved: cannot resume from it",
                      "", false);
      fresh.latest = through;
      fresh.started = true;
      fresh.completed = iteration;
      fresh.sum = std::strtoll(PQgetvalue(r.get(), 0, 5), nullptr, 10);
      from.state_sequence = through;
      from.state_iteration = iteration;
      i = 1;
    }
    const int entries = rows - i;
    for (; i < rows; ++i)
      if (!fold_row(fresh, r.get(), i))  // one snapshot: trying again finds the same hole
        throw DbError("journal has no entry " + std::to_string(fresh.latest + 1) +
                          " (compacted, and no saved state covers it): cannot rebuild the "
                          "loop's state",
                      "", false);
    const int64_t page_end = fresh.latest;
    if (entries < kReplayPage || replay_after(db, o, fresh)) {
      from.entries = entries + (fresh.latest - page_end);
      st = fresh;
      return from;
    }
    if (attempt == kMaxResumes)
      throw DbError("journal has no entry " + std::to_string(fresh.latest + 1) +
                        ": compacted while resuming, " + std::to_string(attempt) + " times",
                    "", false);
  }
}

// Folds what was journaled after st.latest, which the caller knows is no
// longer the latest (it has just appended, or was told 40001): a replay or,
// if compaction removed entries the state lacks (a hole, or nothing left
// after st.latest), a resume.
void catch_up(Connection &db, const Options &o, State &st) {
  const int64_t before = st.latest;
  if (replay_after(db, o, st) && st.latest > before) return;
  std::fprintf(stderr, "agent_loop: journal has no entry %lld (compacted); resuming\n",
               static_cast<long long>(st.latest + 1));
  resume(db, o, st);
}

// ------------------------------------------------------------- the lease

// The agent's lease while this process holds it (--worker): the token every
// append carries, and when the last claim or renewal was sent (its expiry
// is at least a ttl after that, on the server's clock).
struct Lease {
  int64_t token = 0;  // 0: no lease (no --worker)
  Clock::time_point renewed;
};

// Claims the agent for o.worker. While another worker holds a live lease,
// claim_agent answers NULL: try again every tenth of the ttl until
// --claim-wait-ms has passed, then throw Held. Safe to repeat after a lost
// reply: the holder claiming again gets its token back, extended.
Lease claim(Connection &db, const Options &o) {
  const int wait_ms = o.claim_wait_ms >= 0 ? o.claim_wait_ms : 2 * o.lease_ttl_ms;
  const auto poll = std::chrono::milliseconds(std::min(1000, std::max(10, o.lease_ttl_ms / 10)));
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
  for (bool waiting = false;; waiting = true) {
    Lease lease;
    lease.renewed = Clock::now();
    Result r = db.repeatable(
        "SELECT agent_journal.claim_agent($1, $2, $3::float8 * interval '1 millisecond')",
        {o.agent, o.worker, std::to_string(o.lease_ttl_ms)});
    if (!PQgetisnull(r.get(), 0, 0)) {
      lease.token = std::strtoll(PQgetvalue(r.get(), 0, 0), nullptr, 10);
      std::printf("worker %s: claimed agent %s, lease %lld (ttl %d ms)\n", o.worker.c_str(),
                  o.agent.c_str(), static_cast<long long>(lease.token), o.lease_ttl_ms);
      return lease;
    }
    if (Clock::now() >= deadline)
      throw Held("agent " + o.agent + " is still leased to another worker after " +
                 std::to_string(wait_ms) + " ms");
    if (!waiting)
      std::fprintf(stderr,
                   "agent_loop: agent %s is leased to another worker; waiting up to %d ms for it\n",
                   o.agent.c_str(), wait_ms);
    std::this_thread::sleep_for(poll);
  }
}

// ------------------------------------------------------------- journaling

// Appends `event` to iteration `iteration` with idempotency key `key`,
// expected_sequence = st.latest and the lease's token (if any), and runs
// `with_step` (metrics, a saved state) with the entry's sequence in the same
// transaction, which also renews the lease once a third of its ttl has
// passed; then replays, which applies the new entry.
// Returns the entry's sequence, or 0 when someone else appended first
// (40001): the state is then caught up and the caller decides again what
// to journal. Throws Fenced when a lease refuses the write (55006).
int64_t journal(Connection &db, const Options &o, State &st, Lease &lease, int iteration,
                const std::string &event, const std::string &key,
                const std::function<void(int64_t sequence)> &with_step) {
  const std::string expected = std::to_string(st.latest);
  int64_t sequence = 0;
  for (int attempt = 1;; ++attempt) {
    const Clock::time_point sent = Clock::now();
    const bool renew =
        lease.token != 0 && sent - lease.renewed >= std::chrono::milliseconds(o.lease_ttl_ms / 3);
    try {
      db.exec("BEGIN");
      // The append comes first: a process that stalled past its lease is
      // refused by the very write it was about to make.
      Result r = lease.token == 0
                     ? db.exec("SELECT agent_journal.append($1, $2, $3, $4, $5)",
                               {o.agent, std::to_string(iteration), event, expected, key})
                     : db.exec("SELECT agent_journal.append($1, $2, $3, $4, $5, lease => $6)",
                               {o.agent, std::to_string(iteration), event, expected, key,
                                std::to_string(lease.token)});
      sequence = std::strtoll(PQgetvalue(r.get(), 0, 0), nullptr, 10);
      if (renew)
        db.exec("SELECT agent_journal.renew_lease($1, $2, $3::float8 * interval '1 millisecond')",
                {o.agent, std::to_string(lease.token), std::to_string(o.lease_ttl_ms)});
      with_step(sequence);
      db.exec("COMMIT");
      if (renew) lease.renewed = sent;
      break;
    } catch (const DbError &e) {
      if (e.connection_lost && attempt < kConnectAttempts) {
        // Did it commit? The key answers that: the same call again returns
        // the original sequence if it did, and appends if it did not. (The
        // same call: with the same token, or none if there was none.)
        std::fprintf(stderr, "agent_loop: connection lost (%s); reconnecting, retrying key %s\n",
                     e.what(), key.c_str());
        db.connect();
        continue;
      }
      // Fenced: the lease check comes before the key's, so even a step
      // that did commit before the stall is refused. Stop; the worker that
      // holds the lease now journals this step, from the same replay.
      if (e.sqlstate == kSqlstateFenced) throw Fenced("writing key " + key + ": " + e.what());
      if (e.sqlstate != kSqlstateConflict) throw;
      db.rollback();
      catch_up(db, o, st);
      std::fprintf(stderr, "agent_loop: conflict at expected_sequence %s; replayed to %lld\n",
                   expected.c_str(), static_cast<long long>(st.latest));
      return 0;
    }
  }
  catch_up(db, o, st);
  return sequence;
}

// Idempotency keys: agent_loop/<agent>/<what>, e.g. agent_loop/<agent>/7/tool_call.
std::string key(const Options &o, const std::string &what) {
  return "agent_loop/" + o.agent + "/" + what;
}

// The event for `step` of iteration k, built only from folded state: a
// retry, or a restarted process, builds the same bytes. (The same key with
// a different event is an error, 22023, not a retry.)
std::string step_event(const State &st, int k, Step step) {
  char buf[256];
  switch (step) {
    case kThought:
      std::snprintf(buf, sizeof buf,
                    R"({"type": "Thought", "iteration": %d, "text": "the sum is %lld; add %d"})", k,
                    st.sum, k);
      break;
    case kToolCall:
      std::snprintf(buf, sizeof buf,
                    R"({"type": "ToolCall", "iteration": %d, "tool": "add", )"
                    R"("args": {"a": %lld, "b": %d}, "result": %lld})",
                    k, st.sum, k, st.sum + k);
      break;
    case kCompleted:  // the tool's result, as the journal recorded it
      std::snprintf(buf, sizeof buf,
                    R"({"type": "IterationCompleted", "iteration": %d, "result": %lld})", k,
                    st.pending);
      break;
  }
  return buf;
}

// A runtime snapshot in the shape ingest_snapshot validates. A real runtime
// reports its scheduler, task manager and load balancer; this one derives
// plausible numbers from its progress (k iterations done, 3 steps each).
std::string snapshot_json(int k, double uptime, int step_ms) {
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  char buf[1024];
  std::snprintf(
      buf, sizeof buf,
      R"({"timestamp": %.3f, )"
      R"("scheduler": {"total_scheduled": %d, "uptime_seconds": %.3f, "running_agents": 1, )"
      R"("queued_agents": 0, "suspended_agents": 0, "max_capacity": 8, "load_factor": 0.125}, )"
      R"("task_manager": {"total_tasks": %d, "healthy_tasks": %d, )"
      R"("average_uptime_seconds": %.3f, "total_memory_usage": %lld}, )"
      R"("load_balancer": {"total_allocations": %d, "active_allocations": 1, )"
      R"("memory_utilization": %.3f, "cpu_utilization": %.3f, "allocation_failures": 0, )"
      R"("average_allocation_time_ms": %.3f}, )"
      R"("system": {"memory_usage_mb": %.2f, "cpu_usage_percent": %.1f}})",
      now, k, uptime, 3 * k, 3 * k, uptime, (4LL << 20) + k * 65536LL, k, 0.05 + 0.001 * k,
      step_ms > 0 ? 0.02 : 0.5, 0.01 * step_ms, 4.0 + k / 16.0, step_ms > 0 ? 2.0 : 50.0);
  return buf;
}

// ------------------------------------------------------------- the loop

int run(const Options &o) {
  const Clock::time_point t0 = Clock::now();
  auto seconds_since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  Connection db(o.conninfo);
  db.connect(1);  // a wrong conninfo fails at once; later reconnects retry

  // 0. With --worker: claim the agent before reading it, so that nobody
  //    else writes between the resume and this process's first append.
  Lease lease;
  if (!o.worker.empty()) lease = claim(db, o);

  // 1. Resume: rebuild the state from the journal in one call, from the
  //    latest saved state on. (Not from last_completed_iteration(): it is the
  //    highest iteration journaled, which counts an iteration whose Thought
  //    was written but that never completed. The fold says which steps are
  //    done.)
  State st;
  const ResumedFrom from = resume(db, o, st);
  const std::string origin = from.state_sequence == 0
                                 ? std::string("no saved state")
                                 : "the state at sequence " + std::to_string(from.state_sequence) +
                                       " (iteration " + std::to_string(from.state_iteration) + ")";
  std::printf(
      "agent %s: resumed from %s, replayed %lld entries; latest sequence %lld: "
      "%d iterations completed, %d steps into the next, sum %lld\n",
      o.agent.c_str(), origin.c_str(), static_cast<long long>(from.entries),
      static_cast<long long>(st.latest), st.completed, st.steps_done, st.sum);

  // 2. Say so in the journal: Started once per agent, Resumed on each
  //    restart with work left. The Resumed key names the sequence it
  //    follows, so only a retry of this very append can match it.
  const bool fresh = !st.started;
  while (st.completed < o.iterations) {
    std::string event = R"({"type": "Started"})", what = "started";
    if (!fresh) {
      event = R"({"type": "Resumed", "from_iteration": )" + std::to_string(st.completed + 1) +
              R"(, "from_step": ")" + kStepKey[st.steps_done] + "\"}";
      what = "resumed@" + std::to_string(st.latest);
    }
    if (journal(db, o, st, lease, st.completed, event, key(o, what), [](int64_t) {}) != 0) break;
  }

  // 3. Run: the next step is always "the first one the journal lacks".
  int conflicts = 0;
  int timed_iteration = 0;
  Clock::time_point iteration_start = t0;
  while (st.completed < o.iterations) {
    const int k = st.completed + 1;
    const Step step = static_cast<Step>(st.steps_done);
    if (k != timed_iteration) {
      timed_iteration = k;
      iteration_start = Clock::now();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(o.step_ms));  // think, call the tool

    // In the step's transaction: its metrics and, every --state-every
    // iterations, the state its IterationCompleted (at `sequence`) folds into.
    bool saved = false;
    auto with_step = [&](int64_t sequence) {
      db.exec(
          "SELECT agent_journal.counter_add('agent_loop_steps_total', 1, "
          "jsonb_build_object('agent', $1::text, 'step', $2::text), "
          "'steps journaled by examples/agent_loop')",
          {o.agent, kStepKey[step]});
      if (step != kCompleted) return;
      db.exec("SELECT agent_journal.histogram_observe('agent_loop_iteration_seconds', $1::float8)",
              {std::to_string(seconds_since(iteration_start))});
      db.exec("SELECT agent_journal.ingest_snapshot($1::jsonb, $2::text)",
              {snapshot_json(k, seconds_since(t0), o.step_ms), o.service});
      if (o.state_every == 0 || k % o.state_every != 0) return;
      State next = st;  // what replaying the entry just written will give
      apply(next, sequence, k, kStepKind[kCompleted], st.pending);
      if (lease.token == 0)
        db.exec("SELECT agent_journal.save_state($1, $2::jsonb, $3)",
                {o.agent, state_json(next), std::to_string(sequence)});
      else
        db.exec("SELECT agent_journal.save_state($1, $2::jsonb, $3, lease => $4)",
                {o.agent, state_json(next), std::to_string(sequence), std::to_string(lease.token)});
      saved = true;
    };
    const int64_t sequence = journal(db, o, st, lease, k, step_event(st, k, step),
                                     key(o, std::to_string(k) + "/" + kStepKey[step]), with_step);
    if (sequence == 0) {
      if (++conflicts == kMaxConflicts)
        throw DbError("too many conflicting appends", kSqlstateConflict, false);
      continue;
    }
    conflicts = 0;
    if (step == kCompleted)
      std::printf("iteration %d done (sequence %lld%s)\n", k, static_cast<long long>(sequence),
                  saved ? ", state saved" : "");
  }
  // 4. Let the next worker in at once rather than after the ttl. False: the
  //    lease expired after this process's last write (nothing is lost:
  //    every write was accepted under the lease).
  if (lease.token != 0) {
    Result r = db.repeatable("SELECT agent_journal.release_agent($1, $2)",
                             {o.agent, std::to_string(lease.token)});
    std::printf(std::strcmp(PQgetvalue(r.get(), 0, 0), "t") == 0
                    ? "worker %s: released lease %lld\n"
                    : "worker %s: lease %lld had expired already\n",
                o.worker.c_str(), static_cast<long long>(lease.token));
  }
  std::printf("done: %d iterations, sum %lld, latest sequence %lld\n", st.completed, st.sum,
              static_cast<long long>(st.latest));
  return kExitOk;
}

// ------------------------------------------------------------- arguments

void usage(std::FILE *to) {
  std::fputs(
      "usage: agent_loop [--conninfo CONNINFO] --agent UUID --iterations N\n"
      "                  [--step-ms M] [--service NAME] [--state-every K]\n"
      "                  [--worker NAME [--lease-ttl-ms T] [--claim-wait-ms W]]\n"
      "  --conninfo       libpq connection string (default \"\": PG* environment variables)\n"
      "  --agent          the agent's id; run again with the same id to resume\n"
      "  --iterations     iterations the agent runs in total (>= 1)\n"
      "  --step-ms        pause before each step, in milliseconds (default 50)\n"
      "  --service        service label of the metric snapshots (default agent-loop)\n"
      "  --state-every    save the state every K iterations, with the step that completes\n"
      "                   the iteration; a restart resumes from the latest (default 5, 0 = never)\n"
      "  --worker         claim the agent's lease as this worker (a name no other\n"
      "                   process uses) and write under it:\n"
      "                   exit 3 if the lease is lost (fenced), 4 if another worker holds it\n"
      "  --lease-ttl-ms   the lease's ttl, at least 3 x --step-ms (default 30000)\n"
      "  --claim-wait-ms  how long to wait while another worker holds the lease\n"
      "                   (default twice the ttl)\n",
      to);
}

bool parse_int(const char *s, int min, int &out) {
  char *end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < min || v > 1000000000) return false;
  out = static_cast<int>(v);
  return true;
}

bool looks_like_uuid(const std::string &s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

bool parse_args(int argc, char **argv, Options &o) {
  bool lease_option = false;  // --lease-ttl-ms and --claim-wait-ms need --worker
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return false;
    const char *value = argv[i + 1];
    if (flag == "--conninfo")
      o.conninfo = value;
    else if (flag == "--agent")
      o.agent = value;
    else if (flag == "--service")
      o.service = value;
    else if (flag == "--iterations") {
      if (!parse_int(value, 1, o.iterations)) return false;
    } else if (flag == "--step-ms") {
      if (!parse_int(value, 0, o.step_ms)) return false;
    } else if (flag == "--state-every") {
      if (!parse_int(value, 0, o.state_every)) return false;
    } else if (flag == "--worker") {
      o.worker = value;
      if (o.worker.empty()) return false;
    } else if (flag == "--lease-ttl-ms") {
      if (!parse_int(value, 1, o.lease_ttl_ms) || o.lease_ttl_ms > kMaxLeaseTtlMs) return false;
      lease_option = true;
    } else if (flag == "--claim-wait-ms") {
      if (!parse_int(value, 0, o.claim_wait_ms)) return false;
      lease_option = true;
    } else
      return false;
  }
  if (!o.worker.empty() && o.step_ms > o.lease_ttl_ms / 3) return false;  // renewals in time
  if (o.worker.empty() && lease_option) return false;
  return looks_like_uuid(o.agent) && o.iterations >= 1 && !o.service.empty();
}

}  // namespace

int main(int argc, char **argv) {
  // Line-buffered: each "iteration k done" is visible as soon as it is true.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc == 2 && std::strcmp(argv[1], "--help") == 0) {
    usage(stdout);
    return kExitOk;
  }
  Options o;
  if (!parse_args(argc, argv, o)) {
    usage(stderr);
    return kExitUsage;
  }
  try {
    return run(o);
  } catch (const Fenced &e) {
    std::fprintf(stderr, "agent_loop: fenced (%s) %s; stopping, nothing more written\n",
                 kSqlstateFenced.c_str(), e.what());
    return kExitFenced;
  } catch (const Held &e) {
    std::fprintf(stderr, "agent_loop: %s; giving up\n", e.what());
    return kExitHeld;
  } catch (const DbError &e) {
    std::fprintf(stderr, "agent_loop: database error%s%s: %s\n", e.sqlstate.empty() ? "" : " ",
                 e.sqlstate.c_str(), e.what());
    return kExitDatabase;
  }
}
