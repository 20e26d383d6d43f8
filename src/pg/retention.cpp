// Retention: agent_journal.set_retention, apply_retention, and the
// background worker's retention pass.
//
// A policy (an agent's own, else the default) removes an agent's oldest
// entries: those beyond keep_last, those older than max_age, and with both
// limits those that are both. With require_state (the default) it never
// removes an entry the agent's latest saved state does not cover, so
// resume() always has what it needs. Removal is compaction (compact_locked)
// under the agent's lock, so appends, replays and resumes see all of it or
// none of it.
#include "pg/journal.hpp"
#include "pg/citus.hpp"

extern "C" {
#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "commands/extension.h"
#include "executor/tuptable.h"
#include "pgstat.h"
#include "utils/fmgroids.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/rel.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(aj_set_retention);
PG_FUNCTION_INFO_V1(aj_apply_retention);
}

namespace ajpg {

int retention_interval_s = 60;

namespace {

struct Policy {
  bool has_keep = false, has_age = false, require_state = true;
  int64 keep_last = 0;
  TimestampTz older_than = 0;  // now - max_age
};

// The highest sequence, from the agent's oldest live entry on, whose entry
// is older than `cutoff`, looking at no more than `limit` entries (entries
// are in recorded_at order along the sequence: a forward scan that stops
// at the first younger one). 0 if none.
int64 older_prefix(Datum agent, int64 after, TimestampTz cutoff, int64 limit) {
  const Rels &r = rels();
  Relation heap = table_open(r.entries, AccessShareLock);
  Relation index = index_open(r.entries_pkey, AccessShareLock);
  ScanKeyData keys[2];
  ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_UUID_EQ, agent);
  ScanKeyInit(&keys[1], 2, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(after));
  Snapshot snap = RegisterSnapshot(GetLatestSnapshot());
  IndexScanDesc scan = index_beginscan(heap, index, snap, 2, 0);
  index_rescan(scan, keys, 2, nullptr, 0);
  TupleTableSlot *slot = table_slot_create(heap, nullptr);
  AttrNumber a_seq = InvalidAttrNumber, a_at = InvalidAttrNumber;
  TupleDesc desc = RelationGetDescr(heap);
  for (int i = 0; i < desc->natts; i++) {
    Form_pg_attribute a = TupleDescAttr(desc, i);
    if (a->attisdropped) continue;
    if (strcmp(NameStr(a->attname), "sequence") == 0 && a->atttypid == INT8OID) a_seq = a->attnum;
    if (strcmp(NameStr(a->attname), "recorded_at") == 0 && a->atttypid == TIMESTAMPTZOID)
      a_at = a->attnum;
  }
  if (a_seq == InvalidAttrNumber || a_at == InvalidAttrNumber)
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("agent_journal.entries has no sequence or recorded_at column of its type"),
                    errhint("Undo the ALTER TABLE on the extension's table.")));
  int64 last = 0;
  for (int64 n = 0; n < limit && index_getnext_slot(scan, ForwardScanDirection, slot); n++) {
    bool isnull;
    TimestampTz at = DatumGetTimestampTz(slot_getattr(slot, a_at, &isnull));
    if (at >= cutoff) break;
    last = DatumGetInt64(slot_getattr(slot, a_seq, &isnull));
    if ((n & 1023) == 0) CHECK_FOR_INTERRUPTS();
  }
  ExecDropSingleTupleTableSlot(slot);
  index_endscan(scan);
  UnregisterSnapshot(snap);
  index_close(index, AccessShareLock);
  table_close(heap, AccessShareLock);
  return last;
}

// The latest saved state's through_sequence, as committed (0: none).
int64 latest_state_fresh(Datum agent) {
  static SPIPlanPtr plan;
  static const Oid types[] = {UUIDOID};
  Datum args[1] = {agent};
  int rc = SPI_execute_snapshot(
      cached_plan(&plan,
                  "SELECT COALESCE(pg_catalog.max(through_sequence), 0)::pg_catalog.int8 "
                  "FROM agent_journal.saved_states WHERE agent_id OPERATOR(pg_catalog.=) $1",
                  1, types),
      args, nullptr, GetLatestSnapshot(), InvalidSnapshot, true, false, 1);
  if (rc != SPI_OK_SELECT) elog(ERROR, "agent_journal: saved state lookup failed");
  return result_int8();
}

