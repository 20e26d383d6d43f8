// The extension's own counts (saved states, entries removed by retention)
// in agent_journal.tallies: one row per (name, backend slot). A writer adds
// to its own backend's row in its own transaction, so the count is exactly
// as transactional as the change it counts, writers never wait for each
// other, and a render sums a handful of rows per name whatever the number
// of agents. As counter_slots (metrics.cpp): a slot whose row is held by a
// transaction still open (one this backend prepared, or a prepared one of
// an earlier backend with the same id) is skipped for the same id in the
// next range of MaxBackends.
//
// 0.10.0: where the library is preloaded and its worker ticks the feed in
// this database, journal_appended (written by every appending transaction)
// goes to the same kind of row in the unlogged tally_deltas: no WAL record
// for it. A crash empties that table; the feed tick that rebuilds the
// notes the crash lost (feed.cpp) also adds what the count lost to
// tallies, and a render before it counts from the journal (metrics.cpp).
#include "pg/citus.hpp"
#include "pg/exporter.hpp"
#include "pg/journal.hpp"

extern "C" {
#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/twophase.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/makefuncs.h"
#include "utils/snapmgr.h"
#include "access/xact.h"
#include "storage/proc.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
}

namespace ajpg {
namespace {

// The table a count goes to: tallies, or (0.10.0) the unlogged
// tally_deltas (see deltas_here).
struct Target {
  Oid heap, pkey;
  bool unlogged;
};
Target target(bool unlogged) {
  const Rels &r = rels();
  return unlogged ? Target{r.tally_deltas, r.tally_deltas_pkey, true}
                  : Target{r.tallies, r.tallies_pkey, false};
}

struct TallyKey {
  Target t;
  Datum name;
};

// Is (name, slot)'s row held by another transaction still open?
bool slot_busy(int32 slot_no, void *arg) {
  const TallyKey *k = static_cast<const TallyKey *>(arg);
  Relation heap = table_open(k->t.heap, AccessShareLock);
  Relation index = index_open(k->t.pkey, AccessShareLock);
  ScanKeyData keys[2];
  ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
                         index->rd_indcollation[0], F_TEXTEQ, k->name);
  ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid, InvalidOid, F_INT4EQ,
                         Int32GetDatum(slot_no));
  bool busy = held_by_other(heap, index, keys, 2);
  index_close(index, AccessShareLock);
  table_close(heap, AccessShareLock);
  return busy;
}

// Writes delta into this backend's row of `name` (an upsert through SPI).
void tally_upsert(const char *name, int64 delta, bool unlogged) {
  Target tg = target(unlogged);
  if (delta == 0 || !OidIsValid(tg.heap) || !OidIsValid(tg.pkey)) return;
  Datum name_d = CStringGetTextDatum(name);
  TallyKey key{tg, name_d};
  int32 slot = backend_slot(slot_busy, &key);
  // Every candidate busy (more prepared transactions than slots can only
  // happen if max_prepared_transactions was lowered): wait on our own.
  if (slot < 0) slot = MyBackendId;
  static SPIPlanPtr plan, plan_deltas;
  static const Oid types[] = {TEXTOID, INT4OID, INT8OID};
  Datum args[3] = {name_d, Int32GetDatum(slot), Int64GetDatum(delta)};
#define AJ_TALLY_UPSERT(table)                                                                \
  "INSERT INTO agent_journal." table " AS t (name, slot, value) VALUES ($1, $2, $3) "           \
  "ON CONFLICT (name, slot) DO UPDATE SET value = t.value OPERATOR(pg_catalog.+) EXCLUDED.value"
  run_plan(unlogged ? &plan_deltas : &plan,
           unlogged ? AJ_TALLY_UPSERT("tally_deltas") : AJ_TALLY_UPSERT("tallies"), 3, types, args,
           nullptr, SPI_OK_INSERT);
#undef AJ_TALLY_UPSERT
}

