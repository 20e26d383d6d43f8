// The durable execution journal: agent_journal.append, append_batch, replay,
// latest_sequence, next_sequence, last_completed_iteration, compact,
// forget_agent.
//
// Design (README, "How sequences are assigned"): every writer takes the
// agent's transaction-scoped lock (lock_agent), then reads the agent's
// latest sequence with a fresh snapshot (GetLatestSnapshot: everything
// committed by earlier lock holders), then inserts latest+1. The lock is
// released at commit or abort, so a rolled-back append leaves no gap and
// two writers never get the same number. Validation and kind derivation
// happen before the lock is taken.
#include "pg/pg.hpp"

extern "C" {
#include "access/heapam.h"
#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/makefuncs.h"
#include "nodes/supportnodes.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "storage/proc.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
}

#include "core/kind.hpp"
#include "pg/citus.hpp"
#include "pg/journal.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(aj_append);
PG_FUNCTION_INFO_V1(aj_append_batch);
PG_FUNCTION_INFO_V1(aj_replay);
PG_FUNCTION_INFO_V1(aj_replay_guard);
PG_FUNCTION_INFO_V1(aj_may_replay);
PG_FUNCTION_INFO_V1(aj_may_replay_support);
PG_FUNCTION_INFO_V1(aj_latest_sequence);
PG_FUNCTION_INFO_V1(aj_next_sequence);
PG_FUNCTION_INFO_V1(aj_last_completed_iteration);
PG_FUNCTION_INFO_V1(aj_compact);
PG_FUNCTION_INFO_V1(aj_forget_agent);
PG_FUNCTION_INFO_V1(aj_bind_agent);
PG_FUNCTION_INFO_V1(aj_bind_agent_name);
PG_FUNCTION_INFO_V1(aj_agent_visible);
PG_FUNCTION_INFO_V1(aj_is_admin);
}

namespace ajpg {
namespace {

constexpr int MAX_KEY_BYTES = 512;
constexpr int MAX_BATCH = 1000000;

// ---------------------------------------------------------------- plans
SPIPlanPtr p_state_ins, p_bind, p_key, p_key_ins, p_insert, p_insert_batch,
    p_max_iter, p_delete, p_state_upd, p_forget_entries, p_forget_keys,
    p_forget_state;

const Oid T_UUID[] = {UUIDOID};
const Oid T_KEY[] = {UUIDOID, TEXTOID};


}  // namespace

// ---------------------------------------------------------------- reads
namespace {
Rels rels_cache;
CatalogStamp rels_stamp;  // kept across transactions (pg.hpp)
// The distributed layout: rels() answers with the shards of the agent
// named by journal_agent() (the writers' lock_agent, the readers' first
// read), which must be placed on this node.
bool rels_dist = false;
bool cache_agent_set = false;
LocalTransactionId agent_lxid = InvalidLocalTransactionId;  // current_agent's transaction
pg_uuid_t current_agent, cache_agent;
}  // namespace

void journal_agent(const pg_uuid_t *agent) {
  current_agent = *agent;
  agent_lxid = MyProc->lxid;
}

void rels_forget() { rels_stamp = CatalogStamp(); }

const Rels &rels() {
  const bool agent_set = agent_lxid == MyProc->lxid;
  if (catalog_stamp_current(rels_stamp) &&
      (!rels_dist || (agent_set && cache_agent_set &&
                      memcmp(cache_agent.data, current_agent.data, UUID_LEN) == 0)))
    return rels_cache;
  CatalogStamp stamp = catalog_stamp();
  Oid nsp = get_namespace_oid("agent_journal", false);
  bool dist = journal_distributed(nsp);
  Rels r{get_relname_relid("entries", nsp), get_relname_relid("entries_pkey", nsp),
         get_relname_relid("agent_state", nsp), get_relname_relid("agent_state_pkey", nsp),
         get_relname_relid("lease_graph", nsp), get_relname_relid("saved_states", nsp),
         get_relname_relid("retention_settings", nsp), get_relname_relid("tallies", nsp),
         get_relname_relid("tallies_pkey", nsp), get_relname_relid("saved_states_pkey", nsp),
         get_relname_relid("tally_deltas", nsp), get_relname_relid("tally_deltas_pkey", nsp)};
  if (!OidIsValid(r.entries) || !OidIsValid(r.entries_pkey) || !OidIsValid(r.state) ||
      !OidIsValid(r.state_pkey))
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("agent_journal's tables or their primary keys are missing"),
                    errhint("Reinstall the extension.")));
  if (dist) {
    // Only functions that name an agent work on a distributed journal:
    // the rest refuse (renders, the feed, the agents view for now).
    if (!agent_set) refuse_citus_layout(nsp);
    r.entries = agent_shard_rel(nsp, "entries", &current_agent, "entries_pkey", &r.entries_pkey);
    r.state = agent_shard_rel(nsp, "agent_state", &current_agent, "agent_state_pkey", &r.state_pkey);
    if (OidIsValid(r.lease_graph))
      r.lease_graph = agent_shard_rel(nsp, "lease_graph", &current_agent);
    if (OidIsValid(r.saved_states))
      r.saved_states = agent_shard_rel(nsp, "saved_states", &current_agent, "saved_states_pkey",
                                       &r.saved_states_pkey);
    cache_agent = current_agent;
    cache_agent_set = true;
    r.tally_deltas = r.tally_deltas_pkey = InvalidOid;  // counts stay in tallies there
  }
  rels_dist = dist;
  rels_cache = r;
  rels_stamp = stamp;
  return rels_cache;
}

// agent_journal.replay(uuid, bigint, bigint), looked up once per transaction
// (only by replay's helpers, not on the append path).
Oid replay_fn() {
  static Oid cached = InvalidOid;
  static LocalTransactionId cached_lxid = InvalidLocalTransactionId;
  if (cached_lxid == MyProc->lxid) return cached;
  static const Oid args[] = {UUIDOID, INT8OID, INT8OID};
  Oid fn = LookupFuncName(list_make2(makeString(pstrdup("agent_journal")), makeString(pstrdup("replay"))),
                          3, args, true);
  if (!OidIsValid(fn))
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("function agent_journal.replay(uuid, bigint, bigint) is missing"),
                    errhint("Reinstall the extension.")));
  cached = fn;
  cached_lxid = MyProc->lxid;
  return cached;
}

// The journal's columns are found by name in the relation's current
// descriptor, never by position: an operator may add, drop or reorder
// columns (ALTER TABLE), and a positional read or a slot filled by
// position would then read or write the wrong attribute.
enum EntryCol { E_AGENT, E_SEQUENCE, E_ITERATION, E_KIND, E_RECORDED_AT, E_EVENT, E_NCOLS };
const ColumnSpec ENTRY_COLS[E_NCOLS] = {
    {"agent_id", UUIDOID, InvalidOid, false},          {"sequence", INT8OID, InvalidOid, false},
    {"iteration", INT4OID, InvalidOid, false},         {"kind", TEXTOID, InvalidOid, false},
    {"recorded_at", TIMESTAMPTZOID, InvalidOid, false}, {"event", JSONBOID, InvalidOid, false}};
enum StateCol {
  S_COMPACTED_THROUGH, S_COMPACTED_ITERATION, S_OWNER, S_LEASE, S_LEASE_WORKER, S_LEASE_CLAIMED, S_LEASE_EXPIRES,
  S_LEASE_ATTEMPTS, S_NCOLS
};
// owner: the role's name (text) from 0.4.0, a regrole before. The lease
// columns: from 0.5.0.
const ColumnSpec STATE_COLS[S_NCOLS] = {
    {"compacted_through", INT8OID, InvalidOid, false},
    {"compacted_iteration", INT4OID, INT8OID, false},  // an operator may widen it
    {"owner", TEXTOID, REGROLEOID, false},
    {"lease", INT8OID, InvalidOid, true},
    {"lease_worker", TEXTOID, InvalidOid, true},
    {"lease_claimed_at", TIMESTAMPTZOID, InvalidOid, true},
    {"lease_expires_at", TIMESTAMPTZOID, InvalidOid, true},
    {"lease_attempts", INT4OID, InvalidOid, true}};

