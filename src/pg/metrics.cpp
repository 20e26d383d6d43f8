// Metrics: snapshot ingestion, counters / gauges / histograms recorded from
// SQL, rejections, and the three renderings of one model (Prometheus text,
// OpenMetrics, OTLP JSON) plus its long format (metric_samples).
//
// Rendering reads everything through SPI in one read-only snapshot, builds
// the C++ model (src/core) in an object owned by the function's memory
// context (owned.hpp), renders it in C++ and copies the text out.
#include "pg/citus.hpp"
#include "pg/exporter.hpp"
#include "pg/journal.hpp"
#include "pg/owned.hpp"
#include "pg/pg.hpp"

extern "C" {
#include "access/genam.h"
#include "access/xlog.h"
#include "access/heapam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/twophase.h"
#include "executor/tuptable.h"
#include "storage/proc.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/rel.h"
}

#include <algorithm>
#include <memory>
#include <cmath>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "core/exposition.hpp"
#include "core/journal_metrics.hpp"
#include "core/names.hpp"
#include "core/snapshot.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(aj_ingest_snapshot);
PG_FUNCTION_INFO_V1(aj_prune_snapshots);
PG_FUNCTION_INFO_V1(aj_counter_add);
PG_FUNCTION_INFO_V1(aj_gauge_set);
PG_FUNCTION_INFO_V1(aj_gauge_add);
PG_FUNCTION_INFO_V1(aj_histogram_observe);
PG_FUNCTION_INFO_V1(aj_delete_series);
PG_FUNCTION_INFO_V1(aj_record_rejection);
PG_FUNCTION_INFO_V1(aj_prometheus_text);
PG_FUNCTION_INFO_V1(aj_openmetrics_text);
PG_FUNCTION_INFO_V1(aj_otlp_json);
PG_FUNCTION_INFO_V1(aj_metric_samples);
PG_FUNCTION_INFO_V1(aj_observability);
}

namespace ajpg {
namespace {

constexpr uint32 FAMILY_CREATE_LOCK = 1;
constexpr int MAX_LABELS_BYTES = 2048;  // a series' labels as stored (jsonb); README  // advisory key in AJ_LOCK_SPACE + 1
constexpr const char *REJECTIONS_FAMILY = "agent_journal_rejections_total";

SPIPlanPtr p_snap_ins, p_prune, p_fam_get, p_fam_all, p_fam_ins, p_fam_help, p_hist, p_reject_ins, r_families, r_slots, r_snapshots, r_totals, r_node_tallies, r_slots_060,
    r_leases, r_version;

#define AJ_INVALID(...) \
  ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg(__VA_ARGS__)))

aj::MetricType type_from(const char *s) {
  if (strcmp(s, "counter") == 0) return aj::MetricType::Counter;
  if (strcmp(s, "histogram") == 0) return aj::MetricType::Histogram;
  return aj::MetricType::Gauge;
}

// ------------------------------------------------------------ labels
// Validates a labels argument (an object of strings, names and values per
// the Prometheus rules) and returns it normalized: empty values removed.
Jsonb *labels_arg(FunctionCallInfo fcinfo, int argno) {
  require_arg(fcinfo, argno, "labels");
  Jsonb *jb = PG_GETARG_JSONB_P(argno);
  if (!JB_ROOT_IS_OBJECT(jb)) AJ_INVALID("labels must be a JSON object of strings");
  JsonbParseState *state = nullptr;
  JsonbIterator *it = JsonbIteratorInit(&jb->root);
  JsonbValue k, v;
  JsonbIteratorToken tok;
  JsonbValue *res = nullptr;
  char err[512];
  while ((tok = JsonbIteratorNext(&it, &k, false)) != WJB_DONE) {
    if (tok == WJB_BEGIN_OBJECT) {
      res = pushJsonbValue(&state, WJB_BEGIN_OBJECT, nullptr);
      continue;
    }
    if (tok == WJB_END_OBJECT) {
      res = pushJsonbValue(&state, WJB_END_OBJECT, nullptr);
      continue;
    }
    if (tok != WJB_KEY) continue;
    char *key = pnstrdup(k.val.string.val, k.val.string.len);
    tok = JsonbIteratorNext(&it, &v, true);
    if (v.type != jbvString)
      AJ_INVALID("labels.%s: expected a string, got %s", key,
                 v.type == jbvNull ? "null" : v.type == jbvNumeric ? "a number"
                 : v.type == jbvBool ? "a boolean" : "an object or array");
    char *val = pnstrdup(v.val.string.val, v.val.string.len);
    if (!run_cpp([&] {
          aj::validate_label_name(key);
          aj::validate_label_value(key, val);
        }, err, sizeof err))
      AJ_INVALID("%s", err);
    if (v.val.string.len == 0) continue;  // an empty value is no label
    (void)pushJsonbValue(&state, WJB_KEY, &k);
    (void)pushJsonbValue(&state, WJB_VALUE, &v);
  }
  Jsonb *out = JsonbValueToJsonb(res);
  // A series is keyed by (name, labels) in btree indexes, whose entries
  // hold at most 2704 bytes (a third of a page): with a name of at most
  // 200 bytes, labels of at most MAX_LABELS_BYTES always fit.
  if (VARSIZE(out) > MAX_LABELS_BYTES)
    ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                    errmsg("labels is %u bytes as stored, more than %d", (unsigned)VARSIZE(out),
                           MAX_LABELS_BYTES),
                    errhint("A series' labels must fit in an index entry: use shorter label "
                            "values, or journal long text and label a reference to it.")));
  return out;
}

// ------------------------------------------------------------ families
// The elements of a float8[] / int8[] the extension stored itself (never
// with NULLs), as palloc'd C arrays.
double *float8_elems(Datum array, int *n) {
  Datum *elems;
  bool *nulls;
  deconstruct_array(DatumGetArrayTypeP(array), FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
                    &elems, &nulls, n);
  double *out = (double *)palloc(sizeof(double) * (*n + 1));
  for (int i = 0; i < *n; i++) out[i] = DatumGetFloat8(elems[i]);
  return out;
}

int64 *int8_elems(Datum array, int *n) {
  Datum *elems;
  bool *nulls;
  deconstruct_array(DatumGetArrayTypeP(array), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
                    &elems, &nulls, n);
  int64 *out = (int64 *)palloc(sizeof(int64) * (*n + 1));
  for (int i = 0; i < *n; i++) out[i] = DatumGetInt64(elems[i]);
  return out;
}

struct FamilyInfo {
  aj::MetricType type;
  int nbounds;
  double *bounds;  // palloc'd, histograms only
};

const char *help_arg(FunctionCallInfo fcinfo, int argno) {
  if (PG_ARGISNULL(argno)) return nullptr;
  char *h = text_to_cstring(PG_GETARG_TEXT_PP(argno));
  if (h[0] == '\0') return nullptr;  // empty help: use the generated one
  if (strlen(h) > 4096) AJ_INVALID("help is longer than 4096 bytes");
  return h;
}

