#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/snapshot.hpp"

namespace aj {
namespace {

using nlohmann::json;

const char *const kExample = R"({"timestamp": 1700000000,
 "scheduler": {"total_scheduled": 10, "uptime_seconds": 3600, "running_agents": 5,
               "queued_agents": 3, "suspended_agents": 2, "max_capacity": 1000,
               "load_factor": 0.005},
 "task_manager": {"total_tasks": 5, "healthy_tasks": 4,
                  "average_uptime_seconds": 1800.0, "total_memory_usage": 1024},
 "load_balancer": {"total_allocations": 100, "active_allocations": 5,
                   "memory_utilization": 0.45, "cpu_utilization": 0.30,
                   "allocation_failures": 2, "average_allocation_time_ms": 1.5},
 "system": {"memory_usage_mb": 512.0, "cpu_usage_percent": 30.0},
 "compaction": {"total_compactions": 7, "total_tokens_saved": 12000,
                "compactions_by_tier": {"summarize": 5, "truncate": 2},
                "context_utilization_ratio": 0.62}})";

json example() { return json::parse(kExample); }

// The message validate_snapshot throws for `doc`, or "" when it passes.
std::string error_of(const json &doc) {
  try {
    validate_snapshot(doc);
  } catch (const std::invalid_argument &e) {
    return e.what();
  }
  return "";
}

std::string parse_error_of(const std::string &text) {
  try {
    parse_snapshot(text);
  } catch (const std::invalid_argument &e) {
    return e.what();
  }
  return "";
}