namespace {
// map_columns' answers per relation and column list: an append maps the
// columns of entries, agent_state and feed_pending in every transaction,
// and matching names costs more than the probe it serves. A relation's
// attributes change only with an invalidation of its relcache entry
// (ALTER TABLE, DROP; in this transaction at its next command too), which
// drops its answers here.
constexpr int COLMAP_SLOTS = 16, COLMAP_MAX_COLS = 16;
struct ColMap {
  Oid relid;
  const ColumnSpec *cols;
  int n, live;
  AttrNumber out[COLMAP_MAX_COLS];
};
ColMap colmaps[COLMAP_SLOTS];
int colmap_next = 0;
bool colmap_registered = false;

void colmap_invalidate(Datum, Oid relid) {
  for (ColMap &m : colmaps)
    if (relid == InvalidOid || m.relid == relid) m.relid = InvalidOid;
}
}  // namespace

static int map_columns_uncached(Relation rel, const ColumnSpec *cols, int n, AttrNumber *out);

// Fills `out` with the attribute numbers of `cols` in `rel`; ERROR 55000
// naming the column if one is missing or has another type. Returns how
// many live (not dropped) attributes the relation has.
int map_columns(Relation rel, const ColumnSpec *cols, int n, AttrNumber *out) {
  Oid relid = RelationGetRelid(rel);
  if (n > COLMAP_MAX_COLS) return map_columns_uncached(rel, cols, n, out);
  for (const ColMap &m : colmaps)
    if (m.relid == relid && m.cols == cols && m.n == n) {
      memcpy(out, m.out, sizeof(AttrNumber) * n);
      return m.live;
    }
  int live = map_columns_uncached(rel, cols, n, out);  // may raise: nothing kept then
  if (!colmap_registered) {
    CacheRegisterRelcacheCallback(colmap_invalidate, (Datum)0);
    colmap_registered = true;
  }
  ColMap &m = colmaps[colmap_next];
  colmap_next = (colmap_next + 1) % COLMAP_SLOTS;
  m.relid = relid;
  m.cols = cols;
  m.n = n;
  m.live = live;
  memcpy(m.out, out, sizeof(AttrNumber) * n);
  return live;
}

static int map_columns_uncached(Relation rel, const ColumnSpec *cols, int n, AttrNumber *out) {
  TupleDesc desc = RelationGetDescr(rel);
  int live = 0;
  for (int c = 0; c < n; c++) out[c] = InvalidAttrNumber;
  for (int i = 0; i < desc->natts; i++) {
    Form_pg_attribute a = TupleDescAttr(desc, i);
    if (a->attisdropped) continue;
    live++;
    for (int c = 0; c < n; c++) {
      if (strcmp(NameStr(a->attname), cols[c].name) != 0) continue;
      if (a->atttypid != cols[c].type && a->atttypid != cols[c].alt_type)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("column \"%s\" of agent_journal.%s has type %s, expected %s",
                               cols[c].name, RelationGetRelationName(rel),
                               format_type_be(a->atttypid), format_type_be(cols[c].type)),
                        errhint("Undo the ALTER TABLE on the extension's table.")));
      out[c] = a->attnum;
    }
  }
  for (int c = 0; c < n; c++)
    if (out[c] == InvalidAttrNumber && !cols[c].optional)
      ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                      errmsg("agent_journal.%s has no column \"%s\"", RelationGetRelationName(rel),
                             cols[c].name),
                      errhint("Undo the ALTER TABLE on the extension's table.")));
  return live;
}

// The first tuple of `agent` in `index` of `heap`, in `dir` (an index
// probe, no executor); calls `use` with the relation and the slot if there
// is one.
template <typename F>
void probe(Oid heap_oid, Oid index_oid, Datum agent, Snapshot snap, ScanDirection dir, F &&use) {
  Relation heap = table_open(heap_oid, AccessShareLock);
  Relation index = index_open(index_oid, AccessShareLock);
  ScanKeyData key;
  ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, agent);
  IndexScanDesc scan = index_beginscan(heap, index, snap, 1, 0);
  index_rescan(scan, &key, 1, nullptr, 0);
  TupleTableSlot *slot = table_slot_create(heap, nullptr);
  if (index_getnext_slot(scan, dir, slot)) use(heap, slot);
  ExecDropSingleTupleTableSlot(slot);
  index_endscan(scan);
  index_close(index, AccessShareLock);
  table_close(heap, AccessShareLock);
}

// Reads the agent's latest sequence, compaction point and owner: a
// backward probe of the entries' primary key and a probe of agent_state.
// A reader on a distributed journal whose agent lives on another node:
// the same facts through Citus (routed by agent_id to the agent's shards),
// as the extension's owner, in the statement's snapshot.
Latest read_latest_routed(Datum agent) {
  Latest l;
  static SPIPlanPtr p_state, p_last;
  MemoryContext caller = CurrentMemoryContext;  // SPI's memory goes at spi_end
  OwnerSwitch who = spi_begin();
  Datum a[1] = {agent};
  run_plan(&p_state,
           "SELECT compacted_through, compacted_iteration::pg_catalog.int4, owner::pg_catalog.text, "
           "lease, lease_worker, lease_claimed_at, lease_expires_at, lease_attempts "
           "FROM agent_journal.agent_state WHERE agent_id OPERATOR(pg_catalog.=) $1",
           1, T_UUID, a, nullptr, SPI_OK_SELECT, true);
  if (SPI_processed == 1) {
    HeapTuple t = SPI_tuptable->vals[0];
    TupleDesc d = SPI_tuptable->tupdesc;
    bool isnull;
    l.known = true;
    l.sequence = l.compacted = DatumGetInt64(SPI_getbinval(t, d, 1, &isnull));
    l.compacted_iteration = DatumGetInt32(SPI_getbinval(t, d, 2, &isnull));
    char *owner = SPI_getvalue(t, d, 3);
    if (owner != nullptr) {
      l.bound = true;
      l.owner = get_role_oid(owner, true);
    }
    l.lease_cols = true;
    Datum token = SPI_getbinval(t, d, 4, &isnull);
    if (!isnull) {
      l.lease = DatumGetInt64(token);
      char *w = SPI_getvalue(t, d, 5);
      l.lease_worker = MemoryContextStrdup(caller, w ? w : "");
      Datum c = SPI_getbinval(t, d, 6, &isnull);
      l.lease_claimed = isnull ? 0 : DatumGetTimestampTz(c);
      c = SPI_getbinval(t, d, 7, &isnull);
      l.lease_expires = isnull ? 0 : DatumGetTimestampTz(c);
    }
    Datum at = SPI_getbinval(t, d, 8, &isnull);
    l.lease_attempts = isnull ? 0 : DatumGetInt32(at);
  }
  run_plan(&p_last,
           "SELECT sequence, recorded_at FROM agent_journal.entries "
           "WHERE agent_id OPERATOR(pg_catalog.=) $1 ORDER BY sequence DESC LIMIT 1",
           1, T_UUID, a, nullptr, SPI_OK_SELECT, true);
  if (SPI_processed == 1) {
    bool isnull;
    l.has_entry = true;
    l.sequence = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
    l.last_recorded_at =
        DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
  }
  spi_end(who);
  return l;
}

