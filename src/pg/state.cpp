// Resuming in one call: agent_journal.save_state, resume's guard
// (resume_from), entry_by_key, replay_backward's guard (backward_guard),
// fork_agent.
//
// A saved state covers an agent's entries up to its through_sequence.
// resume() (inlined SQL, like replay) returns the latest one, then the
// entries after it; compaction and retention keep what that needs
// (README, "Resume and retention").
#include "pg/journal.hpp"

extern "C" {
#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "parser/parse_func.h"
#include "storage/proc.h"
#include "utils/acl.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(aj_save_state);
PG_FUNCTION_INFO_V1(aj_entry_by_key);
PG_FUNCTION_INFO_V1(aj_fork_agent);
PG_FUNCTION_INFO_V1(aj_resume_guard);
PG_FUNCTION_INFO_V1(aj_resume_from);
PG_FUNCTION_INFO_V1(aj_backward_guard);
PG_FUNCTION_INFO_V1(aj_replay_backward);
}

namespace ajpg {
namespace {

const char *agent_str(Datum agent) { return DatumGetCString(DirectFunctionCall1(uuid_out, agent)); }

const Oid T_UUID_INT8[] = {UUIDOID, INT8OID};

// The inlined functions' guards answer only callers who may execute the
// function they guard (PUBLIC may execute the guard itself).
void require_execute(const char *fn, int nargs, const Oid *argtypes) {
  Oid f = LookupFuncName(list_make2(makeString(pstrdup("agent_journal")), makeString(pstrdup(fn))),
                         nargs, argtypes, true);
  if (!OidIsValid(f))
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("function agent_journal.%s is missing", fn),
                    errhint("Reinstall the extension.")));
  if (pg_proc_aclcheck(f, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
    aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, fn);
}

int64 max_entries_arg(FunctionCallInfo fcinfo, int argno) {
  if (PG_ARGISNULL(argno)) return -1;
  int64 m = PG_GETARG_INT64(argno);
  if (m < 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("max_entries must be >= 0, got %lld", (long long)m)));
  return m;
}


// The iteration of the agent's entry `seq`, or -1 if it is not live.
int32 iteration_of(Datum agent, int64 seq) {
  static SPIPlanPtr plan;
  Datum args[2] = {agent, Int64GetDatum(seq)};
  run_plan(&plan,
           "SELECT iteration FROM agent_journal.entries WHERE agent_id OPERATOR(pg_catalog.=) $1 "
           "AND sequence OPERATOR(pg_catalog.=) $2",
           2, T_UUID_INT8, args, nullptr, SPI_OK_SELECT, false);
  if (SPI_processed == 0) return -1;
  bool isnull;
  return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

void require_states_schema();

// The latest saved state's through_sequence (0: none) in the statement's
// snapshot: a backward probe of saved_states_pkey, no SPI.
int64 latest_state_probe(Datum agent) {
  const Rels &r = rels();
  Relation heap = table_open(r.saved_states, AccessShareLock);
  Relation index = index_open(r.saved_states_pkey, AccessShareLock);
  ScanKeyData key;
  ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, agent);
  IndexScanDesc scan = index_beginscan(heap, index, GetActiveSnapshot(), 1, 0);
  index_rescan(scan, &key, 1, nullptr, 0);
  TupleTableSlot *slot = table_slot_create(heap, nullptr);
  int64 from = 0;
  if (index_getnext_slot(scan, BackwardScanDirection, slot)) {
    AttrNumber att = InvalidAttrNumber;
    TupleDesc desc = RelationGetDescr(heap);
    for (int i = 0; i < desc->natts; i++) {
      Form_pg_attribute a = TupleDescAttr(desc, i);
      if (!a->attisdropped && a->atttypid == INT8OID && strcmp(NameStr(a->attname), "through_sequence") == 0)
        att = a->attnum;
    }
    if (att == InvalidAttrNumber)
      ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                      errmsg("agent_journal.saved_states has no bigint column \"through_sequence\""),
                      errhint("Undo the ALTER TABLE on the extension's table.")));
    bool isnull;
    from = DatumGetInt64(slot_getattr(slot, att, &isnull));
  }
  ExecDropSingleTupleTableSlot(slot);
  index_endscan(scan);
  index_close(index, AccessShareLock);
  table_close(heap, AccessShareLock);
  return from;
}

