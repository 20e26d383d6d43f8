// Shared glue: argument checks, cached SPI plans, the agent lock, identity.
#include "pg/pg.hpp"
#include "pg/journal.hpp"
#include "pg/citus.hpp"

extern "C" {
#include "common/hashfn.h"
#include "storage/proc.h"
#include "utils/syscache.h"
#include "utils/inval.h"
#include "catalog/pg_class.h"
#include "utils/acl.h"
#include "tcop/utility.h"
#include "access/genam.h"
#include "access/relscan.h"
#include "access/tableam.h"
#include "access/twophase.h"
#include "executor/tuptable.h"
#include "access/table.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
}

namespace ajpg {

void require_arg(FunctionCallInfo fcinfo, int argno, const char *name) {
  if (PG_ARGISNULL(argno))
    ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                    errmsg("%s must not be NULL", name)));
}

void require_writable(const char *fn) {
  PreventCommandIfReadOnly(fn);
  PreventCommandDuringRecovery(fn);
}

SPIPlanPtr cached_plan(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *argtypes) {
  if (*slot == nullptr) {
    SPIPlanPtr plan = SPI_prepare(sql, nargs, const_cast<Oid *>(argtypes));
    if (plan == nullptr)
      elog(ERROR, "agent_journal: SPI_prepare failed (%s) for: %s",
           SPI_result_code_string(SPI_result), sql);
    if (SPI_keepplan(plan) != 0) elog(ERROR, "agent_journal: SPI_keepplan failed");
    *slot = plan;
  }
  return *slot;
}

uint64 run_plan(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *types, Datum *args,
                const char *nulls, int expect_rc, bool read_only, long count) {
  int rc = SPI_execute_plan(cached_plan(slot, sql, nargs, types), args, nulls, read_only, count);
  if (rc != expect_rc)
    elog(ERROR, "agent_journal: %s returned %s for: %s", "SPI_execute_plan",
         SPI_result_code_string(rc), sql);
  return SPI_processed;
}

int64 result_int8(int col) {
  bool isnull;
  if (SPI_processed == 0) elog(ERROR, "agent_journal: query returned no row");
  Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);
  return isnull ? 0 : DatumGetInt64(d);
}

bool held_by_other(Relation heap, Relation index, ScanKey keys, int nkeys, TupleTableSlot *found) {
  SnapshotData dirty;
  InitDirtySnapshot(dirty);
  IndexScanDesc scan = index_beginscan(heap, index, &dirty, nkeys, 0);
  index_rescan(scan, keys, nkeys, nullptr, 0);
  TupleTableSlot *slot = found ? found : table_slot_create(heap, nullptr);
  // HeapTupleSatisfiesDirty reports a running updater in xmax, a running
  // inserter in xmin.
  bool busy =
      index_getnext_slot(scan, ForwardScanDirection, slot) &&
      ((TransactionIdIsValid(dirty.xmax) && !TransactionIdIsCurrentTransactionId(dirty.xmax)) ||
       (TransactionIdIsValid(dirty.xmin) && !TransactionIdIsCurrentTransactionId(dirty.xmin)));
  if (!found) ExecDropSingleTupleTableSlot(slot);
  index_endscan(scan);
  return busy;
}

int32 backend_slot(bool (*busy)(int32 slot, void *arg), void *arg) {
  for (int k = 0; k <= max_prepared_xacts; k++) {
    int32 slot = MyBackendId + k * (MaxBackends + 1);
    if (!busy(slot, arg)) return slot;
  }
  return -1;
}

void lock_agent(const pg_uuid_t *agent) {
  journal_agent(agent);
  uint64 h = hash_bytes_extended(agent->data, UUID_LEN, 0x414A);
  LOCKTAG tag;
  SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32)(h >> 32), (uint32)h, AJ_LOCK_SPACE);
  (void)LockAcquire(&tag, ExclusiveLock, false, false);
  // A distributed journal: the agent's shards must not move away under the
  // write (citus.hpp); one branch without Citus.
  if (citus_preloaded()) {
    Oid nsp = get_namespace_oid("agent_journal", false);
    if (journal_distributed(nsp) && lock_agent_shard(nsp, agent)) rels_forget();
  }
}

// ---- catalog_stamp (pg.hpp) ----------------------------------------------
static uint64 catalog_generation = 1;
static void catalog_changed(Datum, Oid) { catalog_generation++; }
static void namespace_changed(Datum, int, uint32) { catalog_generation++; }

CatalogStamp catalog_stamp() {
  static bool registered = false;
  if (!registered) {
    CacheRegisterRelcacheCallback(catalog_changed, (Datum)0);
    CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_changed, (Datum)0);
    registered = true;
  }
  CatalogStamp s;
  s.generation = catalog_generation;
  s.lxid = MyProc->lxid;
  return s;
}

bool catalog_stamp_current(const CatalogStamp &at) {
  if (at.generation != catalog_generation || at.generation == 0) return false;
  return !citus_preloaded() || at.lxid == MyProc->lxid;
}

// The owner of agent_journal.entries (DROP/CREATE EXTENSION or ALTER
// TABLE ... OWNER TO change it; both invalidate the stamp).
static Oid owner_cache = InvalidOid;
static CatalogStamp owner_stamp;