Latest read_latest(Datum agent, View view) {
  if (view == View::Statement && agent_elsewhere(DatumGetUUIDP(agent))) return read_latest_routed(agent);
  Latest l;
  journal_agent(DatumGetUUIDP(agent));
  const Rels &r = rels();
  // Writers: make this transaction's earlier inserts (even from the same
  // statement) visible, as SPI does before each statement.
  if (view != View::Statement) CommandCounterIncrement();
  Snapshot snap;
  if (view == View::Fresh) {
    snap = GetLatestSnapshot();
  } else if (view == View::Transaction) {
    PushCopiedSnapshot(GetTransactionSnapshot());
    UpdateActiveSnapshotCommandId();
    snap = GetActiveSnapshot();
  } else {
    snap = GetActiveSnapshot();
  }
  snap = RegisterSnapshot(snap);
  probe(r.state, r.state_pkey, agent, snap, ForwardScanDirection,
        [&](Relation rel, TupleTableSlot *slot) {
          AttrNumber col[S_NCOLS];
          (void)map_columns(rel, STATE_COLS, S_NCOLS, col);
          bool isnull;
          l.known = true;
          l.sequence = DatumGetInt64(slot_getattr(slot, col[S_COMPACTED_THROUGH], &isnull));
          l.compacted = l.sequence;
          Datum it = slot_getattr(slot, col[S_COMPACTED_ITERATION], &isnull);
          if (TupleDescAttr(RelationGetDescr(rel), col[S_COMPACTED_ITERATION] - 1)->atttypid == INT8OID)
            l.compacted_iteration = (int32)Min(DatumGetInt64(it), (int64)PG_INT32_MAX);
          else
            l.compacted_iteration = DatumGetInt32(it);
          l.lease_cols = col[S_LEASE] != InvalidAttrNumber && col[S_LEASE_WORKER] != InvalidAttrNumber &&
                         col[S_LEASE_CLAIMED] != InvalidAttrNumber &&
                         col[S_LEASE_EXPIRES] != InvalidAttrNumber &&
                         col[S_LEASE_ATTEMPTS] != InvalidAttrNumber;
          if (l.lease_cols) {
            Datum attempts = slot_getattr(slot, col[S_LEASE_ATTEMPTS], &isnull);
            l.lease_attempts = isnull ? 0 : DatumGetInt32(attempts);
            Datum token = slot_getattr(slot, col[S_LEASE], &isnull);
            if (!isnull) {
              l.lease = DatumGetInt64(token);
              Datum d = slot_getattr(slot, col[S_LEASE_WORKER], &isnull);
              l.lease_worker = isnull ? pstrdup("") : TextDatumGetCString(d);
              d = slot_getattr(slot, col[S_LEASE_CLAIMED], &isnull);
              l.lease_claimed = isnull ? 0 : DatumGetTimestampTz(d);
              d = slot_getattr(slot, col[S_LEASE_EXPIRES], &isnull);
              l.lease_expires = isnull ? 0 : DatumGetTimestampTz(d);
            }
          }
          Datum owner = slot_getattr(slot, col[S_OWNER], &isnull);
          if (isnull) return;
          l.bound = true;
          // A role that no longer exists (dropped, or missing after a
          // restore into another cluster) leaves the agent to admins.
          if (TupleDescAttr(RelationGetDescr(rel), col[S_OWNER] - 1)->atttypid == REGROLEOID)
            l.owner = DatumGetObjectId(owner);
          else
            l.owner = get_role_oid(TextDatumGetCString(owner), true);
        });
  probe(r.entries, r.entries_pkey, agent, snap, BackwardScanDirection,
        [&](Relation rel, TupleTableSlot *slot) {
          AttrNumber col[E_NCOLS];
          (void)map_columns(rel, ENTRY_COLS, E_NCOLS, col);
          bool isnull;
          l.has_entry = true;
          // Compaction removes a prefix: the last entry is the latest sequence.
          l.sequence = DatumGetInt64(slot_getattr(slot, col[E_SEQUENCE], &isnull));
          l.last_recorded_at = DatumGetTimestampTz(slot_getattr(slot, col[E_RECORDED_AT], &isnull));
        });
  UnregisterSnapshot(snap);
  if (view == View::Transaction) PopActiveSnapshot();
  return l;
}

// Can a row go into `rel` by a direct insert? Only into a plain table that
// has exactly the columns we fill (`our_columns`: so every attribute is one
// we fill; a column an operator added may have a default, an identity or a
// generation expression that only the executor computes), no rules, and no
// statement-level INSERT triggers or transition tables (which fire only
// around a whole statement). Anything else goes through an SPI INSERT.
bool direct_insert_ok(Relation rel, int live_columns, int our_columns) {
  if (rel->rd_rel->relkind != RELKIND_RELATION || live_columns != our_columns ||
      rel->rd_rules != nullptr)
    return false;
  TriggerDesc *t = rel->trigdesc;
  return t == nullptr || !(t->trig_insert_before_statement || t->trig_insert_after_statement ||
                           t->trig_insert_new_table);
}

// Inserts one row into `rel` (locked RowExclusive by the caller), values
// and nulls by attribute number: a heap insert plus index insertion
// through ExecSimpleRelationInsert (as logical replication's apply does),
// which checks NOT NULL and CHECK constraints, maintains every index
// (unique check included) and fires row triggers, without the planner or
// a full executor start. Only for what direct_insert_ok allows.
// A table with nothing for the executor to do (no index, trigger, CHECK
// constraint or partition bound, and a value for every NOT NULL column:
// feed_pending, written by every append) gets the heap insert alone, as
// ExecSimpleRelationInsert would end up doing.
void simple_insert(Relation rel, const Datum *values, const bool *isnull) {
  TupleDesc desc = RelationGetDescr(rel);
  bool bare = rel->rd_tableam == GetHeapamTableAmRoutine() && !rel->rd_rel->relhasindex &&
              rel->trigdesc == nullptr && !rel->rd_rel->relispartition &&
              (desc->constr == nullptr || desc->constr->num_check == 0);
  for (int i = 0; bare && i < desc->natts; i++)
    if (isnull[i] && TupleDescAttr(desc, i)->attnotnull) bare = false;  // the executor reports it
  if (bare) {
    HeapTuple tup = heap_form_tuple(desc, const_cast<Datum *>(values), const_cast<bool *>(isnull));
    simple_heap_insert(rel, tup);
    heap_freetuple(tup);
    return;
  }
  EState *estate = CreateExecutorState();
  RangeTblEntry *rte = makeNode(RangeTblEntry);
  rte->rtekind = RTE_RELATION;
  rte->relid = RelationGetRelid(rel);
  rte->relkind = rel->rd_rel->relkind;
  rte->rellockmode = RowExclusiveLock;
  ExecInitRangeTable(estate, list_make1(rte));
  ResultRelInfo *rri = makeNode(ResultRelInfo);
  InitResultRelInfo(rri, rel, 1, nullptr, 0);
  estate->es_output_cid = GetCurrentCommandId(true);
  AfterTriggerBeginQuery();
  ExecOpenIndices(rri, false);
  TupleTableSlot *slot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsVirtual);
  ExecClearTuple(slot);
  for (int i = 0; i < desc->natts; i++) {
    slot->tts_values[i] = values[i];
    slot->tts_isnull[i] = isnull[i];
  }
  ExecStoreVirtualTuple(slot);
  ExecSimpleRelationInsert(rri, estate, slot);
  ExecCloseIndices(rri);
  AfterTriggerEndQuery(estate);
  ExecResetTupleTable(estate->es_tupleTable, false);
  FreeExecutorState(estate);
}

// Inserts one entry (values in ENTRY_COLS order): simple_insert, or an SPI
// INSERT naming the columns when direct_insert_ok says no.
void insert_entry(Datum *values, const Oid *types) {
  const Rels &r = rels();
  Relation rel = table_open(r.entries, RowExclusiveLock);
  AttrNumber col[E_NCOLS];
  int live = map_columns(rel, ENTRY_COLS, E_NCOLS, col);
  if (!direct_insert_ok(rel, live, E_NCOLS)) {
    table_close(rel, NoLock);
    run_plan(&p_insert,
             "INSERT INTO agent_journal.entries "
             "(agent_id, sequence, iteration, kind, recorded_at, event) "
             "VALUES ($1, $2, $3, $4, $5, $6)",
             6, types, values, nullptr, SPI_OK_INSERT);
    return;
  }
  // Every attribute: dropped ones NULL, ours by their attribute numbers.
  TupleDesc desc = RelationGetDescr(rel);
  Datum *v = (Datum *)palloc0(sizeof(Datum) * desc->natts);
  bool *n = (bool *)palloc(sizeof(bool) * desc->natts);
  for (int i = 0; i < desc->natts; i++) n[i] = true;
  for (int c = 0; c < E_NCOLS; c++) {
    v[col[c] - 1] = values[c];
    n[col[c] - 1] = false;
  }
  simple_insert(rel, v, n);
  table_close(rel, NoLock);  // keep the lock to end of transaction, as INSERT does
}