// Finds or creates the family `name` of `type` (inside SPI, as owner).
// `bounds` (histograms): the caller's buckets or nullptr for the default.
FamilyInfo ensure_family(const char *name, aj::MetricType type, const char *help,
                         int nbounds_in, const double *bounds_in, bool internal) {
  char err[512];
  if (!run_cpp([&] {
        aj::validate_metric_name(name, type);
        if (!internal && aj::is_reserved_metric_name(name))
          throw std::invalid_argument(std::string("name: \"") + name +
                                      "\" uses a prefix reserved for the extension's own "
                                      "families (agent_runtime_, agent_journal_)");
      }, err, sizeof err))
    AJ_INVALID("%s", err);

  // Validate the requested buckets before touching tables.
  double *want = nullptr;
  int nwant = 0;
  if (type == aj::MetricType::Histogram) {
    want = (double *)palloc(sizeof(double) * (aj::kMaxBuckets + 1));
    bool ok = run_cpp([&] {
      std::vector<double> b = bounds_in ? aj::validate_buckets(std::vector<double>(bounds_in, bounds_in + nbounds_in))
                                        : aj::default_buckets();
      nwant = (int)b.size();
      std::copy(b.begin(), b.end(), want);
    }, err, sizeof err);
    if (!ok) AJ_INVALID("%s", err);
  }

  static const Oid t1[] = {TEXTOID};
  Datum args[1] = {CStringGetTextDatum(name)};
  SPIPlanPtr get = cached_plan(&p_fam_get,
                               "SELECT type, help, buckets FROM agent_journal.metric_families "
                               "WHERE name OPERATOR(pg_catalog.=) $1",
                               1, t1);
  int rc = SPI_execute_snapshot(get, args, nullptr, GetLatestSnapshot(), InvalidSnapshot, false,
                                false, 1);
  if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: family lookup failed");
  if (SPI_processed == 0) {
    // New family: serialize creators, then check again and for collisions.
    LOCKTAG tag;
    SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, FAMILY_CREATE_LOCK, AJ_LOCK_SPACE + 1);
    (void)LockAcquire(&tag, ExclusiveLock, false, false);
    rc = SPI_execute_snapshot(get, args, nullptr, GetLatestSnapshot(), InvalidSnapshot, false,
                              false, 1);
    if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: family lookup failed");
  }
  if (SPI_processed == 0) {
    rc = SPI_execute_snapshot(
        cached_plan(&p_fam_all, "SELECT name, type FROM agent_journal.metric_families", 0, nullptr),
        nullptr, nullptr, GetLatestSnapshot(), InvalidSnapshot, false, false, 0);
    if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: family scan failed");
    uint64 n = SPI_processed;
    char **names = (char **)palloc(sizeof(char *) * (n + 1));
    aj::MetricType *types = (aj::MetricType *)palloc(sizeof(aj::MetricType) * (n + 1));
    for (uint64 i = 0; i < n; i++) {
      names[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
      types[i] = type_from(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
    }
    if (!run_cpp([&] {
          std::vector<std::pair<std::string, aj::MetricType>> existing;
          existing.reserve(n + 1);
          for (uint64 i = 0; i < n; i++) existing.emplace_back(names[i], types[i]);
          // The extension's own families that are not rows.
          for (const char *own : {"agent_journal_agents", "agent_journal_live_entries",
                                  "agent_journal_render_dropped_series"})
            existing.emplace_back(own, aj::MetricType::Gauge);
          aj::check_family_collision(name, type, existing);
        }, err, sizeof err))
      AJ_INVALID("%s", err);
    static const Oid t4[] = {TEXTOID, TEXTOID, TEXTOID, FLOAT8ARRAYOID};
    Datum a4[4] = {args[0], CStringGetTextDatum(aj::type_name(type)),
                   help ? CStringGetTextDatum(help) : (Datum)0, (Datum)0};
    char n4[4] = {' ', ' ', help ? ' ' : 'n', 'n'};
    if (want) {
      Datum *d = (Datum *)palloc(sizeof(Datum) * nwant);
      for (int i = 0; i < nwant; i++) d[i] = Float8GetDatum(want[i]);
      a4[3] = PointerGetDatum(construct_array(d, nwant, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
      n4[3] = ' ';
    }
    rc = SPI_execute_plan(cached_plan(&p_fam_ins,
                                      "INSERT INTO agent_journal.metric_families (name, type, help, buckets) "
                                      "VALUES ($1, $2, $3, $4)",
                                      4, t4),
                          a4, n4, false, 0);
    if (rc != SPI_OK_INSERT) elog(ERROR, "agent_journal: family insert failed");
    return FamilyInfo{type, nwant, want};
  }

  // Existing family: same type, same buckets; the first non-NULL help wins.
  bool isnull;
  HeapTuple tup = SPI_tuptable->vals[0];
  TupleDesc desc = SPI_tuptable->tupdesc;
  char *stored_type = SPI_getvalue(tup, desc, 1);
  aj::MetricType st = type_from(stored_type);
  if (st != type)
    AJ_INVALID("name: metric family \"%s\" is a %s, not a %s", name, stored_type,
               aj::type_name(type));
  (void)SPI_getbinval(tup, desc, 2, &isnull);
  bool help_null = isnull;
  FamilyInfo info{type, 0, nullptr};
  if (type == aj::MetricType::Histogram) {
    Datum bd = SPI_getbinval(tup, desc, 3, &isnull);
    if (isnull) elog(ERROR, "agent_journal: histogram family \"%s\" has no buckets", name);
    int n;
    info.bounds = float8_elems(bd, &n);
    info.nbounds = n;
    if (bounds_in != nullptr) {
      bool same = nwant == n;
      for (int i = 0; same && i < n; i++) same = want[i] == info.bounds[i];
      if (!same)
        AJ_INVALID("buckets: histogram \"%s\" already has other buckets (%d bounds); "
                   "buckets are fixed when a family is first seen", name, n);
    }
  }
  if (help_null && help) {
    static const Oid t2[] = {TEXTOID, TEXTOID};
    Datum a2[2] = {args[0], CStringGetTextDatum(help)};
    rc = SPI_execute_plan(cached_plan(&p_fam_help,
                                      "UPDATE agent_journal.metric_families SET help = $2 "
                                      "WHERE name OPERATOR(pg_catalog.=) $1 AND help IS NULL",
                                      2, t2),
                          a2, nullptr, false, 0);
    if (rc != SPI_OK_UPDATE) elog(ERROR, "agent_journal: help update failed");
  }
  return info;
}

const char *name_arg(FunctionCallInfo fcinfo) {
  require_arg(fcinfo, 0, "name");
  return text_to_cstring(PG_GETARG_TEXT_PP(0));
}

double value_arg(FunctionCallInfo fcinfo, int argno, const char *argname, bool nonneg_finite) {
  require_arg(fcinfo, argno, argname);
  double v = PG_GETARG_FLOAT8(argno);
  if (nonneg_finite && (!std::isfinite(v) || v < 0))
    AJ_INVALID("%s must be a finite number >= 0, got %s", argname,
               DatumGetCString(DirectFunctionCall1(float8out, Float8GetDatum(v))));
  return v;
}

// Counter / gauge updates. Each has a fast statement that upserts only if
// the family already exists with the right type (and, when `help` is
// given, already has a help text), and the plain upsert used after
// ensure_family when the fast one wrote nothing. The fast path is one
// statement per call; the slow one runs once per family (or on an error).
enum class Update { CounterAdd, GaugeSet, GaugeAdd, CounterAddSlots };

struct UpdateSql {
  const char *fast;
  const char *plain;
  SPIPlanPtr fast_plan, plain_plan;
};

#define AJ_UPSERT_HEAD "INSERT INTO agent_journal.metric_series AS s (name, labels, value) "
#define AJ_UPSERT_FAST                                                                  \
  "SELECT $1, $2, $3 FROM agent_journal.metric_families f "                             \
  "WHERE f.name OPERATOR(pg_catalog.=) $1 AND f.type OPERATOR(pg_catalog.=) $4 "        \
  "AND ($5::pg_catalog.bool OR f.help IS NOT NULL) "
#define AJ_UPSERT_ADD                                                                        \
  "ON CONFLICT (name, labels) DO UPDATE SET value = s.value OPERATOR(pg_catalog.+) "         \
  "EXCLUDED.value, updated_at = pg_catalog.clock_timestamp() RETURNING s.value"
#define AJ_UPSERT_SET                                                                  \
  "ON CONFLICT (name, labels) DO UPDATE SET value = EXCLUDED.value, "                  \
  "updated_at = pg_catalog.clock_timestamp() RETURNING s.value"

// Counters from 0.3.0: the series' total is its row's value plus the
// per-backend rows of agent_journal.counter_slots (see counter_add below),
// so every counter statement returns that sum.
#define AJ_COUNTER_TOTAL                                                                     \
  "ON CONFLICT (name, labels) DO UPDATE SET value = s.value OPERATOR(pg_catalog.+) "         \
  "EXCLUDED.value, updated_at = pg_catalog.clock_timestamp() RETURNING s.value "             \
  "OPERATOR(pg_catalog.+) COALESCE((SELECT pg_catalog.sum(o.value) FROM "                    \
  "agent_journal.counter_slots o WHERE o.name OPERATOR(pg_catalog.=) $1 "                    \
  "AND o.labels OPERATOR(pg_catalog.=) $2), 0)"

UpdateSql update_sql[4] = {
    {AJ_UPSERT_HEAD AJ_UPSERT_FAST AJ_UPSERT_ADD, AJ_UPSERT_HEAD "VALUES ($1, $2, $3) " AJ_UPSERT_ADD,
     nullptr, nullptr},
    {AJ_UPSERT_HEAD AJ_UPSERT_FAST AJ_UPSERT_SET, AJ_UPSERT_HEAD "VALUES ($1, $2, $3) " AJ_UPSERT_SET,
     nullptr, nullptr},
    {AJ_UPSERT_HEAD AJ_UPSERT_FAST AJ_UPSERT_ADD, AJ_UPSERT_HEAD "VALUES ($1, $2, $3) " AJ_UPSERT_ADD,
     nullptr, nullptr},
    {AJ_UPSERT_HEAD AJ_UPSERT_FAST AJ_COUNTER_TOTAL,
     AJ_UPSERT_HEAD "VALUES ($1, $2, $3) " AJ_COUNTER_TOTAL, nullptr, nullptr},
};

// Names only the extension's own code may record to (names.hpp has the
// C++ rule; this is the allocation-free check for the hot path).
bool reserved_name(const char *name) {
  return strncmp(name, "agent_runtime_", 14) == 0 || strncmp(name, "agent_journal_", 14) == 0;
}

// Records one value; returns the series' stored value. Inside SPI.
double record_value(Update u, const char *name, Jsonb *labels, double v, const char *help,
                    bool internal) {
  UpdateSql &q = update_sql[(int)u];
  aj::MetricType type = (u == Update::CounterAdd || u == Update::CounterAddSlots)
                            ? aj::MetricType::Counter
                            : aj::MetricType::Gauge;
  static const Oid t5[] = {TEXTOID, JSONBOID, FLOAT8OID, TEXTOID, BOOLOID};
  Datum a5[5] = {CStringGetTextDatum(name), JsonbPGetDatum(labels), Float8GetDatum(v),
                 CStringGetTextDatum(aj::type_name(type)), BoolGetDatum(help == nullptr)};
  bool isnull;
  if ((internal || !reserved_name(name)) &&
      run_plan(&q.fast_plan, q.fast, 5, t5, a5, nullptr, SPI_OK_INSERT_RETURNING) == 1)
    return DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
  ensure_family(name, type, help, 0, nullptr, internal);
  if (run_plan(&q.plain_plan, q.plain, 3, t5, a5, nullptr, SPI_OK_INSERT_RETURNING) != 1)
    elog(ERROR, "agent_journal: series upsert wrote no row");
  return DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

// ------------------------------------------------------------ counter slots
// Eight clients adding to one counter would each wait for the series row
// lock until the holder commits (and flushes), one at a time. From 0.3.0 a
// counter_add that finds the row being updated by another running
// transaction adds to its own row in counter_slots instead, keyed by its
// backend slot, which no other running backend uses: no wait, and the
// commits flush together. The increment is an ordinary row change, so
// it is exactly as transactional and durable as before (gone on rollback,
// kept once committed). A series' total, everywhere it is read, is its row
// plus its slots. Slot rows stay (at most one per backend slot that ever
// met contention on the series).
struct SlotRels {
  Oid series, series_pkey, slots, slots_pkey;
  bool slots_updated_at;  // 0.6.0: slots keep their last write and exemplar
};
SlotRels slot_rels_cache;
LocalTransactionId slot_rels_lxid = InvalidLocalTransactionId;

// The metric tables, looked up once per transaction (as journal.cpp's
// rels()). Returns false when the installed schema predates counter_slots
// (0.2.0); `series` is filled either way.
bool slot_rels(SlotRels *out) {
  if (slot_rels_lxid != MyProc->lxid) {
    Oid nsp = get_namespace_oid("agent_journal", false);
    (void)journal_distributed(nsp);  // refuses a layout it does not support
    slot_rels_cache = SlotRels{get_relname_relid("metric_series", nsp),
                               get_relname_relid("metric_series_pkey", nsp),
                               get_relname_relid("counter_slots", nsp),
                               get_relname_relid("counter_slots_pkey", nsp), false};
    if (OidIsValid(slot_rels_cache.slots))
      slot_rels_cache.slots_updated_at =
          get_attnum(slot_rels_cache.slots, "updated_at") != InvalidAttrNumber;
    if (!OidIsValid(slot_rels_cache.series))
      ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                      errmsg("agent_journal's table metric_series is missing"),
                      errhint("Reinstall the extension.")));
    slot_rels_lxid = MyProc->lxid;
  }
  *out = slot_rels_cache;
  return OidIsValid(out->series_pkey) && OidIsValid(out->slots) && OidIsValid(out->slots_pkey);
}

// Is the series' latest row version being updated by another transaction
// that is still running? A dirty-snapshot probe of the primary key, as
// unique checks do: HeapTupleSatisfiesDirty reports the running updater in
// the snapshot's xmax (or the running inserter in its xmin).
// `slot` >= 0 probes that slot's row of counter_slots instead.
bool row_busy(const SlotRels &r, Datum name, Datum labels, int32 slot_no = -1) {
  bool slots = slot_no >= 0;
  Relation heap = table_open(slots ? r.slots : r.series, AccessShareLock);
  Relation index = index_open(slots ? r.slots_pkey : r.series_pkey, AccessShareLock);
  ScanKeyData keys[3];
  ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
                         index->rd_indcollation[0], F_TEXTEQ, name);
  ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
                         index->rd_indcollation[1], F_JSONB_EQ, labels);
  if (slots)
    ScanKeyEntryInitialize(&keys[2], 0, 3, BTEqualStrategyNumber, InvalidOid, InvalidOid,
                           F_INT4EQ, Int32GetDatum(slot_no));
  bool busy = held_by_other(heap, index, keys, slots ? 3 : 2);
  index_close(index, AccessShareLock);
  table_close(heap, AccessShareLock);
  return busy;
}

SPIPlanPtr p_slot_add, p_slot_add_060;

// This backend's slot for a series (backend_slot).
struct SeriesKey {
  const SlotRels *r;
  Datum name, labels;
};
bool series_slot_busy(int32 slot, void *arg) {
  const SeriesKey *k = static_cast<const SeriesKey *>(arg);
  return row_busy(*k->r, k->name, k->labels, slot);
}
int32 free_slot(const SlotRels &r, Datum name, Datum labels) {
  SeriesKey k{&r, name, labels};
  return backend_slot(series_slot_busy, &k);
}

// Adds to this backend's slot of a series whose row is busy; returns the
// total (row + every slot), or false, having written nothing, if the family
// is not a counter with the needed help text, the series row is not
// visible yet or no slot is free: the caller then takes the ordinary path.
bool slot_add(const SlotRels &r, Datum name, Jsonb *labels, double v, const char *help,
              double *total, int32 *slot_used) {
  int32 slot = free_slot(r, name, JsonbPGetDatum(labels));
  if (slot < 0) return false;
  static const Oid t5[] = {TEXTOID, JSONBOID, FLOAT8OID, BOOLOID, INT4OID};
  Datum a5[5] = {name, JsonbPGetDatum(labels), Float8GetDatum(v), BoolGetDatum(help == nullptr),
                 Int32GetDatum(slot)};
  // The outer SELECT does not see the CTE's own write: other slots plus ours.
#define AJ_SLOT_ADD(SET_EXTRA)                                                                  \
  "WITH mine AS ("                                                                              \
  "  INSERT INTO agent_journal.counter_slots AS c (name, labels, slot, value) "                 \
  "  SELECT $1, $2, $5, $3 FROM agent_journal.metric_families f, agent_journal.metric_series s " \
  "  WHERE f.name OPERATOR(pg_catalog.=) $1 AND f.type OPERATOR(pg_catalog.=) 'counter' "        \
  "    AND ($4::pg_catalog.bool OR f.help IS NOT NULL) "                                        \
  "    AND s.name OPERATOR(pg_catalog.=) $1 AND s.labels OPERATOR(pg_catalog.=) $2 "            \
  "  ON CONFLICT (name, labels, slot) DO UPDATE SET value = c.value OPERATOR(pg_catalog.+) "    \
  "    EXCLUDED.value" SET_EXTRA " "                                                            \
  "  RETURNING c.value) "                                                                       \
  "SELECT mine.value OPERATOR(pg_catalog.+) "                                                   \
  "  (SELECT s.value FROM agent_journal.metric_series s "                                       \
  "    WHERE s.name OPERATOR(pg_catalog.=) $1 AND s.labels OPERATOR(pg_catalog.=) $2) "         \
  "  OPERATOR(pg_catalog.+) "                                                                   \
  "  COALESCE((SELECT pg_catalog.sum(o.value) FROM agent_journal.counter_slots o "              \
  "    WHERE o.name OPERATOR(pg_catalog.=) $1 AND o.labels OPERATOR(pg_catalog.=) $2 "          \
  "      AND o.slot OPERATOR(pg_catalog.<>) $5), 0) "                                           \
  "FROM mine"
  // 0.6.0: the slot keeps its last write (series_ttl looks at every part)
  uint64 n = r.slots_updated_at
                 ? run_plan(&p_slot_add_060, AJ_SLOT_ADD(", updated_at = pg_catalog.clock_timestamp()"),
                            5, t5, a5, nullptr, SPI_OK_SELECT)
                 : run_plan(&p_slot_add, AJ_SLOT_ADD(""), 5, t5, a5, nullptr, SPI_OK_SELECT);
#undef AJ_SLOT_ADD
  if (n != 1)
    return false;
  bool isnull;
  *total = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
  if (slot_used) *slot_used = slot;
  return true;
}

