#include "core/journal_metrics.hpp"

namespace aj {

static void add(std::vector<Family> &out, const char *name, MetricType type, const char *help,
                double v, double created = 0) {
  Family f;
  f.name = name;
  f.type = type;
  f.help = help;
  Series s;
  s.value = v;
  s.created = created;
  f.series.push_back(std::move(s));
  out.push_back(std::move(f));
}

void append_journal_families(const JournalTotals &t, std::vector<Family> &out) {
  add(out, "agent_journal_agents", MetricType::Gauge, "Agents that have a journal", t.agents);
  add(out, "agent_journal_live_entries", MetricType::Gauge,
      "Journal entries not yet compacted", t.live_entries);
  add(out, "agent_journal_appended_entries_total", MetricType::Counter,
      "Journal entries ever appended (sum of the agents' latest sequences, forgotten agents included)", t.appended_entries, t.since);
  add(out, "agent_journal_compacted_entries_total", MetricType::Counter,
      "Journal entries removed by compaction", t.compacted_entries, t.since);
}

void append_lease_families(const LeaseTotals &t, std::vector<Family> &out) {
  add(out, "agent_journal_leases_active", MetricType::Gauge, "Agents with a live lease",
      static_cast<double>(t.active));
  if (!t.takeovers_rendered)
    add(out, kLeaseTakeoversFamily, MetricType::Counter, kLeaseTakeoversHelp, t.takeovers, t.since);
  if (t.has_fenced)
    add(out, "agent_journal_fenced_writes_total", MetricType::Counter,
        "Writes refused because they did not carry the agent's live lease (since server start)",
        static_cast<double>(t.fenced), t.fenced_since);
}

void append_state_families(int64_t saved_states, int64_t retention_removed, std::vector<Family> &out,
                           double since) {
  add(out, "agent_journal_saved_states", MetricType::Gauge, "Saved states (save_state) kept",
      static_cast<double>(saved_states));
  add(out, "agent_journal_retention_removed_entries_total", MetricType::Counter,
      "Journal entries removed by retention policies", static_cast<double>(retention_removed), since);
}

}  // namespace aj