// Tenants: a bound agent is usable only by roles with its owner's
// privileges, and by admins. `who` holds the calling user.
bool tenant_ok(const Latest &l, Oid caller) { return !l.bound || tenant_allows(caller, l.owner); }

void check_tenant(const Latest &l, const OwnerSwitch &who, Datum agent) {
  if (tenant_ok(l, who.saved_user)) return;
  ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                  errmsg("permission denied for agent %s",
                         DatumGetCString(DirectFunctionCall1(uuid_out, agent))),
                  errhint("The agent is bound to another role; use a role that has its "
                          "privileges, or ask an admin.")));
}

// Under the agent lock: the latest sequence as committed, after the tenant
// check. Under REPEATABLE READ / SERIALIZABLE a writer whose snapshot
// predates another writer's commit would append after entries it cannot
// see; check_serializable raises 40001 instead.
Latest read_latest_locked(Datum agent, const OwnerSwitch &who) {
  Latest l = read_latest(agent, View::Fresh);
  check_tenant(l, who, agent);
  return l;
}

void check_serializable(const Latest &l, Datum agent) {
  if (!IsolationUsesXactSnapshot()) return;
  Latest mine = read_latest(agent, View::Transaction);
  if (!mine.same_as(l))
    ereport(ERROR,
            (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
             errmsg("could not serialize access due to a concurrent write to agent %s",
                    DatumGetCString(DirectFunctionCall1(uuid_out, agent))),
             errhint("Retry the transaction.")));
}

namespace {
// ---------------------------------------------------------------- checks
void check_event(Jsonb *jb, const char *argname) {
  if (JB_ROOT_IS_OBJECT(jb)) return;
  const char *got = "an array";
  if (JB_ROOT_IS_SCALAR(jb)) {
    JsonbValue *v = getIthJsonbValueFromContainer(&jb->root, 0);
    got = (v && v->type == jbvNull) ? "null" : "a scalar";
  }
  ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                  errmsg("%s must be a JSON object, got %s", argname, got)));
}


// The entry's kind: event->>'type' when a string; else the only key of a
// one-key object (serde-tagged enums); else 'unknown'. The C++ part runs on
// plain copies and writes into a fixed buffer; nothing C++ outlives it.
bool derive_kind_into(const char *type, int type_len, uint32 count, const char *key, int key_len,
                      char *out, size_t outlen, char *err, size_t errlen) noexcept {
  return run_cpp(
      [&] {
        std::string type_s;
        if (type) type_s.assign(type, type_len);
        std::string kind = aj::derive_kind(type ? &type_s : nullptr, count,
                                           std::string_view(key ? key : "", key ? key_len : 0));
        strlcpy(out, kind.c_str(), outlen);
      },
      err, errlen);
}

Datum kind_of(Jsonb *jb) {
  JsonbValue tv;
  const JsonbValue *type_v = getKeyJsonValueFromContainer(&jb->root, "type", 4, &tv);
  bool has_type = type_v != nullptr && type_v->type == jbvString;
  uint32 count = JB_ROOT_COUNT(jb);
  const char *key = nullptr;
  int key_len = 0;
  if (!has_type && count == 1) {
    JsonbIterator *it = JsonbIteratorInit(&jb->root);
    JsonbValue v;
    (void)JsonbIteratorNext(&it, &v, true);  // WJB_BEGIN_OBJECT
    if (JsonbIteratorNext(&it, &v, true) == WJB_KEY && v.type == jbvString) {
      key = v.val.string.val;
      key_len = v.val.string.len;
    }
  }
  char kind[512];
  char err[256];
  if (!derive_kind_into(has_type ? type_v->val.string.val : nullptr,
                        has_type ? type_v->val.string.len : 0, count, key, key_len, kind,
                        sizeof kind, err, sizeof err))
    ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("%s", err)));
  return PointerGetDatum(cstring_to_text(kind));
}


// SHA-256 over the request's events, as stored with an idempotency key.
struct Hasher {
  pg_cryptohash_ctx *ctx;
  Hasher() : ctx(pg_cryptohash_create(PG_SHA256)) {
    if (ctx == nullptr || pg_cryptohash_init(ctx) < 0) elog(ERROR, "agent_journal: sha256 init failed");
  }
  void add(const void *p, size_t n) {
    if (pg_cryptohash_update(ctx, (const uint8 *)p, n) < 0) elog(ERROR, "agent_journal: sha256 failed");
  }
  void add_jsonb(Jsonb *jb) {
    uint32 n = VARSIZE(jb);
    add(&n, sizeof n);
    add(jb, n);
  }
  bytea *finish() {
    bytea *out = (bytea *)palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
    SET_VARSIZE(out, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
    if (pg_cryptohash_final(ctx, (uint8 *)VARDATA(out), PG_SHA256_DIGEST_LENGTH) < 0)
      elog(ERROR, "agent_journal: sha256 failed");
    pg_cryptohash_free(ctx);
    return out;
  }
};

// With a key: returns true and sets *seq when the key was used before (the
// same request: the original answer; another request: ERROR 22023).
bool lookup_key(Datum agent, Datum key, bytea *hash, int64 *seq) {
  Datum args[2] = {agent, key};
  int rc = SPI_execute_snapshot(
      cached_plan(&p_key,
                  "SELECT last_sequence, request_hash FROM agent_journal.idempotency_keys "
                  "WHERE agent_id OPERATOR(pg_catalog.=) $1 "
                  "AND idempotency_key OPERATOR(pg_catalog.=) $2",
                  2, T_KEY),
      args, nullptr, GetLatestSnapshot(), InvalidSnapshot, false, false, 1);
  if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: key lookup failed: %d", rc);
  if (SPI_processed == 0) return false;
  bool isnull;
  *seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
  bytea *stored = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
  if (VARSIZE_ANY_EXHDR(stored) != VARSIZE_ANY_EXHDR(hash) ||
      memcmp(VARDATA_ANY(stored), VARDATA_ANY(hash), VARSIZE_ANY_EXHDR(hash)) != 0)
    ereport(ERROR,
            (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
             errmsg("idempotency_key \"%s\" was already used for a different request (sequence %lld)",
                    text_to_cstring(DatumGetTextPP(key)), (long long)*seq),
             errhint("Use a new key for a new event; retry with the same event to get the original sequence.")));
  return true;
}

void store_key(Datum agent, Datum key, int64 first, int64 last, bytea *hash) {
  static const Oid types[] = {UUIDOID, TEXTOID, INT8OID, INT8OID, BYTEAOID};
  Datum args[5] = {agent, key, Int64GetDatum(first), Int64GetDatum(last), PointerGetDatum(hash)};
  run_plan(&p_key_ins,
           "INSERT INTO agent_journal.idempotency_keys "
           "(agent_id, idempotency_key, first_sequence, last_sequence, request_hash) "
           "VALUES ($1, $2, $3, $4, $5)",
           5, types, args, nullptr, SPI_OK_INSERT);
}

void create_state(Datum agent) {
  Datum args[1] = {agent};
  run_plan(&p_state_ins, "INSERT INTO agent_journal.agent_state (agent_id) VALUES ($1)", 1,
           T_UUID, args, nullptr, SPI_OK_INSERT);
}

void check_expected(FunctionCallInfo fcinfo, int argno, int64 latest) {
  if (PG_ARGISNULL(argno)) return;
  int64 expected = PG_GETARG_INT64(argno);
  if (expected != latest)
    ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                    errmsg("expected_sequence %lld does not match the agent's latest sequence %lld",
                           (long long)expected, (long long)latest),
                    errhint("Replay from sequence %lld and retry with expected_sequence => %lld.",
                            (long long)expected + 1, (long long)latest)));
}