// The last sequence `p` lets go of (<= the compaction point: none).
int64 retention_cut(Datum agent, const Latest &l, const Policy &p, int64 budget) {
  if (!l.has_entry || budget <= 0) return 0;
  int64 cut = l.sequence;
  if (p.has_keep) cut = Min(cut, l.sequence - p.keep_last);
  if (p.require_state) cut = Min(cut, latest_state_fresh(agent));
  if (budget < cut - l.compacted) cut = l.compacted + budget;
  if (cut <= l.compacted) return 0;
  if (p.has_age) cut = Min(cut, older_prefix(agent, l.compacted, p.older_than, cut - l.compacted));
  return cut;
}

// Applies `p` to one agent, removing at most `budget` entries. Takes the
// agent's lock (held to the end of the transaction) only if the committed
// state has something to remove, then decides again under it. Inside SPI.
int64 retain_agent(Datum agent, const Policy &p, int64 budget) {
  Latest before = read_latest(agent, View::Fresh);
  if (retention_cut(agent, before, p, budget) <= before.compacted) return 0;
  lock_agent(DatumGetUUIDP(agent));
  Latest l = read_latest(agent, View::Fresh);
  if (!l.has_entry || budget <= 0) return 0;
  int64 cut = retention_cut(agent, l, p, budget);
  if (cut <= l.compacted) return 0;
  if (IsolationUsesXactSnapshot()) check_serializable(l, agent);
  return compact_locked(agent, l, cut);
}

// Agents with a policy (their own, else the default) and the policy, in
// agent order; the caller's snapshot. Fills parallel arrays; returns n.
int candidates(Datum **agents, Policy **policies) {
  // The arrays go to the caller's context: an SPI call leaves the current
  // context at SPI's procedure context, freed by SPI_finish.
  MemoryContext caller = CurrentMemoryContext;
  static SPIPlanPtr plan;
  run_plan(&plan,
           "SELECT s.agent_id, p.keep_last, "
           "       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) p.max_age, p.require_state "
           "FROM agent_journal.agent_state s "
           "CROSS JOIN LATERAL (SELECT r.keep_last, r.max_age, r.require_state "
           "  FROM agent_journal.retention_settings r "
           "  WHERE r.agent_id OPERATOR(pg_catalog.=) s.agent_id OR r.agent_id IS NULL "
           "  ORDER BY r.agent_id NULLS LAST LIMIT 1) p "
           "ORDER BY s.agent_id",
           0, nullptr, nullptr, nullptr, SPI_OK_SELECT, true);
  int n = (int)SPI_processed;
  MemoryContext spi = MemoryContextSwitchTo(caller);
  *agents = (Datum *)palloc(sizeof(Datum) * Max(n, 1));
  *policies = (Policy *)palloc0(sizeof(Policy) * Max(n, 1));
  for (int i = 0; i < n; i++) {
    HeapTuple t = SPI_tuptable->vals[i];
    TupleDesc d = SPI_tuptable->tupdesc;
    bool isnull;
    (*agents)[i] = datumCopy(SPI_getbinval(t, d, 1, &isnull), false, UUID_LEN);
    Policy &p = (*policies)[i];
    Datum v = SPI_getbinval(t, d, 2, &isnull);
    p.has_keep = !isnull;
    if (!isnull) p.keep_last = DatumGetInt64(v);
    v = SPI_getbinval(t, d, 3, &isnull);
    p.has_age = !isnull;
    if (!isnull) p.older_than = DatumGetTimestampTz(v);
    v = SPI_getbinval(t, d, 4, &isnull);
    p.require_state = isnull || DatumGetBool(v);
  }
  MemoryContextSwitchTo(spi);
  return n;
}

void require_retention_schema() {
  if (!OidIsValid(rels().retention))
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("agent_journal.retention_settings is missing"),
                    errhint("ALTER EXTENSION agent_journal UPDATE")));
}

}  // namespace
}  // namespace ajpg