// Inside SPI. Returns the series' total.
double counter_add_internal(const char *name, Jsonb *labels, double v, const char *help,
                            bool internal, int32 *slot_used = nullptr) {
  if (slot_used) *slot_used = -1;
  SlotRels r;
  if (!slot_rels(&r)) return record_value(Update::CounterAdd, name, labels, v, help, internal);
  Datum name_d = CStringGetTextDatum(name);
  double total;
  if ((internal || !reserved_name(name)) && row_busy(r, name_d, JsonbPGetDatum(labels)) &&
      slot_add(r, name_d, labels, v, help, &total, slot_used))
    return total;
  return record_value(Update::CounterAddSlots, name, labels, v, help, internal);
}

}  // namespace

// exemplar argument (0.6.0): NULL or a JSON object of strings, checked by
// OpenMetrics' rules (names, UTF-8, 128 characters in all).
Jsonb *exemplar_arg(FunctionCallInfo fcinfo, int argno) {
  if (PG_NARGS() <= argno || PG_ARGISNULL(argno)) return nullptr;
  Jsonb *jb = PG_GETARG_JSONB_P(argno);
  if (!JB_ROOT_IS_OBJECT(jb)) AJ_INVALID("exemplar must be a JSON object of strings");
  int n = (int)JB_ROOT_COUNT(jb);
  char **keys = (char **)palloc0(sizeof(char *) * (n + 1));
  char **vals = (char **)palloc0(sizeof(char *) * (n + 1));
  int i = 0;
  JsonbIterator *it = JsonbIteratorInit(&jb->root);
  JsonbValue k, v;
  JsonbIteratorToken tok;
  while ((tok = JsonbIteratorNext(&it, &k, false)) != WJB_DONE) {
    if (tok != WJB_KEY) continue;
    char *key = pnstrdup(k.val.string.val, k.val.string.len);
    (void)JsonbIteratorNext(&it, &v, true);
    if (v.type != jbvString)
      AJ_INVALID("exemplar.%s: expected a string, got %s", key,
                 v.type == jbvNull ? "null" : v.type == jbvNumeric ? "a number"
                 : v.type == jbvBool ? "a boolean" : "an object or array");
    keys[i] = key;
    vals[i] = pnstrdup(v.val.string.val, v.val.string.len);
    i++;
  }
  char err[512];
  if (!run_cpp([&] {
        aj::Labels l;
        for (int j = 0; j < i; j++) l.emplace_back(keys[j], vals[j]);
        (void)aj::normalize_exemplar_labels(std::move(l));
      }, err, sizeof err))
    AJ_INVALID("%s", err);
  return jb;  // jsonb keeps an object's keys sorted already
}

// Stores `exemplar` (labels) as the latest of `bucket` on the row just
// written (the series' row, or this backend's slot row when slot >= 0),
// with the observed value and the time of the observation. Inside SPI,
// holding the row's lock already.
void store_exemplar(const char *name, Jsonb *labels, int32 slot, int bucket, double v,
                    Jsonb *exemplar) {
  static SPIPlanPtr p_series, p_slot;
  static const Oid types[] = {TEXTOID, JSONBOID, TEXTOID, JSONBOID, FLOAT8OID, INT4OID};
  char key[16];
  snprintf(key, sizeof key, "%d", bucket);
  Datum args[6] = {CStringGetTextDatum(name), JsonbPGetDatum(labels), CStringGetTextDatum(key),
                   JsonbPGetDatum(exemplar), Float8GetDatum(v), Int32GetDatum(slot)};
#define AJ_EXEMPLAR_SET                                                                      \
  "SET exemplars = COALESCE(t.exemplars, '{}'::pg_catalog.jsonb) OPERATOR(pg_catalog.||) "    \
  "pg_catalog.jsonb_build_object($3, pg_catalog.jsonb_build_object('labels', $4, "                 \
  "'value', $5::pg_catalog.text, "                                                              \
  "'ts', pg_catalog.date_part('epoch', pg_catalog.clock_timestamp())::pg_catalog.text)) "
  if (slot < 0)
    run_plan(&p_series,
             "UPDATE agent_journal.metric_series t " AJ_EXEMPLAR_SET
             "WHERE t.name OPERATOR(pg_catalog.=) $1 AND t.labels OPERATOR(pg_catalog.=) $2 "
             "AND $6 OPERATOR(pg_catalog.<) 0",
             6, types, args, nullptr, SPI_OK_UPDATE);
  else
    run_plan(&p_slot,
             "UPDATE agent_journal.counter_slots t " AJ_EXEMPLAR_SET
             "WHERE t.name OPERATOR(pg_catalog.=) $1 AND t.labels OPERATOR(pg_catalog.=) $2 "
             "AND t.slot OPERATOR(pg_catalog.=) $6",
             6, types, args, nullptr, SPI_OK_UPDATE);
#undef AJ_EXEMPLAR_SET
}

int64 expire_series() {
  SlotRels r;
  if (series_ttl_s <= 0 || !slot_rels(&r) || !r.slots_updated_at) return 0;
  static SPIPlanPtr p_expire;
  static const Oid types[] = {INT4OID};
  Datum args[1] = {Int32GetDatum(series_ttl_s)};
  run_plan(&p_expire,
           "WITH stale AS ("
           "  SELECT s.name, s.labels FROM agent_journal.metric_series s "
           "  WHERE s.updated_at OPERATOR(pg_catalog.<) (pg_catalog.clock_timestamp() "
           "        OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)) "
           "    AND pg_catalog.left(s.name, 14) OPERATOR(pg_catalog.<>) ALL "
           "        ('{agent_runtime_,agent_journal_}'::pg_catalog.text[]) "
           "    AND NOT EXISTS (SELECT FROM agent_journal.counter_slots c "
           "      WHERE c.name OPERATOR(pg_catalog.=) s.name AND c.labels OPERATOR(pg_catalog.=) s.labels "
           "        AND c.updated_at OPERATOR(pg_catalog.>=) (pg_catalog.clock_timestamp() "
           "            OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1))) "
           "  FOR UPDATE OF s SKIP LOCKED), "
           "slots AS (DELETE FROM agent_journal.counter_slots c USING stale "
           "  WHERE c.name OPERATOR(pg_catalog.=) stale.name AND c.labels OPERATOR(pg_catalog.=) stale.labels) "
           "DELETE FROM agent_journal.metric_series s USING stale "
           "WHERE s.name OPERATOR(pg_catalog.=) stale.name AND s.labels OPERATOR(pg_catalog.=) stale.labels",
           1, types, args, nullptr, SPI_OK_DELETE);
  return (int64)SPI_processed;
}

// The metric tables stay on a distributed journal's coordinator: every
// metric function and render refuses on a worker (0A000, naming the
// coordinator) rather than write or show a worker's local copy.
static void metrics_here() {
  if (!citus_preloaded()) return;
  Oid nsp = get_namespace_oid("agent_journal", true);
  if (OidIsValid(nsp)) require_coordinator(nsp, "the metric functions and the renders");
}

void count_internal(const char *name, const char *help) {
  Jsonb *none = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
  (void)counter_add_internal(name, none, 1, help, true);
}

}  // namespace ajpg

using namespace ajpg;

// ================================================================ writers

// counter_add, gauge_set, gauge_add: (name, value, labels, help).
static double record_from_sql(FunctionCallInfo fcinfo, Update u, const char *fn,
                              const char *value_name) {
  require_writable(fn);
  metrics_here();
  const char *name = name_arg(fcinfo);
  double v = value_arg(fcinfo, 1, value_name, u == Update::CounterAdd);
  Jsonb *labels = labels_arg(fcinfo, 2);
  const char *help = help_arg(fcinfo, 3);
  Jsonb *exemplar = u == Update::CounterAdd ? exemplar_arg(fcinfo, 4) : nullptr;
  OwnerSwitch who = spi_begin();
  int32 slot = -1;
  double stored = u == Update::CounterAdd ? counter_add_internal(name, labels, v, help, false, &slot)
                                          : record_value(u, name, labels, v, help, false);
  if (exemplar) store_exemplar(name, labels, slot, 0, v, exemplar);
  spi_end(who);
  return stored;
}

Datum aj_counter_add(PG_FUNCTION_ARGS) {
  PG_RETURN_FLOAT8(
      record_from_sql(fcinfo, Update::CounterAdd, "agent_journal.counter_add()", "value"));
}

Datum aj_gauge_set(PG_FUNCTION_ARGS) {
  (void)record_from_sql(fcinfo, Update::GaugeSet, "agent_journal.gauge_set()", "value");
  PG_RETURN_VOID();
}

Datum aj_gauge_add(PG_FUNCTION_ARGS) {
  PG_RETURN_FLOAT8(record_from_sql(fcinfo, Update::GaugeAdd, "agent_journal.gauge_add()", "delta"));
}

Datum aj_histogram_observe(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.histogram_observe()");
  metrics_here();
  const char *name = name_arg(fcinfo);
  double v = value_arg(fcinfo, 1, "value", true);
  Jsonb *labels = labels_arg(fcinfo, 2);
  double *bounds = nullptr;
  int nbounds = 0;
  if (!PG_ARGISNULL(3)) {
    ArrayType *arr = PG_GETARG_ARRAYTYPE_P(3);
    if (ARR_NDIM(arr) > 1) AJ_INVALID("buckets must be a one-dimensional array");
    Datum *elems;
    bool *nulls;
    deconstruct_array(arr, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &nbounds);
    if (nbounds > (int)aj::kMaxBuckets + 1)
      ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                      errmsg("buckets has %d bounds, more than %d", nbounds, (int)aj::kMaxBuckets)));
    bounds = (double *)palloc(sizeof(double) * (nbounds + 1));
    for (int i = 0; i < nbounds; i++) {
      if (nulls[i])
        ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                        errmsg("buckets[%d] must not be NULL", i + 1)));
      bounds[i] = DatumGetFloat8(elems[i]);
    }
  }
  const char *help = help_arg(fcinfo, 4);
  Jsonb *exemplar = exemplar_arg(fcinfo, 5);
  OwnerSwitch who = spi_begin();
  FamilyInfo fam = ensure_family(name, aj::MetricType::Histogram, help, nbounds, bounds, false);
  // Bucket index (1-based): the first bound >= v, or the +Inf bucket.
  int idx = fam.nbounds + 1;
  for (int i = 0; i < fam.nbounds; i++)
    if (v <= fam.bounds[i]) {
      idx = i + 1;
      break;
    }
  Datum *init = (Datum *)palloc(sizeof(Datum) * (fam.nbounds + 1));
  for (int i = 0; i <= fam.nbounds; i++) init[i] = Int64GetDatum(i + 1 == idx ? 1 : 0);
  ArrayType *initial = construct_array(init, fam.nbounds + 1, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
  static const Oid t5[] = {TEXTOID, JSONBOID, INT8ARRAYOID, FLOAT8OID, INT4OID};
  Datum a5[5] = {CStringGetTextDatum(name), JsonbPGetDatum(labels), PointerGetDatum(initial),
                 Float8GetDatum(v), Int32GetDatum(idx)};
  int rc = SPI_execute_plan(
      cached_plan(&p_hist,
                  "INSERT INTO agent_journal.metric_series AS s (name, labels, bucket_counts, sum, count) "
                  "VALUES ($1, $2, $3, $4, 1) ON CONFLICT (name, labels) DO UPDATE SET "
                  "bucket_counts[$5] = s.bucket_counts[$5] OPERATOR(pg_catalog.+) 1, "
                  "sum = s.sum OPERATOR(pg_catalog.+) EXCLUDED.sum, "
                  "count = s.count OPERATOR(pg_catalog.+) 1, updated_at = pg_catalog.clock_timestamp()",
                  5, t5),
      a5, nullptr, false, 0);
  if (rc != SPI_OK_INSERT) elog(ERROR, "agent_journal: histogram upsert failed: %d", rc);
  if (exemplar) store_exemplar(name, labels, -1, idx - 1, v, exemplar);
  spi_end(who);
  PG_RETURN_VOID();
}

