// Leases with fencing tokens: agent_journal.claim_agent, renew_lease,
// release_agent, and the lease check of every fenced writer (append,
// append_batch, compact).
//
// Design (README, "Leases and fencing"): the lease lives in the agent's
// state row (agent_state.lease, lease_worker, lease_claimed_at,
// lease_expires_at), which every writer already reads under the agent's
// lock, so a write that passes no lease pays nothing more. Claims, renewals
// and releases take the same lock: a write accepted under a lease commits
// before any takeover. Tokens come from one sequence (lease_tokens): they
// increase for every agent and are never handed out twice, so nothing per
// agent has to survive forget_agent for fencing. Time is the server's
// clock (GetCurrentTimestamp, as clock_timestamp()).
#include "pg/journal.hpp"
#include "pg/citus.hpp"

extern "C" {
#include "datatype/timestamp.h"
#include "utils/datetime.h"
}

extern "C" {
PG_FUNCTION_INFO_V1(aj_claim_agent);
PG_FUNCTION_INFO_V1(aj_renew_lease);
PG_FUNCTION_INFO_V1(aj_release_agent);
}

namespace ajpg {
namespace {

constexpr int MAX_WORKER_BYTES = 256;
constexpr int LEASE_GRAPH_KEEP = 1000;  // attempts kept per agent (README)
constexpr const char *TAKEOVERS = "agent_journal_lease_takeovers_total";

const char *agent_str(Datum agent) { return DatumGetCString(DirectFunctionCall1(uuid_out, agent)); }

// ttl: more than 0 and at most one day, compared as interval_cmp does (a
// month is 30 days, a day 24 hours). Returns now + ttl.
TimestampTz expiry_after(FunctionCallInfo fcinfo, int argno, TimestampTz now) {
  require_arg(fcinfo, argno, "ttl");
  Interval *ttl = PG_GETARG_INTERVAL_P(argno);
  double span = (double)ttl->time + ((double)ttl->day + (double)ttl->month * DAYS_PER_MONTH) *
                                        (double)USECS_PER_DAY;
  if (!(span > 0) || span > (double)USECS_PER_DAY)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("ttl must be more than 0 and at most 1 day, got %s",
                           DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(ttl))))));
  TimestampTz expires = DatumGetTimestampTz(
      DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(now), IntervalPGetDatum(ttl)));
  if (expires <= now)  // a day minus more than a day of time, around a DST change
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("ttl must be more than 0 and at most 1 day")));
  return expires;
}

char *worker_arg(FunctionCallInfo fcinfo, int argno) {
  require_arg(fcinfo, argno, "worker");
  text *w = PG_GETARG_TEXT_PP(argno);
  int len = VARSIZE_ANY_EXHDR(w);
  if (len < 1 || len > MAX_WORKER_BYTES)
    ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                    errmsg("worker must be 1 to %d bytes, got %d", MAX_WORKER_BYTES, len)));
  return text_to_cstring(w);
}

// Sets the lease's expiry (a holder extending its live lease).
void set_expiry(Datum agent, TimestampTz expires) {
  static SPIPlanPtr plan;
  static const Oid types[] = {UUIDOID, TIMESTAMPTZOID};
  Datum args[2] = {agent, TimestampTzGetDatum(expires)};
  if (run_plan(&plan,
               "UPDATE agent_journal.agent_state SET lease_expires_at = $2 "
               "WHERE agent_id OPERATOR(pg_catalog.=) $1",
               2, types, args, nullptr, SPI_OK_UPDATE) != 1)
    elog(ERROR, "agent_journal: lease row of agent %s is missing", agent_str(agent));
}

// 55006 for a lease call whose token is not the live lease.
void not_live(const Latest &l, TimestampTz now, int64 token, Datum agent) {
  if (l.lease_live(now))
    ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
                    errmsg("lease %lld is not the live lease of agent %s", (long long)token,
                           agent_str(agent)),
                    errdetail("The agent is leased to worker \"%s\" until %s.", l.lease_worker,
                              timestamptz_to_str(l.lease_expires)),
                    errhint("The lease expired or was taken over; stop writing to this agent.")));
  ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
                  errmsg("lease %lld is not the live lease of agent %s", (long long)token,
                         agent_str(agent)),
                  errdetail("The agent has no live lease."),
                  errhint("Claim the agent again with agent_journal.claim_agent().")));
}

