// The extension's own counts (saved states, entries removed by retention)
// in agent_journal.tallies: one row per (name, backend slot). A writer adds
// to its own backend's row in its own transaction, so the count is exactly
// as transactional as the change it counts, writers never wait for each
// other, and a render sums a handful of rows per name whatever the number
// of agents. As counter_slots (metrics.cpp): a slot whose row is held by a
// transaction still open (one this backend prepared, or a prepared one of
// an earlier backend with the same id) is skipped for the same id in the
// next range of MaxBackends.
#include "pg/journal.hpp"

extern "C" {
#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/twophase.h"
#include "executor/tuptable.h"
#include "storage/proc.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
}

namespace ajpg {
namespace {

struct TallyKey {
  const Rels *r;
  Datum name;
};

// Is (name, slot)'s row held by another transaction still open?
bool slot_busy(int32 slot_no, void *arg) {
  const TallyKey *k = static_cast<const TallyKey *>(arg);
  Relation heap = table_open(k->r->tallies, AccessShareLock);
  Relation index = index_open(k->r->tallies_pkey, AccessShareLock);
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

}  // namespace

void tally_add(const char *name, int64 delta) {
  const Rels &r = rels();
  if (delta == 0 || !OidIsValid(r.tallies) || !OidIsValid(r.tallies_pkey)) return;
  Datum name_d = CStringGetTextDatum(name);
  TallyKey key{&r, name_d};
  int32 slot = backend_slot(slot_busy, &key);
  // Every candidate busy (more prepared transactions than slots can only
  // happen if max_prepared_transactions was lowered): wait on our own.
  if (slot < 0) slot = MyBackendId;
  static SPIPlanPtr plan;
  static const Oid types[] = {TEXTOID, INT4OID, INT8OID};
  Datum args[3] = {name_d, Int32GetDatum(slot), Int64GetDatum(delta)};
  run_plan(&plan,
           "INSERT INTO agent_journal.tallies AS t (name, slot, value) VALUES ($1, $2, $3) "
           "ON CONFLICT (name, slot) DO UPDATE SET value = t.value OPERATOR(pg_catalog.+) EXCLUDED.value",
           3, types, args, nullptr, SPI_OK_INSERT);
}

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
