// The change feed (schema 0.7.0): every agent's entries in commit order,
// with positions stored per consumer.
//
// How entries get positions without skipping one (the bigserial trap: a
// position handed out at insert lets a transaction that commits late put
// entries behind ones a consumer already read):
//   - every append (append, append_batch, fork_agent) writes one row into
//     feed_appends (0.10.0; feed_pending before) in its own transaction:
//     the agent and the range of sequences it wrote. A rollback takes the
//     row back with the entries. feed_appends is unlogged (no WAL for the
//     row, none for the tick's delete); a crash empties it, and with it
//     the marker row (first_sequence 0): the next tick notes again, from
//     the journal, every agent's sequences past its feed rows' last one.
//     feed_pending (logged) keeps forget_agent's 'forgotten' notes.
//   - a tick moves the pending rows its snapshot sees (committed ones only)
//     into feed and gives them positions after every position handed out
//     before. Ticks run one at a time (the feed_state row, locked until the
//     tick commits) and in short transactions of their own: the background
//     worker's, or a read_feed / subscribe called outside a transaction
//     block at READ COMMITTED. A row that commits after a tick's snapshot
//     gets its position in a later tick, after everything read so far.
//   - one feed row covers a range of one agent's sequences; the entry with
//     sequence s has position last_position - (last_sequence - s).
//   - read_feed joins feed rows with the entries that are still there.
//     Entries that compaction or retention removed come out as one row of
//     kind 'gap' per agent and read; forget_agent marks the agent's feed
//     and pending rows as a 'forgotten' gap (so a re-created agent's new
//     sequences never match the old rows). None of them waits for a
//     consumer.
#include "pg/citus.hpp"
#include "pg/journal.hpp"
#include "pg/pg.hpp"

extern "C" {
#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_authid.h"
#include "commands/async.h"
#include "commands/vacuum.h"
#include "nodes/makefuncs.h"
#include "storage/bufmgr.h"
#include "commands/extension.h"
#include "storage/proc.h"
#include "utils/datum.h"
#include "executor/tuptable.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
}

#include <algorithm>

extern "C" {
PG_FUNCTION_INFO_V1(aj_subscribe);
PG_FUNCTION_INFO_V1(aj_read_feed);
PG_FUNCTION_INFO_V1(aj_ack_feed);
PG_FUNCTION_INFO_V1(aj_unsubscribe);
PG_FUNCTION_INFO_V1(aj_feed_consumers);
}

