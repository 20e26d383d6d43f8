// The exporter background worker (see exporter.hpp).
//
// One process, one loop. Every agent_journal.export_interval:
//  1. textfile: SELECT agent_journal.prometheus_text() in a transaction of
//     its own, then write <path>.tmp.<pid>, fchmod 0644, fsync, rename over
//     <path> (node_exporter never sees a half-written file);
//  2. otlp: SELECT agent_journal.otlp_json() in a second transaction, then
//     start a POST to <endpoint>/v1/metrics with libcurl's multi interface.
//     The transfer runs while the worker waits for the next interval, so a
//     slow collector never delays the next textfile export; a push still
//     running when the next one is due makes that one skip.
// An error inside a cycle is reported and counted; the worker keeps going.
// Health (last success, errors per target) lives in shared memory and is
// rendered by every exposition (aj_exporter_health, called by metrics.cpp).
//
// No C++ object with a destructor lives in a frame that PG_TRY protects or
// that calls something which may ereport (STYLE.md, the boundary); the
// C++ parts (URL, headers, health families) run inside run_cpp.
#include "pg/exporter.hpp"
#include "pg/journal.hpp"

extern "C" {
#include "commands/extension.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"
}

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <new>
#include <stdexcept>
#include <string>

#include "core/export.hpp"