// delete_series(name, labels): one series, or the family's every series
// when labels is NULL; the family (type, help, buckets) stays. A series
// written again starts anew (a new _created): it renders as a reset.
Datum aj_delete_series(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.delete_series()");
  metrics_here();
  const char *name = name_arg(fcinfo);
  Jsonb *labels = PG_ARGISNULL(1) ? nullptr : labels_arg(fcinfo, 1);
  if (reserved_name(name))
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("name: \"%s\" is one of the extension's own families; its series cannot be "
                           "deleted", name)));
  OwnerSwitch who = spi_begin();
  static SPIPlanPtr p_del, p_del_slots;
  static const Oid types[] = {TEXTOID, JSONBOID};
  Datum args[2] = {CStringGetTextDatum(name), labels ? JsonbPGetDatum(labels) : (Datum)0};
  char nulls[2] = {' ', labels ? ' ' : 'n'};
  int64 n = (int64)run_plan(&p_del,
                            "DELETE FROM agent_journal.metric_series "
                            "WHERE name OPERATOR(pg_catalog.=) $1 "
                            "AND ($2 IS NULL OR labels OPERATOR(pg_catalog.=) $2)",
                            2, types, args, nulls, SPI_OK_DELETE);
  SlotRels r;
  if (slot_rels(&r))
    run_plan(&p_del_slots,
             "DELETE FROM agent_journal.counter_slots WHERE name OPERATOR(pg_catalog.=) $1 "
             "AND ($2 IS NULL OR labels OPERATOR(pg_catalog.=) $2)",
             2, types, args, nulls, SPI_OK_DELETE);
  spi_end(who);
  PG_RETURN_INT64(n);
}

Datum aj_record_rejection(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.record_rejection()");
  metrics_here();
  require_arg(fcinfo, 0, "reason");
  char *reason = text_to_cstring(PG_GETARG_TEXT_PP(0));
  if (strcmp(reason, "tenant_limit") != 0 && strcmp(reason, "capacity_limit") != 0 &&
      strcmp(reason, "other") != 0)
    AJ_INVALID("reason must be tenant_limit, capacity_limit or other, got \"%s\"", reason);
  bool has_detail = !PG_ARGISNULL(1) && VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(1)) > 0;
  if (strcmp(reason, "other") == 0 && !has_detail)
    AJ_INVALID("detail is required when reason is 'other'");
  static const Oid t3[] = {TEXTOID, TEXTOID, UUIDOID};
  Datum a3[3] = {PG_GETARG_DATUM(0), PG_ARGISNULL(1) ? (Datum)0 : PG_GETARG_DATUM(1),
                 PG_ARGISNULL(2) ? (Datum)0 : PG_GETARG_DATUM(2)};
  char n3[3] = {' ', PG_ARGISNULL(1) ? 'n' : ' ', PG_ARGISNULL(2) ? 'n' : ' '};
  // The counter's labels: {"reason": "..."}.
  JsonbParseState *state = nullptr;
  JsonbValue k, v;
  k.type = jbvString;
  k.val.string.val = (char *)"reason";
  k.val.string.len = 6;
  v.type = jbvString;
  v.val.string.val = reason;
  v.val.string.len = (int)strlen(reason);
  pushJsonbValue(&state, WJB_BEGIN_OBJECT, nullptr);
  pushJsonbValue(&state, WJB_KEY, &k);
  pushJsonbValue(&state, WJB_VALUE, &v);
  Jsonb *labels = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, nullptr));

  OwnerSwitch who = spi_begin();
  run_plan(&p_reject_ins,
           "INSERT INTO agent_journal.rejections (reason, detail, agent_id) "
           "VALUES ($1, $2, $3) RETURNING id",
           3, t3, a3, n3, SPI_OK_INSERT_RETURNING);
  int64 id = result_int8();
  counter_add_internal(REJECTIONS_FAMILY, labels, 1, nullptr, true);
  spi_end(who);
  PG_RETURN_INT64(id);
}

Datum aj_ingest_snapshot(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.ingest_snapshot()");
  metrics_here();
  require_arg(fcinfo, 0, "snapshot");
  require_arg(fcinfo, 1, "service");
  Size raw = toast_raw_datum_size(PG_GETARG_DATUM(0));
  if (raw - VARHDRSZ > (Size)max_event_bytes)
    ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                    errmsg("snapshot is %zu bytes, more than agent_journal.max_event_bytes (%d bytes)",
                           (size_t)(raw - VARHDRSZ), max_event_bytes)));
  Jsonb *jb = PG_GETARG_JSONB_P(0);
  char *service = text_to_cstring(PG_GETARG_TEXT_PP(1));
  if (service[0] == '\0') AJ_INVALID("service must not be empty");
  char *json = JsonbToCString(nullptr, &jb->root, VARSIZE(jb));
  char err[512];
  double ts = 0;
  if (!run_cpp([&] {
        aj::validate_label_value("service", service);
        ts = aj::snapshot_timestamp(aj::parse_snapshot(json));
      }, err, sizeof err))
    AJ_INVALID("%s", err);
  static const Oid t3[] = {TEXTOID, FLOAT8OID, JSONBOID};
  Datum a3[3] = {PG_GETARG_DATUM(1), Float8GetDatum(ts), JsonbPGetDatum(jb)};
  OwnerSwitch who = spi_begin();
  run_plan(&p_snap_ins,
           "INSERT INTO agent_journal.snapshots (service, snapshot_ts, snapshot) "
           "VALUES ($1, $2, $3) RETURNING id",
           3, t3, a3, nullptr, SPI_OK_INSERT_RETURNING);
  int64 id = result_int8();
  spi_end(who);
  PG_RETURN_INT64(id);
}

Datum aj_prune_snapshots(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.prune_snapshots()");
  metrics_here();
  require_arg(fcinfo, 0, "older_than");
  static const Oid t1[] = {INTERVALOID};
  Datum a1[1] = {PG_GETARG_DATUM(0)};
  OwnerSwitch who = spi_begin();
  int rc = SPI_execute_plan(
      cached_plan(&p_prune,
                  "DELETE FROM agent_journal.snapshots s "
                  "WHERE s.ingested_at OPERATOR(pg_catalog.<) "
                  "      (pg_catalog.now() OPERATOR(pg_catalog.-) $1) "
                  "AND s.id OPERATOR(pg_catalog.<>) ALL (ARRAY("
                  "  SELECT DISTINCT ON (c.service) c.id FROM agent_journal.snapshots c "
                  "  ORDER BY c.service, c.snapshot_ts DESC, c.id DESC))",
                  1, t1),
      a1, nullptr, false, 0);
  if (rc != SPI_OK_DELETE) elog(ERROR, "agent_journal: prune failed: %d", rc);
  int64 n = (int64)SPI_processed;
  spi_end(who);
  PG_RETURN_INT64(n);
}

// ================================================================ readers

namespace ajpg {
namespace {

struct Model {
  std::vector<aj::Family> families;
  std::unordered_map<std::string, size_t> by_name;
  aj::RenderedText out;
  struct Sample {
    std::string name;
    aj::Labels labels;
    double value;
  };
  std::vector<Sample> samples;
  std::string scope_version;  // pg_extension.extversion, read at render time
  // Counter slots summed per series (name NUL labels' jsonb bytes); empty
  // unless some counter met contention (counter_add).
  std::unordered_map<std::string, double> slot_totals;
  // 0.6.0: the slots' latest write (epoch s) and exemplars, per series.
  std::unordered_map<std::string, double> slot_updated;
  std::unordered_map<std::string, std::vector<aj::Exemplar>> slot_exemplars;
  // The slots' exemplar labels; the arenas of families whose series moved
  // into `families` (the snapshots'). They outlive the render.
  aj::Arena arena;
  std::vector<std::shared_ptr<aj::Arena>> kept_arenas;
  // Family index by name while the series are read (views of the names in
  // `families`, which does not grow meanwhile).
  std::unordered_map<std::string_view, size_t> family_at;
};

// The key slot_totals uses for a series.
std::string slot_key(std::string_view name, const Jsonb *labels) {
  std::string k(name);
  k.push_back('\0');
  k.append(reinterpret_cast<const char *>(labels), VARSIZE(labels));
  return k;
}

// Stops a render only for what ends the statement: a cancel or statement
// timeout (57014) or a termination. InterruptPending is also set by
// interrupts that must not end it (pg_log_backend_memory_contexts, a
// procsignal barrier from DROP DATABASE elsewhere); those are served at the
// next CHECK_FOR_INTERRUPTS outside the C++ frames.
bool interrupted() { return QueryCancelPending || ProcDiePending; }

// One label as pointers into the jsonb it was read from (valid while that
// jsonb is): no copy until the C++ model makes its strings.
struct LabelRef {
  const char *key, *value;
  int key_len, value_len;
};

// The pairs of a jsonb object, read from its entries in place: f(key,
// key_len, value's JEntry, value's bytes, their length) for each, in the
// container's order (keys sorted by length, then bytes). A container or
// numeric value's bytes start aligned, as the iterator would give them.
// No palloc (a JsonbIterator allocates per container and copies every
// value out); nothing here can ereport.
template <typename F>
void for_each_pair(const JsonbContainer *jc, F &&f) {
  const uint32 n = JsonContainerSize(jc);
  if (n == 0) return;
  const char *base = reinterpret_cast<const char *>(jc->children + 2 * n);
  // keys are entries 0..n-1, values n..2n-1; an entry's data starts where
  // the previous entry's ends
  uint32 key_at = 0, value_at = getJsonbOffset(jc, (int)n);
  for (uint32 i = 0; i < n; i++) {
    const JEntry ke = jc->children[i], ve = jc->children[n + i];
    const uint32 key_end = JBE_HAS_OFF(ke) ? JBE_OFFLENFLD(ke) : key_at + JBE_OFFLENFLD(ke);
    const uint32 value_end = JBE_HAS_OFF(ve) ? JBE_OFFLENFLD(ve) : value_at + JBE_OFFLENFLD(ve);
    uint32 data_at = value_at;
    if (JBE_ISCONTAINER(ve) || JBE_ISNUMERIC(ve)) data_at = INTALIGN(value_at);
    f(base + key_at, (int)(key_end - key_at), ve, base + data_at, (int)(value_end - data_at));
    key_at = key_end;
    value_at = value_end;
  }
}

// Sorts label refs by name as std::string's < does (bytes, then length):
// the order normalize_labels leaves, so it has nothing to move.
void sort_refs(LabelRef *refs, int n) {
  const auto less = [](const LabelRef &a, const LabelRef &b) {
    // most names differ in their first byte: decided inline
    if (a.key_len > 0 && b.key_len > 0 && a.key[0] != b.key[0])
      return (unsigned char)a.key[0] < (unsigned char)b.key[0];
    int c = memcmp(a.key, b.key, (size_t)Min(a.key_len, b.key_len));
    return c != 0 ? c < 0 : a.key_len < b.key_len;
  };
  for (int i = 1; i < n; i++) {
    LabelRef r = refs[i];
    int j = i;
    for (; j > 0 && less(r, refs[j - 1]); j--) refs[j] = refs[j - 1];
    refs[j] = r;
  }
}

// Reads labels jsonb (an object of strings; a non-string value reads as "")
// into `out`, which must hold JB_ROOT_COUNT(jb) entries, sorted by name.
// Returns how many.
int labels_to_refs(Jsonb *jb, LabelRef *out) {
  if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_COUNT(jb) == 0) return 0;
  int i = 0;
  for_each_pair(&jb->root, [&](const char *k, int klen, JEntry ve, const char *v, int vlen) {
    const bool str = JBE_ISSTRING(ve);
    out[i++] = LabelRef{k, str ? v : "", klen, str ? vlen : 0};
  });
  sort_refs(out, i);
  return i;
}

void cpp_or_error(bool ok, const char *err) {
  if (ok) return;
  if (interrupted()) {
    CHECK_FOR_INTERRUPTS();  // reports the cancel, timeout or termination itself
    ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED), errmsg("canceling statement due to user request")));
  }
  ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("%s", err)));
}

