// feed_consumer: follows agent_journal's change feed and prints a live
// timeline of every agent's entries. One file, C++17 and libpq, nothing else.
//
//   feed_consumer [--conninfo CONNINFO] [--once] [--max N] [--from-beginning]
//                 [--poll-ms MS] [CONSUMER]
//
// The feed is every agent's entries in commit order, each with a position.
// A consumer is a name with an acknowledged position stored in the
// database, so a consumer that stops (or is killed) and starts again picks
// up where its last acknowledgement left it. The program:
//
// 1. subscribes CONSUMER (default "timeline"): subscribe() creates it at the
//    feed's current end (--from-beginning: at position 0, so the entries
//    already journaled come first); an existing consumer keeps its position.
// 2. LISTENs on agent_journal_feed (not with --once): the background
//    worker (the library in shared_preload_libraries) gives new entries
//    their positions every agent_journal.feed_tick_interval and NOTIFYs
//    that channel when a tick found any.
// 3. loops: reads the next batch (read_feed, at most --max rows), prints
//    it, acknowledges the batch's last position (ack_feed) and commits, all
//    in one transaction; then waits for a notification.
//
// Positions are handed out by "ticks". Without the worker nobody NOTIFYs
// and nobody ticks, except read_feed and subscribe themselves when they
// run outside a transaction block (at READ COMMITTED, the default). So at
// the start, and whenever no notification came within --poll-ms (default
// 1000), the program ticks on its own with read_feed(consumer, 0) in
// autocommit mode (it assigns positions and returns no rows), then reads.
// With the worker, notifications wake it at once and the poll is only a
// fallback. (A tick made by read_feed or subscribe notifies too, so other
// listeners wake when any consumer's read moved new entries in.)
//
// Delivery is at least once: a batch is printed before the transaction
// that acknowledges it commits, so a crash in between prints it again on
// the next start, and nothing is ever skipped. Run one process per
// consumer name: two processes sharing one would both print each batch.
//
// Each entry prints as one line, in feed order: an agent's entries always
// in sequence order, agents in the order their appends reached the feed
// (a tick that finds several appends of one agent keeps them together):
//
//   @12    [agent 11111111] #3    it=1   ToolCall            {"ToolCall": {"name": "grep"}}
//
// position, the agent (first 8 hex digits of its id), sequence, iteration,
// kind and the start of the event. Entries removed before the consumer read
// them (compaction, retention, forget_agent) come as one gap row:
//
//   @14    [agent 11111111] ~~ gap #4..#9 (compacted) ~~
//
// Exit codes: 0 done (--once, or SIGINT/SIGTERM), 1 usage, 2 database error
// (the server's message on stderr). It does not reconnect: start it again.
#include <libpq-fe.h>
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 1;
constexpr int kExitDatabase = 2;

constexpr std::size_t kEventPreview = 60;  // bytes of the event shown per line

using Clock = std::chrono::steady_clock;

struct Options {
  std::string conninfo;  // "": PGHOST, PGPORT, PGDATABASE, ... from the environment
  std::string consumer = "timeline";
  bool once = false;     // drain what is there, then exit
  long long max = 1000;  // rows per read_feed (one transaction)
  bool from_beginning = false;
  int poll_ms = 1000;  // tick and read after this long without a notification
};

// SIGINT / SIGTERM: finish the batch at hand (its ack commits), then exit 0.
volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

// ------------------------------------------------------------- libpq

// A statement (or the connection) failed; what() is the server's message.
struct DbError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Result = std::unique_ptr<PGresult, decltype(&PQclear)>;

