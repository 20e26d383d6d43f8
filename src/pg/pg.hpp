// The one place that includes PostgreSQL headers for the glue in src/pg.
// postgres.h first, everything inside extern "C".
#pragma once

extern "C" {
#include "postgres.h"

#include "access/detoast.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "access/skey.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
}

#include <cstring>
#include <exception>

namespace ajpg {

// GUCs (module.cpp).
extern int max_event_bytes;
extern int max_series_per_family;
extern int snapshot_max_age_seconds;
extern char *service_namespace;
extern int series_ttl_s;  // agent_journal.series_ttl (0 = never)

// The C++/PostgreSQL boundary. Runs `f` (C++ that may throw, must not call
// anything that ereports) and returns false with the exception's message in
// `buf` if it threw. The caller then leaves every C++ scope and ereports.
template <typename F>
bool run_cpp(F &&f, char *buf, size_t buflen) noexcept {
  try {
    f();
    return true;
  } catch (const std::exception &e) {
    strlcpy(buf, e.what(), buflen);
  } catch (...) {
    strlcpy(buf, "internal error in agent_journal", buflen);
  }
  return false;
}

// Writers refuse to run in a read-only transaction or on a hot standby
// (SQLSTATE 25006), before they take any lock.
void require_writable(const char *fn);

// NULL argument check: ERROR 22004 naming the argument.
void require_arg(FunctionCallInfo fcinfo, int argno, const char *name);

// Lookups by name (the extension's relations, its owner) kept across
// transactions. A cache filled at `at` stays good until the next
// invalidation of any relation or schema (DDL of any backend, this
// transaction's own, a rollback undoing one: pg_class and pg_namespace
// changes all send one); with Citus preloaded only for the transaction
// (its metadata changes which relations answer for a name).
struct CatalogStamp {
  uint64 generation = 0;
  LocalTransactionId lxid = InvalidLocalTransactionId;
};
CatalogStamp catalog_stamp();
bool catalog_stamp_current(const CatalogStamp &at);

// Prepare `sql` once per backend and keep the plan (SPI_keepplan).
SPIPlanPtr cached_plan(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *argtypes);

// Runs the cached plan for `sql` (prepared on first use), checks that SPI
// answered `expect_rc`, and returns SPI_processed. `nulls` as in
// SPI_execute_plan (nullptr: none).
uint64 run_plan(SPIPlanPtr *slot, const char *sql, int nargs, const Oid *types, Datum *args,
                const char *nulls, int expect_rc, bool read_only = false, long count = 0);
// Column `col` of the first row of the last SPI result as int64.
int64 result_int8(int col = 1);

// Is the row that `keys` find in `index` (of `heap`) being changed or
// inserted by another transaction still open? A dirty-snapshot probe, as
// unique checks do. (counter_slots, tallies) With `found`, the row's
// latest version is left there (the slot is cleared when there is none).
bool held_by_other(Relation heap, Relation index, ScanKey keys, int nkeys,
                   TupleTableSlot *found = nullptr);
// This backend's slot among per-backend rows: its backend id, unless that
// slot's row is held by another transaction still open (one this backend
// prepared, or a prepared one of an earlier backend with the same id); then
// the same id in the next range of MaxBackends, as many ranges as there
// can be prepared transactions. -1 if every candidate is busy.
int32 backend_slot(bool (*busy)(int32 slot, void *arg), void *arg);

// Transaction-scoped exclusive lock on one agent's journal: an advisory lock
// tag (no WAL, released at commit/abort) in a key space of its own
// (locktag_field4 = AJ_LOCK_SPACE) so it never collides with the
// application's pg_advisory_lock keys.
constexpr uint16 AJ_LOCK_SPACE = 0x414A;  // "AJ"
void lock_agent(const pg_uuid_t *agent);

// Run SPI as the extension's owner (the owner of its tables), like a
// SECURITY DEFINER function but without the per-call GUC save/restore. The
// caller's privileges were checked by EXECUTE on the function before this.
// Transaction / subtransaction abort restores the previous user.
struct OwnerSwitch {
  Oid saved_user;
  int saved_sec;
};
OwnerSwitch become_owner();
void restore_user(const OwnerSwitch &s);

// Connect SPI and switch to the owner; finish and switch back.
OwnerSwitch spi_begin();
void spi_end(const OwnerSwitch &s);

// Tenants (common.cpp / journal.cpp). Inside SPI, as the extension owner.
// Admins: superusers and roles with the privileges of a role granted
// 'admin' by grant_access.
bool is_admin(Oid role);
// May `caller` use an agent bound to `owner`? (privileges of owner, or admin;
// an owner role that was dropped leaves the agent to admins).
bool tenant_allows(Oid caller, Oid owner);
// ERROR 42501 unless the calling user may use the agent.
void check_agent_access(Datum agent, const OwnerSwitch &who);

}  // namespace ajpg