void check_common_args(FunctionCallInfo fcinfo) {
  require_arg(fcinfo, 0, "agent_id");
  require_arg(fcinfo, 1, "iteration");
  if (PG_GETARG_INT32(1) < 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("iteration must be >= 0, got %d", PG_GETARG_INT32(1))));
  if (!PG_ARGISNULL(3) && PG_GETARG_INT64(3) < 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("expected_sequence must be >= 0, got %lld",
                           (long long)PG_GETARG_INT64(3))));
  if (!PG_ARGISNULL(4)) check_key(PG_GETARG_TEXT_PP(4));
}

// Never decreasing along an agent's sequence, even if the clock steps back.
TimestampTz entry_time(const Latest &l) {
  TimestampTz now = GetCurrentTimestamp();
  return (l.has_entry && l.last_recorded_at > now) ? l.last_recorded_at : now;
}

}  // namespace

void check_size(Size raw, const char *argname) {
  Size bytes = raw > VARHDRSZ ? raw - VARHDRSZ : raw;
  if (bytes > (Size)max_event_bytes)
    ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                    errmsg("%s is %zu bytes, more than agent_journal.max_event_bytes (%d bytes)",
                           argname, bytes, max_event_bytes),
                    errhint("Store large payloads elsewhere and journal a reference, or raise "
                            "agent_journal.max_event_bytes.")));
}

void check_key(text *key) {
  int len = VARSIZE_ANY_EXHDR(key);
  if (len == 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("idempotency_key must not be empty")));
  if (len > MAX_KEY_BYTES)
    ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                    errmsg("idempotency_key is %d bytes, more than %d", len, MAX_KEY_BYTES)));
}


int64 compact_locked(Datum agent, const Latest &l, int64 through) {
  int64 removed = 0;
  if (l.has_entry && through > l.compacted) {
    static const Oid types[] = {UUIDOID, INT8OID};
    Datum args[2] = {agent, Int64GetDatum(through)};
    int rc = SPI_execute_plan(
        cached_plan(&p_delete,
                    "WITH d AS (DELETE FROM agent_journal.entries "
                    "           WHERE agent_id OPERATOR(pg_catalog.=) $1 "
                    "           AND sequence OPERATOR(pg_catalog.<=) $2 RETURNING iteration) "
                    "SELECT pg_catalog.count(*), COALESCE(pg_catalog.max(iteration), 0) FROM d",
                    2, types),
        args, nullptr, false, 1);
    if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: compact failed: %d", rc);
    bool isnull;
    removed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
    int32 max_iter =
        DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
    static const Oid utypes[] = {UUIDOID, INT8OID, INT4OID};
    Datum uargs[3] = {agent, Int64GetDatum(through), Int32GetDatum(max_iter)};
    run_plan(&p_state_upd,
             "UPDATE agent_journal.agent_state SET "
             "compacted_through = GREATEST(compacted_through, $2), "
             "compacted_iteration = GREATEST(compacted_iteration, $3) "
             "WHERE agent_id OPERATOR(pg_catalog.=) $1",
             3, utypes, uargs, nullptr, SPI_OK_UPDATE);
    // The counter follows the compaction point, as the walk of 0.5.0 did.
    tally_add(TALLY_COMPACTED, through - l.compacted);
  }
  // Saved states below the compaction point can no longer be resumed from
  // (their next entries are gone); the latest one stays (resume then
  // reports the hole).
  if (removed > 0 && OidIsValid(rels().saved_states)) {
    static SPIPlanPtr p_prune;
    static const Oid types[] = {UUIDOID, INT8OID};
    Datum args[2] = {agent, Int64GetDatum(through)};
    int64 pruned = (int64)run_plan(
        &p_prune,
        "DELETE FROM agent_journal.saved_states s WHERE s.agent_id OPERATOR(pg_catalog.=) $1 "
        "AND s.through_sequence OPERATOR(pg_catalog.<) $2 "
        "AND s.through_sequence OPERATOR(pg_catalog.<) (SELECT pg_catalog.max(m.through_sequence) "
        "  FROM agent_journal.saved_states m WHERE m.agent_id OPERATOR(pg_catalog.=) $1)",
        2, types, args, nullptr, SPI_OK_DELETE);
    if (pruned > 0) tally_add(TALLY_SAVED_STATES, -pruned);
  }
  return removed;
}

EntryScan *entry_scan_begin(Snapshot snap) {
  const Rels &r = rels();
  EntryScan *s = (EntryScan *)palloc0(sizeof(EntryScan));
  s->heap = table_open(r.entries, AccessShareLock);
  s->index = index_open(r.entries_pkey, AccessShareLock);
  s->scan = index_beginscan(s->heap, s->index, snap, 3, 0);
  s->slot = table_slot_create(s->heap, nullptr);
  (void)map_columns(s->heap, ENTRY_COLS, E_NCOLS, s->col);
  return s;
}

void entry_scan_range(EntryScan *s, Datum agent, int64 from, int64 to) {
  ScanKeyData keys[3];
  ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_UUID_EQ, agent);
  ScanKeyInit(&keys[1], 2, BTGreaterEqualStrategyNumber, F_INT8GE, Int64GetDatum(from));
  ScanKeyInit(&keys[2], 2, BTLessEqualStrategyNumber, F_INT8LE, Int64GetDatum(to));
  index_rescan(s->scan, keys, 3, nullptr, 0);
}

bool entry_scan_next(EntryScan *s) {
  if (!index_getnext_slot(s->scan, ForwardScanDirection, s->slot)) return false;
  slot_getallattrs(s->slot);
  return true;
}

Datum entry_value(const EntryScan *s, int column, bool *isnull) {
  *isnull = s->slot->tts_isnull[s->col[column] - 1];
  return s->slot->tts_values[s->col[column] - 1];
}

void entry_scan_end(EntryScan *s) {
  ExecDropSingleTupleTableSlot(s->slot);
  index_endscan(s->scan);
  index_close(s->index, AccessShareLock);
  table_close(s->heap, AccessShareLock);
  pfree(s);
}

void cursor_into(ReturnSetInfo *rsinfo, SPIPlanPtr plan, Datum *args, const char *nulls,
                 int64 max_entries) {
  Portal portal = SPI_cursor_open(nullptr, plan, args, nulls, true);
  int64 n = 0;
  while (n < max_entries) {
    long page = (long)Min(max_entries - n, (int64)1000);
    SPI_cursor_fetch(portal, true, page);
    if (SPI_processed == 0) break;
    for (uint64 i = 0; i < SPI_processed; i++) {
      Datum values[5];
      bool isnull[5];
      heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, isnull);
      tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
    }
    n += (int64)SPI_processed;
    SPI_freetuptable(SPI_tuptable);
    CHECK_FOR_INTERRUPTS();
  }
  SPI_cursor_close(portal);
}

// entries_into for an agent that lives on another node of a distributed
// journal: the rows through Citus (routed by agent_id), read with a cursor
// a page at a time, as the extension's owner.
static void entries_into_routed(ReturnSetInfo *rsinfo, Datum agent, int64 from, int64 to,
                                int64 max_entries) {
  static SPIPlanPtr plan;
  static const Oid types[] = {UUIDOID, INT8OID, INT8OID};
  OwnerSwitch who = spi_begin();
  if (plan == nullptr) {
    SPIPlanPtr p = SPI_prepare("SELECT sequence, iteration, kind, recorded_at, event FROM agent_journal.entries "
                               "WHERE agent_id OPERATOR(pg_catalog.=) $1 AND sequence OPERATOR(pg_catalog.>=) $2 "
                               "AND sequence OPERATOR(pg_catalog.<=) $3 ORDER BY sequence",
                               3, const_cast<Oid *>(types));
    if (p == nullptr || SPI_keepplan(p) != 0) elog(ERROR, "agent_journal: SPI_prepare failed");
    plan = p;
  }
  Datum args[3] = {agent, Int64GetDatum(from), Int64GetDatum(to)};
  cursor_into(rsinfo, plan, args, nullptr, max_entries);
  spi_end(who);
}