namespace ajpg {

int feed_tick_interval_ms = 100;

namespace {

const Oid T_UUID1[] = {UUIDOID};
constexpr int MAX_CONSUMER_BYTES = 200;

struct FeedRels {
  // appends: feed_appends (0.10.0), the writers' unlogged notes; before
  // it, they wrote into feed_pending, which keeps forget_agent's notes.
  Oid pending = InvalidOid, feed = InvalidOid, appends = InvalidOid;
  // 0.11.0: feed_appends.counted. A note with counted = false carries its
  // entries' journal_appended count: the writer did not count them, the
  // tick (or forget_agent) that removes the note does.
  bool appends_counted = false;
};

// The feed's tables (InvalidOid before schema 0.7.0: nothing is recorded).
// `refuse`: ERROR 0A000 on a distributed journal, which has no feed
// (unsubscribe does not refuse: distribute() asks for the consumers to go).
FeedRels feed_rels(bool refuse = true) {
  if (refuse && citus_preloaded()) refuse_citus_layout(get_namespace_oid("agent_journal", true));
  static FeedRels cache;
  static CatalogStamp stamp;
  if (catalog_stamp_current(stamp)) return cache;
  CatalogStamp now = catalog_stamp();
  Oid nsp = get_namespace_oid("agent_journal", true);
  FeedRels r;
  if (OidIsValid(nsp)) {
    r.pending = get_relname_relid("feed_pending", nsp);
    r.feed = get_relname_relid("feed", nsp);
    r.appends = get_relname_relid("feed_appends", nsp);
    r.appends_counted = OidIsValid(r.appends) && get_attnum(r.appends, "counted") != InvalidAttrNumber;
  }
  cache = r;
  stamp = now;
  return cache;
}

// The journal's tables are managed by Citus (distributed; or a hand-made
// layout, which the writers refuse): there is no feed, the writers note
// nothing for it and the worker does not tick. One branch without Citus.
bool feed_unavailable() { return agent_journal_on_citus(); }

// May the role of a consumer (`role`; InvalidOid: its role is gone) see
// an agent with this owner? As for a direct read: unbound agents are
// everyone's, bound ones their owner's (and admins').
bool consumer_sees(Oid role, bool bound, Oid owner, bool role_is_admin) {
  if (!bound || role_is_admin) return true;
  return OidIsValid(role) && OidIsValid(owner) && has_privs_of_role(role, owner);
}

// ------------------------------------------------------------ the tick

// feed_pending rows this process's ticks deleted since its last vacuum of
// the table (see feed_tick_step).
int64 pending_deleted = 0;

struct Pending {
  pg_uuid_t agent;
  int64 first, last;
  TimestampTz written_at;
  bool gap;
  char *owner;  // for gaps; nullptr: unbound
};

int uuid_cmp(const pg_uuid_t &a, const pg_uuid_t &b) { return memcmp(a.data, b.data, UUID_LEN); }

// A growable array in the current memory context, for plain structs (no
// C++ allocation that could throw between PostgreSQL calls).
template <typename T>
struct PArray {
  T *v = nullptr;
  int64 n = 0, cap = 0;
  void push(const T &x) {
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      v = v ? (T *)repalloc_huge(v, sizeof(T) * cap)
            : (T *)MemoryContextAllocHuge(CurrentMemoryContext, sizeof(T) * cap);
    }
    v[n++] = x;
  }
  T *begin() { return v; }
  T *end() { return v + n; }
};

// One feed row to be: a group of one agent's pending rows.
struct Group {
  pg_uuid_t agent;
  int64 first, last;
  TimestampTz written_at;        // the earliest write in the group
  TimestampTz agent_written_at;  // the earliest of the agent's groups
  bool gap;
  char *owner;
};

// Moves the committed pending rows into the feed. Returns how many feed
// rows it wrote; 0 also when another tick holds the feed (it will move
// them) or when this transaction may not tick (see can_tick).
// `probe`: first look whether anything is pending at all, so that a tick
// with nothing to do takes no lock and writes nothing (an idle server's
// worker ticks without WAL or transaction ids). The worker skips the look
// after a tick that moved rows (under load there is nearly always more):
// the look is a scan of feed_pending as long as the DELETE's, through the
// pages of rows earlier ticks deleted. Only the cost of an empty tick
// depends on it, never which rows move.
int64 tick(bool probe = true) {
  // The feed_state row: created on the first tick (not by the install
  // script, so that a restored dump brings its own), then locked until
  // this transaction ends. SKIP LOCKED: another tick is running.
  static SPIPlanPtr p_any, p_init, p_lock, p_take, p_insert, p_state;
  const bool appends = OidIsValid(feed_rels().appends);
  if (probe) {
    // Anything to move: a note, or feed_appends' marker gone (a crash
    // emptied it: the tick rebuilds what it lost).
    run_plan(&p_any,
             appends ? "SELECT WHERE EXISTS (SELECT FROM agent_journal.feed_appends "
                       "  WHERE first_sequence OPERATOR(pg_catalog.<>) 0) "
                       "OR EXISTS (SELECT FROM agent_journal.feed_pending) "
                       "OR NOT EXISTS (SELECT FROM agent_journal.feed_appends "
                       "  WHERE first_sequence OPERATOR(pg_catalog.=) 0)"
                     : "SELECT FROM agent_journal.feed_pending LIMIT 1",
             0, nullptr, nullptr, nullptr, SPI_OK_SELECT, true);
    if (SPI_processed == 0) return 0;
  }
  const char *lock_sql = "SELECT last_position FROM agent_journal.feed_state FOR UPDATE SKIP LOCKED";
  run_plan(&p_lock, lock_sql, 0, nullptr, nullptr, nullptr, SPI_OK_SELECT);
  if (SPI_processed != 1) {
    // No row yet (the first tick), or another tick holds it: create it
    // unless it is there (waits for a concurrent first tick's insert),
    // then lock again, skipping it if another tick holds it.
    run_plan(&p_init,
             "INSERT INTO agent_journal.feed_state (id, last_position) "
             "SELECT true, 0 WHERE NOT EXISTS (SELECT FROM agent_journal.feed_state) "
             "ON CONFLICT DO NOTHING",
             0, nullptr, nullptr, nullptr, SPI_OK_INSERT);
    run_plan(&p_lock, lock_sql, 0, nullptr, nullptr, nullptr, SPI_OK_SELECT);
    if (SPI_processed != 1) return 0;
  }
  int64 position = result_int8(1);
  PArray<Pending> rows;
  // Rows of the last statement's result (agent, first, last, written_at,
  // gap, owner) into `rows`.
  auto take = [&rows]() {
    for (uint64 i = 0; i < SPI_processed; i++) {
      HeapTuple t = SPI_tuptable->vals[i];
      TupleDesc d = SPI_tuptable->tupdesc;
      bool isnull;
      Pending p;
      p.agent = *DatumGetUUIDP(SPI_getbinval(t, d, 1, &isnull));
      p.first = DatumGetInt64(SPI_getbinval(t, d, 2, &isnull));
      p.last = DatumGetInt64(SPI_getbinval(t, d, 3, &isnull));
      p.written_at = DatumGetTimestampTz(SPI_getbinval(t, d, 4, &isnull));
      p.gap = DatumGetBool(SPI_getbinval(t, d, 5, &isnull));
      p.owner = SPI_getvalue(t, d, 6);
      rows.push(p);
    }
  };
  if (appends) {
    static SPIPlanPtr p_marker, p_lock, p_rebuild, p_mark, p_take_appends;
    run_plan(&p_marker,
             "SELECT FROM agent_journal.feed_appends WHERE first_sequence OPERATOR(pg_catalog.=) 0 LIMIT 1",
             0, nullptr, nullptr, nullptr, SPI_OK_SELECT, true);
    if (SPI_processed == 0) {
      // A crash (or a promotion, or a restored base backup) emptied the
      // unlogged feed_appends: every agent's sequences past the last one
      // its feed rows cover are noted again, from the journal. With a
      // SHARE lock on entries until this tick commits, no append, compact
      // or forget commits between this look and the moves below (which
      // see the same entries: notes of appends already counted here merge
      // into the same range). Appends that commit later note themselves.
      run_plan(&p_lock, "LOCK TABLE agent_journal.entries IN SHARE MODE", 0, nullptr, nullptr,
               nullptr, SPI_OK_UTILITY);
      run_plan(&p_rebuild,
               "SELECT s.agent_id, COALESCE(c.covered, 0) OPERATOR(pg_catalog.+) 1, l.latest, "
               "  pg_catalog.clock_timestamp(), false, NULL::pg_catalog.text "
               "FROM agent_journal.agent_state s "
               "CROSS JOIN LATERAL (SELECT GREATEST(s.compacted_through, "
               "  (SELECT pg_catalog.max(e.sequence) FROM agent_journal.entries e "
               "   WHERE e.agent_id OPERATOR(pg_catalog.=) s.agent_id)) AS latest) l "
               "CROSS JOIN LATERAL (" FEED_COVERED_SQL("s.agent_id") ") c "
               "WHERE l.latest OPERATOR(pg_catalog.>) COALESCE(c.covered, 0)",
               0, nullptr, nullptr, nullptr, SPI_OK_SELECT);
      take();
      // journal_appended lost what the unlogged tally_deltas held (0.10.0):
      // made up in tallies, from the family's definition (the agents'
      // latest sequences plus what forgotten agents counted), which the
      // SHARE lock keeps still meanwhile.
      if (OidIsValid(rels().tally_deltas)) {
        // (0.11.0: less what the notes still here carry, which the move
        // below adds: notes an operator's TRUNCATE spared, written since.)
        static SPIPlanPtr p_lost, p_lost_carried;
#define AJ_LOST_SQL                                                                                   \
  APPENDED_FROM_JOURNAL_SQL " - (SELECT COALESCE(pg_catalog.sum(t.value), 0) "                        \
  "FROM agent_journal.tallies t WHERE t.name OPERATOR(pg_catalog.=) 'journal_appended')::pg_catalog.int8 " \
  "- (SELECT COALESCE(pg_catalog.sum(d.value), 0) FROM agent_journal.tally_deltas d "                \
  "WHERE d.name OPERATOR(pg_catalog.=) 'journal_appended')::pg_catalog.int8"
        if (feed_rels().appends_counted)
          run_plan(&p_lost_carried,
                   AJ_LOST_SQL " - (SELECT COALESCE(pg_catalog.sum(n.last_sequence OPERATOR(pg_catalog.-) "
                   "n.first_sequence OPERATOR(pg_catalog.+) 1), 0) FROM agent_journal.feed_appends n "
                   "WHERE NOT n.counted AND n.first_sequence OPERATOR(pg_catalog.<>) 0)::pg_catalog.int8",
                   0, nullptr, nullptr, nullptr, SPI_OK_SELECT);
        else
          run_plan(&p_lost, AJ_LOST_SQL, 0, nullptr, nullptr, nullptr, SPI_OK_SELECT);
#undef AJ_LOST_SQL
        int64 lost = result_int8(1);
        if (lost > 0)
          tally_add_logged(TALLY_APPENDED, lost);
        else if (lost < 0)
          elog(LOG, "agent_journal: journal_appended counts %lld more than the journal holds; left as it is",
               (long long)-lost);
      }
      run_plan(&p_mark,
               "INSERT INTO agent_journal.feed_appends (agent_id, first_sequence, last_sequence) "
               "VALUES ('00000000-0000-0000-0000-000000000000', 0, 0)",
               0, nullptr, nullptr, nullptr, SPI_OK_INSERT);
      elog(LOG, "agent_journal: the feed's unlogged notes were lost (a crash or a promotion); "
                "noted %lld agents' unmoved sequences again from the journal",
           (long long)rows.n);
    }
    static SPIPlanPtr p_take_counted;
#define AJ_TAKE_NOTES(more)                                                                      \
  "DELETE FROM agent_journal.feed_appends WHERE first_sequence OPERATOR(pg_catalog.<>) 0 "         \
  "RETURNING agent_id, first_sequence, last_sequence, written_at, false, NULL::pg_catalog.text" more
    if (feed_rels().appends_counted) {
      // 0.11.0: the notes that carry their entries' count (see feed_note)
      // add it to journal_appended in this transaction, as they leave.
      run_plan(&p_take_counted,
               AJ_TAKE_NOTES(", CASE WHEN counted THEN 0 ELSE last_sequence OPERATOR(pg_catalog.-) "
                             "first_sequence OPERATOR(pg_catalog.+) 1 END"),
               0, nullptr, nullptr, nullptr, SPI_OK_DELETE_RETURNING);
      int64 carried = 0;
      for (uint64 i = 0; i < SPI_processed; i++) {
        bool isnull;
        Datum d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 7, &isnull);
        if (!isnull) carried += DatumGetInt64(d);
      }
      if (carried > 0) tally_add_logged(TALLY_APPENDED, carried);
    } else {
      run_plan(&p_take_appends, AJ_TAKE_NOTES(""), 0, nullptr, nullptr, nullptr, SPI_OK_DELETE_RETURNING);
    }
#undef AJ_TAKE_NOTES
    pending_deleted += (int64)SPI_processed;
    take();
  }
  run_plan(&p_take,
           "DELETE FROM agent_journal.feed_pending "
           "RETURNING agent_id, first_sequence, last_sequence, written_at, gap IS NOT NULL, owner",
           0, nullptr, nullptr, nullptr, SPI_OK_DELETE_RETURNING);
  if (!appends) pending_deleted += (int64)SPI_processed;
  take();
  if (rows.n == 0) return 0;
  // Per agent: its forgotten ranges make one gap row, its other ranges
  // one row of entries (they are one incarnation's: forget_agent marked
  // every earlier one, and committed appends of one agent are contiguous).
  // The gap goes first; groups go in the order of their earliest write.
  std::sort(rows.begin(), rows.end(), [](const Pending &a, const Pending &b) {
    int c = uuid_cmp(a.agent, b.agent);
    if (c != 0) return c < 0;
    if (a.gap != b.gap) return a.gap;
    return a.first < b.first;
  });
  PArray<Group> groups;
  for (const Pending &p : rows) {
    Group *g = groups.n > 0 ? &groups.v[groups.n - 1] : nullptr;
    if (g && uuid_cmp(g->agent, p.agent) == 0 && g->gap == p.gap) {
      g->first = Min(g->first, p.first);
      g->last = Max(g->last, p.last);
      g->written_at = Min(g->written_at, p.written_at);
      if (p.owner) g->owner = p.owner;
      continue;
    }
    groups.push(Group{p.agent, p.first, p.last, p.written_at, p.written_at, p.gap, p.owner});
  }
  // An agent's groups (its gap, then its entries) stay together, placed by
  // the agent's earliest write.
  for (int64 i = 0; i < groups.n; i++) {
    if (i > 0 && uuid_cmp(groups.v[i - 1].agent, groups.v[i].agent) == 0) {
      TimestampTz m = Min(groups.v[i - 1].agent_written_at, groups.v[i].written_at);
      groups.v[i - 1].agent_written_at = groups.v[i].agent_written_at = m;
    }
  }
  std::sort(groups.begin(), groups.end(), [](const Group &a, const Group &b) {
    if (a.agent_written_at != b.agent_written_at) return a.agent_written_at < b.agent_written_at;
    int c = uuid_cmp(a.agent, b.agent);
    if (c != 0) return c < 0;
    return a.gap && !b.gap;
  });
  int ng = (int)groups.n;
  Datum *pos = (Datum *)palloc(sizeof(Datum) * ng), *agent = (Datum *)palloc(sizeof(Datum) * ng),
        *first = (Datum *)palloc(sizeof(Datum) * ng), *last = (Datum *)palloc(sizeof(Datum) * ng),
        *written = (Datum *)palloc(sizeof(Datum) * ng), *gap = (Datum *)palloc(sizeof(Datum) * ng),
        *owner = (Datum *)palloc(sizeof(Datum) * ng);
  bool *gap_null = (bool *)palloc(sizeof(bool) * ng), *owner_null = (bool *)palloc(sizeof(bool) * ng);
  for (int i = 0; i < ng; i++) {
    Group &g = groups.v[i];
    position += g.gap ? 1 : g.last - g.first + 1;
    pos[i] = Int64GetDatum(position);
    pg_uuid_t *u = (pg_uuid_t *)palloc(sizeof(pg_uuid_t));
    *u = g.agent;
    agent[i] = UUIDPGetDatum(u);
    first[i] = Int64GetDatum(g.first);
    last[i] = Int64GetDatum(g.last);
    written[i] = TimestampTzGetDatum(g.written_at);
    gap[i] = g.gap ? CStringGetTextDatum("forgotten") : (Datum)0;
    gap_null[i] = !g.gap;
    owner[i] = g.owner ? CStringGetTextDatum(g.owner) : (Datum)0;
    owner_null[i] = g.owner == nullptr;
  }
  int dims[1] = {ng}, lbs[1] = {1};
  static const Oid types[] = {INT8ARRAYOID, UUIDARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
                              TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
  Datum args[7] = {
      PointerGetDatum(construct_array(pos, ng, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
      PointerGetDatum(construct_array(agent, ng, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR)),
      PointerGetDatum(construct_array(first, ng, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
      PointerGetDatum(construct_array(last, ng, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
      PointerGetDatum(construct_array(written, ng, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
      PointerGetDatum(construct_md_array(gap, gap_null, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT)),
      PointerGetDatum(construct_md_array(owner, owner_null, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT))};
  run_plan(&p_insert,
           "INSERT INTO agent_journal.feed "
           "(last_position, agent_id, first_sequence, last_sequence, written_at, gap, owner) "
           "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
           "pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
           "pg_catalog.unnest($6), pg_catalog.unnest($7))",
           7, types, args, nullptr, SPI_OK_INSERT);
  static const Oid t1[] = {INT8OID};
  Datum a1[1] = {Int64GetDatum(position)};
  run_plan(&p_state,
           "UPDATE agent_journal.feed_state SET last_position = $1, "
           "ticked_at = pg_catalog.clock_timestamp()",
           1, t1, a1, nullptr, SPI_OK_UPDATE);
  return ng;
}

// A tick that moved rows wakes the listeners (at commit), whoever ran it.
// Returns how many feed rows the tick wrote.
int64 tick_and_notify(bool probe = true) {
  int64 n = tick(probe);
  if (n > 0) Async_Notify("agent_journal_feed", nullptr);
  return n;
}

// A tick holds the feed until its transaction ends, so only short
// transactions tick: a statement outside a transaction block, at READ
// COMMITTED (each statement of the tick sees what committed before it).
bool can_tick() {
  return !IsTransactionBlock() && XactIsoLevel == XACT_READ_COMMITTED && !RecoveryInProgress() &&
         !XactReadOnly && !feed_unavailable() && OidIsValid(feed_rels().feed);
}

// subscribe and read_feed tick when they may; what they read afterwards
// must see the ranges the tick moved, so they read with a snapshot taken
// after it (the statement's own predates the commits of those entries).
// True when a snapshot was pushed: the caller pops it.
bool tick_before_reading() {
  if (!can_tick()) return false;
  tick_and_notify();
  CommandCounterIncrement();
  PushActiveSnapshot(GetTransactionSnapshot());
  return true;
}

// ------------------------------------------------------------ consumers

struct Consumer {
  bool found = false;
  char *owner = nullptr;  // the role's name
  Oid role = InvalidOid;  // InvalidOid: that role does not exist here
  int64 position = 0;
};

void check_consumer_name(FunctionCallInfo fcinfo) {
  require_arg(fcinfo, 0, "consumer");
  text *t = PG_GETARG_TEXT_PP(0);
  int len = VARSIZE_ANY_EXHDR(t);
  if (len == 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("consumer must not be empty")));
  if (len > MAX_CONSUMER_BYTES)
    ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                    errmsg("consumer is %d bytes, more than %d", len, MAX_CONSUMER_BYTES)));
}

void require_feed_schema(bool refuse = true) {
  if (!OidIsValid(feed_rels(refuse).feed))
    ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                    errmsg("the change feed needs agent_journal 0.7.0"),
                    errhint("Run ALTER EXTENSION agent_journal UPDATE.")));
}

// Inside SPI as the owner. `lock`: FOR UPDATE (ack, unsubscribe).
Consumer load_consumer(Datum name, bool lock) {
  static SPIPlanPtr p_read, p_lock;
  static const Oid t[] = {TEXTOID};
  Datum a[1] = {name};
  run_plan(lock ? &p_lock : &p_read,
           lock ? "SELECT owner, position FROM agent_journal.feed_subscriptions "
                  "WHERE consumer OPERATOR(pg_catalog.=) $1 FOR UPDATE"
                : "SELECT owner, position FROM agent_journal.feed_subscriptions "
                  "WHERE consumer OPERATOR(pg_catalog.=) $1",
           1, t, a, nullptr, SPI_OK_SELECT);
  Consumer c;
  if (SPI_processed == 0) return c;
  c.found = true;
  c.owner = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
  c.role = get_role_oid(c.owner, true);
  c.position = result_int8(2);
  return c;
}

// Only the consumer's role (roles with its privileges) or an admin may
// read, acknowledge or drop it: 42501 otherwise, 42704 if there is none.
Consumer own_consumer(Datum name, const OwnerSwitch &who, bool lock) {
  Consumer c = load_consumer(name, lock);
  if (!c.found)
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                    errmsg("feed consumer \"%s\" does not exist", TextDatumGetCString(name)),
                    errhint("Create it with agent_journal.subscribe().")));
  if (!(OidIsValid(c.role) && has_privs_of_role(who.saved_user, c.role)) && !is_admin(who.saved_user))
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("permission denied for feed consumer \"%s\"", TextDatumGetCString(name)),
                    errhint("Only its role (%s) and admins may use it.", c.owner)));
  return c;
}