// The commit-time write of a transaction's sum (flush_pending), once per
// name: this backend's row updated in place, as logical replication's
// apply does (ExecSimpleRelationUpdate: heap-only when it can be, indexes
// maintained when not, constraints checked), without the planner: it is
// part of every appending transaction. Anything unusual goes through
// tally_upsert: no row yet for this backend, the row held by another
// transaction (a prepared one), or a table an operator changed (rules,
// triggers, another shape).
void tally_write(const char *name, int64 delta, bool unlogged) {
  Target tg = target(unlogged);
  if (delta == 0 || !OidIsValid(tg.heap) || !OidIsValid(tg.pkey)) return;
  Relation heap = table_open(tg.heap, RowExclusiveLock);
  TupleDesc desc = RelationGetDescr(heap);
  AttrNumber a_value = InvalidAttrNumber;
  int live = 0;
  for (int i = 0; i < desc->natts; i++) {
    Form_pg_attribute a = TupleDescAttr(desc, i);
    if (a->attisdropped) continue;
    live++;
    if (strcmp(NameStr(a->attname), "value") == 0 && a->atttypid == INT8OID) a_value = a->attnum;
  }
  if (heap->rd_rel->relkind != RELKIND_RELATION || heap->rd_rules != nullptr ||
      heap->trigdesc != nullptr || live != 3 || a_value == InvalidAttrNumber ||
      heap->rd_rel->relispartition) {
    table_close(heap, NoLock);
    tally_upsert(name, delta, unlogged);
    return;
  }
  Relation index = index_open(tg.pkey, RowExclusiveLock);
  Datum name_d = CStringGetTextDatum(name);
  ScanKeyData keys[2];
  ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
                         index->rd_indcollation[0], F_TEXTEQ, name_d);
  ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid, InvalidOid, F_INT4EQ,
                         Int32GetDatum(MyBackendId));
  TupleTableSlot *found = table_slot_create(heap, nullptr);
  bool usable = !held_by_other(heap, index, keys, 2, found) && !TTS_EMPTY(found);
  index_close(index, NoLock);
  if (!usable) {
    ExecDropSingleTupleTableSlot(found);
    table_close(heap, NoLock);
    tally_upsert(name, delta, unlogged);
    return;
  }
  EState *estate = CreateExecutorState();
  RangeTblEntry *rte = makeNode(RangeTblEntry);
  rte->rtekind = RTE_RELATION;
  rte->relid = RelationGetRelid(heap);
  rte->relkind = heap->rd_rel->relkind;
  rte->rellockmode = RowExclusiveLock;
  ExecInitRangeTable(estate, list_make1(rte));
  ResultRelInfo *rri = makeNode(ResultRelInfo);
  InitResultRelInfo(rri, heap, 1, nullptr, 0);
  estate->es_output_cid = GetCurrentCommandId(true);
  estate->es_snapshot = GetActiveSnapshot();
  ExecOpenIndices(rri, false);
  slot_getallattrs(found);
  TupleTableSlot *next = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
  ExecClearTuple(next);
  for (int i = 0; i < desc->natts; i++) {
    next->tts_values[i] = found->tts_values[i];
    next->tts_isnull[i] = found->tts_isnull[i];
  }
  int64 value = found->tts_isnull[a_value - 1] ? 0 : DatumGetInt64(found->tts_values[a_value - 1]);
  next->tts_values[a_value - 1] = Int64GetDatum(value + delta);
  next->tts_isnull[a_value - 1] = false;
  ExecStoreVirtualTuple(next);
  EPQState epq;
  EvalPlanQualInit(&epq, estate, nullptr, NIL, -1);
  ExecSimpleRelationUpdate(rri, estate, &epq, found, next);
  EvalPlanQualEnd(&epq);
  ExecCloseIndices(rri);
  ExecResetTupleTable(estate->es_tupleTable, false);
  FreeExecutorState(estate);
  ExecDropSingleTupleTableSlot(found);
  table_close(heap, NoLock);
  // The next bump in this command must see this version as its own
  // earlier write, not as invisible.
  CommandCounterIncrement();
}

// ---- deferred to commit ------------------------------------------------
// A transaction's changes are summed in backend memory per (name,
// subtransaction level) and written once, just before it commits (or
// prepares), in its own transaction: one row update per name per
// transaction, however many appends it made (updating one row again and
// again in one transaction would make every later update walk the chain
// of its versions). A subtransaction that rolls back takes its part back.
constexpr int MAX_PENDING = 32;
struct Pending {
  const char *name;  // one of the TALLY_* constants (static storage)
  int level;
  int64 delta;
  bool unlogged;  // to tally_deltas
};
Pending pending[MAX_PENDING];
int npending = 0;
bool callbacks_registered = false;

void flush_pending() {
  if (npending == 0) return;
  // Sum by name (subtransactions have all committed into the top one).
  Pending sums[MAX_PENDING];
  int n = 0;
  for (int i = 0; i < npending; i++) {
    int j = 0;
    while (j < n && (strcmp(sums[j].name, pending[i].name) != 0 || sums[j].unlogged != pending[i].unlogged)) j++;
    if (j == n) sums[n++] = Pending{pending[i].name, 1, 0, pending[i].unlogged};
    sums[j].delta += pending[i].delta;
  }
  npending = 0;
  bool any = false;
  for (int j = 0; j < n; j++) any = any || sums[j].delta != 0;
  if (!any) return;
  PushActiveSnapshot(GetTransactionSnapshot());
  OwnerSwitch who = spi_begin();
  for (int j = 0; j < n; j++)
    if (sums[j].delta != 0) tally_write(sums[j].name, sums[j].delta, sums[j].unlogged);
  spi_end(who);
  PopActiveSnapshot();
}