// The attribute number of `column` in `desc` (an ERROR if it is missing).
AttrNumber attnum_of(TupleDesc desc, const char *column) {
  for (int i = 0; i < desc->natts; i++) {
    Form_pg_attribute a = TupleDescAttr(desc, i);
    if (!a->attisdropped && strcmp(NameStr(a->attname), column) == 0) return a->attnum;
  }
  elog(ERROR, "agent_journal: metric_series has no column %s", column);
  return InvalidAttrNumber;
}

double epoch_of(TimestampTz t) {
  return (double)t / USECS_PER_SEC + (double)(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

// An exemplar's value and time are stored as strings (float8's shortest
// round-trip text). A plain decimal of at most 2^53 in its digits and a
// power of ten within 10^±22 is read exactly by one multiplication or
// division of exact doubles (Clinger's fast path: one rounding, as strtod
// rounds); anything else goes to strtod. NaN when the text is not a number.
double decimal_of(const char *s, int len) {
  if (len <= 0 || len >= 64) return NAN;
  static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  int i = 0;
  const bool neg = s[0] == '-';
  if (neg) i = 1;
  uint64 m = 0;
  int digits = 0, frac = 0, exp = 0;
  bool any = false, dot = false, fast = true;
  for (; i < len; i++) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      any = true;
      if (dot) frac++;
      if (m == 0 && c == '0') continue;  // leading zeros
      if (++digits > 19) {
        fast = false;
        break;
      }
      m = m * 10 + (uint64)(c - '0');
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      break;
    }
  }
  if (fast && i < len) {
    if (s[i] == 'e' || s[i] == 'E') {
      i++;
      bool eneg = false;
      if (i < len && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
      int ed = 0;
      for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        exp = exp * 10 + (s[i] - '0');
        if (++ed > 4) break;
      }
      if (ed == 0 || ed > 4) fast = false;
      if (eneg) exp = -exp;
    }
    if (i < len) fast = false;
  }
  if (fast && any && m <= (UINT64CONST(1) << 53)) {
    const int e10 = exp - frac;
    double d = (double)m;
    if (m == 0) {
      d = 0;
    } else if (e10 > 0 && e10 <= 22) {
      d *= p10[e10];
    } else if (e10 < 0 && e10 >= -22) {
      d /= p10[-e10];
    } else if (e10 != 0) {
      fast = false;
    }
    if (fast) return neg ? -d : d;
  }
  char buf[64];
  memcpy(buf, s, len);
  buf[len] = '\0';
  char *end;
  double d = strtod(buf, &end);
  return *end == '\0' ? d : NAN;
}

// A number (written by hand) is read too.
double number_at(JEntry e, const char *data, int len) {
  if (JBE_ISSTRING(e)) return decimal_of(data, len);
  if (!JBE_ISNUMERIC(e)) return NAN;
  return DatumGetFloat8(DirectFunctionCall1(numeric_float8, PointerGetDatum(data)));
}

// Exemplars read from jsonb, before they become aj::Exemplar: pointers
// into the jsonb, in palloc'd arrays reused from row to row.
struct ExemplarRef {
  size_t bucket;
  double value, ts;
  int first_label, n_labels;  // in ExemplarRefs::labels
};
struct ExemplarRefs {
  MemoryContext cxt;  // where the arrays live
  ExemplarRef *ex = nullptr;
  LabelRef *labels = nullptr;
  int n = 0, cap = 0, n_labels = 0, labels_cap = 0;
  void clear() { n = n_labels = 0; }
};

// `p` with room for `need` (allocated in `cxt`, or grown where it is).
template <typename T>
T *grown(T *p, int *cap, int need, MemoryContext cxt) {
  if (need <= *cap) return p;
  int c = Max(need, Max(*cap * 2, 8));
  p = p ? (T *)repalloc(p, sizeof(T) * c) : (T *)MemoryContextAlloc(cxt, sizeof(T) * c);
  *cap = c;
  return p;
}

// An exemplars column ({"<bucket>": {"labels": {...}, "value": v, "ts": t}})
// appended to `out` (labels sorted by name); what does not read as such is
// skipped (the renderer checks the rest).
void read_exemplars(const JsonbContainer *root, ExemplarRefs *out) {
  if (!JsonContainerIsObject(root)) return;
  for_each_pair(root, [&](const char *key, int key_len, JEntry ve, const char *obj_p, int) {
    if (!JBE_ISCONTAINER(ve)) return;
    const JsonbContainer *obj = reinterpret_cast<const JsonbContainer *>(obj_p);
    if (!JsonContainerIsObject(obj)) return;
    const JsonbContainer *labels = nullptr;
    double value = NAN, ts = NAN;
    for_each_pair(obj, [&](const char *k, int klen, JEntry e, const char *v, int vlen) {
      if (klen == 6 && memcmp(k, "labels", 6) == 0) {
        if (JBE_ISCONTAINER(e)) labels = reinterpret_cast<const JsonbContainer *>(v);
      } else if (klen == 5 && memcmp(k, "value", 5) == 0) {
        value = number_at(e, v, vlen);
      } else if (klen == 2 && memcmp(k, "ts", 2) == 0) {
        ts = number_at(e, v, vlen);
      }
    });
    if (!labels || !JsonContainerIsObject(labels)) return;
    char kbuf[32];
    char *kstr = key_len < (int)sizeof kbuf ? kbuf : (char *)palloc(key_len + 1);
    memcpy(kstr, key, key_len);
    kstr[key_len] = '\0';
    char *end;
    long bucket = strtol(kstr, &end, 10);
    if (*end != '\0' || bucket < 0) return;
    const int n = (int)JsonContainerSize(labels);
    out->labels = grown(out->labels, &out->labels_cap, out->n_labels + n, out->cxt);
    LabelRef *refs = out->labels + out->n_labels;
    int i = 0;
    for_each_pair(labels, [&](const char *k, int klen, JEntry e, const char *v, int vlen) {
      if (JBE_ISSTRING(e)) refs[i++] = LabelRef{k, v, klen, vlen};
    });
    sort_refs(refs, i);
    out->ex = grown(out->ex, &out->cap, out->n + 1, out->cxt);
    out->ex[out->n++] = ExemplarRef{(size_t)bucket, value, ts, out->n_labels, i};
    out->n_labels += i;
  });
}

// `n` label refs copied into `arena` as the model's labels, the array and
// the bytes in one allocation. A name equal to the one at the same place
// in `prev` (the family's previous series: a family's series mostly have
// the same label names) is not copied: it shares prev's bytes.
aj::Span<aj::Label> labels_from(const LabelRef *refs, int n, aj::Arena &arena,
                                aj::Span<aj::Label> prev = {}) {
  if (n <= 0) return {};
  uint64 shared = 0;  // bit j: name j is prev's (the first 64)
  size_t bytes = sizeof(aj::Label) * (size_t)n;
  for (int j = 0; j < n; j++) {
    const LabelRef &r = refs[j];
    if (j < 64 && (size_t)j < prev.size() && prev[j].first.size() == (size_t)r.key_len &&
        memcmp(prev[j].first.data(), r.key, r.key_len) == 0) {
      shared |= UINT64CONST(1) << j;
    } else {
      bytes += r.key_len;
    }
    bytes += r.value_len;
  }
  char *p = static_cast<char *>(arena.allocate(bytes, alignof(aj::Label)));
  aj::Span<aj::Label> out{reinterpret_cast<aj::Label *>(p), (uint32_t)n};
  p += sizeof(aj::Label) * (size_t)n;
  for (int j = 0; j < n; j++) {
    const LabelRef &r = refs[j];
    std::string_view name;
    if (j < 64 && (shared & (UINT64CONST(1) << j))) {
      name = prev[j].first;
    } else {
      memcpy(p, r.key, r.key_len);
      name = std::string_view(p, r.key_len);
      p += r.key_len;
    }
    memcpy(p, r.value, r.value_len);
    new (&out.data[j]) aj::Label(name, std::string_view(p, r.value_len));
    p += r.value_len;
  }
  return out;
}

// The exemplar read into `r` as the model's, its labels copied into `arena`
// (names shared with `prev`'s, as labels_from does).
aj::Exemplar exemplar_from(const ExemplarRefs &refs, const ExemplarRef &r, aj::Arena &arena,
                           aj::Span<aj::Label> prev = {}) {
  aj::Exemplar e;
  e.bucket = r.bucket;
  e.labels = labels_from(refs.labels + r.first_label, r.n_labels, arena, prev);
  e.value = r.value;
  e.timestamp = r.ts;
  return e;
}

// The journal's tallies (tally.cpp), summed by name: on one server or
// over the nodes of a distributed journal (`across`: journal_since is then
// the earliest node's).
struct TallySums {
  int64 since = 0, agents = 0, appended = 0, compacted = 0, forgotten_live = 0;
  int64 states = 0, retained = 0, f_appended = 0, f_compacted = 0, takeovers = 0;
  bool tallied = false;
  void add(const char *name, int64 v, bool across) {
    if (strcmp(name, TALLY_SINCE) == 0) {
      since = tallied && across ? Min(since, v) : since + v;
      tallied = true;
    } else if (strcmp(name, TALLY_AGENTS) == 0) agents += v;
    else if (strcmp(name, TALLY_APPENDED) == 0) appended += v;
    else if (strcmp(name, TALLY_COMPACTED) == 0) compacted += v;
    else if (strcmp(name, TALLY_FORGOTTEN_LIVE) == 0) forgotten_live += v;
    else if (strcmp(name, TALLY_SAVED_STATES) == 0) states += v;
    else if (strcmp(name, TALLY_RETENTION_REMOVED) == 0) retained += v;
    else if (strcmp(name, TALLY_FORGOTTEN_APPENDED) == 0) f_appended += v;
    else if (strcmp(name, TALLY_FORGOTTEN_COMPACTED) == 0) f_compacted += v;
    else if (strcmp(name, TALLY_LEASE_TAKEOVERS) == 0) takeovers += v;
  }
};