// What resume's guard and its scan bound need of an agent: its latest
// state and compaction point, after the caller's tenant check. The planner
// evaluates both (stable, constant arguments) while estimating, and the
// executor again: the answer is kept for as long as the user, the command
// and what the snapshot sees stay the same (answer_key), so a resume does
// this once.
struct ResumeInfo {
  bool valid = false;
  AnswerKey key{};
  pg_uuid_t agent{};
  int64 from = 0, compacted = 0;
};
ResumeInfo resume_cache;

const ResumeInfo &resume_info(Datum agent) {
  AnswerKey key{};
  bool keyed = answer_key(&key);
  const pg_uuid_t *a = DatumGetUUIDP(agent);
  if (keyed && resume_cache.valid && resume_cache.key == key &&
      memcmp(&resume_cache.agent, a, sizeof(pg_uuid_t)) == 0)
    return resume_cache;
  require_states_schema();
  Latest l = check_agent_read(agent);
  int64 from = latest_state_probe(agent);
  resume_cache.valid = keyed;
  resume_cache.key = key;
  resume_cache.agent = *a;
  resume_cache.from = from;
  resume_cache.compacted = l.compacted;
  return resume_cache;
}

void require_states_schema() {
  if (!OidIsValid(rels().saved_states) || !OidIsValid(rels().saved_states_pkey))
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("agent_journal.saved_states is missing"),
                    errhint("ALTER EXTENSION agent_journal UPDATE")));
}

}  // namespace
}  // namespace ajpg

using namespace ajpg;

// save_state(agent_id, state, through_sequence, lease): the checks of a
// fenced writer (tenant, lease), then the range: 1 <= through <= latest,
// not below the compaction point.
Datum aj_save_state(PG_FUNCTION_ARGS) {
  journal_agent_arg(fcinfo);
  require_writable("agent_journal.save_state()");
  require_arg(fcinfo, 0, "agent_id");
  require_arg(fcinfo, 1, "state");
  check_size(toast_raw_datum_size(PG_GETARG_DATUM(1)), "state");
  Datum agent = PG_GETARG_DATUM(0);
  Datum state = PG_GETARG_DATUM(1);
  int64 token = 0;
  bool has_token = lease_arg(fcinfo, 3, &token);

  OwnerSwitch who = spi_begin();
  require_states_schema();
  lock_agent(DatumGetUUIDP(agent));
  Latest l = read_latest_locked(agent, who);
  check_lease(l, has_token, token, agent);
  check_serializable(l, agent);
  int64 through = PG_ARGISNULL(2) ? l.sequence : PG_GETARG_INT64(2);
  if (through < 1 || through > l.sequence)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("through_sequence must be between 1 and the latest sequence of agent %s "
                           "(%lld), got %lld",
                           agent_str(agent), (long long)l.sequence, (long long)through)));
  if (through < l.compacted)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("through_sequence %lld is below the compaction point of agent %s (%lld)",
                           (long long)through, agent_str(agent), (long long)l.compacted)));
  int32 iteration = iteration_of(agent, through);
  if (iteration < 0) iteration = l.compacted_iteration;  // through == the compaction point
  static SPIPlanPtr plan;
  static const Oid types[] = {UUIDOID, INT8OID, INT4OID, JSONBOID};
  Datum args[4] = {agent, Int64GetDatum(through), Int32GetDatum(iteration), state};
  // saved_at: the proposed row's default (clock_timestamp()), as EXCLUDED (Citus
  // refuses a volatile function in DO UPDATE on a distributed table)
  run_plan(&plan,
           "INSERT INTO agent_journal.saved_states AS s (agent_id, through_sequence, iteration, state) "
           "VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id, through_sequence) DO UPDATE SET "
           "state = EXCLUDED.state, iteration = EXCLUDED.iteration, "
           "saved_at = EXCLUDED.saved_at "
           "RETURNING (s.xmax OPERATOR(pg_catalog.=) '0'::pg_catalog.xid)",
           4, types, args, nullptr, SPI_OK_INSERT_RETURNING);
  bool isnull;
  bool inserted = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
  if (inserted) tally_add(TALLY_SAVED_STATES, 1);
  spi_end(who);
  PG_RETURN_INT64(through);
}