const Family *find(const std::vector<Family> &fams, const std::string &name) {
  for (const Family &f : fams) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// The value of the only series of family `name`.
double value_of(const std::vector<Family> &fams, const std::string &name) {
  const Family *f = find(fams, name);
  if (f == nullptr) ADD_FAILURE() << "no family " << name;
  if (f == nullptr || f->series.size() != 1) return -1;
  return f->series[0].value;
}

TEST(SnapshotParse, ExampleValues) {
  const Snapshot s = parse_snapshot(kExample);
  EXPECT_EQ(s.timestamp, 1700000000.0);
  EXPECT_EQ(snapshot_timestamp(s), 1700000000.0);
  EXPECT_EQ(s.scheduler.total_scheduled, 10u);
  EXPECT_EQ(s.scheduler.uptime_seconds, 3600.0);
  EXPECT_EQ(s.scheduler.running_agents, 5u);
  EXPECT_EQ(s.scheduler.queued_agents, 3u);
  EXPECT_EQ(s.scheduler.suspended_agents, 2u);
  EXPECT_EQ(s.scheduler.max_capacity, 1000u);
  EXPECT_EQ(s.scheduler.load_factor, 0.005);
  EXPECT_EQ(s.task_manager.total_tasks, 5u);
  EXPECT_EQ(s.task_manager.healthy_tasks, 4u);
  EXPECT_EQ(s.task_manager.average_uptime_seconds, 1800.0);
  EXPECT_EQ(s.task_manager.total_memory_usage, 1024u);
  EXPECT_EQ(s.load_balancer.total_allocations, 100u);
  EXPECT_EQ(s.load_balancer.active_allocations, 5u);
  EXPECT_EQ(s.load_balancer.memory_utilization, 0.45);
  EXPECT_EQ(s.load_balancer.cpu_utilization, 0.30);
  EXPECT_EQ(s.load_balancer.allocation_failures, 2u);
  EXPECT_EQ(s.load_balancer.average_allocation_time_ms, 1.5);
  EXPECT_EQ(s.system.memory_usage_mb, 512.0);
  EXPECT_EQ(s.system.cpu_usage_percent, 30.0);
  ASSERT_TRUE(s.compaction.has_value());
  EXPECT_EQ(s.compaction->total_compactions, 7u);
  EXPECT_EQ(s.compaction->total_tokens_saved, 12000u);
  const std::vector<std::pair<std::string, uint64_t>> tiers = {{"summarize", 5}, {"truncate", 2}};
  EXPECT_EQ(s.compaction->compactions_by_tier, tiers);
  ASSERT_TRUE(s.compaction->context_utilization_ratio.has_value());
  EXPECT_EQ(*s.compaction->context_utilization_ratio, 0.62);
}

TEST(SnapshotFamilies, ExampleMapsToTable) {
  std::vector<Family> fams;
  append_snapshot_families(parse_snapshot(kExample), "planner", fams);

  struct Row {
    const char *name;
    MetricType type;
    double value;
  };
  const MetricType C = MetricType::Counter, G = MetricType::Gauge;
  const std::vector<Row> rows = {
      {"agent_runtime_snapshot_timestamp_seconds", G, 1700000000.0},
      {"agent_runtime_scheduler_scheduled_total", C, 10},
      {"agent_runtime_scheduler_uptime_seconds", G, 3600},
      {"agent_runtime_scheduler_running_agents", G, 5},
      {"agent_runtime_scheduler_queued_agents", G, 3},
      {"agent_runtime_scheduler_suspended_agents", G, 2},
      {"agent_runtime_scheduler_max_capacity", G, 1000},
      {"agent_runtime_scheduler_load_factor", G, 0.005},
      {"agent_runtime_tasks", G, 5},
      {"agent_runtime_tasks_healthy", G, 4},
      {"agent_runtime_task_average_uptime_seconds", G, 1800},
      {"agent_runtime_task_memory_usage_bytes", G, 1024},
      {"agent_runtime_allocations_total", C, 100},
      {"agent_runtime_allocations_active", G, 5},
      {"agent_runtime_memory_utilization_ratio", G, 0.45},
      {"agent_runtime_cpu_utilization_ratio", G, 0.30},
      {"agent_runtime_allocation_failures_total", C, 2},
      {"agent_runtime_allocation_time_average_seconds", G, 0.0015},
      {"agent_runtime_system_memory_usage_bytes", G, 536870912.0},
      {"agent_runtime_system_cpu_usage_ratio", G, 0.3},
      {"agent_runtime_compactions_total", C, 7},
      {"agent_runtime_compaction_tokens_saved_total", C, 12000},
      {"agent_runtime_context_utilization_ratio", G, 0.62},
  };
  for (const Row &r : rows) {
    SCOPED_TRACE(r.name);
    const Family *f = find(fams, r.name);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->type, r.type);
    EXPECT_FALSE(f->help.empty());
    EXPECT_TRUE(f->bounds.empty());
    ASSERT_EQ(f->series.size(), 1u);
    EXPECT_DOUBLE_EQ(f->series[0].value, r.value);
    const Labels expected = {{"service", "planner"}};
    EXPECT_EQ(to_labels(f->series[0].labels), expected);
  }

  const Family *tiers = find(fams, "agent_runtime_compactions_by_tier_total");
  ASSERT_NE(tiers, nullptr);
  EXPECT_EQ(tiers->type, MetricType::Counter);
  EXPECT_FALSE(tiers->help.empty());
  ASSERT_EQ(tiers->series.size(), 2u);
  const Labels summarize = {{"service", "planner"}, {"tier", "summarize"}};
  const Labels truncate = {{"service", "planner"}, {"tier", "truncate"}};
  EXPECT_EQ(to_labels(tiers->series[0].labels), summarize);
  EXPECT_EQ(tiers->series[0].value, 5);
  EXPECT_EQ(to_labels(tiers->series[1].labels), truncate);
  EXPECT_EQ(tiers->series[1].value, 2);

  // One family per metric, nothing else.
  EXPECT_EQ(fams.size(), rows.size() + 1);
  for (const Family &f : fams) {
    if (f.type == MetricType::Counter) {
      EXPECT_EQ(f.name.substr(f.name.size() - 6), "_total") << f.name;
    }
  }
}

TEST(SnapshotFamilies, ExactConversions) {
  std::vector<Family> fams;
  append_snapshot_families(parse_snapshot(kExample), "s", fams);
  EXPECT_EQ(value_of(fams, "agent_runtime_allocation_time_average_seconds"), 1.5 / 1000.0);
  EXPECT_EQ(value_of(fams, "agent_runtime_system_memory_usage_bytes"), 536870912.0);
  EXPECT_EQ(value_of(fams, "agent_runtime_system_cpu_usage_ratio"), 0.3);
}

