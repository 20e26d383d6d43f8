// See citus.hpp. No Citus header is used: the layout and the shards are
// read from Citus's catalogs (pg_dist_partition, pg_dist_shard,
// pg_dist_placement, pg_dist_local_group, pg_dist_node) by name and column
// number, so the library needs no Citus to build or load.
#include "pg/citus.hpp"

extern "C" {
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_namespace.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "nodes/params.h"
#include "optimizer/planner.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/snapmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"
}

namespace ajpg {

const char *const DIST_TABLES[] = {"agent_state",  "entries",     "idempotency_keys",
                                   "saved_states", "lease_graph", "feed_pending"};
const int N_DIST_TABLES = sizeof DIST_TABLES / sizeof DIST_TABLES[0];
const char *const REF_TABLES[] = {"access_grants"};
const int N_REF_TABLES = sizeof REF_TABLES / sizeof REF_TABLES[0];

bool citus_preloaded() {
  static int preloaded = -1;  // shared_preload_libraries is fixed at start
  if (preloaded < 0) {
    const char *libs = GetConfigOption("shared_preload_libraries", true, false);
    preloaded = libs != nullptr && strstr(libs, "citus") != nullptr ? 1 : 0;
  }
  return preloaded == 1;
}

namespace {

// One row of a Citus catalog; columns by name (Citus has dropped columns
// from its catalogs across versions, so positions differ).
struct CatRow {
  HeapTuple tup;
  Relation rel;
  Datum get(const char *column, bool *isnull) const {
    AttrNumber att = get_attnum(RelationGetRelid(rel), column);
    if (att == InvalidAttrNumber)
      ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                      errmsg("Citus catalog %s has no column \"%s\"", RelationGetRelationName(rel), column),
                      errhint("agent_journal supports the Citus catalogs of Citus 13.")));
    return heap_getattr(tup, att, RelationGetDescr(rel), isnull);
  }
};

// Calls f(row) for every row of pg_catalog.<name>; false if the catalog
// does not exist (Citus preloaded, not created here).
template <typename F>
bool scan_catalog(const char *name, F &&f) {
  Oid relid = get_relname_relid(name, PG_CATALOG_NAMESPACE);
  if (!OidIsValid(relid)) return false;
  Relation rel = table_open(relid, AccessShareLock);
  SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, nullptr, 0, nullptr);
  HeapTuple tup;
  while (HeapTupleIsValid(tup = systable_getnext(scan))) f(CatRow{tup, rel});
  systable_endscan(scan);
  table_close(rel, AccessShareLock);
  return true;
}

enum class Layout { None, Supported, Unsupported };
struct LayoutInfo {
  Layout layout = Layout::None;
  int32 colocation = -1;  // the supported layout's colocation group
  Oid offending = InvalidOid;  // a table Citus manages outside the supported layout
  const char *why = nullptr;
};

LayoutInfo read_layout(Oid nsp) {
  LayoutInfo info;
  Oid dist[16];
  for (int i = 0; i < N_DIST_TABLES; i++) dist[i] = get_relname_relid(DIST_TABLES[i], nsp);
  bool found[16] = {false};
  int colocation = -1, managed = 0;
  scan_catalog("pg_dist_partition", [&](const CatRow &row) {
    bool isnull;
    Oid relid = DatumGetObjectId(row.get("logicalrelid", &isnull));
    if (isnull || get_rel_namespace(relid) != nsp) return;
    managed++;
    char method = DatumGetChar(row.get("partmethod", &isnull));
    Datum key = row.get("partkey", &isnull);
    char *keytext = isnull ? nullptr : TextDatumGetCString(key);
    int coloc = DatumGetInt32(row.get("colocationid", &isnull));
    int which = -1;
    for (int i = 0; i < N_DIST_TABLES; i++)
      if (relid == dist[i]) which = i;
    if (which < 0) {
      // a reference table of REF_TABLES (0.9.0: the same rows on every
      // node), or a table of the journal's own tables left local (0.8.0)
      const char *name = get_rel_name(relid);
      bool ref = false;
      for (int i = 0; name && i < N_REF_TABLES; i++) ref = ref || strcmp(name, REF_TABLES[i]) == 0;
      if (ref && method == 'n' && DatumGetChar(row.get("repmodel", &isnull)) == 't') return;
    }
    if (which < 0) {
      info.offending = relid;
      info.why = "it is not one of the tables distribute() distributes";
      return;
    }
    // partkey is the distribution column as a node string: a Var whose
    // varattno must be agent_id's
    AttrNumber agent_att = get_attnum(relid, "agent_id");
    char want[32];
    snprintf(want, sizeof want, ":varattno %d ", agent_att);
    if (method != 'h' || keytext == nullptr || strstr(keytext, want) == nullptr) {
      info.offending = relid;
      info.why = "it is not hash-distributed by agent_id";
      return;
    }
    if (colocation >= 0 && coloc != colocation) {
      info.offending = relid;
      info.why = "it is not co-located with the journal's other tables";
      return;
    }
    colocation = coloc;
    found[which] = true;
  });
  if (managed == 0) return info;
  if (!OidIsValid(info.offending)) {
    for (int i = 0; i < N_DIST_TABLES; i++)
      if (OidIsValid(dist[i]) && !found[i]) {
        info.offending = dist[i];
        info.why = "it is left on this node while the journal's other tables are distributed";
        break;
      }
  }
  info.layout = OidIsValid(info.offending) ? Layout::Unsupported : Layout::Supported;
  info.colocation = colocation;
  return info;
}