// resume's guard, its LIMIT: the executor evaluates it once, before the
// first row, whatever plan it chose. EXECUTE on resume, max_entries, the
// caller's access to the agent, and no hole between the latest state and
// the live entries. Returns max_entries plus the state row (NULL: none).
Datum aj_resume_guard(PG_FUNCTION_ARGS) {
  journal_agent_arg(fcinfo);
  static const Oid args_t[] = {UUIDOID, INT8OID};
  require_execute("resume", 2, args_t);
  require_arg(fcinfo, 0, "agent_id");
  int64 max_entries = max_entries_arg(fcinfo, 1);
  Datum agent = PG_GETARG_DATUM(0);
  const ResumeInfo &r = resume_info(agent);
  int64 from = r.from;
  if (from > 0 && r.compacted > from)
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("entries after the latest saved state of agent %s (through %lld) were "
                           "compacted (through %lld)",
                           agent_str(agent), (long long)from, (long long)r.compacted),
                    errhint("Save a state at or after the compaction point, or replay the live "
                            "entries with replay().")));
  if (max_entries < 0) PG_RETURN_NULL();
  PG_RETURN_INT64(from > 0 && max_entries < PG_INT64_MAX ? max_entries + 1 : max_entries);
}

// The bound of resume's index scan: the latest state's through_sequence
// (0: none), for callers who may execute resume and see the agent.
Datum aj_resume_from(PG_FUNCTION_ARGS) {
  journal_agent_arg(fcinfo);
  static const Oid args_t[] = {UUIDOID, INT8OID};
  require_execute("resume", 2, args_t);
  require_arg(fcinfo, 0, "agent_id");
  PG_RETURN_INT64(resume_info(PG_GETARG_DATUM(0)).from);
}

// replay_backward's arguments (agent_id, before_sequence, max_entries),
// checked; returns max_entries, or -1 for none (NULL). For its guard and
// its C implementation alike.
static int64 backward_args(FunctionCallInfo fcinfo) {
  journal_agent_arg(fcinfo);
  require_arg(fcinfo, 0, "agent_id");
  if (!PG_ARGISNULL(1) && PG_GETARG_INT64(1) < 1)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("before_sequence must be >= 1, got %lld", (long long)PG_GETARG_INT64(1))));
  return max_entries_arg(fcinfo, 2);
}

// replay_backward's guard: EXECUTE on replay_backward, before_sequence,
// max_entries, the caller's access. Returns max_entries (NULL: no limit).
Datum aj_backward_guard(PG_FUNCTION_ARGS) {
  static const Oid args_t[] = {UUIDOID, INT8OID, INT8OID, TEXTARRAYOID};
  require_execute("replay_backward", 4, args_t);
  int64 max_entries = backward_args(fcinfo);
  (void)check_agent_read(PG_GETARG_DATUM(0));
  if (max_entries < 0) PG_RETURN_NULL();
  PG_RETURN_INT64(max_entries);
}

// replay_backward as a C function (agent_journal.distribute() swaps the SQL
// one for it on every node of a distributed journal: Citus cannot plan the
// inlined SQL function's parameterized query). The same checks as
// backward_guard, then the rows newest first through SPI: on the agent's
// node a read of its shard, elsewhere routed by Citus, a page at a time.
Datum aj_replay_backward(PG_FUNCTION_ARGS) {
  int64 max_entries = backward_args(fcinfo);
  InitMaterializedSRF(fcinfo, 0);
  ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
  Datum agent = PG_GETARG_DATUM(0);
  OwnerSwitch who = spi_begin();
  check_tenant(read_latest(agent, View::Statement), who, agent);
  static SPIPlanPtr plan;
  static const Oid types[] = {UUIDOID, INT8OID, TEXTARRAYOID};
  if (plan == nullptr) {
    SPIPlanPtr p = SPI_prepare(
        "SELECT sequence, iteration, kind, recorded_at, event FROM agent_journal.entries "
        "WHERE agent_id OPERATOR(pg_catalog.=) $1 AND sequence OPERATOR(pg_catalog.<) $2 "
        "AND ($3 IS NULL OR kind OPERATOR(pg_catalog.=) ANY ($3)) ORDER BY sequence DESC",
        3, const_cast<Oid *>(types));
    if (p == nullptr || SPI_keepplan(p) != 0) elog(ERROR, "agent_journal: SPI_prepare failed");
    plan = p;
  }
  Datum args[3] = {agent, Int64GetDatum(PG_ARGISNULL(1) ? PG_INT64_MAX : PG_GETARG_INT64(1)),
                   PG_ARGISNULL(3) ? (Datum)0 : PG_GETARG_DATUM(3)};
  const char nulls[3] = {' ', ' ', PG_ARGISNULL(3) ? 'n' : ' '};
  cursor_into(rsinfo, plan, args, nulls, max_entries < 0 ? PG_INT64_MAX : max_entries);
  spi_end(who);
  return (Datum)0;
}

