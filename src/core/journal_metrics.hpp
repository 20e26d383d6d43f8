// The journal's own metric families, from per-database totals.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model.hpp"

namespace aj {

struct JournalTotals {
  int64_t agents = 0;             // agents with a journal (state row)
  int64_t live_entries = 0;       // entries not compacted
  int64_t appended_entries = 0;   // sum of latest sequences
  int64_t compacted_entries = 0;  // sum of compaction points
};

// agent_journal_agents, agent_journal_live_entries,
// agent_journal_appended_entries_total, agent_journal_compacted_entries_total.
void append_journal_families(const JournalTotals &t, std::vector<Family> &out);

}  // namespace aj
