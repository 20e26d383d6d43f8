#include "core/journal_metrics.hpp"

namespace aj {

static void add(std::vector<Family> &out, const char *name, MetricType type, const char *help,
                int64_t v) {
  Family f;
  f.name = name;
  f.type = type;
  f.help = help;
  Series s;
  s.value = static_cast<double>(v);
  f.series.push_back(std::move(s));
  out.push_back(std::move(f));
}

void append_journal_families(const JournalTotals &t, std::vector<Family> &out) {
  add(out, "agent_journal_agents", MetricType::Gauge, "Agents that have a journal", t.agents);
  add(out, "agent_journal_live_entries", MetricType::Gauge,
      "Journal entries not yet compacted", t.live_entries);
  add(out, "agent_journal_appended_entries_total", MetricType::Counter,
      "Journal entries ever appended (sum of the agents' latest sequences)", t.appended_entries);
  add(out, "agent_journal_compacted_entries_total", MetricType::Counter,
      "Journal entries removed by compaction", t.compacted_entries);
}

}  // namespace aj