using namespace ajpg;

// set_retention(agent_id, keep_last, max_age, require_state).
Datum aj_set_retention(PG_FUNCTION_ARGS) {
  journal_agent_arg(fcinfo);
  require_writable("agent_journal.set_retention()");
  require_arg(fcinfo, 3, "require_state");
  if (!PG_ARGISNULL(1) && PG_GETARG_INT64(1) < 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("keep_last must be >= 0, got %lld", (long long)PG_GETARG_INT64(1))));
  if (!PG_ARGISNULL(2)) {
    Interval *age = PG_GETARG_INTERVAL_P(2);
    double span = (double)age->time +
                  ((double)age->day + (double)age->month * DAYS_PER_MONTH) * (double)USECS_PER_DAY;
    if (!(span > 0))
      ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                      errmsg("max_age must be more than 0, got %s",
                             DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(age))))));
  }
  bool all = PG_ARGISNULL(0);
  Datum agent = all ? (Datum)0 : PG_GETARG_DATUM(0);
  OwnerSwitch who = spi_begin();
  require_retention_schema();
  if (all) {
    if (!is_admin(who.saved_user))
      ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                      errmsg("only admins may set the default retention policy"),
                      errhint("Pass an agent_id to set one agent's policy.")));
  } else {
    // The agent's lock orders the change with apply_retention's pass.
    lock_agent(DatumGetUUIDP(agent));
    check_tenant(read_latest(agent, View::Fresh), who, agent);
  }
  static SPIPlanPtr p_del, p_set;
  static const Oid types[] = {UUIDOID, INT8OID, INTERVALOID, BOOLOID};
  Datum args[4] = {agent, PG_ARGISNULL(1) ? (Datum)0 : PG_GETARG_DATUM(1),
                   PG_ARGISNULL(2) ? (Datum)0 : PG_GETARG_DATUM(2), PG_GETARG_DATUM(3)};
  char nulls[4] = {all ? 'n' : ' ', PG_ARGISNULL(1) ? 'n' : ' ', PG_ARGISNULL(2) ? 'n' : ' ', ' '};
  if (PG_ARGISNULL(1) && PG_ARGISNULL(2))
    run_plan(&p_del,
             "DELETE FROM agent_journal.retention_settings WHERE agent_id IS NOT DISTINCT FROM $1",
             1, types, args, nulls, SPI_OK_DELETE);
  else
    run_plan(&p_set,
             "INSERT INTO agent_journal.retention_settings AS r "
             "(agent_id, keep_last, max_age, require_state) VALUES ($1, $2, $3, $4) "
             "ON CONFLICT (agent_id) DO UPDATE SET keep_last = EXCLUDED.keep_last, "
             "max_age = EXCLUDED.max_age, require_state = EXCLUDED.require_state, "
             "updated_at = pg_catalog.clock_timestamp()",
             4, types, args, nulls, SPI_OK_INSERT);
  spi_end(who);
  PG_RETURN_VOID();
}

// apply_retention(max_entries): every agent with a policy, in the caller's
// transaction (the agents' locks are held until it ends).
Datum aj_apply_retention(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.apply_retention()");
  require_arg(fcinfo, 0, "max_entries");
  int64 budget = PG_GETARG_INT64(0);
  if (budget < 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("max_entries must be >= 0, got %lld", (long long)budget)));
  OwnerSwitch who = spi_begin();
  require_retention_schema();
  if (!is_admin(who.saved_user))
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("only admins may apply retention"),
                    errhint("The background worker applies it when the library is preloaded.")));
  Datum *agents;
  Policy *policies;
  int n = candidates(&agents, &policies);
  int64 removed = 0;
  for (int i = 0; i < n && removed < budget; i++) {
    removed += retain_agent(agents[i], policies[i], budget - removed);
    CHECK_FOR_INTERRUPTS();
  }
  tally_add(TALLY_RETENTION_REMOVED, removed);
  spi_end(who);
  PG_RETURN_INT64(removed);
}