// The feed's last position, in the active snapshot; `fresh`: in a new
// one (at READ COMMITTED), which also sees a tick this statement ran (a
// read_feed in the same statement as the ack_feed of what it returned).
int64 last_position(bool fresh = false) {
  static SPIPlanPtr p;
  run_plan(&p, "SELECT last_position FROM agent_journal.feed_state", 0, nullptr, nullptr, nullptr,
           SPI_OK_SELECT, !fresh);
  return SPI_processed == 0 ? 0 : result_int8(1);
}

// ------------------------------------------------------------ reading

struct OutRow {
  int64 position;
  Datum agent;
  bool gap;
  int64 sequence;  // entries
  int32 iteration;
  Datum kind, recorded_at, event;
  int64 from, through;  // gaps
  const char *reason;
};

// Writes one output row of read_feed into its tuplestore.
void put_row(ReturnSetInfo *rsinfo, const OutRow &o) {
  Datum v[7];
  bool nulls[7] = {false, false, false, false, false, false, false};
  v[0] = Int64GetDatum(o.position);
  v[1] = o.agent;
  if (o.gap) {
    nulls[2] = nulls[3] = nulls[5] = true;
    v[2] = v[3] = v[5] = (Datum)0;
    v[4] = CStringGetTextDatum("gap");
    char buf[160];
    snprintf(buf, sizeof buf, "{\"from\": %lld, \"through\": %lld, \"reason\": \"%s\"}",
             (long long)o.from, (long long)o.through, o.reason);
    v[6] = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf));
  } else {
    v[2] = Int64GetDatum(o.sequence);
    v[3] = Int32GetDatum(o.iteration);
    v[4] = o.kind;
    v[5] = o.recorded_at;
    v[6] = o.event;
  }
  tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
}