void entries_into(ReturnSetInfo *rsinfo, Datum agent, int64 from, int64 to, int64 max_entries) {
  if (agent_elsewhere(DatumGetUUIDP(agent))) {
    entries_into_routed(rsinfo, agent, from, to, max_entries);
    return;
  }
  // A forward scan of the primary key (agent_id, sequence >= from) straight
  // into the tuplestore, which spills to disk beyond work_mem: one copy per
  // row, no executor, no SPI result set.
  journal_agent(DatumGetUUIDP(agent));
  EntryScan *s = entry_scan_begin(GetActiveSnapshot());
  entry_scan_range(s, agent, from, to);
  // replay's columns: sequence, iteration, kind, recorded_at, event
  Datum values[5];
  bool isnull[5];
  for (int64 n = 0; n < max_entries && entry_scan_next(s); n++) {
    for (int i = 0; i < 5; i++) values[i] = entry_value(s, ENTRY_SEQUENCE + i, &isnull[i]);
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
    if ((n & 1023) == 0) CHECK_FOR_INTERRUPTS();
  }
  entry_scan_end(s);
}
bool answer_key(AnswerKey *k) {
  if (!ActiveSnapshotSet()) return false;
  Snapshot s = GetActiveSnapshot();
  if (s->snapshot_type != SNAPSHOT_MVCC) return false;
  *k = AnswerKey{GetUserId(), MyProc->lxid, s->curcid, s->xmin, s->xmax,
                 s->xcnt, s->subxcnt, s->suboverflowed, s->takenDuringRecovery};
  return true;
}


Latest check_agent_read(Datum agent) {
  // Direct index probes need no owner switch (no privilege is checked at
  // that level); the admin lookup behind a bound agent does.
  Latest l = read_latest(agent, View::Statement);
  Oid user = GetUserId();
  if (!l.bound || (OidIsValid(l.owner) && has_privs_of_role(user, l.owner)) || superuser_arg(user))
    return l;
  OwnerSwitch who = spi_begin();
  check_tenant(l, who, agent);
  spi_end(who);
  return l;
}
}  // namespace ajpg

using namespace ajpg;

Datum aj_append(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.append()");
  check_common_args(fcinfo);
  require_arg(fcinfo, 2, "event");
  check_size(toast_raw_datum_size(PG_GETARG_DATUM(2)), "event");
  Jsonb *event = PG_GETARG_JSONB_P(2);
  check_event(event, "event");
  Datum agent = PG_GETARG_DATUM(0);
  int32 iteration = PG_GETARG_INT32(1);
  bool has_key = !PG_ARGISNULL(4);
  Datum key = has_key ? PG_GETARG_DATUM(4) : (Datum)0;
  Datum kind = kind_of(event);
  bytea *hash = nullptr;
  if (has_key) {
    Hasher h;
    h.add_jsonb(event);
    hash = h.finish();
  }

  int64 token = 0;
  bool has_token = lease_arg(fcinfo, 5, &token);

  OwnerSwitch who = spi_begin();
  lock_agent(DatumGetUUIDP(agent));
  Latest l = read_latest_locked(agent, who);
  check_lease(l, has_token, token, agent);
  int64 seq;
  if (has_key && lookup_key(agent, key, hash, &seq)) {
    spi_end(who);
    PG_RETURN_INT64(seq);
  }
  check_serializable(l, agent);
  check_expected(fcinfo, 3, l.sequence);
  seq = l.sequence + 1;
  static const Oid types[] = {UUIDOID, INT8OID, INT4OID, TEXTOID, TIMESTAMPTZOID, JSONBOID};
  Datum args[6] = {agent, Int64GetDatum(seq), Int32GetDatum(iteration), kind,
                   TimestampTzGetDatum(entry_time(l)), JsonbPGetDatum(event)};
  insert_entry(args, types);
  if (!l.known) {
    create_state(agent);
    tally_add(TALLY_AGENTS, 1);
  }
  if (!feed_note(agent, seq, seq, true)) tally_add(TALLY_APPENDED, 1);
  if (has_key) store_key(agent, key, seq, seq, hash);
  spi_end(who);
  PG_RETURN_INT64(seq);
}

Datum aj_append_batch(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.append_batch()");
  check_common_args(fcinfo);
  require_arg(fcinfo, 2, "events");
  ArrayType *arr = PG_GETARG_ARRAYTYPE_P(2);
  if (ARR_NDIM(arr) > 1)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("events must be a one-dimensional array")));
  Datum *elems;
  bool *nulls;
  int n;
  deconstruct_array(arr, JSONBOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
  if (n == 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("events must not be empty")));
  if (n > MAX_BATCH)
    ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                    errmsg("events has %d elements, more than %d", n, MAX_BATCH)));
  bool has_key = !PG_ARGISNULL(4);
  Hasher *h = has_key ? new (palloc(sizeof(Hasher))) Hasher() : nullptr;
  Datum *kinds = (Datum *)palloc(sizeof(Datum) * n);
  char argname[32];
  for (int i = 0; i < n; i++) {
    snprintf(argname, sizeof argname, "events[%d]", i + 1);
    if (nulls[i])
      ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("%s must not be NULL", argname)));
    check_size(toast_raw_datum_size(elems[i]), argname);
    Jsonb *jb = DatumGetJsonbP(elems[i]);
    check_event(jb, argname);
    kinds[i] = kind_of(jb);
    if (h) h->add_jsonb(jb);
  }
  ArrayType *kind_arr = construct_array(kinds, n, TEXTOID, -1, false, TYPALIGN_INT);
  bytea *hash = h ? h->finish() : nullptr;
  Datum agent = PG_GETARG_DATUM(0);
  Datum key = has_key ? PG_GETARG_DATUM(4) : (Datum)0;

  int64 token = 0;
  bool has_token = lease_arg(fcinfo, 5, &token);

  OwnerSwitch who = spi_begin();
  lock_agent(DatumGetUUIDP(agent));
  Latest l = read_latest_locked(agent, who);
  check_lease(l, has_token, token, agent);
  int64 seq;
  if (has_key && lookup_key(agent, key, hash, &seq)) {
    spi_end(who);
    PG_RETURN_INT64(seq);
  }
  check_serializable(l, agent);
  check_expected(fcinfo, 3, l.sequence);
  static const Oid types[] = {UUIDOID, INT8OID, INT4OID, TIMESTAMPTZOID, JSONBARRAYOID, TEXTARRAYOID};
  Datum args[6] = {agent,
                   Int64GetDatum(l.sequence),
                   PG_GETARG_DATUM(1),
                   TimestampTzGetDatum(entry_time(l)),
                   PointerGetDatum(arr),
                   PointerGetDatum(kind_arr)};
  uint64 inserted = run_plan(
      &p_insert_batch,
      "INSERT INTO agent_journal.entries "
      "(agent_id, sequence, iteration, kind, recorded_at, event) "
      "SELECT $1, $2 OPERATOR(pg_catalog.+) u.o, $3, u.k, $4, u.e "
      "FROM ROWS FROM (pg_catalog.unnest($5), pg_catalog.unnest($6)) WITH ORDINALITY AS u(e, k, o)",
      6, types, args, nullptr, SPI_OK_INSERT);
  if (inserted != (uint64)n) elog(ERROR, "agent_journal: batch inserted %llu of %d rows",
                                  (unsigned long long)inserted, n);
  int64 last = l.sequence + n;
  if (!l.known) {
    create_state(agent);
    tally_add(TALLY_AGENTS, 1);
  }
  if (!feed_note(agent, l.sequence + 1, last, true)) tally_add(TALLY_APPENDED, n);
  if (has_key) store_key(agent, key, l.sequence + 1, last, hash);
  spi_end(who);
  PG_RETURN_INT64(last);
}