namespace ajpg {

int export_interval_s = 15;
char *export_database = nullptr;
char *textfile_path = nullptr;
char *otlp_endpoint = nullptr;
int otlp_timeout_ms = 5000;
char *otlp_headers = nullptr;

namespace {

enum Target { TEXTFILE = 0, OTLP = 1, NTARGETS = 2 };
const char *const kTargetNames[NTARGETS] = {"textfile", "otlp"};

struct ExporterShared {
  slock_t mutex;
  double last_success[NTARGETS];  // Unix time, 0 = never
  uint64 errors[NTARGETS];
  // Writes refused by 55006 (lease.cpp): their transactions roll back, so
  // the count lives here, from server start.
  pg_atomic_uint64 fenced_writes;
};

ExporterShared *shared = nullptr;
shmem_request_hook_type prev_shmem_request = nullptr;
shmem_startup_hook_type prev_shmem_startup = nullptr;

void exporter_shmem_request() {
  if (prev_shmem_request) prev_shmem_request();
  RequestAddinShmemSpace(MAXALIGN(sizeof(ExporterShared)));
}

void exporter_shmem_startup() {
  if (prev_shmem_startup) prev_shmem_startup();
  LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
  bool found;
  shared =
      (ExporterShared *)ShmemInitStruct("agent_journal exporter", sizeof(ExporterShared), &found);
  if (!found) {
    memset(shared, 0, sizeof(ExporterShared));
    SpinLockInit(&shared->mutex);
    pg_atomic_init_u64(&shared->fenced_writes, 0);
  }
  LWLockRelease(AddinShmemInitLock);
}

bool enabled(const char *guc) { return guc != nullptr && guc[0] != '\0'; }

double unix_now() {
  TimestampTz now = GetCurrentTimestamp();  // microseconds since 2000-01-01
  return (double)(now / 1000) / 1000.0 +
         (double)(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

void record(Target t, bool ok) {
  if (shared == nullptr) return;
  double now = unix_now();
  SpinLockAcquire(&shared->mutex);
  if (ok)
    shared->last_success[t] = now;
  else
    shared->errors[t]++;
  SpinLockRelease(&shared->mutex);
}

// ------------------------------------------------------------ worker state
char connected_db[NAMEDATALEN];
MemoryContext cycle_cxt = nullptr;

void exporter_error_context(void *arg) {
  errcontext("agent_journal exporter (database \"%s\", %s)", connected_db, (const char *)arg);
}

// Runs `sql` (one text column, one row) in a transaction of its own and
// returns a copy of the value in cycle_cxt, or nullptr after reporting the
// error. Sets *missing (and warns) when the extension is not installed.
char *render(const char *sql, const char *what, size_t *len, bool *missing) {
  char *volatile out = nullptr;
  volatile size_t outlen = 0;
  volatile bool miss = false;
  ErrorContextCallback ctx;
  ctx.callback = exporter_error_context;
  ctx.arg = (void *)what;
  ctx.previous = error_context_stack;
  error_context_stack = &ctx;

  SetCurrentStatementStartTimestamp();
  PG_TRY();
  {
    StartTransactionCommand();
    PushActiveSnapshot(GetTransactionSnapshot());
    pgstat_report_activity(STATE_RUNNING, sql);
    if (!OidIsValid(get_extension_oid("agent_journal", true))) {
      miss = true;
    } else {
      if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "SPI_connect failed");
      int rc = SPI_execute(sql, true, 1);
      if (rc != SPI_OK_SELECT || SPI_processed != 1)
        elog(ERROR, "%s failed: %s", sql, SPI_result_code_string(rc));
      bool isnull;
      Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
      if (isnull) elog(ERROR, "%s returned NULL", sql);
      MemoryContext old = MemoryContextSwitchTo(cycle_cxt);
      text *t = DatumGetTextPP(d);
      size_t n = VARSIZE_ANY_EXHDR(t);
      char *buf = (char *)palloc(n + 1);
      memcpy(buf, VARDATA_ANY(t), n);
      buf[n] = '\0';
      MemoryContextSwitchTo(old);
      SPI_finish();
      out = buf;
      outlen = n;
    }
    PopActiveSnapshot();
    CommitTransactionCommand();
  }
  PG_CATCH();
  {
    MemoryContextSwitchTo(cycle_cxt);
    EmitErrorReport();
    AbortCurrentTransaction();
    FlushErrorState();
    out = nullptr;
    miss = false;
  }
  PG_END_TRY();
  error_context_stack = ctx.previous;
  MemoryContextSwitchTo(cycle_cxt);
  pgstat_report_stat(true);
  pgstat_report_activity(STATE_IDLE, nullptr);

  if (miss) {
    *missing = true;
    ereport(WARNING,
            (errmsg("agent_journal exporter: extension \"agent_journal\" is not installed in "
                    "database \"%s\"; nothing exported",
                    connected_db),
             errhint("Run CREATE EXTENSION agent_journal in that database, or set "
                     "agent_journal.export_database to one that has it.")));
    return nullptr;
  }
  *len = outlen;
  return out;
}

// ------------------------------------------------------------ textfile
// Best effort: makes a rename in `path`'s directory durable.
void fsync_parent(const char *path) {
  char dir[MAXPGPATH];
  strlcpy(dir, path, sizeof dir);
  char *slash = strrchr(dir, '/');
  if (slash == nullptr) return;
  if (slash == dir)
    slash[1] = '\0';
  else
    *slash = '\0';
  int fd = open(dir, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

// Writes `data` to `path` atomically: <path>.tmp.<pid> (created exclusive,
// never through a symlink), fchmod 0644 (node_exporter usually runs as
// another user), fsync, rename. No ereport: the message goes to `err`.
bool write_textfile(const char *path, const char *data, size_t len, char *err, size_t errlen) {
  char tmp[MAXPGPATH];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)MyProcPid) >= (int)sizeof tmp) {
    snprintf(err, errlen, "agent_journal.textfile_path is too long");
    return false;
  }
  (void)unlink(tmp);  // left over by an earlier process with this pid
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, errlen, "could not create file \"%s\": %s", tmp, strerror(errno));
    return false;
  }
  const char *step = nullptr;
  int saved = 0;
  for (size_t off = 0; off < len;) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      step = "write";
      saved = n < 0 ? errno : ENOSPC;
      break;
    }
    off += (size_t)n;
  }
  if (step == nullptr && fchmod(fd, 0644) != 0) step = "chmod", saved = errno;
  if (step == nullptr && fsync(fd) != 0) step = "fsync", saved = errno;
  if (close(fd) != 0 && step == nullptr) step = "close", saved = errno;
  if (step != nullptr) {
    snprintf(err, errlen, "could not %s file \"%s\": %s", step, tmp, strerror(saved));
    (void)unlink(tmp);
    return false;
  }
  if (rename(tmp, path) != 0) {
    snprintf(err, errlen, "could not rename file \"%s\" to \"%s\": %s", tmp, path, strerror(errno));
    (void)unlink(tmp);
    return false;
  }
  fsync_parent(path);
  return true;
}