// read_feed's tuplestore. A consumer's every step materializes a batch
// (a C function in FROM always returns a tuplestore), and in a query's own
// memory that is ~0.5 MB allocated and freed per call, which glibc hands
// back to the kernel and then page-faults in again: in a drain that cost
// more than reading the entries. So one read at a time per backend keeps
// its tuplestore in a context of its own whose first block (1 MB, kept on
// reset) stays mapped; the query's memory context resets it when it goes
// (end of the query or error, after the executor ended the tuplestore),
// larger batches spill into blocks freed then. A second read while that
// one's result is still open (a cursor, a lateral call) uses the query's
// memory as before.
MemoryContext feed_store_cxt = nullptr;
bool feed_store_busy = false;
constexpr Size FEED_STORE_KEEP = 1024 * 1024;

void feed_store_release(void *) {
  MemoryContextReset(feed_store_cxt);
  feed_store_busy = false;
}

void begin_feed_store(FunctionCallInfo fcinfo) {
  ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
  if (feed_store_busy || rsinfo == nullptr || !IsA(rsinfo, ReturnSetInfo) ||
      !(rsinfo->allowedModes & SFRM_Materialize)) {
    InitMaterializedSRF(fcinfo, 0);  // (its checks raise the errors)
    return;
  }
  MemoryContext per_query = rsinfo->econtext->ecxt_per_query_memory;
  MemoryContext old = MemoryContextSwitchTo(per_query);
  TupleDesc desc;
  if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
    elog(ERROR, "return type must be a row type");
  if (feed_store_cxt == nullptr)
    feed_store_cxt = AllocSetContextCreate(TopMemoryContext, "agent_journal read_feed",
                                           FEED_STORE_KEEP, ALLOCSET_DEFAULT_INITSIZE,
                                           ALLOCSET_DEFAULT_MAXSIZE);
  MemoryContextCallback *cb = (MemoryContextCallback *)palloc0(sizeof(MemoryContextCallback));
  cb->func = feed_store_release;
  MemoryContextRegisterResetCallback(per_query, cb);
  feed_store_busy = true;
  MemoryContextSwitchTo(feed_store_cxt);
  bool random_access = (rsinfo->allowedModes & SFRM_Materialize_Random) != 0;
  rsinfo->setResult = tuplestore_begin_heap(random_access, false, work_mem);
  rsinfo->returnMode = SFRM_Materialize;
  rsinfo->setDesc = desc;
  MemoryContextSwitchTo(old);
}