TEST(SnapshotFamilies, TwoServicesMergeIntoOneFamilyPerName) {
  std::vector<Family> fams;
  append_snapshot_families(parse_snapshot(kExample), "alpha", fams);
  const std::size_t after_one = fams.size();
  json other = example();
  other["scheduler"]["running_agents"] = 9;
  other["compaction"]["compactions_by_tier"] = {{"drop", 1}};
  append_snapshot_families(validate_snapshot(other), "beta", fams);
  EXPECT_EQ(fams.size(), after_one);

  for (std::size_t i = 0; i < fams.size(); ++i) {
    for (std::size_t j = i + 1; j < fams.size(); ++j) EXPECT_NE(fams[i].name, fams[j].name);
  }
  const Family *running = find(fams, "agent_runtime_scheduler_running_agents");
  ASSERT_NE(running, nullptr);
  ASSERT_EQ(running->series.size(), 2u);
  EXPECT_EQ(to_labels(running->series[0].labels), (Labels{{"service", "alpha"}}));
  EXPECT_EQ(running->series[0].value, 5);
  EXPECT_EQ(to_labels(running->series[1].labels), (Labels{{"service", "beta"}}));
  EXPECT_EQ(running->series[1].value, 9);

  const Family *tiers = find(fams, "agent_runtime_compactions_by_tier_total");
  ASSERT_NE(tiers, nullptr);
  ASSERT_EQ(tiers->series.size(), 3u);
  EXPECT_EQ(to_labels(tiers->series[2].labels), (Labels{{"service", "beta"}, {"tier", "drop"}}));
  EXPECT_EQ(tiers->series[2].value, 1);
}

TEST(SnapshotFamilies, MergesWithFamiliesAlreadyPresent) {
  std::vector<Family> fams(1);
  fams[0].name = "agent_runtime_tasks";
  fams[0].type = MetricType::Gauge;
  append_snapshot_families(parse_snapshot(kExample), "s", fams);
  EXPECT_EQ(fams[0].name, "agent_runtime_tasks");
  EXPECT_FALSE(fams[0].help.empty());
  EXPECT_EQ(fams[0].series.size(), 1u);

  std::vector<Family> clash(1);
  clash[0].name = "agent_runtime_tasks";
  clash[0].type = MetricType::Counter;
  EXPECT_THROW(append_snapshot_families(parse_snapshot(kExample), "s", clash), std::logic_error);
}

TEST(SnapshotFamilies, CompactionNullOrAbsentOmitsCompactionFamilies) {
  for (int variant = 0; variant < 2; ++variant) {
    SCOPED_TRACE(variant);
    json doc = example();
    if (variant == 0) {
      doc["compaction"] = nullptr;
    } else {
      doc.erase("compaction");
    }
    const Snapshot s = validate_snapshot(doc);
    EXPECT_FALSE(s.compaction.has_value());
    std::vector<Family> fams;
    append_snapshot_families(s, "s", fams);
    EXPECT_EQ(fams.size(), 20u);
    for (const Family &f : fams) {
      EXPECT_EQ(f.name.find("compaction"), std::string::npos) << f.name;
      EXPECT_EQ(f.name.find("context"), std::string::npos) << f.name;
    }
  }
  // One service without compaction next to one with it.
  std::vector<Family> fams;
  json doc = example();
  doc.erase("compaction");
  append_snapshot_families(validate_snapshot(doc), "a", fams);
  append_snapshot_families(parse_snapshot(kExample), "b", fams);
  const Family *total = find(fams, "agent_runtime_compactions_total");
  ASSERT_NE(total, nullptr);
  ASSERT_EQ(total->series.size(), 1u);
  EXPECT_EQ(to_labels(total->series[0].labels), (Labels{{"service", "b"}}));
}

