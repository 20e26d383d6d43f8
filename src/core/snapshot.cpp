#include "core/snapshot.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/names.hpp"

namespace aj {

namespace {

using nlohmann::json;

// How much of an offending value an error message shows.
constexpr std::size_t kShownBytes = 40;
// How much of nlohmann's own parse error text an error message keeps.
constexpr std::size_t kParseErrorBytes = 160;

// ---------------------------------------------------------------- UTF-8

// Length of the longest prefix of `s` of at most `max_bytes` that does not
// end inside a UTF-8 character.
std::size_t utf8_cut(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return s.size();
  std::size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return cut;
}

// ------------------------------------------------- short value rendering

// `s` as a JSON string literal, at most ~kShownBytes of it; invalid UTF-8
// is replaced rather than thrown on.
void render_string(std::string_view s, std::string &out) {
  const std::size_t keep = utf8_cut(s, 2 * kShownBytes);
  out += json(std::string(s.substr(0, keep))).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Compact JSON rendering that stops soon after `out` passes `budget` bytes.
// Every nesting level adds at least one byte before descending, so the
// recursion depth is bounded by the budget, not by the document.
void render_into(const json &v, std::string &out, std::size_t budget) {
  switch (v.type()) {
    case json::value_t::object: {
      out += '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end() && out.size() <= budget; ++it) {
        if (!first) out += ',';
        first = false;
        render_string(it.key(), out);
        out += ':';
        if (out.size() <= budget) render_into(it.value(), out, budget);
      }
      out += '}';
      break;
    }
    case json::value_t::array: {
      out += '[';
      bool first = true;
      for (auto it = v.begin(); it != v.end() && out.size() <= budget; ++it) {
        if (!first) out += ',';
        first = false;
        render_into(*it, out, budget);
      }
      out += ']';
      break;
    }
    case json::value_t::string:
      render_string(v.get_ref<const std::string &>(), out);
      break;
    case json::value_t::number_float: {
      const double d = v.get<double>();
      if (std::isnan(d)) {
        out += "nan";
      } else if (std::isinf(d)) {
        out += d > 0 ? "inf" : "-inf";
      } else {
        out += v.dump();
      }
      break;
    }
    case json::value_t::binary:
      out += "<binary>";
      break;
    default:  // null, boolean, integers, discarded
      out += v.dump();
      break;
  }
}

std::string render_short(const json &v) {
  std::string out;
  render_into(v, out, kShownBytes);
  if (out.size() > kShownBytes) {
    out.resize(utf8_cut(out, kShownBytes));
    out += "...";
  }
  return out;
}

// ------------------------------------------------------------ paths

bool plain_identifier(std::string_view s) {
  if (s.empty() || s.size() > kShownBytes) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (digit && i > 0))) return false;
  }
  return true;
}

// parent.key, or parent["key"] (JSON-quoted, long keys shortened with ...).
std::string member_path(const std::string &parent, std::string_view key) {
  if (plain_identifier(key)) return parent + "." + std::string(key);
  const std::size_t keep = utf8_cut(key, kShownBytes);
  std::string quoted =
      json(std::string(key.substr(0, keep))).dump(-1, ' ', false, json::error_handler_t::replace);
  if (keep < key.size()) quoted.insert(quoted.size() - 1, "...");
  return parent + "[" + quoted + "]";
}

// ------------------------------------------------------------ errors

[[noreturn]] void fail(const std::string &path, const std::string &what) {
  throw std::invalid_argument(path + ": " + what);
}

[[noreturn]] void fail_expected(const std::string &path, const char *expected, const json &got) {
  fail(path, std::string("expected ") + expected + ", got " + render_short(got));
}

// nlohmann's parse error text without its "[json.exception...] " prefix,
// shortened, with anything that is not printable ASCII shown as '?'
// (the "last read" part quotes raw input).
std::string parse_error_text(const char *what) {
  std::string_view s(what);
  if (!s.empty() && s.front() == '[') {
    const std::size_t close = s.find("] ");
    if (close != std::string_view::npos) s.remove_prefix(close + 2);
  }
  std::string out;
  for (char c : s.substr(0, kParseErrorBytes)) {
    const unsigned char u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7F) ? c : '?';
  }
  if (s.size() > kParseErrorBytes) out += "...";
  return out;
}

// ------------------------------------------------------------ fields

