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
  double since = 0;               // when the counters started counting (Unix epoch s; 0 = unknown)
};

// Leases (schema 0.5.0).
struct LeaseTotals {
  int64_t active = 0;              // live leases
  bool takeovers_rendered = false; // the takeovers counter has a series already
  bool has_fenced = false;         // fenced writes are counted (library preloaded)
  uint64_t fenced = 0;             // writes refused by 55006 since server start
  double fenced_since = 0;         // server start, Unix epoch seconds
  double since = 0;                // the journal counters' start (the takeovers placeholder's)
  double takeovers = 0;            // the placeholder's value (a distributed journal's tally)
};

constexpr const char *kLeaseTakeoversFamily = "agent_journal_lease_takeovers_total";
constexpr const char *kLeaseTakeoversHelp =
    "Claims that took an agent over after another worker's lease expired";

// agent_journal_leases_active, agent_journal_lease_takeovers_total (0 until
// the first takeover writes its series), agent_journal_fenced_writes_total
// (when counted; created at server start).
void append_lease_families(const LeaseTotals &t, std::vector<Family> &out);

// agent_journal_saved_states (gauge), agent_journal_retention_removed_entries_total.
void append_state_families(int64_t saved_states, int64_t retention_removed, std::vector<Family> &out,
                           double since = 0);

// agent_journal_agents, agent_journal_live_entries,
// agent_journal_appended_entries_total, agent_journal_compacted_entries_total.
void append_journal_families(const JournalTotals &t, std::vector<Family> &out);

}  // namespace aj