// The layout and the shard map are kept across transactions until a
// relcache invalidation arrives: Citus sends one for every change of its
// metadata (its triggers on pg_dist_partition, pg_dist_shard,
// pg_dist_placement, pg_dist_node and pg_dist_local_group invalidate the
// distributed table's entry or the catalog's), and every DDL sends its
// own. Any invalidation empties both (the next call reads them again), so
// an append reads no Citus catalog in a steady state (it read seven
// catalogs before, twice the shards').
bool layout_valid = false;
Oid layout_nsp = InvalidOid;
LayoutInfo layout_cache;
bool shards_valid = false;
bool citus_cache_callback = false;
void citus_cache_reset(Datum, Oid) {
  layout_valid = false;
  shards_valid = false;
}
void watch_citus_cache() {
  if (citus_cache_callback) return;
  CacheRegisterRelcacheCallback(citus_cache_reset, (Datum)0);
  citus_cache_callback = true;
}

const LayoutInfo &layout(Oid nsp) {
  if (!layout_valid || layout_nsp != nsp) {
    watch_citus_cache();
    layout_valid = true;  // an invalidation while reading clears it again
    layout_nsp = nsp;
    LayoutInfo info = read_layout(nsp);
    layout_cache = info;
  }
  return layout_cache;
}

void refuse(const LayoutInfo &info) {
  const char *name = get_rel_name(info.offending);
  ereport(ERROR,
          (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
           errmsg("agent_journal.%s is managed by Citus in a layout agent_journal does not support",
                  name ? name : "?"),
           errdetail("%s. On a Citus node such a table is a shell without the rows, so a direct write "
                     "would be acknowledged and lost; nothing was written.",
                     info.why),
           errhint("Distribute the journal with agent_journal.distribute() on the coordinator; "
                   "docs/scaling.md says how to move a hand-made layout back.")));
}

// The distributed tables' shards, read once per transaction (three catalog
// scans, whatever the number of tables and calls): per shard its table,
// hash range and the group (node) of its placement.
struct ShardInfo {
  Oid relid;
  int32 min, max;
  int64 shard;
  int32 group;
};
struct ShardMap {
  Oid nsp = InvalidOid;
  ShardInfo *shards = nullptr;
  int n = 0;
  int32 local_group = -1;
};
ShardMap shard_map;
MemoryContext shard_cxt = nullptr;  // the map's memory, reset when read again

int32 local_group();