// Sets *missing when the extension is not installed (already warned).
void export_textfile(bool *missing) {
  size_t len = 0;
  char *text = render("SELECT agent_journal.prometheus_text()", "textfile", &len, missing);
  if (text == nullptr) {
    record(TEXTFILE, false);
    return;
  }
  char err[MAXPGPATH * 2 + 128];
  bool ok = write_textfile(textfile_path, text, len, err, sizeof err);
  record(TEXTFILE, ok);
  if (!ok)
    ereport(WARNING, (errcode_for_file_access(), errmsg("agent_journal exporter: %s", err),
                      errhint("Check agent_journal.textfile_path: its directory must exist and "
                              "be writable by the server's operating system user.")));
}

// ------------------------------------------------------------ OTLP push
struct Push {
  bool curl_ready = false;
  CURLM *multi = nullptr;
  CURL *easy = nullptr;  // non-null while a push is in flight
  curl_slist *headers = nullptr;
  char url[2100];
  char errbuf[CURL_ERROR_SIZE];
};
Push push;

size_t discard_body(char *, size_t size, size_t nmemb, void *) { return size * nmemb; }

// Aborts a transfer when the worker is told to stop.
int transfer_progress(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return ProcDiePending ? 1 : 0;
}

void push_cleanup() {
  if (push.easy != nullptr) {
    curl_multi_remove_handle(push.multi, push.easy);
    curl_easy_cleanup(push.easy);
    push.easy = nullptr;
  }
  curl_slist_free_all(push.headers);
  push.headers = nullptr;
}

// Starts the POST of `body`. No ereport: false with the message in `err`.
bool push_start(const char *body, size_t len, char *err, size_t errlen) {
  if (!push.curl_ready) {
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
      snprintf(err, errlen, "could not initialize libcurl: %s", curl_easy_strerror(rc));
      return false;
    }
    push.multi = curl_multi_init();
    if (push.multi == nullptr) {
      snprintf(err, errlen, "could not initialize libcurl");
      return false;
    }
    push.curl_ready = true;
  }
  const char *endpoint = otlp_endpoint;
  const char *spec = otlp_headers ? otlp_headers : "";
  curl_slist *hdrs = nullptr;
  bool ok = run_cpp(
      [&] {
        std::string url = aj::otlp_metrics_url(endpoint);
        if (url.size() >= sizeof push.url) throw std::invalid_argument("otlp_endpoint: too long");
        memcpy(push.url, url.c_str(), url.size() + 1);
        auto add = [&](const std::string &h) {
          curl_slist *n = curl_slist_append(hdrs, h.c_str());
          if (n == nullptr) throw std::bad_alloc();
          hdrs = n;
        };
        add("Content-Type: application/json");
        add("Expect:");  // no 100-continue round trip
        for (const auto &kv : aj::parse_otlp_headers(spec)) add(kv.first + ": " + kv.second);
      },
      err, errlen);
  if (!ok) {
    curl_slist_free_all(hdrs);
    return false;
  }
  CURL *e = curl_easy_init();
  if (e == nullptr) {
    curl_slist_free_all(hdrs);
    snprintf(err, errlen, "could not create a libcurl handle");
    return false;
  }
  push.errbuf[0] = '\0';
  push.easy = e;
  push.headers = hdrs;
  CURLcode rc = CURLE_OK;
  auto set = [&](CURLcode c) {
    if (rc == CURLE_OK) rc = c;
  };
  set(curl_easy_setopt(e, CURLOPT_URL, push.url));
  set(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https"));
  set(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L));  // the server owns SIGALRM
  set(curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len));
  set(curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body));
  set(curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs));
  set(curl_easy_setopt(e, CURLOPT_USERAGENT, "agent_journal-exporter"));
  set(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)otlp_timeout_ms));
  set(curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)otlp_timeout_ms));
  set(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body));
  set(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, push.errbuf));
  set(curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L));
  set(curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, transfer_progress));
  if (rc != CURLE_OK) {
    snprintf(err, errlen, "could not set up the request to \"%s\": %s", push.url,
             curl_easy_strerror(rc));
    push_cleanup();
    return false;
  }
  CURLMcode mc = curl_multi_add_handle(push.multi, e);
  if (mc != CURLM_OK) {
    snprintf(err, errlen, "could not start the request to \"%s\": %s", push.url,
             curl_multi_strerror(mc));
    curl_easy_cleanup(e);
    push.easy = nullptr;
    push_cleanup();
    return false;
  }
  return true;
}

