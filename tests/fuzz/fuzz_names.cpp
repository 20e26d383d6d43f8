// libFuzzer target: the name, label and bucket rules of core/names.hpp.
// The input is split into fields with FuzzedDataProvider (strings from the
// front, choices and numbers from the back) and drives a sequence of calls:
//   validate_metric_name (all types), validate_label_name/value,
//   normalize_labels, normalize_exemplar_labels, validate_buckets (bytes -> doubles),
//   check_family_collision, quote_for_message, is_valid_utf8.
// Only std::invalid_argument may escape, with a message starting with the
// documented path and valid UTF-8; each verdict is compared with a small
// independent reference of the documented rule.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/names.hpp"
#include "fuzz_common.hpp"

namespace {

using aj::MetricType;
using aj::fuzz::die;
using aj::fuzz::only_invalid_argument;

const char *const kNamePool[] = {
    "x",        "x_total", "x_count",   "x_sum",           "x_bucket",       "x_created",
    "x_info",   "_total",  "total",     "a_total_total",   "le",             "quantile",
    "__name__", "_",       "service",   "tier",            "A1",             "agent_runtime_x",
    "",         "1x",      "\xc3\xa9",  "agent_journal_render_dropped_series",
    "x_bucket_count", "x\n", "x\0y"};

std::string field(FuzzedDataProvider &fdp) {
  if (fdp.ConsumeIntegralInRange<int>(0, 3) == 0) {
    const std::size_t n = sizeof kNamePool / sizeof kNamePool[0];
    const std::size_t i = fdp.ConsumeIntegralInRange<std::size_t>(0, n - 1);
    // "x\0y" keeps its NUL.
    return i == n - 1 ? std::string("x\0y", 3) : std::string(kNamePool[i]);
  }
  std::string s = fdp.ConsumeRandomLengthString(300);
  if (fdp.ConsumeIntegralInRange<int>(0, 15) == 0) s.append(fdp.ConsumeIntegralInRange<int>(150, 4200), 'a');
  return s;
}

MetricType any_type(FuzzedDataProvider &fdp) {
  return static_cast<MetricType>(fdp.ConsumeIntegralInRange<int>(0, 2));
}

double any_double(FuzzedDataProvider &fdp) {
  static const double kSpecial[] = {0.0,
                                    -0.0,
                                    1.0,
                                    -1.0,
                                    0.005,
                                    2.5,
                                    1e300,
                                    std::numeric_limits<double>::max(),
                                    std::numeric_limits<double>::denorm_min(),
                                    std::numeric_limits<double>::quiet_NaN(),
                                    std::numeric_limits<double>::infinity(),
                                    -std::numeric_limits<double>::infinity()};
  return ::aj::fuzz::pick_double(fdp, kSpecial, -20, 200, 4);
}

bool ends_with(const std::string &s, const char *suffix) {
  const std::size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// nlohmann's serializer as the UTF-8 reference.
bool ref_utf8(const std::string &s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::type_error &) {
    return false;
  }
}

bool ref_metric_name(const std::string &n, MetricType t) {
  if (n.empty() || n.size() > aj::kMaxMetricNameBytes) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    if (!((c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9'))) return false;
  }
  if (t == MetricType::Counter) return ends_with(n, "_total") && n.size() > 6;
  for (const char *s : {"_total", "_count", "_sum", "_bucket", "_created", "_info"}) {
    if (ends_with(n, s)) return false;
  }
  return true;
}

bool ref_label_name(const std::string &n) {
  if (n.empty() || n.size() > aj::kMaxLabelNameBytes) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
          (i > 0 && c >= '0' && c <= '9'))) {
      return false;
    }
  }
  return n.compare(0, 2, "__") != 0 && n != "le" && n != "quantile";
}

bool ref_label_value(const std::string &v) {
  return v.size() <= aj::kMaxLabelValueBytes && v.find('\0') == std::string::npos && ref_utf8(v);
}

void expect(bool got, bool want, const char *where, const std::string &input) {
  if (got != want) {
    die(where, std::string(got ? "accepts " : "rejects ") + aj::quote_for_message(input) +
                   (want ? " (should accept)" : " (should reject)"));
  }
}