const ShardMap &shards(Oid nsp) {
  if (shards_valid && shard_map.nsp == nsp) return shard_map;
  watch_citus_cache();
  shards_valid = true;  // an invalidation while reading clears it again
  Oid dist[16];
  for (int i = 0; i < N_DIST_TABLES; i++) dist[i] = get_relname_relid(DIST_TABLES[i], nsp);
  if (shard_cxt == nullptr)
    shard_cxt = AllocSetContextCreate(TopMemoryContext, "agent_journal shard map", ALLOCSET_SMALL_SIZES);
  MemoryContextReset(shard_cxt);
  shard_map.shards = nullptr;
  shard_map.n = 0;
  MemoryContext old = MemoryContextSwitchTo(shard_cxt);
  int cap = 64, n = 0;
  ShardInfo *v = (ShardInfo *)palloc(sizeof(ShardInfo) * cap);
  scan_catalog("pg_dist_shard", [&](const CatRow &row) {
    bool isnull, minnull, maxnull;
    Oid relid = DatumGetObjectId(row.get("logicalrelid", &isnull));
    bool ours = false;
    for (int i = 0; i < N_DIST_TABLES; i++) ours = ours || relid == dist[i];
    if (!ours) return;
    Datum lo = row.get("shardminvalue", &minnull), hi = row.get("shardmaxvalue", &maxnull);
    if (minnull || maxnull) return;
    if (n == cap) v = (ShardInfo *)repalloc(v, sizeof(ShardInfo) * (cap *= 2));
    v[n++] = ShardInfo{relid, pg_strtoint32(TextDatumGetCString(lo)), pg_strtoint32(TextDatumGetCString(hi)),
                       DatumGetInt64(row.get("shardid", &isnull)), -1};
  });
  scan_catalog("pg_dist_placement", [&](const CatRow &row) {
    bool isnull;
    int64 shard = DatumGetInt64(row.get("shardid", &isnull));
    for (int i = 0; i < n; i++)
      if (v[i].shard == shard) v[i].group = DatumGetInt32(row.get("groupid", &isnull));
  });
  MemoryContextSwitchTo(old);
  shard_map.shards = v;
  shard_map.n = n;
  shard_map.local_group = local_group();
  shard_map.nsp = nsp;
  return shard_map;
}

// The shard of `relid` whose hash range holds `hash` (nullptr: none).
const ShardInfo *shard_for(Oid nsp, Oid relid, int32 hash) {
  const ShardMap &m = shards(nsp);
  for (int i = 0; i < m.n; i++)
    if (m.shards[i].relid == relid && hash >= m.shards[i].min && hash <= m.shards[i].max) return &m.shards[i];
  return nullptr;
}

int32 local_group() {
  int32 group = -1;
  scan_catalog("pg_dist_local_group", [&](const CatRow &row) {
    bool isnull;
    group = DatumGetInt32(row.get("groupid", &isnull));
  });
  return group;
}

// "host:port" of the group's node, for messages.
char *group_node(int32 group) {
  char *node = nullptr;
  scan_catalog("pg_dist_node", [&](const CatRow &row) {
    bool isnull;
    if (node || DatumGetInt32(row.get("groupid", &isnull)) != group) return;
    Datum host = row.get("nodename", &isnull);
    int32 port = DatumGetInt32(row.get("nodeport", &isnull));
    node = psprintf("%s:%d", TextDatumGetCString(host), port);
  });
  return node ? node : pstrdup("another node");
}

}  // namespace

bool journal_distributed(Oid nsp) {
  if (!citus_preloaded() || !OidIsValid(nsp)) return false;
  const LayoutInfo &info = layout(nsp);
  if (info.layout == Layout::Unsupported) refuse(info);
  return info.layout == Layout::Supported;
}

Oid agent_shard_rel(Oid nsp, const char *table, const pg_uuid_t *agent, const char *index,
                    Oid *index_oid) {
  Oid relid = get_relname_relid(table, nsp);
  int32 hash = DatumGetInt32(DirectFunctionCall1(uuid_hash, UUIDPGetDatum(agent)));
  const ShardInfo *si = shard_for(nsp, relid, hash);
  if (si == nullptr)
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("agent_journal.%s has no shard for agent %s", table,
                           DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(agent))))));
  if (si->group != shard_map.local_group) {
    char *node = group_node(si->group);
    ereport(ERROR,
            (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
             errmsg("agent %s lives on %s, not on this node",
                    DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(agent))), node),
             errdetail("On a distributed journal the journal's functions run on the node that holds "
                       "the agent's shards; Citus sends them there when they are called as a statement "
                       "of their own, such as SELECT agent_journal.append(...), but not from inside "
                       "another function or a query over a table."),
             errhint("Call the function as a statement of its own, or on %s.", node)));
  }
  char name[NAMEDATALEN + 24];
  snprintf(name, sizeof name, "%s_" INT64_FORMAT, table, si->shard);
  Oid shard_rel = get_relname_relid(name, nsp);
  if (!OidIsValid(shard_rel))
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("shard agent_journal.%s is missing on this node", name)));
  if (index != nullptr) {
    snprintf(name, sizeof name, "%s_" INT64_FORMAT, index, si->shard);
    *index_oid = get_relname_relid(name, nsp);
    if (!OidIsValid(*index_oid))
      ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                      errmsg("shard index agent_journal.%s is missing on this node", name)));
  }
  return shard_rel;
}