// What read_feed knows of an agent within one call.
struct AgentView {
  pg_uuid_t agent;
  bool visible;
  int64 open_gap;  // index in the output of this agent's gap row still growing (-1: none)
};

}  // namespace

// Records that this transaction wrote sequences first..last of `agent`
// (inside SPI as the owner; every append does it, so a direct heap insert
// like the entry's own, or an SPI INSERT if an operator changed the
// table). Nothing before schema 0.7.0.
//
// `carry`: the caller (append, append_batch) has not counted these
// entries in journal_appended. Where the worker ticks the feed here
// (tally_deltas_in_use) and feed_appends has its `counted` column
// (0.11.0), the note carries the count instead (counted = false) and
// true is returned: the tick that moves the note adds it to tallies in
// its own transaction, forget_agent if it removes the note first, a
// render adds the notes still waiting. Otherwise false: the caller
// counts. The appending transaction then writes no tally row at all.
bool feed_note(Datum agent, int64 first, int64 last, bool carry) {
  // A distributed journal has no feed (its functions refuse, and no tick
  // could order commits of several nodes): nothing is noted, so nothing
  // piles up in feed_pending's shards.
  if (feed_unavailable()) return false;
  const FeedRels &fr = feed_rels();
  // 0.10.0: into the unlogged feed_appends; before, into feed_pending.
  bool unlogged = OidIsValid(fr.appends);
  Oid target = unlogged ? fr.appends : fr.pending;
  if (!OidIsValid(target) || last < first) return false;
  carry = carry && unlogged && fr.appends_counted && tally_deltas_in_use();
#define AJ_NOTE_COLS                                                                  \
  {"agent_id", UUIDOID, InvalidOid, false}, {"first_sequence", INT8OID, InvalidOid, false}, \
      {"last_sequence", INT8OID, InvalidOid, false}, {"written_at", TIMESTAMPTZOID, InvalidOid, false}
  static const ColumnSpec cols[] = {AJ_NOTE_COLS, {"counted", BOOLOID, InvalidOid, false}};
  static const ColumnSpec pending_cols[] = {AJ_NOTE_COLS, {"gap", TEXTOID, InvalidOid, false},
                                            {"owner", TEXTOID, InvalidOid, false}};
#undef AJ_NOTE_COLS
  // feed_appends: four columns, five from 0.11.0; feed_pending: six
  int ncols = !unlogged ? 6 : fr.appends_counted ? 5 : 4;
  int ours = unlogged ? ncols : 4;  // the columns given a value
  Relation rel = table_open(target, RowExclusiveLock);
  AttrNumber col[6];
  int live = map_columns(rel, unlogged ? cols : pending_cols, ncols, col);
  if (direct_insert_ok(rel, live, ncols)) {
    TupleDesc desc = RelationGetDescr(rel);
    Datum *v = (Datum *)palloc0(sizeof(Datum) * desc->natts);
    bool *n = (bool *)palloc(sizeof(bool) * desc->natts);
    for (int i = 0; i < desc->natts; i++) n[i] = true;
    Datum mine[5] = {agent, Int64GetDatum(first), Int64GetDatum(last),
                     TimestampTzGetDatum(GetCurrentTimestamp()), BoolGetDatum(!carry)};
    for (int c = 0; c < ours; c++) {
      v[col[c] - 1] = mine[c];
      n[col[c] - 1] = false;
    }
    simple_insert(rel, v, n);
    table_close(rel, NoLock);
    return carry;
  }
  table_close(rel, NoLock);
  // the SPI fallback: into feed_pending, feed_appends, or (0.11.0) with counted
  static SPIPlanPtr plans[3];
  static const char *const sql[3] = {
      "INSERT INTO agent_journal.feed_pending (agent_id, first_sequence, last_sequence) VALUES ($1, $2, $3)",
      "INSERT INTO agent_journal.feed_appends (agent_id, first_sequence, last_sequence) VALUES ($1, $2, $3)",
      "INSERT INTO agent_journal.feed_appends (agent_id, first_sequence, last_sequence, counted) "
      "VALUES ($1, $2, $3, $4)"};
  static const Oid t[] = {UUIDOID, INT8OID, INT8OID, BOOLOID};
  Datum a[4] = {agent, Int64GetDatum(first), Int64GetDatum(last), BoolGetDatum(!carry)};
  int k = !unlogged ? 0 : !fr.appends_counted ? 1 : 2;
  run_plan(&plans[k], sql[k], k == 2 ? 4 : 3, t, a, nullptr, SPI_OK_INSERT);
  return carry;
}

// forget_agent (under the agent's lock, inside SPI as the owner): every
// feed and pending row of the agent becomes a 'forgotten' gap, so its
// sequences (which restart) never match the rows again. Its notes in the
// unlogged feed_appends (0.10.0) become one 'forgotten' note in
// feed_pending, which is logged: a crash does not lose the gap. If a crash
// emptied feed_appends and no tick rebuilt it yet, the note covers every
// sequence past what the agent's feed rows cover.
void feed_forget(Datum agent, const Latest &l) {
  if (feed_unavailable() || !OidIsValid(feed_rels().feed)) return;
  static SPIPlanPtr p_pending, p_feed, p_appends, p_lost;
  static const Oid t[] = {UUIDOID, TEXTOID};
  const char *owner = nullptr;
  if (l.bound && OidIsValid(l.owner)) owner = GetUserNameFromId(l.owner, true);
  Datum a[2] = {agent, owner ? CStringGetTextDatum(owner) : (Datum)0};
  const char nulls[2] = {' ', owner ? ' ' : 'n'};
  if (OidIsValid(feed_rels().appends)) {
    // Taken out first: a tick moving them holds them until it commits,
    // and the statements below (at READ COMMITTED) then see its feed rows.
#define AJ_FORGET_NOTES(counted)                                                                  \
  "WITH d AS (DELETE FROM agent_journal.feed_appends "                                                \
  "  WHERE agent_id OPERATOR(pg_catalog.=) $1 AND first_sequence OPERATOR(pg_catalog.<>) 0 "          \
  "  RETURNING first_sequence, last_sequence, written_at, " counted " AS counted), "                   \
  "i AS (INSERT INTO agent_journal.feed_pending "                                                     \
  "  (agent_id, first_sequence, last_sequence, written_at, gap, owner) "                              \
  "  SELECT $1, pg_catalog.min(first_sequence), pg_catalog.max(last_sequence), "                      \
  "  pg_catalog.min(written_at), 'forgotten', $2 FROM d HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0) " \
  "SELECT COALESCE(pg_catalog.sum(last_sequence OPERATOR(pg_catalog.-) first_sequence "                \
  "  OPERATOR(pg_catalog.+) 1) FILTER (WHERE NOT counted), 0)::pg_catalog.int8 FROM d"
    // Notes that carried their entries' count (0.11.0) add it now, as a
    // tick moving them would have: the count never drops.
    static SPIPlanPtr p_appends_counted;
    if (feed_rels().appends_counted)
      run_plan(&p_appends_counted, AJ_FORGET_NOTES("counted"), 2, t, a, nulls, SPI_OK_SELECT);
    else
      run_plan(&p_appends, AJ_FORGET_NOTES("true"), 2, t, a, nulls, SPI_OK_SELECT);
#undef AJ_FORGET_NOTES
    int64 carried = result_int8(1);
    if (carried > 0) tally_add_logged(TALLY_APPENDED, carried);
    static const Oid t3[] = {UUIDOID, TEXTOID, INT8OID};
    Datum a3[3] = {a[0], a[1], Int64GetDatum(l.sequence)};
    const char n3[3] = {' ', nulls[1], ' '};
    run_plan(&p_lost,
             "INSERT INTO agent_journal.feed_pending "
             "  (agent_id, first_sequence, last_sequence, gap, owner) "
             "SELECT $1, c.covered OPERATOR(pg_catalog.+) 1, $3, 'forgotten', $2 "
             "FROM (SELECT COALESCE(k.covered, 0) AS covered FROM (" FEED_COVERED_SQL("$1") ") k) c "
             "WHERE $3 OPERATOR(pg_catalog.>) c.covered "
             "AND NOT EXISTS (SELECT FROM agent_journal.feed_appends m "
             "  WHERE m.first_sequence OPERATOR(pg_catalog.=) 0)",
             3, t3, a3, n3, SPI_OK_INSERT);
  }
  run_plan(&p_pending,
           "UPDATE agent_journal.feed_pending SET gap = 'forgotten', owner = $2 "
           "WHERE agent_id OPERATOR(pg_catalog.=) $1 AND gap IS NULL",
           2, t, a, nulls, SPI_OK_UPDATE);
  run_plan(&p_feed,
           "UPDATE agent_journal.feed SET gap = 'forgotten', owner = $2 "
           "WHERE agent_id OPERATOR(pg_catalog.=) $1 AND gap IS NULL",
           2, t, a, nulls, SPI_OK_UPDATE);
}