TEST(SnapshotFamilies, NullOrAbsentContextRatioOmitted) {
  for (int variant = 0; variant < 2; ++variant) {
    json doc = example();
    if (variant == 0) {
      doc["compaction"]["context_utilization_ratio"] = nullptr;
    } else {
      doc["compaction"].erase("context_utilization_ratio");
    }
    const Snapshot s = validate_snapshot(doc);
    ASSERT_TRUE(s.compaction.has_value());
    EXPECT_FALSE(s.compaction->context_utilization_ratio.has_value());
    std::vector<Family> fams;
    append_snapshot_families(s, "s", fams);
    EXPECT_EQ(find(fams, "agent_runtime_context_utilization_ratio"), nullptr);
    EXPECT_NE(find(fams, "agent_runtime_compactions_total"), nullptr);
  }
}

TEST(SnapshotFamilies, EmptyTierObjectAddsNoTierFamily) {
  json doc = example();
  doc["compaction"]["compactions_by_tier"] = json::object();
  std::vector<Family> fams;
  append_snapshot_families(validate_snapshot(doc), "s", fams);
  EXPECT_EQ(find(fams, "agent_runtime_compactions_by_tier_total"), nullptr);
  EXPECT_NE(find(fams, "agent_runtime_compactions_total"), nullptr);
}

TEST(SnapshotValidate, UnknownKeysIgnored) {
  json doc = example();
  doc["version"] = "1.2.3";
  doc["scheduler"]["extra"] = {1, 2, 3};
  doc["compaction"]["note"] = nullptr;
  doc["system"]["disk"] = {{"free", -1}};
  EXPECT_EQ(error_of(doc), "");
}

TEST(SnapshotValidate, AcceptsWholeFloatsAndZero) {
  json doc = example();
  doc["scheduler"]["running_agents"] = 5.0;
  doc["compaction"]["compactions_by_tier"]["summarize"] = 0.0;
  doc["scheduler"]["load_factor"] = 0;
  doc["system"]["cpu_usage_percent"] = -0.0;
  const Snapshot s = validate_snapshot(doc);
  EXPECT_EQ(s.scheduler.running_agents, 5u);
  EXPECT_EQ(s.compaction->compactions_by_tier[0].second, 0u);
  EXPECT_EQ(s.scheduler.load_factor, 0.0);
  EXPECT_FALSE(std::signbit(s.system.cpu_usage_percent));
}

TEST(SnapshotValidate, AcceptsLargeIntegers) {
  std::string text = kExample;
  const std::string field = "\"total_scheduled\": 10";
  text.replace(text.find(field), field.size(), "\"total_scheduled\": 18446744073709551615");
  const Snapshot s = parse_snapshot(text);
  EXPECT_EQ(s.scheduler.total_scheduled, 18446744073709551615u);

  json doc = example();
  doc["scheduler"]["total_scheduled"] = 9007199254740993.0;  // rounds to 2^53 + 0
  EXPECT_EQ(validate_snapshot(doc).scheduler.total_scheduled, 9007199254740992u);
  doc["scheduler"]["total_scheduled"] = 18446744073709551616.0;  // 2^64
  EXPECT_EQ(error_of(doc),
            "snapshot.scheduler.total_scheduled: expected a non-negative integer, got "
            "1.8446744073709552e+19");
}

TEST(SnapshotValidate, HandBuiltSignedIntegers) {
  json doc = example();
  doc["scheduler"]["running_agents"] = int64_t{7};  // number_integer, not unsigned
  EXPECT_EQ(validate_snapshot(doc).scheduler.running_agents, 7u);
  doc["scheduler"]["running_agents"] = int64_t{-7};
  EXPECT_EQ(error_of(doc),
            "snapshot.scheduler.running_agents: expected a non-negative integer, got -7");
}

TEST(SnapshotErrors, MissingField) {
  json doc = example();
  doc["scheduler"].erase("running_agents");
  EXPECT_EQ(error_of(doc), "snapshot.scheduler.running_agents: missing");
  doc = example();
  doc.erase("timestamp");
  EXPECT_EQ(error_of(doc), "snapshot.timestamp: missing");
  doc = example();
  doc["compaction"].erase("compactions_by_tier");
  EXPECT_EQ(error_of(doc), "snapshot.compaction.compactions_by_tier: missing");
}