const json *find_member(const json &object, const char *key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

uint64_t as_count(const json &v, const std::string &path) {
  constexpr const char *kExpected = "a non-negative integer";
  switch (v.type()) {
    case json::value_t::number_unsigned:
      return v.get<uint64_t>();
    case json::value_t::number_integer: {
      const int64_t i = v.get<int64_t>();
      if (i < 0) fail_expected(path, kExpected, v);
      return static_cast<uint64_t>(i);
    }
    case json::value_t::number_float: {
      const double d = v.get<double>();
      // 18446744073709551616.0 is 2^64, exactly representable.
      if (!std::isfinite(d) || d < 0 || d != std::floor(d) || d >= 18446744073709551616.0) {
        fail_expected(path, kExpected, v);
      }
      return static_cast<uint64_t>(d);
    }
    default:
      fail_expected(path, kExpected, v);
  }
}

double as_number(const json &v, const std::string &path) {
  constexpr const char *kExpected = "a non-negative finite number";
  switch (v.type()) {
    case json::value_t::number_unsigned:
      return static_cast<double>(v.get<uint64_t>());
    case json::value_t::number_integer: {
      const int64_t i = v.get<int64_t>();
      if (i < 0) fail_expected(path, kExpected, v);
      return static_cast<double>(i);
    }
    case json::value_t::number_float: {
      const double d = v.get<double>();
      if (!std::isfinite(d) || d < 0) fail_expected(path, kExpected, v);
      return d == 0 ? 0.0 : d;  // no -0
    }
    default:
      fail_expected(path, kExpected, v);
  }
}

// One object of the snapshot and its path; reads and validates members.
class Reader {
 public:
  Reader(const json &object, std::string path) : object_(object), path_(std::move(path)) {
    if (!object_.is_object()) fail_expected(path_, "an object", object_);
  }

  const json &object() const { return object_; }
  const std::string &path() const { return path_; }

  // The member, or nullptr when it is absent or null.
  const json *optional(const char *key) const {
    const json *v = find_member(object_, key);
    return (v == nullptr || v->is_null()) ? nullptr : v;
  }

  const json &required(const char *key) const {
    const json *v = find_member(object_, key);
    if (v == nullptr) fail(path_ + "." + key, "missing");
    return *v;
  }

  Reader section(const char *key) const { return Reader(required(key), path_ + "." + key); }

  uint64_t count(const char *key) const { return as_count(required(key), path_ + "." + key); }

  double number(const char *key) const { return as_number(required(key), path_ + "." + key); }

 private:
  const json &object_;
  std::string path_;
};

void check_tier_name(const std::string &tier, const std::string &path) {
  if (tier.empty()) fail(path, "tier name is empty");
  if (tier.size() > kSnapshotMaxTierBytes) {
    fail(path, "tier name is longer than " + std::to_string(kSnapshotMaxTierBytes) + " bytes");
  }
  if (!is_valid_utf8(tier)) fail(path, "tier name is not valid UTF-8");
  if (tier.find('\0') != std::string::npos) fail(path, "tier name contains a NUL character");
}

CompactionStats read_compaction(const Reader &r) {
  CompactionStats c;
  c.total_compactions = r.count("total_compactions");
  c.total_tokens_saved = r.count("total_tokens_saved");
  const Reader tiers = r.section("compactions_by_tier");
  const json &tiers_json = tiers.object();
  c.compactions_by_tier.reserve(tiers_json.size());
  // nlohmann::json objects are std::maps: keys come sorted and unique.
  for (auto it = tiers_json.begin(); it != tiers_json.end(); ++it) {
    const std::string path = member_path(tiers.path(), it.key());
    check_tier_name(it.key(), path);
    c.compactions_by_tier.emplace_back(it.key(), as_count(it.value(), path));
  }
  if (const json *ratio = r.optional("context_utilization_ratio")) {
    c.context_utilization_ratio = as_number(*ratio, r.path() + ".context_utilization_ratio");
  }
  return c;
}

// ------------------------------------------------------------ families

Family &family_named(std::vector<Family> &out, const char *name, MetricType type,
                     const char *help) {
  for (Family &f : out) {
    if (f.name != name) continue;
    if (f.type != type) {
      throw std::logic_error(std::string(name) + ": family already present with type " +
                             type_name(f.type));
    }
    if (f.help.empty()) f.help = help;
    return f;
  }
  Family f;
  f.name = name;
  f.type = type;
  f.help = help;
  out.push_back(std::move(f));
  return out.back();
}

void add_series(std::vector<Family> &out, const char *name, MetricType type, const char *help,
                const std::string &service, double value) {
  Family &f = family_named(out, name, type, help);
  Series s;
  s.labels = f.store().labels({{"service", service}});
  s.value = value;
  f.series.push_back(std::move(s));
}

}  // namespace