namespace {
// Did the worker's last tick move rows? (Its next one then skips the
// probe; see tick.)
bool last_tick_moved = false;
}  // namespace

namespace {
TimestampTz last_vacuum = 0;

// VACUUM (no truncation, skipped if the table is locked) of feed_pending,
// by the worker between ticks, outside any transaction, as autovacuum
// calls it. Every append inserts a row there and a tick deletes it ~100 ms
// later, but only VACUUM records the freed space for reuse: until
// autovacuum's next visit (autovacuum_naptime, a minute by default) the
// writers extend the table and every tick's DELETE scans all of it, dead
// tuples included (5,000 appends/s: 2,200 pages after a minute, 30-100 ms a
// scan, ten scans a second). Vacuumed every ~10,000 moved rows, the table
// stays at a few dozen pages. No truncation: it would take an ACCESS
// EXCLUSIVE lock the writers queue behind.
void vacuum_pending() {
  MemoryContext outer = CurrentMemoryContext;
  MemoryContext saved_portal = PortalContext;
  MemoryContext portal =
      AllocSetContextCreate(TopMemoryContext, "agent_journal feed vacuum", ALLOCSET_DEFAULT_SIZES);
  PG_TRY();
  {
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    PortalContext = portal;  // vacuum() keeps its memory under it
    // the table the writers note into: feed_appends (0.10.0), else feed_pending
    const FeedRels &fr = feed_rels();
    bool appends = OidIsValid(fr.appends);
    const char *relname = appends ? "feed_appends" : "feed_pending";
    Oid relid = appends ? fr.appends : fr.pending;
    pgstat_report_activity(STATE_RUNNING, appends ? "agent_journal: vacuum feed_appends"
                                                  : "agent_journal: vacuum feed_pending");
    if (OidIsValid(relid)) {
      VacuumParams params;
      memset(&params, 0, sizeof params);
      params.options = VACOPT_VACUUM | VACOPT_SKIP_LOCKED;
      params.freeze_min_age = params.freeze_table_age = -1;
      params.multixact_freeze_min_age = params.multixact_freeze_table_age = -1;
      params.log_min_duration = -1;
      params.index_cleanup = VACOPTVALUE_AUTO;
      params.truncate = VACOPTVALUE_DISABLED;
      params.nworkers = -1;
      MemoryContextSwitchTo(portal);
      RangeVar *rv = makeRangeVar(pstrdup("agent_journal"), pstrdup(relname), -1);
      VacuumRelation *vr = makeVacuumRelation(rv, relid, NIL);
      vacuum(list_make1(vr), &params, GetAccessStrategy(BAS_VACUUM), true);
    }
    CommitTransactionCommand();
    pgstat_report_activity(STATE_IDLE, nullptr);
  }
  PG_CATCH();
  {
    MemoryContextSwitchTo(outer);
    EmitErrorReport();
    AbortCurrentTransaction();
    FlushErrorState();
  }
  PG_END_TRY();
  PortalContext = saved_portal;
  MemoryContextSwitchTo(outer);
  MemoryContextDelete(portal);
  pending_deleted = 0;
  last_vacuum = GetCurrentTimestamp();
}
}  // namespace

// The background worker's tick (exporter.cpp), in a transaction of its
// own: moves committed appends into the feed and wakes listeners.
void feed_tick_step() {
  MemoryContext outer = CurrentMemoryContext;
  volatile bool moved = false;
  PG_TRY();
  {
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    PushActiveSnapshot(GetTransactionSnapshot());
    pgstat_report_activity(STATE_RUNNING, "agent_journal: feed tick");
    if (OidIsValid(get_extension_oid("agent_journal", true)) && can_tick()) {
      OwnerSwitch who = spi_begin();
      moved = tick_and_notify(!last_tick_moved) > 0;
      spi_end(who);
    }
    PopActiveSnapshot();
    CommitTransactionCommand();
    pgstat_report_activity(STATE_IDLE, nullptr);
  }
  PG_CATCH();
  {
    MemoryContextSwitchTo(outer);
    EmitErrorReport();
    AbortCurrentTransaction();
    FlushErrorState();
    moved = false;
  }
  PG_END_TRY();
  last_tick_moved = moved;  // committed (an error resets it: the next tick probes)
  MemoryContextSwitchTo(outer);
  // The ticks' deletes and inserts in the cumulative statistics (as a
  // backend reports after each transaction; at most once a second), so
  // that autovacuum and monitoring see them.
  pgstat_report_stat(false);
  if (moved && pending_deleted >= 10000 &&
      TimestampDifferenceExceeds(last_vacuum, GetCurrentTimestamp(), 1000))
    vacuum_pending();
}