TEST(SnapshotErrors, MissingSection) {
  for (const char *section : {"scheduler", "task_manager", "load_balancer", "system"}) {
    json doc = example();
    doc.erase(section);
    EXPECT_EQ(error_of(doc), std::string("snapshot.") + section + ": missing");
  }
}

TEST(SnapshotErrors, WrongSectionType) {
  json doc = example();
  doc["scheduler"] = 3;
  EXPECT_EQ(error_of(doc), "snapshot.scheduler: expected an object, got 3");
  doc = example();
  doc["system"] = nullptr;
  EXPECT_EQ(error_of(doc), "snapshot.system: expected an object, got null");
  doc = example();
  doc["compaction"] = json::array({1, 2});
  EXPECT_EQ(error_of(doc), "snapshot.compaction: expected an object, got [1,2]");
  doc = example();
  doc["compaction"]["compactions_by_tier"] = "x";
  EXPECT_EQ(error_of(doc),
            "snapshot.compaction.compactions_by_tier: expected an object, got \"x\"");
  EXPECT_EQ(error_of(json::array()), "snapshot: expected an object, got []");
  EXPECT_EQ(parse_error_of("42"), "snapshot: expected an object, got 42");
}

TEST(SnapshotErrors, WrongValueType) {
  json doc = example();
  doc["scheduler"]["running_agents"] = "five";
  EXPECT_EQ(error_of(doc),
            "snapshot.scheduler.running_agents: expected a non-negative integer, got \"five\"");
  doc["scheduler"]["running_agents"] = true;
  EXPECT_EQ(error_of(doc),
            "snapshot.scheduler.running_agents: expected a non-negative integer, got true");
  doc["scheduler"]["running_agents"] = nullptr;
  EXPECT_EQ(error_of(doc),
            "snapshot.scheduler.running_agents: expected a non-negative integer, got null");
  doc = example();
  doc["system"]["memory_usage_mb"] = "512";
  EXPECT_EQ(error_of(doc),
            "snapshot.system.memory_usage_mb: expected a non-negative finite number, got \"512\"");
  doc = example();
  doc["timestamp"] = json::object({{"a", 1}});
  EXPECT_EQ(error_of(doc),
            "snapshot.timestamp: expected a non-negative finite number, got {\"a\":1}");
}

TEST(SnapshotErrors, Negative) {
  json doc = example();
  doc["load_balancer"]["allocation_failures"] = -1;
  EXPECT_EQ(error_of(doc),
            "snapshot.load_balancer.allocation_failures: expected a non-negative integer, got -1");
  doc = example();
  doc["load_balancer"]["cpu_utilization"] = -0.5;
  EXPECT_EQ(error_of(doc),
            "snapshot.load_balancer.cpu_utilization: expected a non-negative finite number, got "
            "-0.5");
  doc = example();
  doc["scheduler"]["uptime_seconds"] = -3;
  EXPECT_EQ(error_of(doc),
            "snapshot.scheduler.uptime_seconds: expected a non-negative finite number, got -3");
  doc = example();
  doc["compaction"]["context_utilization_ratio"] = -0.1;
  EXPECT_EQ(error_of(doc),
            "snapshot.compaction.context_utilization_ratio: expected a non-negative finite "
            "number, got -0.1");
}

TEST(SnapshotErrors, FractionForInteger) {
  json doc = example();
  doc["scheduler"]["running_agents"] = 5.5;
  EXPECT_EQ(error_of(doc),
            "snapshot.scheduler.running_agents: expected a non-negative integer, got 5.5");
  doc = example();
  doc["compaction"]["compactions_by_tier"]["summarize"] = 0.25;
  EXPECT_EQ(error_of(doc),
            "snapshot.compaction.compactions_by_tier.summarize: expected a non-negative integer, "
            "got 0.25");
}