// replay's arguments (agent_id, from_sequence, max_entries), checked;
// returns max_entries, or -1 for none (NULL).
static int64 replay_args(FunctionCallInfo fcinfo) {
  require_arg(fcinfo, 0, "agent_id");
  require_arg(fcinfo, 1, "from_sequence");
  int64 from = PG_GETARG_INT64(1);
  if (from < 1)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("from_sequence must be >= 1, got %lld", (long long)from)));
  if (PG_ARGISNULL(2)) return -1;
  int64 max_entries = PG_GETARG_INT64(2);
  if (max_entries < 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("max_entries must be >= 0, got %lld", (long long)max_entries)));
  return max_entries;
}

// From 0.3.0, replay is an SQL function that PostgreSQL inlines into the
// calling query: an index scan of entries through the view replay_rows,
// streamed, no tuplestore. Its LIMIT is replay_guard(...), which the
// executor evaluates once before the first row: it checks the arguments and
// the caller's access to the agent (the errors replay always gave) and
// returns the limit. replay_rows' filter (may_replay) shows the caller only
// rows of agents it may replay.
Datum aj_replay_guard(PG_FUNCTION_ARGS) {
  // Anyone may call the guard (it is replay's, and PUBLIC may execute it);
  // it answers only callers who may execute replay itself.
  if (pg_proc_aclcheck(replay_fn(), GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
    aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, "replay");
  int64 max_entries = replay_args(fcinfo);
  Datum agent = PG_GETARG_DATUM(0);
  (void)check_agent_read(agent);
  if (max_entries < 0) PG_RETURN_NULL();
  PG_RETURN_INT64(max_entries);
}

// replay as 0.1.0 and 0.2.0 declare it (a C set-returning function), for
// databases not yet updated with ALTER EXTENSION agent_journal UPDATE.
Datum aj_replay(PG_FUNCTION_ARGS) {
  int64 max_arg = replay_args(fcinfo);
  int64 from = PG_GETARG_INT64(1);
  InitMaterializedSRF(fcinfo, 0);
  ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;

  int64 max_entries = max_arg < 0 ? PG_INT64_MAX : max_arg;
  Datum agent = PG_GETARG_DATUM(0);

  OwnerSwitch who = spi_begin();  // SPI for the admin lookup of the tenant check
  check_tenant(read_latest(agent, View::Statement), who, agent);
  entries_into(rsinfo, agent, from, PG_INT64_MAX, max_entries);
  spi_end(who);
  return (Datum)0;
}

static int64 latest_of(Datum agent) {
  OwnerSwitch who = spi_begin();
  Latest l = read_latest(agent, View::Statement);
  check_tenant(l, who, agent);
  spi_end(who);
  return l.sequence;
}

Datum aj_latest_sequence(PG_FUNCTION_ARGS) {
  require_arg(fcinfo, 0, "agent_id");
  PG_RETURN_INT64(latest_of(PG_GETARG_DATUM(0)));
}

Datum aj_next_sequence(PG_FUNCTION_ARGS) {
  require_arg(fcinfo, 0, "agent_id");
  PG_RETURN_INT64(latest_of(PG_GETARG_DATUM(0)) + 1);
}

Datum aj_last_completed_iteration(PG_FUNCTION_ARGS) {
  require_arg(fcinfo, 0, "agent_id");
  Datum args[1] = {PG_GETARG_DATUM(0)};
  OwnerSwitch who = spi_begin();
  check_tenant(read_latest(args[0], View::Statement), who, args[0]);
  int32 result = 0;
  bool isnull;
  int rc = SPI_execute_plan(
      cached_plan(&p_max_iter,
                  "SELECT GREATEST((SELECT pg_catalog.max(iteration) FROM agent_journal.entries "
                  "                 WHERE agent_id OPERATOR(pg_catalog.=) $1), "
                  "                (SELECT compacted_iteration FROM agent_journal.agent_state "
                  "                 WHERE agent_id OPERATOR(pg_catalog.=) $1), 0)",
                  1, T_UUID),
      args, nullptr, true, 1);
  if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: iteration query failed: %d", rc);
  Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
  if (!isnull) result = DatumGetInt32(d);
  spi_end(who);
  PG_RETURN_INT32(result);
}

Datum aj_compact(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.compact()");
  require_arg(fcinfo, 0, "agent_id");
  if (!PG_ARGISNULL(1) && PG_GETARG_INT64(1) < 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("through_sequence must be >= 0, got %lld", (long long)PG_GETARG_INT64(1))));
  Datum agent = PG_GETARG_DATUM(0);
  int64 token = 0;
  bool has_token = lease_arg(fcinfo, 2, &token);
  OwnerSwitch who = spi_begin();
  lock_agent(DatumGetUUIDP(agent));
  Latest l = read_latest_locked(agent, who);
  check_lease(l, has_token, token, agent);
  check_serializable(l, agent);
  int64 through = PG_ARGISNULL(1) ? l.sequence : Min(PG_GETARG_INT64(1), l.sequence);
  int64 removed = compact_locked(agent, l, through);
  spi_end(who);
  PG_RETURN_INT64(removed);
}

Datum aj_forget_agent(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.forget_agent()");
  require_arg(fcinfo, 0, "agent_id");
  Datum agent = PG_GETARG_DATUM(0);
  Datum args[1] = {agent};
  OwnerSwitch who = spi_begin();
  lock_agent(DatumGetUUIDP(agent));
  // Under REPEATABLE READ / SERIALIZABLE the deletes below would see only
  // what the transaction's snapshot sees and leave a concurrent writer's
  // entries behind: 40001 instead (check_serializable).
  Latest l = read_latest_locked(agent, who);
  check_serializable(l, agent);
  // The journal's counters (appended, compacted) are sums over the agents:
  // what a forgotten agent counted stays counted (0.5.0), so they never go
  // down.
  tally_add(TALLY_FORGOTTEN_APPENDED, l.sequence);
  tally_add(TALLY_FORGOTTEN_COMPACTED, l.compacted);
  // 0.6.0: appended and compacted already count them; the live entries
  // that go, and the agent, are taken off.
  tally_add(TALLY_FORGOTTEN_LIVE, l.sequence - l.compacted);
  if (l.known) tally_add(TALLY_AGENTS, -1);
  feed_forget(agent, l);
  // Entries first (their count is the answer), then keys, then the state.
  int64 removed = (int64)run_plan(
      &p_forget_entries,
      "DELETE FROM agent_journal.entries WHERE agent_id OPERATOR(pg_catalog.=) $1", 1, T_UUID,
      args, nullptr, SPI_OK_DELETE);
  run_plan(&p_forget_keys,
           "DELETE FROM agent_journal.idempotency_keys WHERE agent_id OPERATOR(pg_catalog.=) $1", 1,
           T_UUID, args, nullptr, SPI_OK_DELETE);
  // The lease and its graph go with the state row (0.5.0). Tokens come from
  // one sequence, so nothing needs keeping for fencing: a token from
  // before never matches a later claim.
  if (OidIsValid(rels().lease_graph)) {
    static SPIPlanPtr p_forget_graph;
    run_plan(&p_forget_graph,
             "DELETE FROM agent_journal.lease_graph WHERE agent_id OPERATOR(pg_catalog.=) $1", 1,
             T_UUID, args, nullptr, SPI_OK_DELETE);
  }
  // Saved states and the agent's retention policy (0.5.0); the fork
  // origin goes with the state row.
  if (OidIsValid(rels().saved_states)) {
    static SPIPlanPtr p_forget_states, p_forget_policy;
    int64 states = (int64)run_plan(
        &p_forget_states,
        "DELETE FROM agent_journal.saved_states WHERE agent_id OPERATOR(pg_catalog.=) $1", 1,
        T_UUID, args, nullptr, SPI_OK_DELETE);
    if (states > 0) tally_add(TALLY_SAVED_STATES, -states);
    run_plan(&p_forget_policy,
             "DELETE FROM agent_journal.retention_settings WHERE agent_id OPERATOR(pg_catalog.=) $1",
             1, T_UUID, args, nullptr, SPI_OK_DELETE);
  }
  run_plan(&p_forget_state,
           "DELETE FROM agent_journal.agent_state WHERE agent_id OPERATOR(pg_catalog.=) $1", 1,
           T_UUID, args, nullptr, SPI_OK_DELETE);
  spi_end(who);
  PG_RETURN_INT64(removed);
}