// The worker's retention pass: feed rows every consumer is past, whose
// entries are all gone (or that are gaps), go. Rows of live entries stay
// for consumers that subscribe from the beginning.
int64 feed_prune() {
  if (feed_unavailable() || !OidIsValid(feed_rels().feed)) return 0;
  static SPIPlanPtr p;
  return (int64)run_plan(
      &p,
      "DELETE FROM agent_journal.feed f "
      "WHERE f.last_position OPERATOR(pg_catalog.<=) COALESCE("
      "  (SELECT pg_catalog.min(c.position) FROM agent_journal.feed_subscriptions c), "
      "  (SELECT s.last_position FROM agent_journal.feed_state s)) "
      "AND (f.gap IS NOT NULL OR NOT EXISTS (SELECT FROM agent_journal.agent_state a "
      "  WHERE a.agent_id OPERATOR(pg_catalog.=) f.agent_id "
      "  AND a.compacted_through OPERATOR(pg_catalog.<) f.last_sequence)) "
      // a live agent's last row of entries stays: it says how far the feed
      // covers the agent, which a tick rebuilding lost notes (0.10.0) reads
      "AND (f.gap IS NOT NULL OR EXISTS (SELECT FROM agent_journal.feed n "
      "  WHERE n.agent_id OPERATOR(pg_catalog.=) f.agent_id AND n.gap IS NULL "
      "  AND n.last_position OPERATOR(pg_catalog.>) f.last_position) "
      "  OR NOT EXISTS (SELECT FROM agent_journal.agent_state a "
      "  WHERE a.agent_id OPERATOR(pg_catalog.=) f.agent_id))",
      0, nullptr, nullptr, nullptr, SPI_OK_DELETE);
}

}  // namespace ajpg

using namespace ajpg;

Datum aj_subscribe(PG_FUNCTION_ARGS) {
  check_consumer_name(fcinfo);
  require_writable("agent_journal.subscribe()");
  bool from_beginning = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
  Datum name = PG_GETARG_DATUM(0);
  OwnerSwitch who = spi_begin();
  require_feed_schema();
  bool ticked = tick_before_reading();
  const char *role = GetUserNameFromId(who.saved_user, false);
  static SPIPlanPtr p_ins;
  static const Oid t[] = {TEXTOID, TEXTOID, INT8OID};
  Datum a[3] = {name, CStringGetTextDatum(role), Int64GetDatum(from_beginning ? 0 : last_position())};
  run_plan(&p_ins,
           "INSERT INTO agent_journal.feed_subscriptions (consumer, owner, position) "
           "VALUES ($1, $2, $3) ON CONFLICT (consumer) DO NOTHING RETURNING position",
           3, t, a, nullptr, SPI_OK_INSERT_RETURNING);
  int64 position;
  if (SPI_processed == 1) {
    position = result_int8(1);
  } else {
    Consumer c = load_consumer(name, false);
    if (!c.found)  // dropped meanwhile
      ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                      errmsg("feed consumer \"%s\" was dropped concurrently", TextDatumGetCString(name)),
                      errhint("Retry.")));
    if (strcmp(c.owner, role) != 0)
      ereport(ERROR, (errcode(ERRCODE_DUPLICATE_OBJECT),
                      errmsg("feed consumer \"%s\" already exists for another role",
                             TextDatumGetCString(name)),
                      errhint("Consumer names are unique per database; choose another.")));
    position = c.position;
  }
  if (ticked) PopActiveSnapshot();
  spi_end(who);
  PG_RETURN_INT64(position);
}

Datum aj_unsubscribe(PG_FUNCTION_ARGS) {
  check_consumer_name(fcinfo);
  require_writable("agent_journal.unsubscribe()");
  Datum name = PG_GETARG_DATUM(0);
  OwnerSwitch who = spi_begin();
  require_feed_schema(false);
  Consumer c = load_consumer(name, true);
  bool dropped = false;
  if (c.found) {
    (void)own_consumer(name, who, true);
    static SPIPlanPtr p;
    static const Oid t[] = {TEXTOID};
    Datum a[1] = {name};
    dropped = run_plan(&p,
                       "DELETE FROM agent_journal.feed_subscriptions "
                       "WHERE consumer OPERATOR(pg_catalog.=) $1",
                       1, t, a, nullptr, SPI_OK_DELETE) > 0;
  }
  spi_end(who);
  PG_RETURN_BOOL(dropped);
}

Datum aj_ack_feed(PG_FUNCTION_ARGS) {
  check_consumer_name(fcinfo);
  require_arg(fcinfo, 1, "through_position");
  require_writable("agent_journal.ack_feed()");
  Datum name = PG_GETARG_DATUM(0);
  int64 through = PG_GETARG_INT64(1);
  OwnerSwitch who = spi_begin();
  require_feed_schema();
  Consumer c = own_consumer(name, who, true);
  if (through > c.position) {
    int64 last = last_position(true);
    if (through > last)
      ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                      errmsg("through_position %lld is beyond the feed's last position %lld",
                             (long long)through, (long long)last),
                      errhint("Acknowledge the position of a row read_feed returned.")));
    static SPIPlanPtr p;
    static const Oid t[] = {TEXTOID, INT8OID};
    Datum a[2] = {name, Int64GetDatum(through)};
    run_plan(&p,
             "UPDATE agent_journal.feed_subscriptions SET position = $2, "
             "last_ack_at = pg_catalog.clock_timestamp() "
             "WHERE consumer OPERATOR(pg_catalog.=) $1 AND position OPERATOR(pg_catalog.<) $2",
             2, t, a, nullptr, SPI_OK_UPDATE);
  }
  spi_end(who);
  PG_RETURN_VOID();
}