TEST(SnapshotErrors, NonFinite) {
  // nlohmann 3.11 refuses numbers that overflow a double while parsing.
  std::string text = kExample;
  text.replace(text.find("1700000000"), 10, "1e400");
  EXPECT_EQ(parse_error_of(text), "snapshot: invalid JSON: number overflow parsing '1e400'");
  text = kExample;
  text.replace(text.find("1700000000"), 10, "1" + std::string(400, '0'));  // numeric_out style
  EXPECT_EQ(parse_error_of(text).rfind("snapshot: invalid JSON: number overflow parsing '1000", 0),
            0u);
  // Underflow is just zero.
  text = kExample;
  text.replace(text.find("1700000000"), 10, "1e-400");
  EXPECT_EQ(parse_snapshot(text).timestamp, 0.0);
  // Infinities and NaN can still reach validate_snapshot in a built document.
  json doc = example();
  doc["timestamp"] = std::numeric_limits<double>::infinity();
  EXPECT_EQ(error_of(doc), "snapshot.timestamp: expected a non-negative finite number, got inf");
  doc = example();
  doc["task_manager"]["total_tasks"] = -std::numeric_limits<double>::infinity();
  EXPECT_EQ(error_of(doc),
            "snapshot.task_manager.total_tasks: expected a non-negative integer, got -inf");
  doc = example();
  doc["task_manager"]["total_tasks"] = std::numeric_limits<double>::infinity();
  EXPECT_EQ(error_of(doc),
            "snapshot.task_manager.total_tasks: expected a non-negative integer, got inf");
  doc = example();
  doc["scheduler"]["load_factor"] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(error_of(doc),
            "snapshot.scheduler.load_factor: expected a non-negative finite number, got nan");
}

TEST(SnapshotErrors, TierEntries) {
  json doc = example();
  doc["compaction"]["compactions_by_tier"]["a b"] = "x";
  EXPECT_EQ(error_of(doc),
            "snapshot.compaction.compactions_by_tier[\"a b\"]: expected a non-negative integer, "
            "got \"x\"");
  doc = example();
  doc["compaction"]["compactions_by_tier"]["summarize"] = -2;
  EXPECT_EQ(error_of(doc),
            "snapshot.compaction.compactions_by_tier.summarize: expected a non-negative integer, "
            "got -2");
  doc = example();
  doc["compaction"]["compactions_by_tier"][""] = 1;
  EXPECT_EQ(error_of(doc), "snapshot.compaction.compactions_by_tier[\"\"]: tier name is empty");
  doc = example();
  doc["compaction"]["compactions_by_tier"][std::string(201, 'a')] = 1;
  EXPECT_EQ(error_of(doc), "snapshot.compaction.compactions_by_tier[\"" + std::string(40, 'a') +
                               "...\"]: tier name is longer than 200 bytes");
  doc = example();
  doc["compaction"]["compactions_by_tier"]["bad\xff"] = 1;
  EXPECT_EQ(error_of(doc),
            "snapshot.compaction.compactions_by_tier[\"bad\xef\xbf\xbd\"]: tier name is not "
            "valid UTF-8");
  doc = example();
  doc["compaction"]["compactions_by_tier"][std::string("n\0l", 3)] = 1;
  EXPECT_EQ(error_of(doc),
            "snapshot.compaction.compactions_by_tier[\"n\\u0000l\"]: tier name contains a NUL "
            "character");
}

TEST(SnapshotValidate, TierNamesAtTheLimits) {
  json doc = example();
  const std::string longest(200, 'z');
  const std::string utf8 = "r\xc3\xa9sum\xc3\xa9 \xf0\x9f\x93\x9d";  // "résumé 📝"
  doc["compaction"]["compactions_by_tier"][longest] = 1;
  doc["compaction"]["compactions_by_tier"][utf8] = 2;
  const Snapshot s = validate_snapshot(doc);
  ASSERT_EQ(s.compaction->compactions_by_tier.size(), 4u);
  std::vector<Family> fams;
  append_snapshot_families(s, "svc", fams);
  const Family *tiers = find(fams, "agent_runtime_compactions_by_tier_total");
  ASSERT_NE(tiers, nullptr);
  ASSERT_EQ(tiers->series.size(), 4u);
  // Sorted by tier name (byte order).
  for (std::size_t i = 1; i < tiers->series.size(); ++i) {
    EXPECT_LT(tiers->series[i - 1].labels[1].second, tiers->series[i].labels[1].second);
  }
}

