// Agent runtime snapshots: the JSON document an agent runtime serializes
// (scheduler, task manager, load balancer, system, compaction), validated
// into plain values and mapped onto metric families. Pure C++17: never
// includes a PostgreSQL header.
//
// Every error is a std::invalid_argument whose what() starts with the JSON
// path, e.g. `snapshot.scheduler.running_agents: expected a non-negative
// integer, got "five"`.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/model.hpp"

namespace aj {

// Deepest nesting parse_snapshot accepts (the root object is level 1).
constexpr int kSnapshotMaxDepth = 64;
// Longest compactions_by_tier key, in bytes (tier names become label values).
constexpr std::size_t kSnapshotMaxTierBytes = 200;

struct SchedulerStats {
  uint64_t total_scheduled = 0;
  double uptime_seconds = 0;
  uint64_t running_agents = 0;
  uint64_t queued_agents = 0;
  uint64_t suspended_agents = 0;
  uint64_t max_capacity = 0;
  double load_factor = 0;
};

struct TaskManagerStats {
  uint64_t total_tasks = 0;
  uint64_t healthy_tasks = 0;
  double average_uptime_seconds = 0;
  uint64_t total_memory_usage = 0;  // bytes
};

struct LoadBalancerStats {
  uint64_t total_allocations = 0;
  uint64_t active_allocations = 0;
  double memory_utilization = 0;
  double cpu_utilization = 0;
  uint64_t allocation_failures = 0;
  double average_allocation_time_ms = 0;
};

struct SystemStats {
  double memory_usage_mb = 0;
  double cpu_usage_percent = 0;
};

struct CompactionStats {
  uint64_t total_compactions = 0;
  uint64_t total_tokens_saved = 0;
  // (tier, count), sorted by tier, tier names unique.
  std::vector<std::pair<std::string, uint64_t>> compactions_by_tier;
  std::optional<double> context_utilization_ratio;  // absent or null in JSON
};

// The validated values of one snapshot, in the units of the JSON.
struct Snapshot {
  double timestamp = 0;  // seconds since the Unix epoch
  SchedulerStats scheduler;
  TaskManagerStats task_manager;
  LoadBalancerStats load_balancer;
  SystemStats system;
  std::optional<CompactionStats> compaction;  // absent or null in JSON
};

// Parses and validates. Rejects documents nested deeper than
// kSnapshotMaxDepth while parsing (no recursion on hostile input).
// Throws std::invalid_argument.
Snapshot parse_snapshot(std::string_view json_text);

// Validates an already parsed document. Throws std::invalid_argument.
Snapshot validate_snapshot(const nlohmann::json &doc);

// Appends one family per snapshot metric (agent_runtime_*), each series
// labelled service=<service> (compactions by tier: service and tier). A
// family whose name is already in `out` gets the series added to it, so
// several services share one Family per name. Compaction families are
// omitted when the snapshot has no compaction section, the context
// utilization family when that ratio is absent. Values are converted to
// base units (seconds, bytes, ratios). Throws std::logic_error if `out`
// already holds a family of the same name with another type.
void append_snapshot_families(const Snapshot &snapshot, const std::string &service,
                              std::vector<Family> &out);

// The snapshot's own timestamp, seconds since the Unix epoch.
double snapshot_timestamp(const Snapshot &snapshot);

}  // namespace aj