// libpq's messages end in a newline and may span lines: make them one.
std::string one_line(const char *msg) {
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

class Connection {
 public:
  // Connects at once; a wrong conninfo or an unreachable server is an error.
  explicit Connection(const std::string &conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) throw DbError(one_line(PQerrorMessage(conn_)));
  }
  // Closing the connection rolls back a transaction left open by an error.
  ~Connection() { PQfinish(conn_); }
  Connection(const Connection &) = delete;
  Connection &operator=(const Connection &) = delete;

  // Runs one statement with text parameters (PQexecParams: values never
  // become SQL text); throws DbError, with SQLSTATE, unless it succeeded.
  Result exec(const char *sql, const std::vector<std::string> &params = {}) {
    std::vector<const char *> values;
    for (const std::string &p : params) values.push_back(p.c_str());
    Result r(PQexecParams(conn_, sql, static_cast<int>(values.size()), nullptr, values.data(),
                          nullptr, nullptr, 0),
             &PQclear);
    const ExecStatusType status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return r;
    throw DbError(server_message(r.get()));
  }

  // The server's message for a failed statement: its text, SQLSTATE and
  // hint (e.g. `feed consumer "x" does not exist (SQLSTATE 42704); hint:
  // Create it with agent_journal.subscribe().`), else libpq's own (the
  // connection failed).
  std::string server_message(const PGresult *r) const {
    const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    if (!primary) return one_line(PQerrorMessage(conn_));
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
    std::string msg = primary;
    if (state) msg += std::string(" (SQLSTATE ") + state + ")";
    if (hint) msg += std::string("; hint: ") + one_line(hint);
    return msg;
  }

  // Waits up to `timeout_ms` for a notification on a channel this session
  // LISTENs on (or for a signal). True if one came; all that arrived are
  // consumed, so a burst of them wakes the loop once.
  bool wait_for_notification(int timeout_ms) {
    const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      // Notifications may be buffered already (they arrive between
      // transactions, possibly with the reply to the last one).
      if (PQconsumeInput(conn_) == 0) throw DbError(one_line(PQerrorMessage(conn_)));
      bool notified = false;
      while (PGnotify *n = PQnotifies(conn_)) {
        notified = true;
        PQfreemem(n);
      }
      if (notified) return true;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (g_stop || left.count() <= 0) return false;
      pollfd fd{PQsocket(conn_), POLLIN, 0};
      if (::poll(&fd, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
        throw DbError(std::string("poll: ") + std::strerror(errno));
    }
  }

 private:
  PGconn *conn_;
};

// ------------------------------------------------------------- the feed

// One row of read_feed, as printed. Gap rows have no sequence (NULL) and
// say which sequences are gone in their event: {"from", "through", "reason"}.
const char *const kReadSql =
    "SELECT position, agent_id, sequence, iteration, kind, event::text, "
    "       event ->> 'from', event ->> 'through', event ->> 'reason' "
    "FROM agent_journal.read_feed($1, $2)";
enum Column { kPosition, kAgent, kSequence, kIteration, kKind, kEvent, kFrom, kThrough, kReason };

// The start of an event's JSON text, cut at a character boundary.
std::string preview(const char *json) {
  std::string s(json);
  if (s.size() <= kEventPreview) return s;
  std::size_t cut = kEventPreview;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
    --cut;  // UTF-8 continuation
  return s.substr(0, cut) + "...";
}

void print_row(const PGresult *r, int i) {
  auto v = [&](Column c) { return PQgetvalue(r, i, c); };
  if (PQgetisnull(r, i, kSequence)) {  // a gap: entries removed before this consumer read them
    std::printf("@%-5s [agent %.8s] ~~ gap #%s..#%s (%s) ~~\n", v(kPosition), v(kAgent), v(kFrom),
                v(kThrough), v(kReason));
    return;
  }
  std::printf("@%-5s [agent %.8s] #%-4s it=%-3s %-19s %s\n", v(kPosition), v(kAgent), v(kSequence),
              v(kIteration), v(kKind), preview(v(kEvent)).c_str());
}

// Gives committed appends their positions when no background worker does:
// read_feed outside a transaction block ticks first (with the worker
// running, it usually finds nothing left to move). It returns no rows here.
void tick(Connection &db, const Options &o) {
  db.exec("SELECT FROM agent_journal.read_feed($1, 0)", {o.consumer});
}

// Reads, prints and acknowledges one batch in one transaction; returns the
// rows read and, in `last`, the position acknowledged (unchanged if none).
int read_batch(Connection &db, const Options &o, std::string &last) {
  db.exec("BEGIN");
  Result r = db.exec(kReadSql, {o.consumer, std::to_string(o.max)});
  const int rows = PQntuples(r.get());
  for (int i = 0; i < rows; ++i) print_row(r.get(), i);
  if (rows > 0) {
    last = PQgetvalue(r.get(), rows - 1, kPosition);  // rows come in position order
    db.exec("SELECT agent_journal.ack_feed($1, $2)", {o.consumer, last});
  }
  // Printed before the commit: if it fails, the batch is printed again
  // next time (at least once), never lost.
  std::fflush(stdout);
  db.exec("COMMIT");
  return rows;
}

int run(const Options &o) {
  Connection db(o.conninfo);

  // 1. The consumer and its stored position (idempotent for its role).
  Result sub = db.exec("SELECT agent_journal.subscribe($1, $2)",
                       {o.consumer, o.from_beginning ? "true" : "false"});
  std::string position = PQgetvalue(sub.get(), 0, 0);

  // 2. Wake-ups from the background worker's ticks (not needed with
  //    --once, which never waits). LISTEN outside a transaction:
  //    notifications come between transactions only.
  if (!o.once) db.exec("LISTEN agent_journal_feed");
  std::fprintf(stderr, "feed_consumer: consumer \"%s\" at position %s%s\n", o.consumer.c_str(),
               position.c_str(), o.once ? "" : ", listening on agent_journal_feed");

  // 3. Drain, then wait. A notification means a worker tick has just
  //    given new entries positions; a timeout means we tick ourselves.
  long long total = 0;
  bool notified = false;
  while (!g_stop) {
    if (!notified) tick(db, o);
    // A full batch may have more behind it: read until a short one.
    int rows;
    do {
      rows = read_batch(db, o, position);
      total += rows;
    } while (rows == o.max && !g_stop);
    if (o.once) break;
    notified = db.wait_for_notification(o.poll_ms);
  }
  std::fprintf(stderr,
               "feed_consumer: consumer \"%s\" acknowledged through position %s (%lld rows read)\n",
               o.consumer.c_str(), position.c_str(), total);
  return kExitOk;
}

// ------------------------------------------------------------- arguments

void usage(std::FILE *to) {
  std::fputs(
      "usage: feed_consumer [--conninfo CONNINFO] [--once] [--max N] [--from-beginning]\n"
      "                     [--poll-ms MS] [CONSUMER]\n"
      "  CONSUMER          the feed consumer's name (default timeline); its position is\n"
      "                    stored in the database, so a restart carries on from it\n"
      "  --conninfo        libpq connection string (default \"\": PG* environment variables)\n"
      "  --once            print what the feed holds now, then exit\n"
      "  --max             rows per read (one transaction; default 1000)\n"
      "  --from-beginning  a new consumer starts at the first entry still journaled,\n"
      "                    not at the feed's end (no effect on an existing one)\n"
      "  --poll-ms         without a notification, look for new entries this often\n"
      "                    (default 1000; needed when no background worker runs)\n",
      to);
}

bool parse_number(const char *s, long long min, long long max, long long &out) {
  char *end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || *end != '\0' || errno != 0 || v < min || v > max) return false;
  out = v;
  return true;
}

bool parse_args(int argc, char **argv, Options &o) {
  bool named = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    long long n = 0;
    if (arg == "--once") {
      o.once = true;
    } else if (arg == "--from-beginning") {
      o.from_beginning = true;
    } else if (arg == "--conninfo" && has_value) {
      o.conninfo = argv[++i];
    } else if (arg == "--max" && has_value) {
      if (!parse_number(argv[++i], 1, 1000000, o.max)) return false;
    } else if (arg == "--poll-ms" && has_value) {
      if (!parse_number(argv[++i], 10, 3600000, n)) return false;
      o.poll_ms = static_cast<int>(n);
    } else if (arg.rfind("--", 0) != 0 && !named) {
      o.consumer = arg;
      named = true;
    } else {
      return false;
    }
  }
  return !o.consumer.empty();
}

}  // namespace

int main(int argc, char **argv) {
  // Line-buffered: each entry is visible as soon as it is printed.
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
  // No SA_RESTART: a signal interrupts the wait (poll) at once.
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  try {
    return run(o);
  } catch (const DbError &e) {
    std::fprintf(stderr, "feed_consumer: database error: %s\n", e.what());
    return kExitDatabase;
  }
}