TEST(SnapshotErrors, LongValuesAreShortened) {
  json doc = example();
  doc["scheduler"]["running_agents"] = std::string(1000, 'x');
  EXPECT_EQ(error_of(doc),
            "snapshot.scheduler.running_agents: expected a non-negative integer, got \"" +
                std::string(39, 'x') + "...");
  doc["scheduler"]["running_agents"] = json::array();
  for (int i = 0; i < 1000; ++i) doc["scheduler"]["running_agents"].push_back(i);
  const std::string msg = error_of(doc);
  EXPECT_EQ(
      msg.rfind("snapshot.scheduler.running_agents: expected a non-negative integer, got [0,1,2,",
                0),
      0u)
      << msg;
  EXPECT_EQ(msg.substr(msg.size() - 3), "...");
  EXPECT_LT(msg.size(), 130u);
}

TEST(SnapshotErrors, ShortRenderingIsBoundedOnDeepHandBuiltValues) {
  // validate_snapshot may get a document that never went through
  // parse_snapshot: rendering the offending value must not recurse through it.
  json deep = json::array();
  for (int i = 0; i < 100000; ++i) deep = json::array({std::move(deep)});
  json doc = example();
  doc["scheduler"]["running_agents"] = std::move(deep);
  EXPECT_EQ(error_of(doc),
            "snapshot.scheduler.running_agents: expected a non-negative integer, got " +
                std::string(40, '[') + "...");
}

TEST(SnapshotParse, InvalidJson) {
  EXPECT_EQ(parse_error_of("").rfind("snapshot: invalid JSON: ", 0), 0u);
  const std::string msg = parse_error_of("{\"timestamp\": 1,");
  EXPECT_EQ(msg.rfind("snapshot: invalid JSON: parse error at line 1", 0), 0u) << msg;
  EXPECT_EQ(msg.find("json.exception"), std::string::npos) << msg;
  EXPECT_EQ(parse_error_of("{} x").rfind("snapshot: invalid JSON: ", 0), 0u);
  // Comments are not JSON.
  EXPECT_EQ(parse_error_of("/* */ {}").rfind("snapshot: invalid JSON: ", 0), 0u);
  // Raw bytes quoted back by the parser come out as printable ASCII.
  const std::string bad = parse_error_of("{\"a\xff\": 1}");
  for (char c : bad) {
    EXPECT_TRUE(static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f);
  }
  // A long offending token does not make a long message.
  EXPECT_LT(parse_error_of("\"" + std::string(100000, 'a')).size(), 250u);
}

TEST(SnapshotParse, DeepNestingRejectedWithoutCrashing) {
  const std::string expected = "snapshot: invalid JSON: nested deeper than 64 levels";
  EXPECT_EQ(parse_error_of(std::string(100000, '[')), expected);
  EXPECT_EQ(parse_error_of(std::string(100000, '[') + std::string(100000, ']')), expected);
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  EXPECT_EQ(parse_error_of(objects), expected);
  // Inside a field, too.
  std::string text = kExample;
  text.replace(text.find("1700000000"), 10, std::string(65, '[') + std::string(65, ']'));
  EXPECT_EQ(parse_error_of(text), expected);
}

TEST(SnapshotParse, DepthLimitIsExactly64) {
  // 64 levels including the root object parse (then fail validation on type).
  std::string text = kExample;
  text.replace(text.find("1700000000"), 10, std::string(63, '[') + std::string(63, ']'));
  EXPECT_EQ(parse_error_of(text),
            "snapshot.timestamp: expected a non-negative finite number, got " +
                std::string(40, '[') + "...");
  text = kExample;
  text.replace(text.find("1700000000"), 10, std::string(64, '[') + std::string(64, ']'));
  EXPECT_EQ(parse_error_of(text), "snapshot: invalid JSON: nested deeper than 64 levels");
  EXPECT_EQ(parse_error_of(std::string(64, '[') + std::string(64, ']')),
            "snapshot: expected an object, got " + std::string(40, '[') + "...");
}

}  // namespace
}  // namespace aj