bool lock_agent_shard(Oid nsp, const pg_uuid_t *agent) {
  const LayoutInfo &info = layout(nsp);
  Oid relid = get_relname_relid("entries", nsp);
  int32 hash = DatumGetInt32(DirectFunctionCall1(uuid_hash, UUIDPGetDatum(agent)));
  const ShardInfo *si = shard_for(nsp, relid, hash);
  // not here at all: agent_shard_rel refuses (0A000, naming the node)
  if (si == nullptr || si->group != shard_map.local_group) return false;
  // Citus's shard index: the shard's place among its table's shards in
  // the order of their hash ranges
  const ShardMap &m = shards(nsp);
  uint32 index = 0;
  for (int i = 0; i < m.n; i++)
    if (m.shards[i].relid == relid && m.shards[i].min < si->min) index++;
  // SET_LOCKTAG_COLOCATED_SHARDS_METADATA_RESOURCE of Citus 13
  // (resource_lock.h): the lock of every shard of the group at once
  constexpr uint16 CITUS_COLOCATED_SHARDS_METADATA = 8;
  LOCKTAG tag;
  SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, index, (uint32)info.colocation,
                       CITUS_COLOCATED_SHARDS_METADATA);
  if (LockAcquire(&tag, ShareLock, false, false) == LOCKACQUIRE_ALREADY_HELD) return false;
  // A move that held the lock has committed the shards' new placement by
  // now, and sent its invalidations before it let the lock go: take them
  // (they empty the map) and read the placements again if they changed,
  // with a catalog snapshot taken after it
  AcceptInvalidationMessages();
  if (shards_valid) return false;
  InvalidateCatalogSnapshot();
  if (!agent_is_local(nsp, agent)) {
    const ShardInfo *now = shard_for(nsp, relid, hash);
    char *node = group_node(now ? now->group : -1);
    ereport(ERROR,
            (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
             errmsg("agent %s moved to %s while this call waited for its shards",
                    DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(agent))), node),
             errdetail("Citus moved the agent's shards (a rebalance or citus_move_shard_placement); "
                       "nothing was written."),
             errhint("Retry the call: Citus runs it on the agent's new node.")));
  }
  return true;
}

bool agent_is_local(Oid nsp, const pg_uuid_t *agent) {
  Oid relid = get_relname_relid("entries", nsp);
  int32 hash = DatumGetInt32(DirectFunctionCall1(uuid_hash, UUIDPGetDatum(agent)));
  const ShardInfo *si = shard_for(nsp, relid, hash);
  return si != nullptr && si->group == shard_map.local_group;
}

bool agent_journal_distributed() {
  if (!citus_preloaded()) return false;
  Oid nsp = get_namespace_oid("agent_journal", true);
  return OidIsValid(nsp) && journal_distributed(nsp);
}

Oid reference_shard_rel(Oid nsp, const char *table) {
  Oid relid = get_relname_relid(table, nsp);
  if (!OidIsValid(relid)) return InvalidOid;
  int64 shard = -1;
  scan_catalog("pg_dist_shard", [&](const CatRow &row) {
    bool isnull;
    if (DatumGetObjectId(row.get("logicalrelid", &isnull)) == relid)
      shard = DatumGetInt64(row.get("shardid", &isnull));
  });
  if (shard < 0) return InvalidOid;
  char name[NAMEDATALEN + 24];
  snprintf(name, sizeof name, "%s_" INT64_FORMAT, table, shard);
  return get_relname_relid(name, nsp);  // InvalidOid: no placement on this node
}

bool agent_journal_on_citus() {
  if (!citus_preloaded()) return false;
  Oid nsp = get_namespace_oid("agent_journal", true);
  return OidIsValid(nsp) && layout(nsp).layout != Layout::None;
}

bool agent_elsewhere(const pg_uuid_t *agent) {
  if (!citus_preloaded()) return false;
  Oid nsp = get_namespace_oid("agent_journal", false);
  return journal_distributed(nsp) && !agent_is_local(nsp, agent);
}