// Loads everything the exposition shows into `m`, in one snapshot.
// Without `want_exemplars` (renders that show none: Prometheus 0.0.4, the
// samples) the series' and slots' exemplars are left unread.
void load_model(Model *m, bool want_exemplars) {
  char err[512];
  static const Oid t1[] = {INT4OID};
  // SPI is connected by the caller with read_only queries: one snapshot.
  int rc = SPI_execute_plan(
      cached_plan(&r_families,
                  "SELECT name, type, help, buckets FROM agent_journal.metric_families ORDER BY name",
                  0, nullptr),
      nullptr, nullptr, true, 0);
  if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: family read failed");
  SPITupleTable *ft = SPI_tuptable;
  uint64 nf = SPI_processed;
  for (uint64 i = 0; i < nf; i++) {
    bool isnull;
    char *name = SPI_getvalue(ft->vals[i], ft->tupdesc, 1);
    char *type = SPI_getvalue(ft->vals[i], ft->tupdesc, 2);
    char *help = SPI_getvalue(ft->vals[i], ft->tupdesc, 3);
    Datum bd = SPI_getbinval(ft->vals[i], ft->tupdesc, 4, &isnull);
    int nb = 0;
    double *bounds = nullptr;
    if (!isnull) bounds = float8_elems(bd, &nb);
    cpp_or_error(run_cpp([&] {
                   aj::Family f;
                   f.name = name;
                   f.type = type_from(type);
                   f.help = help ? help : "";
                   f.bounds.assign(bounds, bounds + nb);
                   m->by_name.emplace(f.name, m->families.size());
                   m->families.push_back(std::move(f));
                 }, err, sizeof err), err);
  }
  SPI_freetuptable(ft);

  ExemplarRefs exr;  // one row's exemplars, as read; reused
  exr.cxt = CurrentMemoryContext;

  // Counter slots, summed per series (read in the same snapshot), with
  // their latest write and exemplars from 0.6.0 on: one aggregate scan.
  SlotRels sr;
  if (slot_rels(&sr)) {
    rc = SPI_execute_plan(
        sr.slots_updated_at
            ? cached_plan(&r_slots_060,
                          "SELECT name, labels, pg_catalog.sum(value), pg_catalog.max(updated_at), "
                          "pg_catalog.jsonb_agg(exemplars) FILTER (WHERE exemplars IS NOT NULL) "
                          "FROM agent_journal.counter_slots GROUP BY name, labels",
                          0, nullptr)
            : cached_plan(&r_slots,
                          "SELECT name, labels, pg_catalog.sum(value) FROM agent_journal.counter_slots "
                          "GROUP BY name, labels",
                          0, nullptr),
        nullptr, nullptr, true, 0);
    if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: counter slot read failed");
    for (uint64 i = 0; i < SPI_processed; i++) {
      bool isnull, exnull = true;
      HeapTuple tup = SPI_tuptable->vals[i];
      TupleDesc d = SPI_tuptable->tupdesc;
      char *name = TextDatumGetCString(SPI_getbinval(tup, d, 1, &isnull));
      Jsonb *labels = DatumGetJsonbP(SPI_getbinval(tup, d, 2, &isnull));
      double sum = DatumGetFloat8(SPI_getbinval(tup, d, 3, &isnull));
      double updated = 0;
      Datum ex = (Datum)0;
      if (sr.slots_updated_at) {
        updated = epoch_of(DatumGetTimestampTz(SPI_getbinval(tup, d, 4, &isnull)));
        ex = SPI_getbinval(tup, d, 5, &exnull);
        exnull = exnull || !want_exemplars;
      }
      exr.clear();
      if (!exnull) {
        Jsonb *arr = DatumGetJsonbP(ex);  // an array of exemplars columns
        JsonbIterator *it = JsonbIteratorInit(&arr->root);
        JsonbValue v;
        JsonbIteratorToken tok;
        while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE) {
          if (tok != WJB_ELEM || v.type != jbvBinary) continue;
          read_exemplars(v.val.binary.data, &exr);
        }
      }
      cpp_or_error(run_cpp([&] {
                     std::string key = slot_key(name, labels);
                     m->slot_totals[key] += sum;
                     if (sr.slots_updated_at) m->slot_updated[key] = updated;
                     if (!exnull) {
                       std::vector<aj::Exemplar> &v = m->slot_exemplars[key];
                       for (int k = 0; k < exr.n; k++)
                         v.push_back(exemplar_from(exr, exr.ex[k], m->arena));
                     }
                   }, err, sizeof err), err);
    }
    SPI_freetuptable(SPI_tuptable);
  }

  // Series: a sequential scan of metric_series in the same snapshot (the
  // active one, which SPI's read-only queries above used too), deformed in
  // place: no SPI result copies. Per-row allocations (detoasting) go to a
  // context reset for every row, so memory stays bounded by the model.
  cpp_or_error(run_cpp([&] {
                 for (size_t i = 0; i < m->families.size(); i++) m->family_at.emplace(m->families[i].name, i);
               }, err, sizeof err), err);
  Relation rel = table_open(sr.series, AccessShareLock);
  TupleDesc desc = RelationGetDescr(rel);
  const AttrNumber a_name = attnum_of(desc, "name"), a_labels = attnum_of(desc, "labels"),
                   a_value = attnum_of(desc, "value"), a_buckets = attnum_of(desc, "bucket_counts"),
                   a_sum = attnum_of(desc, "sum"), a_count = attnum_of(desc, "count");
  // 0.6.0: created_at and exemplars; updated_at for series_ttl.
  const AttrNumber a_created = get_attnum(sr.series, "created_at"),
                   a_exemplars = get_attnum(sr.series, "exemplars"),
                   a_updated = get_attnum(sr.series, "updated_at");
  const int natts = std::max({a_name, a_labels, a_value, a_buckets, a_sum, a_count,
                              (AttrNumber)Max(a_created, 0), (AttrNumber)Max(a_exemplars, 0),
                              (AttrNumber)Max(a_updated, 0)});
  // A series nobody wrote for longer than agent_journal.series_ttl is left
  // out (the background worker deletes it); the extension's own are kept.
  const double now_s = epoch_of(GetCurrentTimestamp());
  const double stale_before = series_ttl_s > 0 ? now_s - series_ttl_s : -1;
  TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, nullptr);
  TupleTableSlot *slot = table_slot_create(rel, nullptr);
  MemoryContext row_cxt = AllocSetContextCreate(CurrentMemoryContext, "agent_journal series row",
                                                ALLOCSET_SMALL_SIZES);
  LabelRef *label_refs = nullptr;
  int label_refs_cap = 0;
  uint64 rows = 0;
  while (table_scan_getnextslot(scan, ForwardScanDirection, slot)) {
    if ((++rows & 1023) == 0) CHECK_FOR_INTERRUPTS();
    slot_getsomeattrs(slot, natts);
    Datum *val = slot->tts_values;
    bool *null = slot->tts_isnull;
    MemoryContext outer = MemoryContextSwitchTo(row_cxt);
    text *name_t = DatumGetTextPP(val[a_name - 1]);
    const char *name = VARDATA_ANY(name_t);
    int name_len = VARSIZE_ANY_EXHDR(name_t);
    Jsonb *labels = DatumGetJsonbP(val[a_labels - 1]);
    int nmax = JB_ROOT_IS_OBJECT(labels) ? (int)JB_ROOT_COUNT(labels) : 0;
    if (nmax > label_refs_cap) {
      MemoryContextSwitchTo(outer);
      label_refs = label_refs ? (LabelRef *)repalloc(label_refs, sizeof(LabelRef) * nmax)
                              : (LabelRef *)palloc(sizeof(LabelRef) * nmax);
      label_refs_cap = nmax;
      MemoryContextSwitchTo(row_cxt);
    }
    int nl = labels_to_refs(labels, label_refs);
    double value = DatumGetFloat8(val[a_value - 1]);
    int nb = 0;
    int64 *buckets = null[a_buckets - 1] ? nullptr : int8_elems(val[a_buckets - 1], &nb);
    double sum = null[a_sum - 1] ? 0 : DatumGetFloat8(val[a_sum - 1]);
    int64 count = null[a_count - 1] ? 0 : DatumGetInt64(val[a_count - 1]);
    double created = a_created > 0 && !null[a_created - 1]
                         ? epoch_of(DatumGetTimestampTz(val[a_created - 1])) : 0;
    double updated = a_updated > 0 && !null[a_updated - 1]
                         ? epoch_of(DatumGetTimestampTz(val[a_updated - 1])) : now_s;
    Jsonb *exemplars = want_exemplars && a_exemplars > 0 && !null[a_exemplars - 1]
                           ? DatumGetJsonbP(val[a_exemplars - 1]) : nullptr;
    bool own = name_len >= 14 && (memcmp(name, "agent_runtime_", 14) == 0 ||
                                  memcmp(name, "agent_journal_", 14) == 0);
    exr.clear();
    if (exemplars) read_exemplars(&exemplars->root, &exr);  // null unless wanted
    MemoryContextSwitchTo(outer);
    cpp_or_error(run_cpp([&] {
                   auto it = m->family_at.find(std::string_view(name, name_len));
                   if (it == m->family_at.end()) return;
                   std::string key;
                   if (!m->slot_updated.empty() || !m->slot_exemplars.empty())
                     key = slot_key(std::string_view(name, name_len), labels);
                   if (stale_before >= 0 && !own) {
                     double last = updated;
                     auto su = key.empty() ? m->slot_updated.end() : m->slot_updated.find(key);
                     if (su != m->slot_updated.end()) last = std::max(last, su->second);
                     if (last < stale_before) return;
                   }
                   // built in place: one Series per row, no move
                   aj::Family &f = m->families[it->second];
                   aj::Arena &arena = f.store();
                   // the family's previous series, whose label names this one's likely shares
                   const aj::Series *prev = f.series.empty() ? nullptr : &f.series.back();
                   aj::Span<aj::Label> prev_labels, prev_ex_labels;
                   if (prev) {
                     prev_labels = prev->labels;
                     if (!prev->exemplars.empty()) prev_ex_labels = prev->exemplars[0].labels;
                   }
                   aj::Series &s = f.series.emplace_back();
                   s.created = created;
                   auto se = key.empty() ? m->slot_exemplars.end() : m->slot_exemplars.find(key);
                   const size_t slot_ex = se != m->slot_exemplars.end() ? se->second.size() : 0;
                   if (exr.n + slot_ex > 0) {
                     s.exemplars.data = arena.array<aj::Exemplar>(exr.n + slot_ex);
                     for (int k = 0; k < exr.n; k++)
                       new (&s.exemplars.data[s.exemplars.count++])
                           aj::Exemplar(exemplar_from(exr, exr.ex[k], arena, prev_ex_labels));
                     if (slot_ex > 0)
                       for (const aj::Exemplar &e : se->second)
                         new (&s.exemplars.data[s.exemplars.count++]) aj::Exemplar(e);
                     // the latest per bucket first: the renderer keeps the first
                     if (s.exemplars.size() > 1)
                       std::stable_sort(s.exemplars.begin(), s.exemplars.end(),
                                        [](const aj::Exemplar &a, const aj::Exemplar &b) {
                                          return a.bucket != b.bucket ? a.bucket < b.bucket
                                                                      : a.timestamp > b.timestamp;
                                        });
                   }
                   s.labels = labels_from(label_refs, nl, arena, prev_labels);
                   s.value = value;
                   if (!m->slot_totals.empty()) {
                     auto slots = m->slot_totals.find(slot_key(std::string_view(name, name_len), labels));
                     if (slots != m->slot_totals.end()) s.value += slots->second;
                   }
                   for (int j = 0; j < nb; j++) s.bucket_counts.push_back((uint64_t)buckets[j]);
                   s.sum = sum;
                   s.count = (uint64_t)count;
                 }, err, sizeof err), err);
    MemoryContextReset(row_cxt);
  }
  MemoryContextDelete(row_cxt);
  ExecDropSingleTupleTableSlot(slot);
  table_endscan(scan);
  table_close(rel, AccessShareLock);
  m->family_at.clear();  // its views must not outlive changes to `families`

  // Every service's current snapshot (greatest (timestamp, id)), unless
  // older than agent_journal.snapshot_max_age.
  Datum a1[1] = {Int32GetDatum(snapshot_max_age_seconds)};
  rc = SPI_execute_plan(
      cached_plan(&r_snapshots,
                  "SELECT c.service, c.snapshot::pg_catalog.text FROM ("
                  "  SELECT DISTINCT ON (s.service) s.service, s.snapshot, s.ingested_at "
                  "  FROM agent_journal.snapshots s "
                  "  ORDER BY s.service, s.snapshot_ts DESC, s.id DESC) c "
                  "WHERE ($1 OPERATOR(pg_catalog.=) 0) OR (c.ingested_at OPERATOR(pg_catalog.>=) "
                  "  (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)))",
                  1, t1),
      a1, nullptr, true, 0);
  if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: snapshot read failed");
  for (uint64 i = 0; i < SPI_processed; i++) {
    char *service = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
    char *json = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
    // A stored snapshot that no longer validates is left out, not fatal.
    (void)run_cpp([&] {
      std::vector<aj::Family> tmp;
      aj::append_snapshot_families(aj::parse_snapshot(json), service, tmp);
      for (auto &f : tmp) {
        auto it = m->by_name.find(f.name);
        if (it == m->by_name.end()) {
          m->by_name.emplace(f.name, m->families.size());
          m->families.push_back(std::move(f));
        } else {
          auto &dst = m->families[it->second].series;
          for (auto &s : f.series) dst.push_back(std::move(s));
          if (f.arena) m->kept_arenas.push_back(f.arena);  // where those series' labels live
        }
      }
    }, err, sizeof err);
  }

  // The installed schema's version (the library serves older ones too).
  rc = SPI_execute_plan(
      cached_plan(&r_version,
                  "SELECT extversion FROM pg_catalog.pg_extension "
                  "WHERE extname OPERATOR(pg_catalog.=) 'agent_journal'",
                  0, nullptr),
      nullptr, nullptr, true, 1);
  if (rc == SPI_OK_SELECT && SPI_processed == 1) {
    char *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
    if (v) cpp_or_error(run_cpp([&] { m->scope_version = v; }, err, sizeof err), err);
  }

  // The journal's own families. From 0.6.0: sums of per-backend tallies
  // that every writer adds to in its own transaction (a few rows per name,
  // whatever the number of agents), exact in this snapshot. Before: a walk
  // of every agent through the agents view.
  bool isnull;
  aj::JournalTotals t;
  int64 states = 0, retained = 0;
  bool tallied = false;
  // Not rels(): on a distributed journal it names an agent's shards, and
  // the render reads no agent's rows directly.
  Oid nsp = get_namespace_oid("agent_journal", false);
  Oid tallies_rel = get_relname_relid("tallies", nsp);
  bool dist = journal_distributed(nsp);
  TallySums ts;
  if (OidIsValid(tallies_rel) && dist) {
    // Distributed (issue 11): each node counts what the calls it ran
    // wrote (a call runs where its agent's shards are); the counts are
    // the sums of every node's tallies, read as the extension's owner
    // over Citus's connections (what each node has committed).
    static const Oid tt[] = {TEXTOID};
    Datum ta[1] = {CStringGetTextDatum(
        "SELECT pg_catalog.string_agg(x.name OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) x.s, ',') "
        "FROM (SELECT name, pg_catalog.sum(value)::pg_catalog.int8 AS s FROM agent_journal.tallies "
        "GROUP BY name) x")};
    rc = SPI_execute_plan(
        cached_plan(&r_node_tallies,
                    "SELECT n.success, n.result, n.nodeid FROM pg_catalog.run_command_on_all_nodes($1) n",
                    1, tt),
        ta, nullptr, true, 0);
    if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: tally read across the nodes failed");
    for (uint64 i = 0; i < SPI_processed; i++) {
      HeapTuple row = SPI_tuptable->vals[i];
      bool ok = DatumGetBool(SPI_getbinval(row, SPI_tuptable->tupdesc, 1, &isnull));
      char *result = SPI_getvalue(row, SPI_tuptable->tupdesc, 2);
      if (!ok)
        ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE),
                        errmsg("agent_journal: the journal's counts of Citus node %s could not be read: %s",
                               SPI_getvalue(row, SPI_tuptable->tupdesc, 3), result ? result : "?")));
      for (char *item = result ? strtok(result, ",") : nullptr; item; item = strtok(nullptr, ",")) {
        char *space = strchr(item, ' ');
        if (space == nullptr) continue;
        *space = '\0';
        ts.add(item, pg_strtoint64(space + 1), true);
      }
    }
    SPI_freetuptable(SPI_tuptable);
  } else if (OidIsValid(tallies_rel)) {
    // 0.10.0: journal_appended partly in the unlogged tally_deltas (which
    // a hot standby cannot read: see below)
    bool has_deltas = OidIsValid(get_relname_relid("tally_deltas", nsp));
    bool standby = RecoveryInProgress();
    bool deltas = has_deltas && !standby;
    // 0.11.0: and in the feed's notes that carry their entries' count
    // until a tick moves them (at most a tick's worth of appends while the
    // worker ticks; see feed_note)
    Oid notes = deltas ? get_relname_relid("feed_appends", nsp) : InvalidOid;
    bool carried = OidIsValid(notes) && get_attnum(notes, "counted") != InvalidAttrNumber;
    // the rows summed: tallies; and tally_deltas; and the waiting notes
#define AJ_TALLY_SUM(rows)                                                               \
  "SELECT name, pg_catalog.sum(value)::pg_catalog.int8 FROM " rows " "                   \
  "WHERE name OPERATOR(pg_catalog.=) ANY ('{journal_since,journal_agents,"                \
  "journal_appended,journal_compacted,journal_forgotten_live,saved_states,"               \
  "retention_removed_entries,forgotten_appended_entries,"                                 \
  "forgotten_compacted_entries}'::pg_catalog.text[]) GROUP BY name"
#define AJ_WITH_DELTAS(more)                                                              \
  "(SELECT name, value FROM agent_journal.tallies UNION ALL "                             \
  "SELECT name, value FROM agent_journal.tally_deltas" more ") t"
    static SPIPlanPtr plans[3];
    static const char *const sql[3] = {
        AJ_TALLY_SUM("agent_journal.tallies"), AJ_TALLY_SUM(AJ_WITH_DELTAS("")),
        AJ_TALLY_SUM(AJ_WITH_DELTAS(
            " UNION ALL SELECT 'journal_appended', last_sequence OPERATOR(pg_catalog.-) first_sequence "
            "OPERATOR(pg_catalog.+) 1 FROM agent_journal.feed_appends "
            "WHERE NOT counted AND first_sequence OPERATOR(pg_catalog.<>) 0"))};
#undef AJ_WITH_DELTAS
#undef AJ_TALLY_SUM
    int k = carried ? 2 : deltas ? 1 : 0;
    rc = SPI_execute_plan(cached_plan(&plans[k], sql[k], 0, nullptr), nullptr, nullptr, true, 0);
    if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: tally read failed");
    for (uint64 i = 0; i < SPI_processed; i++) {
      char *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
      int64 v = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
      ts.add(name, v, false);
    }
    SPI_freetuptable(SPI_tuptable);
    // A crash emptied tally_deltas (feed_appends' marker is gone with it)
    // and the worker's first tick has not made up for it yet: until then
    // journal_appended is counted from the journal, so that it never goes
    // down (one walk of the agents per render, only in that moment). A hot
    // standby cannot read unlogged tables (the primary's tally_deltas are
    // not replicated): there it is always counted from the journal.
    if (has_deltas && (standby || tally_deltas_in_use())) {
      static SPIPlanPtr r_lost, r_journal;
      rc = SPI_execute_plan(
          standby ? cached_plan(&r_journal, APPENDED_FROM_JOURNAL_SQL, 0, nullptr)
                  : cached_plan(&r_lost,
                                "SELECT CASE WHEN EXISTS (SELECT FROM agent_journal.feed_appends m "
                                "WHERE m.first_sequence OPERATOR(pg_catalog.=) 0) THEN NULL ELSE (" APPENDED_FROM_JOURNAL_SQL
                                ") END",
                                0, nullptr),
          nullptr, nullptr, true, 1);
      if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: tally read failed");
      Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
      if (!isnull) ts.appended = Max(ts.appended, DatumGetInt64(d));
      SPI_freetuptable(SPI_tuptable);
    }
  }
  if (OidIsValid(tallies_rel)) {
    states = ts.states;
    retained = ts.retained;
    tallied = ts.tallied;
    if (tallied) {
      t.agents = ts.agents;
      t.appended_entries = ts.appended;
      t.compacted_entries = ts.compacted;
      t.live_entries = ts.appended - ts.compacted - ts.forgotten_live;
      t.since = (double)ts.since / 1e6;
    } else {
      t.appended_entries = ts.f_appended;  // what forgotten agents counted (0.5.0)
      t.compacted_entries = ts.f_compacted;
    }
  }
  if (!tallied) {
    rc = SPI_execute_plan(
        cached_plan(&r_totals,
                    "SELECT pg_catalog.count(*), COALESCE(pg_catalog.sum(live_entries), 0)::pg_catalog.int8, "
                    "COALESCE(pg_catalog.sum(latest_sequence), 0)::pg_catalog.int8, "
                    "COALESCE(pg_catalog.sum(compacted_through), 0)::pg_catalog.int8 FROM agent_journal.agents",
                    0, nullptr),
        nullptr, nullptr, true, 1);
    if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: journal totals failed");
    t.agents = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
    t.live_entries = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
    t.appended_entries += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
    t.compacted_entries += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
  }
  cpp_or_error(run_cpp([&] { aj::append_journal_families(t, m->families); }, err, sizeof err), err);
  // Saved states and retention (0.5.0): sums of per-backend tallies.
  if (OidIsValid(tallies_rel)) {
    double since = t.since;
    cpp_or_error(run_cpp([&] { aj::append_state_families(states, retained, m->families, since); },
                         err, sizeof err), err);
  }
  // Leases (0.5.0): live ones through the partial index on their expiry.
  if (get_attnum(get_relname_relid("agent_state", nsp), "lease_expires_at") != InvalidAttrNumber) {
    rc = SPI_execute_plan(
        cached_plan(&r_leases,
                    "SELECT pg_catalog.count(*) FROM agent_journal.agent_state "
                    "WHERE lease IS NOT NULL "
                    "AND lease_expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()",
                    0, nullptr),
        nullptr, nullptr, true, 1);
    if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: lease count failed");
    aj::LeaseTotals lt;
    lt.active = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
    uint64 fenced = 0;
    TimestampTz since = 0;
    // (per server: on a distributed journal the fenced writes happen on
    // the workers, and this node's count would be a part shown as all)
    lt.has_fenced = !dist && fenced_writes(&fenced, &since);
    if (dist) {
      lt.takeovers = (double)ts.takeovers;  // counted as a tally there (lease.cpp)
    }
    lt.fenced = fenced;
    lt.since = t.since;
    lt.fenced_since = (double)since / USECS_PER_SEC +
                      (double)(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
    cpp_or_error(run_cpp([&] {
                   auto f = m->by_name.find(aj::kLeaseTakeoversFamily);
                   lt.takeovers_rendered =
                       f != m->by_name.end() && !m->families[f->second].series.empty();
                   aj::append_lease_families(lt, m->families);
                 }, err, sizeof err), err);
  }
  // The exporter's health (shared memory; only when preloaded).
  cpp_or_error(aj_exporter_health(&m->families, err, sizeof err), err);
}