namespace ajpg {

namespace {

// A step of the worker's pass in a transaction of its own.
void begin_step(const char *activity) {
  SetCurrentStatementStartTimestamp();
  StartTransactionCommand();
  PushActiveSnapshot(GetTransactionSnapshot());
  pgstat_report_activity(STATE_RUNNING, activity);
}
void end_step() {
  PopActiveSnapshot();
  CommitTransactionCommand();
}
// In a PG_CATCH: report the error and end the failed step.
void abort_step(MemoryContext outer) {
  MemoryContextSwitchTo(outer);
  EmitErrorReport();
  AbortCurrentTransaction();
  FlushErrorState();
}

// One step of the pass that deletes what `work` finds (inside SPI as the
// owner) in a transaction of its own: series nobody wrote for longer than
// agent_journal.series_ttl (0.6.0), feed rows no consumer needs (0.7.0).
void delete_step(const char *activity, int64 (*work)(), const char *what) {
  MemoryContext outer = CurrentMemoryContext;
  PG_TRY();
  {
    begin_step(activity);
    if (OidIsValid(get_extension_oid("agent_journal", true)) &&
        OidIsValid(get_namespace_oid("agent_journal", true))) {
      OwnerSwitch who = spi_begin();
      int64 gone = work();
      spi_end(who);
      if (gone > 0) ereport(DEBUG1, (errmsg("agent_journal deleted %lld %s", (long long)gone, what)));
    }
    end_step();
  }
  PG_CATCH();
  {
    abort_step(outer);
  }
  PG_END_TRY();
  MemoryContextSwitchTo(outer);
}

}  // namespace

// The background worker's pass (exporter.cpp calls it every
// agent_journal.retention_interval, outside any transaction): the agents
// with a policy are listed in one transaction, then each is retained in a
// transaction of its own, so an agent's lock is held only while its own
// entries go and appends never wait long. An error is reported and ends
// the pass; the next interval tries again.
void retention_cycle() {
  MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "agent_journal retention",
                                            ALLOCSET_DEFAULT_SIZES);
  MemoryContext outer = CurrentMemoryContext;
  Datum *volatile agents = nullptr;
  Policy *volatile policies = nullptr;
  volatile int n = 0;
  volatile int64 removed = 0;
  PG_TRY();
  {
    begin_step("agent_journal retention: listing agents");
    bool ready = OidIsValid(get_extension_oid("agent_journal", true)) &&
                 OidIsValid(get_namespace_oid("agent_journal", true)) &&
                 OidIsValid(get_relname_relid("retention_settings",
                                              get_namespace_oid("agent_journal", true))) &&
                 // no retention passes on a distributed journal (yet): its
                 // apply_retention() refuses, the worker's pass stays idle
                 !agent_journal_on_citus();
    if (ready) {
      OwnerSwitch who = spi_begin();
      MemoryContext old = MemoryContextSwitchTo(cxt);
      Datum *a;
      Policy *p;
      n = candidates(&a, &p);
      agents = a;
      policies = p;
      MemoryContextSwitchTo(old);
      spi_end(who);
    }
    end_step();
    for (int i = 0; i < n; i++) {
      CHECK_FOR_INTERRUPTS();
      begin_step("agent_journal retention: compacting an agent");
      OwnerSwitch who = spi_begin();
      int64 r = retain_agent(agents[i], policies[i], PG_INT64_MAX);
      tally_add(TALLY_RETENTION_REMOVED, r);
      spi_end(who);
      end_step();
      removed = removed + r;
    }
  }
  PG_CATCH();
  {
    abort_step(outer);
  }
  PG_END_TRY();
  MemoryContextSwitchTo(outer);
  if (series_ttl_s > 0) delete_step("agent_journal: expiring metric series", expire_series, "metric series");
  delete_step("agent_journal: pruning the feed", feed_prune, "feed rows");
  MemoryContextDelete(cxt);
  pgstat_report_stat(true);
  pgstat_report_activity(STATE_IDLE, nullptr);
  if (removed > 0)
    ereport(DEBUG1, (errmsg("agent_journal retention removed %lld entries", (long long)removed)));
}

}  // namespace ajpg