// Moves the push in flight on, waiting up to `wait_ms` for its sockets; on
// completion records the outcome and logs a failure.
void push_poll(int wait_ms) {
  if (push.easy == nullptr) return;
  int running = 0;
  (void)curl_multi_poll(push.multi, nullptr, 0, wait_ms, nullptr);
  (void)curl_multi_perform(push.multi, &running);
  bool done = false;
  CURLcode res = CURLE_OK;
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(push.multi, &left)) != nullptr) {
    if (msg->msg == CURLMSG_DONE && msg->easy_handle == push.easy) {
      done = true;
      res = msg->data.result;
    }
  }
  if (!done) return;
  long status = 0;
  curl_easy_getinfo(push.easy, CURLINFO_RESPONSE_CODE, &status);
  char err[CURL_ERROR_SIZE + 64];
  err[0] = '\0';
  if (res != CURLE_OK)
    strlcpy(err, push.errbuf[0] ? push.errbuf : curl_easy_strerror(res), sizeof err);
  else if (status < 200 || status > 299)
    snprintf(err, sizeof err, "HTTP status %ld", status);
  push_cleanup();
  record(OTLP, err[0] == '\0');
  if (err[0] != '\0')
    ereport(WARNING,
            (errmsg("agent_journal exporter: OTLP push to \"%s\" failed: %s", push.url, err)));
}

void export_otlp() {
  if (push.easy != nullptr) {
    elog(DEBUG1, "agent_journal exporter: previous OTLP push still running, skipping this one");
    return;
  }
  size_t len = 0;
  bool missing = false;
  char *body = render("SELECT agent_journal.otlp_json()::pg_catalog.text", "otlp", &len, &missing);
  if (body == nullptr) {
    record(OTLP, false);
    return;
  }
  char err[sizeof push.url + 512];
  if (!push_start(body, len, err, sizeof err)) {
    record(OTLP, false);
    ereport(WARNING, (errmsg("agent_journal exporter: OTLP push failed: %s", err)));
    return;
  }
  push_poll(0);
}

void export_cycle() {
  bool tf = enabled(textfile_path), otlp = enabled(otlp_endpoint);
  if (!tf && !otlp) return;
  bool missing = false;
  if (tf) export_textfile(&missing);  // first: never waits on the network
  if (otlp && missing)
    record(OTLP, false);  // warned once for this interval already
  else if (otlp)
    export_otlp();
}

}  // namespace

// ------------------------------------------------------------ GUC checks
bool check_textfile_path(char **newval, void **extra, GucSource source) {
  const char *p = *newval;
  if (p == nullptr || p[0] == '\0') return true;
  if (p[0] != '/') {
    GUC_check_errdetail("agent_journal.textfile_path must be an absolute path, got \"%s\".", p);
    return false;
  }
  if (strlen(p) >= MAXPGPATH - 32) {
    GUC_check_errdetail("agent_journal.textfile_path is longer than %d bytes.", MAXPGPATH - 32);
    return false;
  }
  return true;
}

bool check_otlp_endpoint(char **newval, void **extra, GucSource source) {
  const char *v = *newval ? *newval : "";
  char err[256];
  if (run_cpp([&] { aj::validate_otlp_endpoint(v); }, err, sizeof err)) return true;
  GUC_check_errdetail("%s", err);
  return false;
}

bool check_otlp_headers(char **newval, void **extra, GucSource source) {
  const char *v = *newval ? *newval : "";
  char err[256];
  if (run_cpp([&] { (void)aj::parse_otlp_headers(v); }, err, sizeof err)) return true;
  GUC_check_errdetail("%s", err);
  return false;
}

// ------------------------------------------------------------ registration
void exporter_register() {
  prev_shmem_request = shmem_request_hook;
  shmem_request_hook = exporter_shmem_request;
  prev_shmem_startup = shmem_startup_hook;
  shmem_startup_hook = exporter_shmem_startup;

  BackgroundWorker w;
  memset(&w, 0, sizeof w);
  w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
  w.bgw_start_time = BgWorkerStart_RecoveryFinished;
  w.bgw_restart_time = 5;
  strlcpy(w.bgw_library_name, "agent_journal", BGW_MAXLEN);
  strlcpy(w.bgw_function_name, "aj_exporter_main", BGW_MAXLEN);
  strlcpy(w.bgw_name, "agent_journal exporter", BGW_MAXLEN);
  strlcpy(w.bgw_type, "agent_journal exporter", BGW_MAXLEN);
  RegisterBackgroundWorker(&w);
}