// The lease functions' common start: checks, the agent's lock, its state.
Latest lease_begin(Datum agent, const OwnerSwitch &who) {
  lock_agent(DatumGetUUIDP(agent));
  Latest l = read_latest_locked(agent, who);
  check_serializable(l, agent);
  return l;
}

}  // namespace

bool lease_arg(FunctionCallInfo fcinfo, int argno, int64 *token) {
  if (PG_NARGS() <= argno || PG_ARGISNULL(argno)) return false;
  *token = PG_GETARG_INT64(argno);
  return true;
}

void check_lease(const Latest &l, bool has_token, int64 token, Datum agent) {
  if (!has_token && l.lease == 0) return;  // the hot path: never claimed, or released
  TimestampTz now = GetCurrentTimestamp();
  bool live = l.lease_live(now);
  if (has_token ? (live && token == l.lease) : !live) return;
  // The refused transaction rolls back: the count lives in shared memory.
  count_fenced_write();
  if (live)
    ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
                    errmsg("agent %s is leased to worker \"%s\" until %s", agent_str(agent),
                           l.lease_worker, timestamptz_to_str(l.lease_expires)),
                    has_token ? errdetail("The write carries lease %lld, which is not the live lease.",
                                          (long long)token)
                              : errdetail("The write carries no lease."),
                    errhint("Write with the lease claim_agent() returned, or wait until the lease "
                            "expires or is released.")));
  ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
                  errmsg("lease %lld is not the live lease of agent %s", (long long)token,
                         agent_str(agent)),
                  errdetail("The agent has no live lease: it expired or was released."),
                  errhint("Claim the agent again with agent_journal.claim_agent().")));
}

}  // namespace ajpg

using namespace ajpg;