enum class Format { Prometheus, OpenMetrics, Otlp, Samples };

// A render's text is written where the result datum will be: palloc'd in
// `text_cxt` with room for a varlena header before it, so the text becomes
// the result without a copy (result_text). Neither function ereports
// (palloc_extended with MCXT_ALLOC_NO_OOM returns null when out of memory;
// the render then throws std::bad_alloc), as RenderOptions asks.
MemoryContext text_cxt;

void *text_alloc(size_t n) {
  if (n > MaxAllocHugeSize - VARHDRSZ) return nullptr;
  char *p = (char *)MemoryContextAllocExtended(text_cxt, n + VARHDRSZ,
                                               MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
  return p ? p + VARHDRSZ : nullptr;
}

void text_release(void *p) {
  if (p) pfree((char *)p - VARHDRSZ);
}

// The rendered text as a text datum: its buffer (from text_alloc) with the
// header filled in, owned by the memory context from now on.
text *result_text(aj::RenderedText *out) {
  if (out->size > MaxAllocSize - VARHDRSZ)  // as cstring_to_text_with_len refuses it
    return cstring_to_text_with_len(out->c_str(), (int)out->size);
  text *t = (text *)(out->bytes.release() - VARHDRSZ);
  SET_VARSIZE(t, out->size + VARHDRSZ);
  return t;
}

// Loads and renders; the result is in m->out (or m->samples).
Model *render(Format fmt, const char *only_service) {
  metrics_here();
  Model *m = make_owned<Model>(CurrentMemoryContext);
  text_cxt = CurrentMemoryContext;
  OwnerSwitch who = spi_begin();
  load_model(m, fmt == Format::OpenMetrics || fmt == Format::Otlp);
  spi_end(who);
  char err[512];
  int64 now_ns = ((int64)GetCurrentTimestamp() + (int64)(POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
                                                      SECS_PER_DAY * USECS_PER_SEC) * 1000;
  int cap = max_series_per_family;
  const char *ns = service_namespace ? service_namespace : "";
  bool ok = run_cpp([&] {
    aj::RenderOptions opts;
    opts.max_series_per_family = (size_t)cap;
    opts.interrupted = interrupted;
    opts.allocate = text_alloc;
    opts.release = text_release;
    opts.scope_version = m->scope_version;
    opts.service_namespace = ns;
    switch (fmt) {
      case Format::Prometheus:
        m->out = aj::render_prometheus_buffer(std::move(m->families), opts);
        break;
      case Format::OpenMetrics:
        m->out = aj::render_openmetrics_buffer(std::move(m->families), opts);
        break;
      case Format::Otlp: {
        std::string svc = only_service ? only_service : "";
        m->out = aj::render_otlp_json_buffer(std::move(m->families), only_service ? &svc : nullptr,
                                             now_ns, opts);
        break;
      }
      case Format::Samples: {
        aj::prepare_families(m->families, opts);
        for (const aj::Family &f : m->families) {
          for (const aj::Series &s : f.series) {
            if (f.type != aj::MetricType::Histogram) {
              m->samples.push_back({f.name, aj::to_labels(s.labels), s.value});
              continue;
            }
            uint64_t cum = 0;
            for (size_t b = 0; b < s.bucket_counts.size(); b++) {
              cum += s.bucket_counts[b];
              aj::Labels l = aj::to_labels(s.labels);
              l.emplace_back("le", b < f.bounds.size() ? aj::format_double(f.bounds[b]) : "+Inf");
              m->samples.push_back({f.name + "_bucket", std::move(l), (double)cum});
            }
            m->samples.push_back({f.name + "_sum", aj::to_labels(s.labels), s.sum});
            m->samples.push_back({f.name + "_count", aj::to_labels(s.labels), (double)s.count});
          }
        }
        break;
      }
    }
  }, err, sizeof err);
  cpp_or_error(ok, err);
  return m;
}

}  // namespace
}  // namespace ajpg