Datum aj_read_feed(PG_FUNCTION_ARGS) {
  check_consumer_name(fcinfo);
  int64 max_entries = PG_ARGISNULL(1) ? 1000 : PG_GETARG_INT64(1);
  if (max_entries < 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("max_entries must be >= 0, got %lld", (long long)max_entries)));
  Datum name = PG_GETARG_DATUM(0);
  begin_feed_store(fcinfo);
  ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
  OwnerSwitch who = spi_begin();
  require_feed_schema();
  bool ticked = tick_before_reading();
  Consumer c = own_consumer(name, who, false);
  bool role_admin = OidIsValid(c.role) && is_admin(c.role);
  // Rows go straight into the tuplestore, in position order, until the
  // first gap row: a gap row can still grow (its position with it) while
  // later rows of other agents come, so from then on rows are held (their
  // kind and event copied out of the scan's buffer) and sorted at the end.
  // Entries before the first gap row all have lower positions than any
  // gap row can get, so the order is the same either way; the common,
  // gap-free read copies nothing and holds no second copy of the batch.
  PArray<OutRow> out;
  bool holding = false;
  HASHCTL ctl;
  memset(&ctl, 0, sizeof ctl);
  ctl.keysize = sizeof(pg_uuid_t);
  ctl.entrysize = sizeof(AgentView);
  ctl.hcxt = CurrentMemoryContext;
  HTAB *agents = hash_create("agent_journal feed agents", 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
  int64 after = c.position;
  int64 budget = max_entries;
  // Rows of agents the consumer may not see are skipped (however many:
  // a limit would leave a consumer behind a long run of them for good).
  static SPIPlanPtr p_rows;
  static const Oid t[] = {INT8OID, INT8OID};
  EntryScan *es = entry_scan_begin(GetActiveSnapshot());
  bool done = false;
  // Feed rows come in pages that start small and grow: one row often
  // covers many entries, so a page as large as the budget would fetch
  // (and a drain refetch) far more rows than a read uses.
  int64 page = 16;
  while (!done && budget > 0) {
    int64 limit = Min(budget, page);
    page = Min(page * 4, (int64)1000);
    Datum a[2] = {Int64GetDatum(after), Int64GetDatum(limit)};
    run_plan(&p_rows,
             "SELECT last_position, agent_id, first_sequence, last_sequence, gap, owner "
             "FROM agent_journal.feed WHERE last_position OPERATOR(pg_catalog.>) $1 "
             "ORDER BY last_position LIMIT $2",
             2, t, a, nullptr, SPI_OK_SELECT, true);
    uint64 n = SPI_processed;
    if (n == 0) break;
    SPITupleTable *tt = SPI_tuptable;
    for (uint64 i = 0; i < n && budget > 0; i++) {
      HeapTuple tup = tt->vals[i];
      bool isnull, gap_null;
      int64 lastpos = DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 1, &isnull));
      // copied: the page of rows is freed before the output is written
      Datum agent = datumCopy(SPI_getbinval(tup, tt->tupdesc, 2, &isnull), false, UUID_LEN);
      int64 first = DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 3, &isnull));
      int64 last = DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 4, &isnull));
      (void)SPI_getbinval(tup, tt->tupdesc, 5, &gap_null);
      char *gap_owner = SPI_getvalue(tup, tt->tupdesc, 6);
      after = lastpos;
      const pg_uuid_t *u = DatumGetUUIDP(agent);
      bool known;
      AgentView *av = (AgentView *)hash_search(agents, u, HASH_ENTER, &known);
      if (!known) {
        av->visible = false;
        av->open_gap = -1;
        if (role_admin) {
          av->visible = true;  // an admin's consumer sees every agent: no owner to read
        } else if (gap_null) {
          Latest l = read_latest(agent, View::Statement);
          av->visible = consumer_sees(c.role, l.bound, l.owner, role_admin);
        } else {
          Oid o = gap_owner ? get_role_oid(gap_owner, true) : InvalidOid;
          av->visible = consumer_sees(c.role, gap_owner != nullptr, o, role_admin);
        }
      }
      if (!av->visible) continue;
      // The gap row of this agent still growing in this read, or a new one.
      auto add_gap = [&](int64 from, int64 through, int64 at, const char *reason) {
        if (av->open_gap >= 0 && strcmp(out.v[av->open_gap].reason, reason) == 0) {
          OutRow &g = out.v[av->open_gap];
          g.from = Min(g.from, from);
          g.through = Max(g.through, through);
          g.position = Max(g.position, at);
          return;
        }
        holding = true;
        OutRow g{};
        g.position = at;
        g.agent = agent;
        g.gap = true;
        g.from = from;
        g.through = through;
        g.reason = reason;
        av->open_gap = out.n;
        out.push(g);
        budget--;
      };
      if (!gap_null) {
        add_gap(first, last, lastpos, "forgotten");
        continue;
      }
      // The first sequence after the consumer's position (only the first
      // row read can straddle it).
      int64 first_pos = lastpos - (last - first);
      int64 start = first + Max((int64)0, c.position + 1 - first_pos);
      int64 expect = start;
      // Entries of the range that are still there, in order.
      entry_scan_range(es, agent, start, last);
      bool stopped = false;
      while (budget > 0 && entry_scan_next(es)) {
        bool isnull;
        int64 seq = DatumGetInt64(entry_value(es, ENTRY_SEQUENCE, &isnull));
        if (seq > expect) add_gap(expect, seq - 1, lastpos - (last - (seq - 1)), "compacted");
        if (budget <= 0) {
          stopped = true;
          break;
        }
        av->open_gap = -1;
        OutRow e{};
        e.position = lastpos - (last - seq);
        e.agent = agent;
        e.sequence = seq;
        e.iteration = DatumGetInt32(entry_value(es, ENTRY_ITERATION, &isnull));
        e.kind = entry_value(es, ENTRY_KIND, &isnull);
        e.recorded_at = entry_value(es, ENTRY_RECORDED_AT, &isnull);
        e.event = entry_value(es, ENTRY_EVENT, &isnull);
        if (holding) {
          e.kind = datumCopy(e.kind, false, -1);
          e.event = datumCopy(e.event, false, -1);
          out.push(e);
        } else {
          put_row(rsinfo, e);  // copied into the tuplestore while the scan's buffer is pinned
        }
        budget--;
        expect = seq + 1;
        if ((budget & 1023) == 0) CHECK_FOR_INTERRUPTS();
      }
      if (budget <= 0 && expect <= last) stopped = true;
      if (!stopped && expect <= last) add_gap(expect, last, lastpos, "compacted");
      if (stopped) {
        done = true;
        break;
      }
    }
    SPI_freetuptable(tt);
    if (n < (uint64)limit) done = true;  // the feed has no more
  }
  entry_scan_end(es);
  // In position order already unless a gap row grew past later rows.
  auto by_position = [](const OutRow &x, const OutRow &y) { return x.position < y.position; };
  if (!std::is_sorted(out.begin(), out.end(), by_position))
    std::stable_sort(out.begin(), out.end(), by_position);
  for (const OutRow &o : out) put_row(rsinfo, o);
  if (ticked) PopActiveSnapshot();
  spi_end(who);
  return (Datum)0;
}

Datum aj_feed_consumers(PG_FUNCTION_ARGS) {
  InitMaterializedSRF(fcinfo, 0);
  ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
  OwnerSwitch who = spi_begin();
  require_feed_schema();
  bool admin = is_admin(who.saved_user);
  static SPIPlanPtr p;
  run_plan(&p,
           "SELECT c.consumer, c.owner, c.position, "
           "  GREATEST(0, COALESCE(s.last_position, 0) OPERATOR(pg_catalog.-) c.position "
           "    OPERATOR(pg_catalog.+) COALESCE((SELECT pg_catalog.sum(p.last_sequence "
           "      OPERATOR(pg_catalog.-) p.first_sequence OPERATOR(pg_catalog.+) 1) "
           "      FROM agent_journal.feed_pending p WHERE p.gap IS NULL), 0))::pg_catalog.int8, "
           "  COALESCE(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() "
           "    OPERATOR(pg_catalog.-) COALESCE("
           "      (SELECT f.written_at FROM agent_journal.feed f "
           "        WHERE f.last_position OPERATOR(pg_catalog.>) c.position "
           "        ORDER BY f.last_position LIMIT 1), "
           "      (SELECT pg_catalog.min(p.written_at) FROM agent_journal.feed_pending p))), 0)"
           "    ::pg_catalog.float8, "
           "  c.last_ack_at "
           "FROM agent_journal.feed_subscriptions c "
           "LEFT JOIN agent_journal.feed_state s ON true ORDER BY c.consumer",
           0, nullptr, nullptr, nullptr, SPI_OK_SELECT, true);
  for (uint64 i = 0; i < SPI_processed; i++) {
    HeapTuple tup = SPI_tuptable->vals[i];
    TupleDesc d = SPI_tuptable->tupdesc;
    char *owner = SPI_getvalue(tup, d, 2);
    Oid role = get_role_oid(owner, true);
    if (!admin && !(OidIsValid(role) && has_privs_of_role(who.saved_user, role))) continue;
    Datum v[6];
    bool nulls[6];
    for (int k = 0; k < 6; k++) v[k] = SPI_getbinval(tup, d, k + 1, &nulls[k]);
    v[0] = PointerGetDatum(DatumGetTextPCopy(v[0]));
    v[1] = PointerGetDatum(DatumGetTextPCopy(v[1]));
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
  }
  spi_end(who);
  return (Datum)0;
}