Datum aj_claim_agent(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.claim_agent()");
  require_arg(fcinfo, 0, "agent_id");
  char *worker = worker_arg(fcinfo, 1);
  Datum agent = PG_GETARG_DATUM(0);
  (void)expiry_after(fcinfo, 2, GetCurrentTimestamp());  // argument checks before the lock

  OwnerSwitch who = spi_begin();
  Latest l = lease_begin(agent, who);
  TimestampTz now = GetCurrentTimestamp();
  TimestampTz expires = expiry_after(fcinfo, 2, now);
  if (l.lease_live(now)) {
    if (strcmp(l.lease_worker, worker) != 0) {  // another worker holds it
      spi_end(who);
      PG_RETURN_NULL();
    }
    // The holder again (a retry after a lost reply): same token, extended.
    set_expiry(agent, expires);
    spi_end(who);
    PG_RETURN_INT64(l.lease);
  }
  // A new attempt: a new token. A takeover if another worker's lease
  // expired without a release.
  bool takeover = l.lease != 0 && strcmp(l.lease_worker, worker) != 0;
  static SPIPlanPtr p_claim, p_graph, p_trim;
  static const Oid t_claim[] = {UUIDOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
  Datum a_claim[4] = {agent, CStringGetTextDatum(worker), TimestampTzGetDatum(now),
                      TimestampTzGetDatum(expires)};
  run_plan(&p_claim,
           "INSERT INTO agent_journal.agent_state AS s "
           "(agent_id, lease, lease_worker, lease_claimed_at, lease_expires_at, lease_attempts) "
           "VALUES ($1, pg_catalog.nextval('agent_journal.lease_tokens'::pg_catalog.regclass), "
           "        $2, $3, $4, 1) "
           "ON CONFLICT (agent_id) DO UPDATE SET lease = EXCLUDED.lease, "
           "  lease_worker = EXCLUDED.lease_worker, lease_claimed_at = EXCLUDED.lease_claimed_at, "
           "  lease_expires_at = EXCLUDED.lease_expires_at, "
           "  lease_attempts = s.lease_attempts OPERATOR(pg_catalog.+) 1 "
           "RETURNING s.lease, s.lease_attempts",
           4, t_claim, a_claim, nullptr, SPI_OK_INSERT_RETURNING);
  bool isnull;
  int64 token = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
  int32 attempt = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
  if (!l.known) tally_add(TALLY_AGENTS, 1);  // the claim created the state row
  if (OidIsValid(rels().lease_graph)) {
    static const Oid t_graph[] = {UUIDOID, INT4OID, TEXTOID, INT8OID, TIMESTAMPTZOID};
    Datum a_graph[5] = {agent, Int32GetDatum(attempt), a_claim[1], Int64GetDatum(token),
                        TimestampTzGetDatum(now)};
    run_plan(&p_graph,
             "INSERT INTO agent_journal.lease_graph AS g (agent_id, attempt, worker, lease, claimed_at) "
             "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent_id, attempt) DO UPDATE SET "
             "worker = EXCLUDED.worker, lease = EXCLUDED.lease, claimed_at = EXCLUDED.claimed_at",
             5, t_graph, a_graph, nullptr, SPI_OK_INSERT);
    if (attempt > LEASE_GRAPH_KEEP) {
      static const Oid t_trim[] = {UUIDOID, INT4OID};
      Datum a_trim[2] = {agent, Int32GetDatum(attempt - LEASE_GRAPH_KEEP)};
      run_plan(&p_trim,
               "DELETE FROM agent_journal.lease_graph WHERE agent_id OPERATOR(pg_catalog.=) $1 "
               "AND attempt OPERATOR(pg_catalog.<=) $2",
               2, t_trim, a_trim, nullptr, SPI_OK_DELETE);
    }
  }
  if (takeover) {
    // On a distributed journal this runs on the agent's node, whose
    // metric tables no render reads: a tally there, summed by the
    // coordinator's render (metrics.cpp).
    if (agent_journal_distributed())
      tally_add(TALLY_LEASE_TAKEOVERS, 1);
    else
      count_internal(TAKEOVERS, "Claims that took an agent over after another worker's lease expired");
  }
  spi_end(who);
  PG_RETURN_INT64(token);
}

Datum aj_renew_lease(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.renew_lease()");
  require_arg(fcinfo, 0, "agent_id");
  require_arg(fcinfo, 1, "lease");
  Datum agent = PG_GETARG_DATUM(0);
  int64 token = PG_GETARG_INT64(1);
  (void)expiry_after(fcinfo, 2, GetCurrentTimestamp());
  OwnerSwitch who = spi_begin();
  Latest l = lease_begin(agent, who);
  TimestampTz now = GetCurrentTimestamp();
  if (!l.lease_live(now) || l.lease != token) not_live(l, now, token, agent);
  TimestampTz expires = expiry_after(fcinfo, 2, now);
  set_expiry(agent, expires);
  spi_end(who);
  PG_RETURN_TIMESTAMPTZ(expires);
}

Datum aj_release_agent(PG_FUNCTION_ARGS) {
  require_writable("agent_journal.release_agent()");
  require_arg(fcinfo, 0, "agent_id");
  require_arg(fcinfo, 1, "lease");
  Datum agent = PG_GETARG_DATUM(0);
  int64 token = PG_GETARG_INT64(1);
  OwnerSwitch who = spi_begin();
  Latest l = lease_begin(agent, who);
  if (!l.lease_live(GetCurrentTimestamp()) || l.lease != token) {
    spi_end(who);
    PG_RETURN_BOOL(false);
  }
  static SPIPlanPtr plan;
  static const Oid types[] = {UUIDOID};
  Datum args[1] = {agent};
  run_plan(&plan,
           "UPDATE agent_journal.agent_state SET lease = NULL, lease_worker = NULL, "
           "lease_claimed_at = NULL, lease_expires_at = NULL "
           "WHERE agent_id OPERATOR(pg_catalog.=) $1",
           1, types, args, nullptr, SPI_OK_UPDATE);
  spi_end(who);
  PG_RETURN_BOOL(true);
}
