// Module entry: the magic block and the GUCs (agent_journal.*).
#include "pg/pg.hpp"

extern "C" {
PG_MODULE_MAGIC;
void _PG_init(void);
}

namespace ajpg {
int max_event_bytes = 8 * 1024 * 1024;
int max_series_per_family = 10000;
int snapshot_max_age_seconds = 0;
}  // namespace ajpg

void _PG_init(void) {
  DefineCustomIntVariable(
      "agent_journal.max_event_bytes",
      "Largest event (uncompressed jsonb size) that append and append_batch accept.",
      "Larger events are rejected with SQLSTATE 54000.", &ajpg::max_event_bytes,
      8 * 1024 * 1024, 1, MaxAllocSize / 2, PGC_SUSET, GUC_UNIT_BYTE, nullptr, nullptr,
      nullptr);
  DefineCustomIntVariable(
      "agent_journal.max_series_per_family",
      "Most series rendered per metric family; the rest are dropped and counted.",
      nullptr, &ajpg::max_series_per_family, 10000, 1, INT_MAX, PGC_SUSET, 0, nullptr,
      nullptr, nullptr);
  DefineCustomIntVariable(
      "agent_journal.snapshot_max_age",
      "A service whose current snapshot is older than this is not rendered (0 = no limit).",
      nullptr, &ajpg::snapshot_max_age_seconds, 0, 0, INT_MAX, PGC_SUSET, GUC_UNIT_S,
      nullptr, nullptr, nullptr);
  MarkGUCPrefixReserved("agent_journal");
}