bool on_coordinator() {
  // the coordinator's group is 0 (Citus's COORDINATOR_GROUP_ID)
  return shards_valid ? shard_map.local_group == 0 : local_group() == 0;
}

void require_coordinator(Oid nsp, const char *what) {
  if (!journal_distributed(nsp) || on_coordinator()) return;
  char *node = group_node(0);
  ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                  errmsg("on a distributed journal %s run on the coordinator (%s), not on a worker", what,
                         strcmp(node, "another node") == 0 ? "its node" : node),
                  errdetail("The metric tables stay on the coordinator; the journal's own counts are "
                            "summed there across the nodes."),
                  errhint("Connect to the coordinator.")));
}

void refuse_citus_layout(Oid nsp) {
  if (!citus_preloaded() || !OidIsValid(nsp)) return;
  const LayoutInfo &info = layout(nsp);
  if (info.layout == Layout::Unsupported) refuse(info);
  if (info.layout == Layout::Supported)
    ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                    errmsg("this agent_journal function does not support a distributed journal yet"),
                    errhint("docs/scaling.md lists what works on a distributed journal.")));
}

// ------------------------------------------------------------ NULL agents
// Citus 13.0.5 crashes (SIGSEGV in uuid_hash, from FindShardInterval) when
// it plans a call of a distributed function whose distribution argument
// is a NULL constant: SELECT agent_journal.latest_sequence(NULL) would
// take a node down, for any role that may call the function. Before
// Citus's planner sees such a call, this hook refuses it with the error
// the function gives on one server. Installed whenever the library is
// loaded; loaded before any query when it is in shared_preload_libraries
// after citus, which distribute() asks for.
namespace {

planner_hook_type prev_planner = nullptr;

bool null_arg(Node *arg, ParamListInfo params) {
  arg = strip_implicit_coercions(arg);
  if (IsA(arg, Const)) return ((Const *)arg)->constisnull;
  if (IsA(arg, Param) && ((Param *)arg)->paramkind == PARAM_EXTERN && params != nullptr) {
    int id = ((Param *)arg)->paramid;
    if (id < 1 || id > params->numParams) return false;
    ParamExternData tmp;
    ParamExternData *prm = params->paramFetch ? params->paramFetch(params, id, false, &tmp)
                                              : &params->params[id - 1];
    return prm != nullptr && OidIsValid(prm->ptype) && prm->isnull;
  }
  return false;
}

void refuse_null_agent(Node *expr, Oid nsp, ParamListInfo params) {
  if (expr == nullptr || !IsA(expr, FuncExpr)) return;
  FuncExpr *f = (FuncExpr *)expr;
  if (f->args == NIL || get_func_namespace(f->funcid) != nsp) return;
  Node *first = (Node *)linitial(f->args);
  if (exprType(first) != UUIDOID || !null_arg(first, params)) return;
  if (!journal_distributed(nsp)) return;
  ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                  errmsg("agent_id must not be NULL"),
                  errdetail("On a distributed journal %s() is sent to the node of its agent.",
                            get_func_name(f->funcid))));
}

PlannedStmt *aj_planner(Query *parse, const char *query_string, int options, ParamListInfo params) {
  if (citus_preloaded() && parse->commandType == CMD_SELECT) {
    Oid nsp = get_namespace_oid("agent_journal", true);
    if (OidIsValid(nsp)) {
      // the shapes Citus delegates: SELECT fn(...) and SELECT ... FROM fn(...)
      ListCell *lc;
      foreach (lc, parse->targetList) refuse_null_agent((Node *)((TargetEntry *)lfirst(lc))->expr, nsp, params);
      foreach (lc, parse->rtable) {
        RangeTblEntry *rte = (RangeTblEntry *)lfirst(lc);
        if (rte->rtekind != RTE_FUNCTION) continue;
        ListCell *fc;
        foreach (fc, rte->functions) refuse_null_agent(((RangeTblFunction *)lfirst(fc))->funcexpr, nsp, params);
      }
    }
  }
  return prev_planner ? prev_planner(parse, query_string, options, params)
                      : standard_planner(parse, query_string, options, params);
}

}  // namespace

void install_planner_hook() {
  prev_planner = planner_hook;
  planner_hook = aj_planner;
}

}  // namespace ajpg
