// libFuzzer target: arbitrary bytes -> aj::parse_snapshot.
//  - only std::invalid_argument may escape, its message starting with
//    "snapshot" and valid UTF-8;
//  - an accepted snapshot holds finite, non-negative numbers (no -0), and
//    validate_snapshot accepts the same document parsed without the guard;
//  - its families (two services, so families are shared) render in every
//    format without dropping a single series.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/exposition.hpp"
#include "core/snapshot.hpp"
#include "fuzz_common.hpp"

namespace {

using aj::fuzz::die;

void check_number(double v, const char *what) {
  if (!std::isfinite(v) || v < 0 || std::signbit(v)) {
    die("parse_snapshot", std::string(what) + " accepted as " + aj::format_double(v));
  }
}

void check_values(const aj::Snapshot &s) {
  check_number(s.timestamp, "timestamp");
  check_number(s.scheduler.uptime_seconds, "scheduler.uptime_seconds");
  check_number(s.scheduler.load_factor, "scheduler.load_factor");
  check_number(s.task_manager.average_uptime_seconds, "task_manager.average_uptime_seconds");
  check_number(s.load_balancer.memory_utilization, "load_balancer.memory_utilization");
  check_number(s.load_balancer.cpu_utilization, "load_balancer.cpu_utilization");
  check_number(s.load_balancer.average_allocation_time_ms,
               "load_balancer.average_allocation_time_ms");
  check_number(s.system.memory_usage_mb, "system.memory_usage_mb");
  check_number(s.system.cpu_usage_percent, "system.cpu_usage_percent");
  if (s.compaction) {
    if (s.compaction->context_utilization_ratio) {
      check_number(*s.compaction->context_utilization_ratio,
                   "compaction.context_utilization_ratio");
    }
    const auto &tiers = s.compaction->compactions_by_tier;
    for (std::size_t i = 0; i < tiers.size(); ++i) {
      const std::string &t = tiers[i].first;
      AJ_FUZZ_CHECK(!t.empty() && t.size() <= aj::kSnapshotMaxTierBytes && aj::is_valid_utf8(t) &&
                        t.find('\0') == std::string::npos,
                    "parse_snapshot", "bad tier name accepted: " + aj::quote_for_message(t));
      AJ_FUZZ_CHECK(i == 0 || tiers[i - 1].first < t, "parse_snapshot",
                    "tiers not sorted/unique");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string_view text(reinterpret_cast<const char *>(data), size);

  aj::Snapshot snap;
  if (!aj::fuzz::only_invalid_argument("parse_snapshot", "snapshot",
                                       [&] { snap = aj::parse_snapshot(text); })) {
    return 0;
  }
  check_values(snap);

  // The unguarded parse of an accepted document must validate too.
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  AJ_FUZZ_CHECK(!doc.is_discarded(), "parse_snapshot", "accepted text nlohmann cannot parse");
  try {
    aj::validate_snapshot(doc);
  } catch (const std::exception &e) {
    die("validate_snapshot", std::string("rejects what parse_snapshot accepted: ") + e.what());
  }

  std::vector<aj::Family> families;
  try {
    aj::append_snapshot_families(snap, "svc", families);
    aj::append_snapshot_families(snap, "other\"svc\n\\", families);
  } catch (const std::exception &e) {
    die("append_snapshot_families", e.what());
  }

  const aj::RenderOptions options;
  aj::Dropped dropped[3];
  std::string prom, om, otlp;
  try {
    prom = aj::render_prometheus(families, options, &dropped[0]);
    om = aj::render_openmetrics(families, options, &dropped[1]);
    otlp = aj::render_otlp_json(families, nullptr, 1700000000000000000, options, &dropped[2]);
  } catch (const std::exception &e) {
    die("render", std::string("threw on a valid snapshot: ") + e.what());
  }
  for (const aj::Dropped &d : dropped) {
    AJ_FUZZ_CHECK(d.duplicate == 0 && d.cardinality == 0 && d.invalid == 0, "render",
                  "a valid snapshot lost series: duplicate=" + std::to_string(d.duplicate) +
                      " cardinality=" + std::to_string(d.cardinality) +
                      " invalid=" + std::to_string(d.invalid));
  }
  AJ_FUZZ_CHECK(!prom.empty() && prom.back() == '\n', "render_prometheus", "no final newline");
  AJ_FUZZ_CHECK(prom.find("agent_runtime_scheduler_scheduled_total{service=\"svc\"} ") !=
                    std::string::npos,
                "render_prometheus", "scheduled_total series missing");
  AJ_FUZZ_CHECK(om.size() >= 6 && om.compare(om.size() - 6, 6, "# EOF\n") == 0,
                "render_openmetrics", "does not end with # EOF");
  AJ_FUZZ_CHECK(!nlohmann::json::parse(otlp, nullptr, false).is_discarded(), "render_otlp_json",
                "output is not JSON");
  return 0;
}