Snapshot validate_snapshot(const json &doc) {
  const Reader root(doc, "snapshot");
  Snapshot s;
  s.timestamp = root.number("timestamp");

  const Reader sched = root.section("scheduler");
  s.scheduler.total_scheduled = sched.count("total_scheduled");
  s.scheduler.uptime_seconds = sched.number("uptime_seconds");
  s.scheduler.running_agents = sched.count("running_agents");
  s.scheduler.queued_agents = sched.count("queued_agents");
  s.scheduler.suspended_agents = sched.count("suspended_agents");
  s.scheduler.max_capacity = sched.count("max_capacity");
  s.scheduler.load_factor = sched.number("load_factor");

  const Reader tasks = root.section("task_manager");
  s.task_manager.total_tasks = tasks.count("total_tasks");
  s.task_manager.healthy_tasks = tasks.count("healthy_tasks");
  s.task_manager.average_uptime_seconds = tasks.number("average_uptime_seconds");
  s.task_manager.total_memory_usage = tasks.count("total_memory_usage");

  const Reader lb = root.section("load_balancer");
  s.load_balancer.total_allocations = lb.count("total_allocations");
  s.load_balancer.active_allocations = lb.count("active_allocations");
  s.load_balancer.memory_utilization = lb.number("memory_utilization");
  s.load_balancer.cpu_utilization = lb.number("cpu_utilization");
  s.load_balancer.allocation_failures = lb.count("allocation_failures");
  s.load_balancer.average_allocation_time_ms = lb.number("average_allocation_time_ms");

  const Reader sys = root.section("system");
  s.system.memory_usage_mb = sys.number("memory_usage_mb");
  s.system.cpu_usage_percent = sys.number("cpu_usage_percent");

  if (const json *compaction = root.optional("compaction")) {
    s.compaction = read_compaction(Reader(*compaction, "snapshot.compaction"));
  }
  return s;
}

Snapshot parse_snapshot(std::string_view json_text) {
  // The callback sees the depth of every container before it is entered
  // (0 for the root); nlohmann's parser itself is iterative, so stopping
  // here bounds the document no matter how hostile the input.
  const json::parser_callback_t depth_guard = [](int depth, json::parse_event_t event, json &) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kSnapshotMaxDepth) {
      throw std::invalid_argument("snapshot: invalid JSON: nested deeper than " +
                                  std::to_string(kSnapshotMaxDepth) + " levels");
    }
    return true;
  };
  json doc;
  try {
    doc = json::parse(json_text.data(), json_text.data() + json_text.size(), depth_guard,
                      /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception &e) {
    throw std::invalid_argument("snapshot: invalid JSON: " + parse_error_text(e.what()));
  }
  return validate_snapshot(doc);
}

namespace {
void append_snapshot_series(const Snapshot &snap, const std::string &service,
                            std::vector<Family> &out);
}  // namespace

// The runtime's counters count since its scheduler started: their
// _created / OTLP start time is the snapshot's time minus that uptime.
void append_snapshot_families(const Snapshot &snap, const std::string &service,
                              std::vector<Family> &out) {
  append_snapshot_series(snap, service, out);
  const double started = snap.timestamp - snap.scheduler.uptime_seconds;
  // (a time OTLP can carry: 1970 to 2262)
  if (!std::isfinite(started) || started <= 0 || started >= 9.2e9 || snap.scheduler.uptime_seconds < 0)
    return;
  for (Family &f : out) {
    if (f.type != MetricType::Counter) continue;
    for (Series &s : f.series) {
      if (s.created != 0) continue;
      for (const auto &[k, v] : s.labels)
        if (k == "service" && v == service) s.created = started;
    }
  }
}

