// See citus.hpp. No Citus header is used: the check reads Citus's catalog
// pg_catalog.pg_dist_partition (its first column, logicalrelid, names
// every table Citus manages on this node, coordinator and workers alike
// once metadata is synced) by name, so the library needs no Citus to build
// or load.
#include "pg/citus.hpp"

extern "C" {
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_namespace.h"
#include "storage/proc.h"
}

namespace ajpg {
namespace {

bool citus_preloaded() {
  static int preloaded = -1;  // shared_preload_libraries is fixed at start
  if (preloaded < 0) {
    const char *libs = GetConfigOption("shared_preload_libraries", true, false);
    preloaded = libs != nullptr && strstr(libs, "citus") != nullptr ? 1 : 0;
  }
  return preloaded == 1;
}

// The first relation of `nsp` that Citus manages, or InvalidOid.
Oid citus_table_in(Oid nsp) {
  Oid dist = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
  if (!OidIsValid(dist)) return InvalidOid;  // citus is preloaded, not created here
  Oid found = InvalidOid;
  Relation rel = table_open(dist, AccessShareLock);
  SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, nullptr, 0, nullptr);
  HeapTuple tup;
  while (!OidIsValid(found) && HeapTupleIsValid(tup = systable_getnext(scan))) {
    bool isnull;
    Datum d = heap_getattr(tup, 1, RelationGetDescr(rel), &isnull);  // logicalrelid
    if (!isnull && get_rel_namespace(DatumGetObjectId(d)) == nsp) found = DatumGetObjectId(d);
  }
  systable_endscan(scan);
  table_close(rel, AccessShareLock);
  return found;
}

}  // namespace

void refuse_citus_layout(Oid nsp) {
  if (!citus_preloaded() || !OidIsValid(nsp)) return;
  static LocalTransactionId checked = InvalidLocalTransactionId;
  if (checked == MyProc->lxid) return;
  Oid relid = citus_table_in(nsp);
  if (OidIsValid(relid)) {
    const char *name = get_rel_name(relid);
    ereport(ERROR,
            (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
             errmsg("agent_journal.%s is managed by Citus; agent_journal does not support its tables "
                    "distributed, reference or Citus-local yet",
                    name ? name : "?"),
             errdetail("agent_journal reads and writes its tables directly; on a Citus node such a "
                       "table is a shell without the rows, so a write would be acknowledged and lost."),
             errhint("Nothing was written. The rows are intact in the shards; docs/scaling.md says how "
                     "to move the journal back (Citus's undistribute_table refuses a member of an "
                     "extension).")));
  }
  checked = MyProc->lxid;
}

}  // namespace ajpg