// ------------------------------------------------------------ fencing
void count_fenced_write() {
  if (shared != nullptr) pg_atomic_fetch_add_u64(&shared->fenced_writes, 1);
}

bool fenced_writes(uint64 *count, TimestampTz *since) {
  if (shared == nullptr) return false;  // not preloaded: not counted
  *count = pg_atomic_read_u64(&shared->fenced_writes);
  *since = PgStartTime;
  return true;
}

// ------------------------------------------------------------ health
bool aj_exporter_health(std::vector<aj::Family> *families, char *err, size_t errlen) {
  if (shared == nullptr) return true;  // not preloaded: no exporter
  double last[NTARGETS];
  uint64 errors[NTARGETS];
  SpinLockAcquire(&shared->mutex);
  for (int i = 0; i < NTARGETS; i++) {
    last[i] = shared->last_success[i];
    errors[i] = shared->errors[i];
  }
  SpinLockRelease(&shared->mutex);
  bool on[NTARGETS] = {enabled(textfile_path), enabled(otlp_endpoint)};
  return run_cpp(
      [&] {
        std::vector<aj::ExportTargetHealth> targets;
        for (int i = 0; i < NTARGETS; i++)
          if (on[i]) targets.push_back({kTargetNames[i], last[i], (uint64_t)errors[i]});
        aj::append_export_families(targets, *families);
      },
      err, errlen);
}

}  // namespace ajpg

// ------------------------------------------------------------ worker main
using namespace ajpg;

void aj_exporter_main(Datum arg) {
  pqsignal(SIGHUP, SignalHandlerForConfigReload);
  pqsignal(SIGTERM, die);
  BackgroundWorkerUnblockSignals();

  strlcpy(connected_db, export_database ? export_database : "postgres", sizeof connected_db);
  BackgroundWorkerInitializeConnection(connected_db, nullptr, 0);
  pgstat_report_appname("agent_journal exporter");
  // Only qualified names are used; keep a database's search_path out.
  SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
  cycle_cxt =
      AllocSetContextCreate(TopMemoryContext, "agent_journal exporter", ALLOCSET_DEFAULT_SIZES);
  ereport(LOG, (errmsg("agent_journal exporter started for database \"%s\"", connected_db)));

  TimestampTz next_due = GetCurrentTimestamp();
  TimestampTz next_retention = TimestampTzPlusMilliseconds(next_due, 1000);
  TimestampTz next_tick = next_due;
  for (;;) {
    CHECK_FOR_INTERRUPTS();
    if (ConfigReloadPending) {
      ConfigReloadPending = false;
      ProcessConfigFile(PGC_SIGHUP);
      if (strcmp(export_database ? export_database : "", connected_db) != 0) {
        ereport(LOG, (errmsg("agent_journal exporter: agent_journal.export_database changed "
                             "from \"%s\" to \"%s\", restarting",
                             connected_db, export_database)));
        proc_exit(1);  // restarted after bgw_restart_time, connected to the new one
      }
      next_due = GetCurrentTimestamp();  // export with the new settings now
      next_retention = next_due;
    }
    TimestampTz now = GetCurrentTimestamp();
    if (feed_tick_interval_ms > 0 && now >= next_tick) {
      feed_tick_step();
      next_tick = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64)feed_tick_interval_ms);
      continue;
    }
    if (retention_interval_s > 0 && now >= next_retention) {
      retention_cycle();
      next_retention = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
                                                   (int64)retention_interval_s * 1000);
      continue;
    }
    if (now >= next_due) {
      next_due = TimestampTzPlusMilliseconds(now, (int64)export_interval_s * 1000);
      export_cycle();
      MemoryContextReset(cycle_cxt);
      continue;
    }
    long wait_ms = TimestampDifferenceMilliseconds(now, next_due);
    if (retention_interval_s > 0)
      wait_ms = Min(wait_ms, TimestampDifferenceMilliseconds(now, next_retention));
    if (feed_tick_interval_ms > 0)
      wait_ms = Min(wait_ms, TimestampDifferenceMilliseconds(now, next_tick));
    if (push.easy != nullptr) {
      // A push in flight: wait on its sockets in short steps, then look at
      // the latch without blocking.
      push_poll((int)Min(wait_ms, 100L));
      wait_ms = 0;
    }
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, wait_ms,
                    PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
  }
}