namespace {
void append_snapshot_series(const Snapshot &snap, const std::string &service,
                            std::vector<Family> &out) {
  constexpr MetricType kCounter = MetricType::Counter;
  constexpr MetricType kGauge = MetricType::Gauge;
  auto add = [&](const char *name, MetricType type, const char *help, double value) {
    add_series(out, name, type, help, service, value);
  };
  auto d = [](uint64_t v) { return static_cast<double>(v); };

  add("agent_runtime_snapshot_timestamp_seconds", kGauge,
      "unix time at which the agent runtime took its latest snapshot", snap.timestamp);

  const SchedulerStats &sc = snap.scheduler;
  add("agent_runtime_scheduler_scheduled_total", kCounter,
      "agents scheduled since the scheduler started", d(sc.total_scheduled));
  add("agent_runtime_scheduler_uptime_seconds", kGauge, "time since the scheduler started",
      sc.uptime_seconds);
  add("agent_runtime_scheduler_running_agents", kGauge, "agents currently running",
      d(sc.running_agents));
  add("agent_runtime_scheduler_queued_agents", kGauge, "agents waiting in the scheduler queue",
      d(sc.queued_agents));
  add("agent_runtime_scheduler_suspended_agents", kGauge, "agents currently suspended",
      d(sc.suspended_agents));
  add("agent_runtime_scheduler_max_capacity", kGauge, "most agents the scheduler can hold at once",
      d(sc.max_capacity));
  add("agent_runtime_scheduler_load_factor", kGauge,
      "scheduler load factor as reported by the runtime", sc.load_factor);

  const TaskManagerStats &tm = snap.task_manager;
  add("agent_runtime_tasks", kGauge, "tasks managed by the task manager", d(tm.total_tasks));
  add("agent_runtime_tasks_healthy", kGauge, "managed tasks reported healthy", d(tm.healthy_tasks));
  add("agent_runtime_task_average_uptime_seconds", kGauge, "average uptime of managed tasks",
      tm.average_uptime_seconds);
  add("agent_runtime_task_memory_usage_bytes", kGauge, "memory used by managed tasks",
      d(tm.total_memory_usage));

  const LoadBalancerStats &lb = snap.load_balancer;
  add("agent_runtime_allocations_total", kCounter, "resource allocations made by the load balancer",
      d(lb.total_allocations));
  add("agent_runtime_allocations_active", kGauge, "resource allocations currently held",
      d(lb.active_allocations));
  add("agent_runtime_memory_utilization_ratio", kGauge,
      "fraction of the load balancer's memory pool in use", lb.memory_utilization);
  add("agent_runtime_cpu_utilization_ratio", kGauge,
      "fraction of the load balancer's cpu pool in use", lb.cpu_utilization);
  add("agent_runtime_allocation_failures_total", kCounter,
      "resource allocations the load balancer could not satisfy", d(lb.allocation_failures));
  add("agent_runtime_allocation_time_average_seconds", kGauge,
      "average time to make a resource allocation", lb.average_allocation_time_ms / 1000.0);

  add("agent_runtime_system_memory_usage_bytes", kGauge, "memory used by the agent runtime system",
      snap.system.memory_usage_mb * 1048576.0);
  add("agent_runtime_system_cpu_usage_ratio", kGauge,
      "cpu usage of the agent runtime host as a ratio (percent / 100)",
      snap.system.cpu_usage_percent / 100.0);

  if (!snap.compaction) return;
  const CompactionStats &c = *snap.compaction;
  add("agent_runtime_compactions_total", kCounter, "context compactions performed",
      d(c.total_compactions));
  add("agent_runtime_compaction_tokens_saved_total", kCounter,
      "tokens removed from agent contexts by compaction", d(c.total_tokens_saved));
  if (!c.compactions_by_tier.empty()) {
    Family &f = family_named(out, "agent_runtime_compactions_by_tier_total", kCounter,
                             "context compactions performed, by compaction tier");
    for (const auto &[tier, count] : c.compactions_by_tier) {
      Series s;
      s.labels = f.store().labels({{"service", service}, {"tier", tier}});
      s.value = d(count);
      f.series.push_back(std::move(s));
    }
  }
  if (c.context_utilization_ratio) {
    add("agent_runtime_context_utilization_ratio", kGauge,
        "fraction of the agent context window in use", *c.context_utilization_ratio);
  }
}
}  // namespace

double snapshot_timestamp(const Snapshot &snapshot) { return snapshot.timestamp; }

}  // namespace aj