void on_xact(XactEvent event, void *) {
  switch (event) {
    case XACT_EVENT_PRE_COMMIT:
    case XACT_EVENT_PRE_PREPARE:
      flush_pending();
      break;
    case XACT_EVENT_ABORT:
    case XACT_EVENT_PARALLEL_ABORT:
    case XACT_EVENT_COMMIT:
    case XACT_EVENT_PREPARE:
      npending = 0;
      break;
    default:
      break;
  }
}

void on_subxact(SubXactEvent event, SubTransactionId, SubTransactionId, void *) {
  int level = GetCurrentTransactionNestLevel();
  if (event == SUBXACT_EVENT_ABORT_SUB) {
    int k = 0;
    for (int i = 0; i < npending; i++)
      if (pending[i].level < level) pending[k++] = pending[i];
    npending = k;
  } else if (event == SUBXACT_EVENT_COMMIT_SUB) {
    for (int i = 0; i < npending; i++)
      if (pending[i].level >= level) pending[i].level = level - 1;
  }
}

}  // namespace

// Does journal_appended go to tally_deltas in this database (0.10.0)? When
// the library is preloaded and its worker ticks the feed here: after a
// crash its first tick makes up for what the unlogged table lost. Not where
// Citus is preloaded: a distributed journal has no feed tick, and its
// renders sum the nodes' tallies only (counts in tally_deltas from before
// distribute() would drop out of the counter).
static bool deltas_here() {
  static bool cached = false;
  static LocalTransactionId lxid = InvalidLocalTransactionId;
  if (lxid == MyProc->lxid) return cached;
  const Rels &r = rels();
  bool on = preloaded && feed_tick_interval_ms > 0 && OidIsValid(r.tally_deltas) &&
            OidIsValid(r.tally_deltas_pkey) && export_database != nullptr && !citus_preloaded();
  if (on) {
    static char *db = nullptr;  // this backend's database, looked up once
    if (db == nullptr) {
      char *name = get_database_name(MyDatabaseId);
      if (name != nullptr) db = MemoryContextStrdup(TopMemoryContext, name);
    }
    on = db != nullptr && strcmp(db, export_database) == 0;
  }
  cached = on;
  lxid = MyProc->lxid;
  return cached;
}

static void tally_add_to(const char *name, int64 delta, bool unlogged) {
  const Rels &r = rels();
  if (delta == 0 || !OidIsValid(r.tallies) || !OidIsValid(r.tallies_pkey)) return;
  if (!callbacks_registered) {
    RegisterXactCallback(on_xact, nullptr);
    RegisterSubXactCallback(on_subxact, nullptr);
    callbacks_registered = true;
  }
  int level = GetCurrentTransactionNestLevel();
  for (int i = 0; i < npending; i++)
    if (pending[i].level == level && strcmp(pending[i].name, name) == 0 &&
        pending[i].unlogged == unlogged) {
      pending[i].delta += delta;
      return;
    }
  if (npending == MAX_PENDING) {  // cannot happen with the TALLY_* names; write now
    OwnerSwitch who = spi_begin();
    tally_upsert(name, delta, unlogged);
    spi_end(who);
    return;
  }
  pending[npending++] = Pending{name, level, delta, unlogged};
}

void tally_add(const char *name, int64 delta) {
  tally_add_to(name, delta, strcmp(name, TALLY_APPENDED) == 0 && deltas_here());
}

void tally_add_logged(const char *name, int64 delta) { tally_add_to(name, delta, false); }

bool tally_deltas_in_use() { return deltas_here(); }

int64 tally_sum(const char *name) {
  if (!OidIsValid(rels().tallies)) return 0;
  static SPIPlanPtr plan;
  static const Oid types[] = {TEXTOID};
  Datum args[1] = {CStringGetTextDatum(name)};
  run_plan(&plan,
           "SELECT COALESCE(pg_catalog.sum(value), 0)::pg_catalog.int8 FROM agent_journal.tallies "
           "WHERE name OPERATOR(pg_catalog.=) $1",
           1, types, args, nullptr, SPI_OK_SELECT, true);
  return result_int8();
}

}  // namespace ajpg