// entry_by_key(agent_id, idempotency_key): the entries the key's request
// wrote (a probe of idempotency_keys, then of entries_pkey); none if the
// key is unknown or they were compacted.
Datum aj_entry_by_key(PG_FUNCTION_ARGS) {
  journal_agent_arg(fcinfo);
  require_arg(fcinfo, 0, "agent_id");
  require_arg(fcinfo, 1, "idempotency_key");
  check_key(PG_GETARG_TEXT_PP(1));
  InitMaterializedSRF(fcinfo, 0);
  ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
  Datum agent = PG_GETARG_DATUM(0);
  OwnerSwitch who = spi_begin();
  check_tenant(read_latest(agent, View::Statement), who, agent);
  static SPIPlanPtr plan;
  static const Oid types[] = {UUIDOID, TEXTOID};
  Datum args[2] = {agent, PG_GETARG_DATUM(1)};
  run_plan(&plan,
           "SELECT first_sequence, last_sequence FROM agent_journal.idempotency_keys "
           "WHERE agent_id OPERATOR(pg_catalog.=) $1 AND idempotency_key OPERATOR(pg_catalog.=) $2",
           2, types, args, nullptr, SPI_OK_SELECT, true);
  if (SPI_processed == 1) {
    bool isnull;
    int64 first = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
    int64 last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
    entries_into(rsinfo, agent, first, last, PG_INT64_MAX);
  }
  spi_end(who);
  return (Datum)0;
}