// bind_agent(agent_id, owner): `owner` is a role's name exactly as
// pg_roles.rolname spells it (bind_agent(uuid, name), from 0.4.0) or a
// regrole. agent_state.owner keeps the name (0.4.0; a regrole before), so
// a dump restored into a cluster without that role loses only this
// binding, and the agent becomes admin-only.
static void bind_agent(FunctionCallInfo fcinfo, Oid role) {
  require_writable("agent_journal.bind_agent()");
  require_arg(fcinfo, 0, "agent_id");
  Datum agent = PG_GETARG_DATUM(0);
  OwnerSwitch who = spi_begin();
  if (!is_admin(who.saved_user))
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("only admins may bind agents to roles"),
                    errhint("Run agent_journal.grant_access(role, 'admin') as a superuser.")));
  lock_agent(DatumGetUUIDP(agent));
  Latest l = read_latest_locked(agent, who);
  check_serializable(l, agent);
  if (!l.known) tally_add(TALLY_AGENTS, 1);  // the row is created below
  bool unbind = !OidIsValid(role);
  Relation rel = table_open(rels().state, AccessShareLock);
  AttrNumber col[S_NCOLS];
  (void)map_columns(rel, STATE_COLS, S_NCOLS, col);
  bool by_name = TupleDescAttr(RelationGetDescr(rel), col[S_OWNER] - 1)->atttypid != REGROLEOID;
  table_close(rel, AccessShareLock);
  static SPIPlanPtr p_bind_name;
  static const Oid t_oid[] = {UUIDOID, OIDOID}, t_name[] = {UUIDOID, TEXTOID};
  Datum args[2] = {agent, unbind ? (Datum)0
                          : by_name ? CStringGetTextDatum(GetUserNameFromId(role, false))
                                    : ObjectIdGetDatum(role)};
  char nulls[2] = {' ', unbind ? 'n' : ' '};
  if (by_name)
    run_plan(&p_bind_name,
             "INSERT INTO agent_journal.agent_state AS s (agent_id, owner) "
             "VALUES ($1, $2) ON CONFLICT (agent_id) DO UPDATE SET owner = EXCLUDED.owner",
             2, t_name, args, nulls, SPI_OK_INSERT);
  else
    run_plan(&p_bind,
             "INSERT INTO agent_journal.agent_state AS s (agent_id, owner) "
             "VALUES ($1, $2::pg_catalog.regrole) ON CONFLICT (agent_id) "
             "DO UPDATE SET owner = EXCLUDED.owner",
             2, t_oid, args, nulls, SPI_OK_INSERT);
  spi_end(who);
}

Datum aj_bind_agent(PG_FUNCTION_ARGS) {
  Oid role = PG_ARGISNULL(1) ? InvalidOid : PG_GETARG_OID(1);
  if (!PG_ARGISNULL(1) && !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("role with OID %u does not exist", role)));
  bind_agent(fcinfo, role);
  PG_RETURN_VOID();
}

Datum aj_bind_agent_name(PG_FUNCTION_ARGS) {
  Oid role = InvalidOid;
  if (!PG_ARGISNULL(1)) {
    const char *name = NameStr(*PG_GETARG_NAME(1));
    role = get_role_oid(name, true);
    if (!OidIsValid(role))
      ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                      errmsg("role \"%s\" does not exist", name),
                      errhint("owner names a role exactly as pg_roles.rolname spells it.")));
  }
  bind_agent(fcinfo, role);
  PG_RETURN_VOID();
}

// Row-level security on the journal tables calls agent_visible per row
// (and is_admin when it says no), and replay_rows' filter calls may_replay
// per row, so all three remember their last answer in the call site's
// fn_extra. An answer is reused only for the same user in
// the same transaction and command, looking through a snapshot that sees
// the same transactions as committed: same xmin and xmax (xmax moves as
// soon as any transaction at or past it ends) and as many in progress
// (one finishing below xmax leaves the in-progress list). A replay of one
// agent thus costs one lookup, not one per row.
namespace {
struct AnswerCache {
  bool valid = false;
  AnswerKey key{};
  pg_uuid_t agent{};  // the agent asked about (all zero for is_admin)
  bool answer = false;
};

AnswerCache *answer_cache(FunctionCallInfo fcinfo) {
  if (fcinfo->flinfo->fn_extra == nullptr) {
    void *mem = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(AnswerCache));
    fcinfo->flinfo->fn_extra = new (mem) AnswerCache();
  }
  return static_cast<AnswerCache *>(fcinfo->flinfo->fn_extra);
}

// The call site's answer for `agent` (nullptr: no agent argument), from
// its cache or from compute().
template <typename F>
bool cached_answer(FunctionCallInfo fcinfo, const pg_uuid_t *agent, F &&compute) {
  static const pg_uuid_t none{};
  if (agent == nullptr) agent = &none;
  AnswerKey key{};
  bool keyed = answer_key(&key);
  AnswerCache *c = answer_cache(fcinfo);
  if (keyed && c->valid && c->key == key && memcmp(&c->agent, agent, sizeof(pg_uuid_t)) == 0)
    return c->answer;
  bool answer = compute();
  c->valid = keyed;
  c->key = key;
  c->agent = *agent;
  c->answer = answer;
  return answer;
}

// May the current user see this agent (its tenant binding)?
bool visible_now(Datum agent) {
  Latest l = read_latest(agent, View::Statement);
  Oid user = GetUserId();
  if (!l.bound || (OidIsValid(l.owner) && has_privs_of_role(user, l.owner)) || superuser_arg(user))
    return true;  // no SPI for the common cases
  OwnerSwitch who = spi_begin();
  bool ok = tenant_ok(l, who.saved_user);
  spi_end(who);
  return ok;
}

bool may_execute_replay() {
  return pg_proc_aclcheck(replay_fn(), GetUserId(), ACL_EXECUTE) == ACLCHECK_OK;
}
}  // namespace

Datum aj_agent_visible(PG_FUNCTION_ARGS) {
  if (PG_ARGISNULL(0)) PG_RETURN_BOOL(false);
  Datum agent = PG_GETARG_DATUM(0);
  PG_RETURN_BOOL(cached_answer(fcinfo, DatumGetUUIDP(agent), [&] { return visible_now(agent); }));
}

// replay_rows' filter: what replay() would show the current user, i.e.
// it may execute replay and see the agent.
Datum aj_may_replay(PG_FUNCTION_ARGS) {
  if (PG_ARGISNULL(0)) PG_RETURN_BOOL(false);
  Datum agent = PG_GETARG_DATUM(0);
  PG_RETURN_BOOL(cached_answer(fcinfo, DatumGetUUIDP(agent),
                               [&] { return may_execute_replay() && visible_now(agent); }));
}

// may_replay's planner support: its selectivity is 1. A caller replays
// agents it may see, so the filter passes every row; the default guess
// (1/3) would make a replay of a large journal look small enough for a
// sort to beat the ordered primary-key scan.
Datum aj_may_replay_support(PG_FUNCTION_ARGS) {
  Node *req = (Node *)PG_GETARG_POINTER(0);
  if (IsA(req, SupportRequestSelectivity)) {
    ((SupportRequestSelectivity *)req)->selectivity = 1.0;
    PG_RETURN_POINTER(req);
  }
  PG_RETURN_POINTER(nullptr);
}

Datum aj_is_admin(PG_FUNCTION_ARGS) {
  PG_RETURN_BOOL(cached_answer(fcinfo, nullptr, [] {
    OwnerSwitch who = spi_begin();
    bool ok = is_admin(who.saved_user);
    spi_end(who);
    return ok;
  }));
}

namespace ajpg {
void check_agent_access(Datum agent, const OwnerSwitch &who) {
  check_tenant(read_latest(agent, View::Statement), who, agent);
}
}  // namespace ajpg