void op_metric_name(FuzzedDataProvider &fdp) {
  const std::string name = field(fdp);
  for (MetricType t : {MetricType::Counter, MetricType::Gauge, MetricType::Histogram}) {
    const bool ok = only_invalid_argument("validate_metric_name", "name: ",
                                          [&] { aj::validate_metric_name(name, t); });
    expect(ok, ref_metric_name(name, t), "validate_metric_name", name);
    const auto occupied = aj::occupied_names(name, t);
    const auto derived = aj::derived_sample_names(name, t);
    AJ_FUZZ_CHECK(!derived.empty() && derived[0] == name, "derived_sample_names", "no own name");
    for (const std::string &d : derived) {
      AJ_FUZZ_CHECK(std::find(occupied.begin(), occupied.end(), d) != occupied.end(),
                    "occupied_names", "misses derived name " + d);
    }
    if (ok) {
      // A family always collides with itself.
      const bool clean = only_invalid_argument("check_family_collision", "name: ", [&] {
        aj::check_family_collision(name, t, {{name, t}});
      });
      AJ_FUZZ_CHECK(!clean, "check_family_collision", "no self collision for " + name);
    }
  }
  const bool reserved = aj::is_reserved_metric_name(name);
  AJ_FUZZ_CHECK(reserved == (name.rfind("agent_runtime_", 0) == 0 ||
                             name.rfind("agent_journal_", 0) == 0),
                "is_reserved_metric_name", aj::quote_for_message(name));
}

void op_label(FuzzedDataProvider &fdp) {
  const std::string name = field(fdp);
  const std::string value = field(fdp);
  expect(only_invalid_argument("validate_label_name", "labels.",
                               [&] { aj::validate_label_name(name); }),
         ref_label_name(name), "validate_label_name", name);
  expect(only_invalid_argument("validate_label_value", "labels.",
                               [&] { aj::validate_label_value(name, value); }),
         ref_label_value(value), "validate_label_value", value);
}

void op_normalize(FuzzedDataProvider &fdp) {
  aj::Labels in;
  const int n = fdp.ConsumeIntegralInRange<int>(0, 6);
  for (int i = 0; i < n; ++i) {
    std::string name = field(fdp);
    std::string value = fdp.ConsumeBool() ? std::string() : field(fdp);
    in.emplace_back(std::move(name), std::move(value));
  }
  bool want = true;
  std::vector<std::string> names;
  std::size_t nonempty = 0;
  for (const auto &[k, v] : in) {
    want = want && ref_label_name(k) && ref_label_value(v);
    names.push_back(k);
    nonempty += v.empty() ? 0 : 1;
  }
  std::sort(names.begin(), names.end());
  want = want && std::adjacent_find(names.begin(), names.end()) == names.end();

  aj::Labels out;
  const bool ok = only_invalid_argument("normalize_labels", "labels.",
                                        [&] { out = aj::normalize_labels(in); });
  AJ_FUZZ_CHECK(ok == want, "normalize_labels",
                std::string(ok ? "accepts" : "rejects") + " a label set of " +
                    std::to_string(in.size()));
  if (!ok) return;
  AJ_FUZZ_CHECK(out.size() == nonempty, "normalize_labels", "wrong number of labels kept");
  for (std::size_t i = 0; i < out.size(); ++i) {
    AJ_FUZZ_CHECK(!out[i].second.empty(), "normalize_labels", "kept an empty value");
    AJ_FUZZ_CHECK(i == 0 || out[i - 1].first < out[i].first, "normalize_labels",
                  "not sorted by name");
  }
}

// normalize_exemplar_labels against a reference: at least one label,
// names as label names but le and quantile allowed, values valid UTF-8
// without NUL (any length), no name twice, at most 128 characters in all;
// the result is the input sorted by name.
void op_exemplar(FuzzedDataProvider &fdp) {
  aj::Labels in;
  const int n = fdp.ConsumeIntegralInRange<int>(0, 4);
  for (int i = 0; i < n; ++i) {
    std::string name = fdp.ConsumeBool() ? std::string(fdp.ConsumeBool() ? "le" : "trace_id") : field(fdp);
    in.emplace_back(std::move(name), field(fdp));
  }
  bool want = !in.empty();
  std::vector<std::string> names;
  std::size_t chars = 0;
  for (const auto &[k, v] : in) {
    const bool name_ok = (ref_label_name(k) || k == "le" || k == "quantile");
    want = want && name_ok && v.find('\0') == std::string::npos && ref_utf8(v);
    names.push_back(k);
    for (unsigned char c : k + v) chars += (c & 0xC0) != 0x80;
  }
  std::sort(names.begin(), names.end());
  want = want && std::adjacent_find(names.begin(), names.end()) == names.end() &&
         chars <= aj::kMaxExemplarLabelChars;
  aj::Labels out;
  const bool ok = only_invalid_argument("normalize_exemplar_labels", "exemplar",
                                        [&] { out = aj::normalize_exemplar_labels(in); });
  AJ_FUZZ_CHECK(ok == want, "normalize_exemplar_labels",
                std::string(ok ? "accepts" : "rejects") + " an exemplar of " +
                    std::to_string(in.size()) + " labels, " + std::to_string(chars) + " characters");
  if (!ok) return;
  AJ_FUZZ_CHECK(out.size() == in.size(), "normalize_exemplar_labels", "dropped a label");
  for (std::size_t i = 1; i < out.size(); ++i)
    AJ_FUZZ_CHECK(out[i - 1].first < out[i].first, "normalize_exemplar_labels", "not sorted by name");
}