// fork_agent(source_agent, through_sequence, new_agent): new_agent (no
// journal yet) gets the source's live entries up to through_sequence with
// their numbers and times, its compaction point, its tenant binding, the
// keys of those entries and the latest saved state covering no more; no
// lease, no policy. Both agents' locks are taken in uuid order.
Datum aj_fork_agent(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.fork_agent()");
  require_arg(fcinfo, 0, "source_agent");
  require_arg(fcinfo, 1, "through_sequence");
  require_arg(fcinfo, 2, "new_agent");
  Datum src = PG_GETARG_DATUM(0);
  int64 through = PG_GETARG_INT64(1);
  Datum dst = PG_GETARG_DATUM(2);
  int cmp = memcmp(DatumGetUUIDP(src)->data, DatumGetUUIDP(dst)->data, UUID_LEN);
  if (cmp == 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("new_agent must differ from source_agent")));

  OwnerSwitch who = spi_begin();
  require_states_schema();
  lock_agent(DatumGetUUIDP(cmp < 0 ? src : dst));
  lock_agent(DatumGetUUIDP(cmp < 0 ? dst : src));
  Latest ls = read_latest_locked(src, who);
  Latest ln = read_latest_locked(dst, who);
  check_serializable(ls, src);
  check_serializable(ln, dst);
  if (ln.sequence != 0 || ln.has_entry)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("new_agent %s already has a journal (latest sequence %lld)",
                           agent_str(dst), (long long)ln.sequence),
                    errhint("Fork onto a new agent id, or forget_agent() it first.")));
  check_lease(ln, false, 0, dst);  // a live lease on new_agent: its holder writes there
  if (!ls.known || ls.sequence == 0)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("source_agent %s has no journal", agent_str(src))));
  if (through < ls.compacted || through > ls.sequence || through < 1)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("through_sequence must be between %lld and %lld (the compaction point "
                           "%lld and the latest sequence of agent %s), got %lld",
                           (long long)Max(ls.compacted, 1), (long long)ls.sequence,
                           (long long)ls.compacted, agent_str(src), (long long)through)));
  // No policy: one set on new_agent before goes (the fork is a new agent).
  static SPIPlanPtr p_policy;
  Datum a1[1] = {dst};
  static const Oid t1[] = {UUIDOID};
  run_plan(&p_policy,
           "DELETE FROM agent_journal.retention_settings WHERE agent_id OPERATOR(pg_catalog.=) $1", 1,
           t1, a1, nullptr, SPI_OK_DELETE);
  static SPIPlanPtr p_entries, p_state, p_keys, p_saved;
  static const Oid t3[] = {UUIDOID, UUIDOID, INT8OID};
  Datum a3[3] = {src, dst, Int64GetDatum(through)};
  run_plan(&p_entries,
           "INSERT INTO agent_journal.entries (agent_id, sequence, iteration, kind, recorded_at, event) "
           "SELECT $2, e.sequence, e.iteration, e.kind, e.recorded_at, e.event "
           "FROM agent_journal.entries e WHERE e.agent_id OPERATOR(pg_catalog.=) $1 "
           "AND e.sequence OPERATOR(pg_catalog.<=) $3 ORDER BY e.sequence",
           3, t3, a3, nullptr, SPI_OK_INSERT);
  run_plan(&p_state,
           "INSERT INTO agent_journal.agent_state AS n "
           "(agent_id, compacted_through, compacted_iteration, owner, forked_from, forked_from_sequence) "
           "SELECT $2, s.compacted_through, s.compacted_iteration, s.owner, $1, $3 "
           "FROM agent_journal.agent_state s WHERE s.agent_id OPERATOR(pg_catalog.=) $1 "
           "ON CONFLICT (agent_id) DO UPDATE SET compacted_through = EXCLUDED.compacted_through, "
           "compacted_iteration = EXCLUDED.compacted_iteration, owner = EXCLUDED.owner, "
           "forked_from = EXCLUDED.forked_from, forked_from_sequence = EXCLUDED.forked_from_sequence, "
           "lease = NULL, lease_worker = NULL, lease_claimed_at = NULL, lease_expires_at = NULL",
           3, t3, a3, nullptr, SPI_OK_INSERT);
  run_plan(&p_keys,
           "INSERT INTO agent_journal.idempotency_keys "
           "(agent_id, idempotency_key, first_sequence, last_sequence, request_hash, created_at) "
           "SELECT $2, k.idempotency_key, k.first_sequence, k.last_sequence, k.request_hash, k.created_at "
           "FROM agent_journal.idempotency_keys k WHERE k.agent_id OPERATOR(pg_catalog.=) $1 "
           "AND k.last_sequence OPERATOR(pg_catalog.<=) $3",
           3, t3, a3, nullptr, SPI_OK_INSERT);
  // The latest state it can resume from: covering no more than the fork,
  // and not below the compaction point (the entries after it are live).
  static const Oid t4[] = {UUIDOID, UUIDOID, INT8OID, INT8OID};
  Datum a4[4] = {src, dst, Int64GetDatum(through), Int64GetDatum(ls.compacted)};
  uint64 states = run_plan(
      &p_saved,
      "INSERT INTO agent_journal.saved_states (agent_id, through_sequence, iteration, state, saved_at) "
      "SELECT $2, s.through_sequence, s.iteration, s.state, s.saved_at "
      "FROM agent_journal.saved_states s WHERE s.agent_id OPERATOR(pg_catalog.=) $1 "
      "AND s.through_sequence OPERATOR(pg_catalog.<=) $3 "
      "AND s.through_sequence OPERATOR(pg_catalog.>=) $4 "
      "ORDER BY s.through_sequence DESC LIMIT 1",
      4, t4, a4, nullptr, SPI_OK_INSERT);
  if (states > 0) tally_add(TALLY_SAVED_STATES, (int64)states);
  // As the walk would count it: sequences through `through`, compacted
  // through the source's compaction point.
  tally_add(TALLY_APPENDED, through);
  tally_add(TALLY_COMPACTED, ls.compacted);
  if (!ln.known) tally_add(TALLY_AGENTS, 1);
  // The copied entries are new entries of new_agent for feed consumers.
  feed_note(dst, ls.compacted + 1, through);
  spi_end(who);
  PG_RETURN_INT64(through);
}