static Oid extension_owner() {
  if (OidIsValid(owner_cache) && catalog_stamp_current(owner_stamp)) return owner_cache;
  CatalogStamp stamp = catalog_stamp();  // before the lookups: an invalidation meanwhile wins
  Oid nsp = get_namespace_oid("agent_journal", false);
  Oid rel = get_relname_relid("entries", nsp);
  if (!OidIsValid(rel))
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("agent_journal.entries is missing"),
                    errhint("Reinstall the extension: DROP EXTENSION agent_journal; CREATE EXTENSION agent_journal;")));
  HeapTuple tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
  if (!HeapTupleIsValid(tup)) elog(ERROR, "cache lookup failed for relation %u", rel);
  Oid owner = ((Form_pg_class)GETSTRUCT(tup))->relowner;
  ReleaseSysCache(tup);
  owner_cache = owner;
  owner_stamp = stamp;
  return owner;
}

// Owner-switched code sees only pg_catalog: no schema of the caller's
// search_path and no pg_temp, for types, relations, functions and
// operators alike (a caller's pg_temp.text domain or an owned schema first
// in search_path would otherwise run the caller's code with the owner's
// rights). An override search path is pushed, not a GUC set: it costs no
// GUC save/restore, keeps cached SPI plans valid across calls, and
// transaction or subtransaction abort pops it. The switch is also a
// security-restricted operation, as VACUUM and REFRESH MATERIALIZED VIEW
// run index and view code: no SET ROLE, no temporary objects.
static void push_pinned_path() {
  OverrideSearchPath path;
  path.schemas = NIL;
  path.addCatalog = true;
  path.addTemp = false;
  path.generation = 0;
  PushOverrideSearchPath(&path);
}

OwnerSwitch become_owner() {
  OwnerSwitch s;
  GetUserIdAndSecContext(&s.saved_user, &s.saved_sec);
  Oid owner = extension_owner();
  push_pinned_path();
  SetUserIdAndSecContext(owner, s.saved_sec | SECURITY_LOCAL_USERID_CHANGE |
                                    SECURITY_RESTRICTED_OPERATION);
  return s;
}

void restore_user(const OwnerSwitch &s) {
  SetUserIdAndSecContext(s.saved_user, s.saved_sec);
  PopOverrideSearchPath();
}

OwnerSwitch spi_begin() {
  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "agent_journal: SPI_connect failed");
  return become_owner();
}

void spi_end(const OwnerSwitch &s) {
  restore_user(s);
  SPI_finish();
}

// The admins named in rows of `rel` (access_grants' local shard on a
// distributed journal), read directly: there the SPI query below would be
// a distributed query, which Citus refuses inside a query on a shard (the
// row-level security of a shard query calls is_admin).
static bool admin_in_shard(Oid role, Oid relid) {
  Relation rel = table_open(relid, AccessShareLock);
  AttrNumber a_role = get_attnum(relid, "role"), a_access = get_attnum(relid, "access");
  if (a_role == InvalidAttrNumber || a_access == InvalidAttrNumber ||
      TupleDescAttr(RelationGetDescr(rel), a_role - 1)->atttypid != TEXTOID)
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("agent_journal.access_grants has no text column \"role\" or no column \"access\""),
                    errhint("Undo the ALTER TABLE on the extension's table.")));
  TableScanDesc scan =
      table_beginscan(rel, ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot(), 0, nullptr);
  TupleTableSlot *slot = table_slot_create(rel, nullptr);
  bool found = false;
  while (!found && table_scan_getnextslot(scan, ForwardScanDirection, slot)) {
    bool n1, n2;
    Datum access = slot_getattr(slot, a_access, &n1), name = slot_getattr(slot, a_role, &n2);
    if (n1 || n2 || strcmp(TextDatumGetCString(access), "admin") != 0) continue;
    Oid admin = get_role_oid(TextDatumGetCString(name), true);
    found = OidIsValid(admin) && has_privs_of_role(role, admin);
  }
  ExecDropSingleTupleTableSlot(slot);
  table_endscan(scan);
  table_close(rel, AccessShareLock);
  return found;
}

bool is_admin(Oid role) {
  if (superuser_arg(role)) return true;
  if (agent_journal_distributed()) {
    Oid shard = reference_shard_rel(get_namespace_oid("agent_journal", false), "access_grants");
    if (OidIsValid(shard)) return admin_in_shard(role, shard);
  }
  static SPIPlanPtr plan;
  int rc = SPI_execute_plan(
      cached_plan(&plan,
                  "SELECT role FROM agent_journal.access_grants "
                  "WHERE access OPERATOR(pg_catalog.=) 'admin'",
                  0, nullptr),
      nullptr, nullptr, true, 0);
  if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: admin lookup failed: %d", rc);
  // access_grants.role: the role's exact name from 0.4.0 (a role missing
  // after a restore is skipped), a regrole before.
  bool by_oid = SPI_gettypeid(SPI_tuptable->tupdesc, 1) == REGROLEOID;
  for (uint64 i = 0; i < SPI_processed; i++) {
    bool isnull;
    Datum d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
    if (isnull) continue;
    Oid admin = by_oid ? DatumGetObjectId(d) : get_role_oid(TextDatumGetCString(d), true);
    if (OidIsValid(admin) && has_privs_of_role(role, admin)) return true;
  }
  return false;
}

bool tenant_allows(Oid caller, Oid owner) {
  // InvalidOid: bound to a role that does not exist (dropped, or missing
  // after a restore): admins only, never unbound. has_privs_of_role is
  // false (not an error) for a dropped role's OID.
  if (OidIsValid(owner) && has_privs_of_role(caller, owner)) return true;
  return is_admin(caller);
}

}  // namespace ajpg