void op_buckets(FuzzedDataProvider &fdp) {
  std::vector<double> in;
  const std::size_t n = fdp.ConsumeIntegralInRange<std::size_t>(0, 110);
  const bool increasing = fdp.ConsumeBool();
  for (std::size_t i = 0; i < n && fdp.remaining_bytes() > 0; ++i) in.push_back(any_double(fdp));
  if (increasing) std::sort(in.begin(), in.end());  // NaNs make this arbitrary; fine
  if (fdp.ConsumeIntegralInRange<int>(0, 3) == 0) in.push_back(std::numeric_limits<double>::infinity());

  std::vector<double> want_out = in;
  if (!want_out.empty() && std::isinf(want_out.back()) && want_out.back() > 0) want_out.pop_back();
  bool want = !want_out.empty() && want_out.size() <= aj::kMaxBuckets;
  for (std::size_t i = 0; want && i < want_out.size(); ++i) {
    want = std::isfinite(want_out[i]) && (i == 0 || want_out[i] > want_out[i - 1]);
  }

  std::vector<double> out;
  const bool ok = only_invalid_argument("validate_buckets", "buckets",
                                        [&] { out = aj::validate_buckets(in); });
  AJ_FUZZ_CHECK(ok == want, "validate_buckets",
                std::string(ok ? "accepts" : "rejects") + " " + std::to_string(in.size()) +
                    " bounds");
  if (ok) {
    AJ_FUZZ_CHECK(out.size() == want_out.size() &&
                      std::equal(out.begin(), out.end(), want_out.begin()),
                  "validate_buckets", "returned other bounds than given");
  }
}

void op_collision(FuzzedDataProvider &fdp) {
  const std::string name = field(fdp);
  const MetricType type = any_type(fdp);
  std::vector<std::pair<std::string, MetricType>> existing;
  const int n = fdp.ConsumeIntegralInRange<int>(0, 5);
  for (int i = 0; i < n; ++i) {
    std::string other;
    switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:  // a name derived from ours: likely to collide
        other = name + std::string(kNamePool[fdp.ConsumeIntegralInRange<int>(1, 6)]).substr(1);
        break;
      case 1:
        other = ends_with(name, "_total") ? name.substr(0, name.size() - 6) : name + "_total";
        break;
      default:
        other = field(fdp);
    }
    existing.emplace_back(std::move(other), any_type(fdp));
  }
  bool all_utf8 = ref_utf8(name);
  for (const auto &e : existing) all_utf8 = all_utf8 && ref_utf8(e.first);
  // Messages quote the names as given: check UTF-8 only for UTF-8 input.
  const bool clean = only_invalid_argument("check_family_collision", all_utf8 ? "name: " : nullptr,
                                           [&] { aj::check_family_collision(name, type, existing); });
  // Symmetry: a collides with b exactly when b collides with a.
  bool any = false;
  for (const auto &e : existing) {
    const std::string &other = e.first;
    const MetricType other_type = e.second;
    const bool ab = !only_invalid_argument("check_family_collision", nullptr, [&] {
      aj::check_family_collision(name, type, {{other, other_type}});
    });
    const bool ba = !only_invalid_argument("check_family_collision", nullptr, [&] {
      aj::check_family_collision(other, other_type, {{name, type}});
    });
    AJ_FUZZ_CHECK(ab == ba, "check_family_collision",
                  "not symmetric: " + aj::quote_for_message(name) + " vs " +
                      aj::quote_for_message(other));
    any = any || ab;
  }
  AJ_FUZZ_CHECK(clean == !any, "check_family_collision", "list verdict differs from pairwise");
}

void op_quote(FuzzedDataProvider &fdp) {
  const std::string s = field(fdp);
  const std::string q = aj::quote_for_message(s);
  AJ_FUZZ_CHECK(q.size() >= 2 && q[0] == '"', "quote_for_message", "not quoted");
  AJ_FUZZ_CHECK(q.size() <= 2 + 4 * 64 + 3, "quote_for_message", "too long");
  for (char c : q) {
    AJ_FUZZ_CHECK(c >= 0x20 && c < 0x7f, "quote_for_message", "non printable byte in output");
  }
  AJ_FUZZ_CHECK(aj::is_valid_utf8(s) == ref_utf8(s), "is_valid_utf8",
                "disagrees with nlohmann on " + q);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  for (int step = 0; step < 32 && fdp.remaining_bytes() > 0; ++step) {
    switch (fdp.ConsumeIntegralInRange<int>(0, 6)) {
      case 0:
        op_metric_name(fdp);
        break;
      case 1:
        op_label(fdp);
        break;
      case 2:
        op_normalize(fdp);
        break;
      case 3:
        op_buckets(fdp);
        break;
      case 4:
        op_collision(fdp);
        break;
      case 5:
        op_exemplar(fdp);
        break;
      default:
        op_quote(fdp);
        break;
    }
  }
  return 0;
}