namespace ajpg {
namespace {
// On a worker of a distributed journal the text renders are the
// coordinator's (where the metric tables are and the nodes' counts are
// summed): `sql` (a render call, schema-qualified) runs there over Citus's
// connection as the calling role, so the coordinator checks its
// privileges as for a direct call. Returns nullptr where the render is
// local (no Citus, not distributed, or this is the coordinator).
text *render_on_coordinator(const char *sql) {
  if (!agent_journal_distributed() || on_coordinator()) return nullptr;
  MemoryContext caller = CurrentMemoryContext;
  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "agent_journal: SPI_connect failed");
  static const Oid t[] = {TEXTOID};
  Datum a[1] = {CStringGetTextDatum(sql)};
  int rc = SPI_execute_with_args(
      "SELECT n.success, n.result FROM pg_catalog.run_command_on_coordinator($1) n", 1,
      const_cast<Oid *>(t), a, nullptr, true, 1);
  if (rc != SPI_OK_SELECT || SPI_processed != 1)
    ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE),
                    errmsg("agent_journal: the render could not be run on the coordinator")));
  bool isnull;
  bool ok = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
  Datum result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
  if (!ok || isnull)
    ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE),
                    errmsg("agent_journal: the render on the coordinator failed: %s",
                           isnull ? "no result" : TextDatumGetCString(result))));
  MemoryContext spi = MemoryContextSwitchTo(caller);
  text *out = DatumGetTextPCopy(result);
  MemoryContextSwitchTo(spi);
  SPI_finish();
  return out;
}
}  // namespace
}  // namespace ajpg

Datum aj_prometheus_text(PG_FUNCTION_ARGS) {
  if (text *t = render_on_coordinator("SELECT agent_journal.prometheus_text()")) PG_RETURN_TEXT_P(t);
  Model *m = render(Format::Prometheus, nullptr);
  PG_RETURN_TEXT_P(result_text(&m->out));
}

Datum aj_openmetrics_text(PG_FUNCTION_ARGS) {
  if (text *t = render_on_coordinator("SELECT agent_journal.openmetrics_text()")) PG_RETURN_TEXT_P(t);
  Model *m = render(Format::OpenMetrics, nullptr);
  PG_RETURN_TEXT_P(result_text(&m->out));
}

Datum aj_otlp_json(PG_FUNCTION_ARGS) {
  char *service = PG_ARGISNULL(0) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(0));
  if (text *t = render_on_coordinator(
          psprintf("SELECT agent_journal.otlp_json(%s)::pg_catalog.text",
                   service ? quote_literal_cstr(service) : "NULL")))
    return DirectFunctionCall1(jsonb_in, CStringGetDatum(text_to_cstring(t)));
  Model *m = render(Format::Otlp, service);
  Datum d = DirectFunctionCall1(jsonb_in, CStringGetDatum(m->out.c_str()));
  text_release(m->out.bytes.release());  // parsed: the text is not needed any more
  return d;
}

Datum aj_metric_samples(PG_FUNCTION_ARGS) {
  InitMaterializedSRF(fcinfo, 0);
  ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
  Model *m = render(Format::Samples, nullptr);
  for (const Model::Sample &s : m->samples) {
    JsonbParseState *state = nullptr;
    JsonbValue *res = pushJsonbValue(&state, WJB_BEGIN_OBJECT, nullptr);
    for (const auto &kv : s.labels) {
      JsonbValue k, v;
      k.type = jbvString;
      k.val.string.val = (char *)kv.first.data();
      k.val.string.len = (int)kv.first.size();
      v.type = jbvString;
      v.val.string.val = (char *)kv.second.data();
      v.val.string.len = (int)kv.second.size();
      pushJsonbValue(&state, WJB_KEY, &k);
      pushJsonbValue(&state, WJB_VALUE, &v);
    }
    res = pushJsonbValue(&state, WJB_END_OBJECT, nullptr);
    Datum values[3] = {PointerGetDatum(cstring_to_text_with_len(s.name.data(), (int)s.name.size())),
                       JsonbPGetDatum(JsonbValueToJsonb(res)), Float8GetDatum(s.value)};
    bool nulls[3] = {false, false, false};
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
  }
  return (Datum)0;
}

// observability's three queries, with the relations as %s: entries, the
// replay cost's expression, agent_state, lease_graph.
#define OBS_MAIN_SQL                                                                               \
  "WITH i AS (SELECT sequence, recorded_at FROM %s "                                               \
  "           WHERE agent_id OPERATOR(pg_catalog.=) $1 AND kind OPERATOR(pg_catalog.=) 'Interrupted' " \
  "           ORDER BY sequence LIMIT 1), "                                                        \
  "r AS (SELECT e.recorded_at FROM %s e, i "                                                       \
  "      WHERE e.agent_id OPERATOR(pg_catalog.=) $1 AND e.kind OPERATOR(pg_catalog.=) 'Resumed' "  \
  "      AND e.sequence OPERATOR(pg_catalog.>) i.sequence ORDER BY e.sequence LIMIT 1) "           \
  "SELECT pg_catalog.jsonb_build_object("                                                          \
  " 'reasoning_timeline', COALESCE((SELECT pg_catalog.jsonb_agg(t.kind OPERATOR(pg_catalog.||) '#' " \
  "      OPERATOR(pg_catalog.||) t.sequence ORDER BY t.sequence) FROM ("                           \
  "      SELECT kind, sequence FROM %s "                                                           \
  "      WHERE agent_id OPERATOR(pg_catalog.=) $1 ORDER BY sequence DESC LIMIT $2) t), '[]'::pg_catalog.jsonb), " \
  " 'replay_cost', COALESCE((%s), 0), "                                                            \
  " 'interrupt_latency_ms', (SELECT pg_catalog.round(pg_catalog.date_part('epoch', "               \
  "      r.recorded_at OPERATOR(pg_catalog.-) i.recorded_at)::pg_catalog.numeric OPERATOR(pg_catalog.*) 1000, 3) " \
  "      FROM i, r))"
#define OBS_FORK_SQL                                                                               \
  "SELECT $2 OPERATOR(pg_catalog.||) COALESCE((SELECT pg_catalog.jsonb_build_object("              \
  "  'forked_from', pg_catalog.jsonb_build_object('agent_id', s.forked_from, "                     \
  "  'sequence', s.forked_from_sequence)) FROM %s s "                                              \
  "  WHERE s.agent_id OPERATOR(pg_catalog.=) $1 AND s.forked_from IS NOT NULL), "                  \
  "  '{}'::pg_catalog.jsonb)"
#define OBS_LEASES_SQL                                                                             \
  "SELECT $3 OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('lease_graph', "                \
  "  COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array("                          \
  "      'attempt#' OPERATOR(pg_catalog.||) g.attempt, g.worker) ORDER BY g.attempt) "             \
  "    FROM (SELECT attempt, worker FROM %s "                                                      \
  "          WHERE agent_id OPERATOR(pg_catalog.=) $1 "                                            \
  "          ORDER BY attempt DESC LIMIT $2) g), '[]'::pg_catalog.jsonb))"

namespace {
// One of observability's queries: the cached plan of `sql_local` (the
// journal's tables by name), or on a distributed journal, where the agent
// lives on this node, `sql_shards` as it is (its relations are the agent's
// shards: Citus may run observability inside a query on a shard, where
// its planner refuses a query over the distributed tables). One row.
Datum obs_query(SPIPlanPtr *plan, const char *sql_local, const char *sql_shards, int nargs,
                const Oid *types, Datum *args) {
  int rc = sql_shards ? SPI_execute_with_args(sql_shards, nargs, const_cast<Oid *>(types), args, nullptr, true, 1)
                      : SPI_execute_plan(cached_plan(plan, sql_local, nargs, types), args, nullptr, true, 1);
  if (rc != SPI_OK_SELECT || SPI_processed != 1) elog(ERROR, "agent_journal: observability query failed");
  bool isnull;
  return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

char *qualified(Oid rel) {
  return quote_qualified_identifier(get_namespace_name(get_rel_namespace(rel)), get_rel_name(rel));
}
}  // namespace

Datum aj_observability(PG_FUNCTION_ARGS) {
  require_arg(fcinfo, 0, "agent_id");
  require_arg(fcinfo, 1, "timeline_limit");
  journal_agent_arg(fcinfo);  // a distributed journal: this agent's shards
  int32 limit = PG_GETARG_INT32(1);
  if (limit < 0) AJ_INVALID("timeline_limit must be >= 0, got %d", limit);
  static const Oid t2[] = {UUIDOID, INT4OID};
  Datum a2[2] = {PG_GETARG_DATUM(0), Int32GetDatum(limit)};
  OwnerSwitch who = spi_begin();
  check_agent_access(a2[0], who);
  // On a distributed journal (rels() names the agent's shards here, or has
  // refused with 0A000 naming the agent's node) the queries read the
  // shards; elsewhere the tables and the agents view, with cached plans.
  const Rels &r = rels();
  bool dist = agent_journal_distributed();
  char *entries = dist ? qualified(r.entries) : nullptr;
  char *state = dist ? qualified(r.state) : nullptr;
  char *cost = dist ? psprintf("SELECT pg_catalog.max(sequence) OPERATOR(pg_catalog.-) pg_catalog.min(sequence) "
                               "OPERATOR(pg_catalog.+) 1 FROM %s WHERE agent_id OPERATOR(pg_catalog.=) $1",
                               entries)
                    : nullptr;
  static SPIPlanPtr p_obs_main, p_obs_fork, p_obs_leases;
  // the texts of the cached plans, made once (kept for the backend)
  static const char *main_local = nullptr, *fork_local = nullptr, *leases_local = nullptr;
  if (main_local == nullptr) {
    MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
    main_local = psprintf(OBS_MAIN_SQL, "agent_journal.entries", "agent_journal.entries", "agent_journal.entries",
                          "SELECT live_entries FROM agent_journal.agents a WHERE a.agent_id OPERATOR(pg_catalog.=) $1");
    fork_local = psprintf(OBS_FORK_SQL, "agent_journal.agent_state");
    leases_local = psprintf(OBS_LEASES_SQL, "agent_journal.lease_graph");
    MemoryContextSwitchTo(old);
  }
  Datum d = obs_query(&p_obs_main, main_local, dist ? psprintf(OBS_MAIN_SQL, entries, entries, entries, cost) : nullptr,
                      2, t2, a2);
  // forked_from (0.5.0): where fork_agent copied the agent from.
  if (OidIsValid(r.saved_states)) {
    static const Oid t2j[] = {UUIDOID, JSONBOID};
    Datum a2j[2] = {a2[0], d};
    d = obs_query(&p_obs_fork, fork_local, dist ? psprintf(OBS_FORK_SQL, state) : nullptr, 2, t2j, a2j);
  }
  // lease_graph (0.5.0): the last timeline_limit attempts, in claim order.
  if (OidIsValid(r.lease_graph)) {
    static const Oid t3[] = {UUIDOID, INT4OID, JSONBOID};
    Datum a3[3] = {a2[0], a2[1], d};
    d = obs_query(&p_obs_leases, leases_local, dist ? psprintf(OBS_LEASES_SQL, qualified(r.lease_graph)) : nullptr,
                  3, t3, a3);
  }
  d = SPI_datumTransfer(d, false, -1);
  spi_end(who);
  PG_RETURN_DATUM(d);
}
