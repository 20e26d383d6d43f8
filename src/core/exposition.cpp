#include "core/exposition.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <stdexcept>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "core/names.hpp"

namespace aj {

namespace {

constexpr std::size_t kPollEvery = 1000;

// Calls options.interrupted() once per kPollEvery ticks.
class Poller {
 public:
  explicit Poller(const RenderOptions &options) : fn_(options.interrupted) { check(); }
  void tick() {
    if (fn_ != nullptr && ++n_ >= kPollEvery) {
      n_ = 0;
      check();
    }
  }

 private:
  void check() const {
    if (fn_ != nullptr && fn_()) throw Cancelled();
  }
  bool (*fn_)();
  std::size_t n_ = 0;
};

// --- numbers ------------------------------------------------------------

constexpr std::size_t kDoubleBuf = 48;

// Writes `v` as Go's strconv.FormatFloat(v, 'g', -1, 64) does; returns the
// length. `buf` holds at least kDoubleBuf bytes.
std::size_t write_double(char *buf, double v) {
  auto copy = [buf](std::string_view s) {
    std::copy(s.begin(), s.end(), buf);
    return s.size();
  };
  if (std::isnan(v)) return copy("NaN");
  if (std::isinf(v)) return copy(v > 0 ? "+Inf" : "-Inf");
  char sci[kDoubleBuf];
  char *end = std::to_chars(sci, sci + sizeof sci, v, std::chars_format::scientific).ptr;
  // sci is [-]d[.ddd]e(+|-)dd[d]: shortest digits that round-trip.
  const char *p = sci;
  bool negative = *p == '-';
  if (negative) ++p;
  char digits[kDoubleBuf];
  std::size_t nd = 0;
  for (; *p != 'e'; ++p) {
    if (*p != '.') digits[nd++] = *p;
  }
  int exp = 0;
  std::from_chars(p + (p[1] == '+' ? 2 : 1), end, exp);
  if (exp < -4 || exp >= 6) return copy(std::string_view(sci, end - sci));
  std::size_t n = 0;
  if (negative) buf[n++] = '-';
  if (exp >= 0) {
    std::size_t int_digits = static_cast<std::size_t>(exp) + 1;
    for (std::size_t i = 0; i < int_digits; ++i) buf[n++] = i < nd ? digits[i] : '0';
    if (nd > int_digits) {
      buf[n++] = '.';
      for (std::size_t i = int_digits; i < nd; ++i) buf[n++] = digits[i];
    }
  } else {
    buf[n++] = '0';
    buf[n++] = '.';
    for (int i = -1; i > exp; --i) buf[n++] = '0';
    for (std::size_t i = 0; i < nd; ++i) buf[n++] = digits[i];
  }
  return n;
}

void append_double(std::string &out, double v) {
  char buf[kDoubleBuf];
  out.append(buf, write_double(buf, v));
}

// OpenMetrics: as client_golang writes floats, ".0" after integral values.
void append_double_openmetrics(std::string &out, double v) {
  char buf[kDoubleBuf];
  std::size_t n = write_double(buf, v);
  out.append(buf, n);
  if (std::isfinite(v) && std::string_view(buf, n).find_first_of(".e") == std::string_view::npos) {
    out += ".0";
  }
}

void append_uint(std::string &out, uint64_t v) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}

// --- escaping -----------------------------------------------------------

void append_escaped(std::string &out, std::string_view s, bool quote) {
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const char *rep = c == '\\'             ? "\\\\"
                      : c == '\n'           ? "\\n"
                      : (quote && c == '"') ? "\\\""
                                            : nullptr;
    if (rep == nullptr) continue;
    out.append(s, start, i - start);
    out += rep;
    start = i + 1;
  }
  out.append(s, start, std::string_view::npos);
}

void append_json_string(std::string &out, std::string_view s) {
  out += '"';
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s, start, i - start);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        static const char hex[] = "0123456789abcdef";
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xF];
      }
    }
    start = i + 1;
  }
  out.append(s, start, std::string_view::npos);
  out += '"';
}

void append_json_double(std::string &out, double v) {
  if (std::isnan(v)) {
    out += "\"NaN\"";
  } else if (std::isinf(v)) {
    out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  } else {
    append_double(out, v);  // Go 'g' output is a valid JSON number
  }
}

// --- prepare ------------------------------------------------------------

bool valid_bounds(const std::vector<double> &bounds) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) return false;
    if (i > 0 && !(bounds[i] > bounds[i - 1])) return false;
  }
  return true;
}

bool valid_name(const Family &f) {
  try {
    validate_metric_name(f.name, f.type);
    return true;
  } catch (const std::invalid_argument &) {
    return false;
  }
}

// Normalizes the labels in place and checks the values; false when the
// series must be dropped as invalid.
bool prepare_series(const Family &f, Series &s) {
  try {
    s.labels = normalize_labels(std::move(s.labels));
  } catch (const std::invalid_argument &) {
    return false;
  }
  // Exemplars that do not fit are left out; the series stays.
  if (!s.exemplars.empty()) {
    const std::size_t buckets = f.type == MetricType::Histogram ? f.bounds.size() + 1
                                : f.type == MetricType::Counter ? 1 : 0;
    std::vector<Exemplar> kept;
    for (Exemplar &e : s.exemplars) {
      if (e.bucket >= buckets || !std::isfinite(e.value) || !std::isfinite(e.timestamp)) continue;
      bool taken = false;
      for (const Exemplar &k : kept) taken = taken || k.bucket == e.bucket;
      if (taken) continue;
      try {
        e.labels = normalize_exemplar_labels(std::move(e.labels));
      } catch (const std::invalid_argument &) {
        continue;
      }
      kept.push_back(std::move(e));
    }
    std::sort(kept.begin(), kept.end(),
              [](const Exemplar &a, const Exemplar &b) { return a.bucket < b.bucket; });
    s.exemplars = std::move(kept);
  }
  switch (f.type) {
    case MetricType::Counter:
      return !std::isnan(s.value) && s.value >= 0;
    case MetricType::Gauge:
      return true;
    case MetricType::Histogram: {
      if (s.bucket_counts.size() != f.bounds.size() + 1) return false;
      uint64_t total = 0;
      for (uint64_t c : s.bucket_counts) {
        if (c > UINT64_MAX - total) return false;
        total += c;
      }
      return total == s.count;
    }
  }
  return false;
}

Family dropped_family(const Dropped &d) {
  Family f;
  f.name = kDroppedFamilyName;
  f.type = MetricType::Gauge;
  f.help = "Series left out of this render, by reason";
  auto add = [&f](const char *reason, uint64_t n) {
    Series s;
    s.labels = {{"reason", reason}};
    s.value = static_cast<double>(n);
    f.series.push_back(std::move(s));
  };
  add("cardinality", d.cardinality);
  add("duplicate", d.duplicate);
  add("invalid", d.invalid);
  return f;
}

// --- text formats -------------------------------------------------------

enum class TextFormat { Prometheus, OpenMetrics };

std::size_t labels_bytes(const Labels &labels) {
  std::size_t n = 2;
  for (const auto &[k, v] : labels) n += k.size() + v.size() + 4;
  return n;
}

// Close to the final size: values are guessed at kValueGuess bytes.
std::size_t estimate_text_size(const std::vector<Family> &families) {
  constexpr std::size_t kValueGuess = 12;
  std::size_t total = 16;
  for (const Family &f : families) {
    total += 2 * f.name.size() + f.help.size() + f.help.size() / 8 + 40;
    // per bucket: "_bucket", ",le=\"\"" and the bound
    const std::size_t bucket_extra = 7 + 6 + 8;
    for (const Series &s : f.series) {
      const std::size_t line = f.name.size() + labels_bytes(s.labels) + 2 + kValueGuess;
      if (f.type == MetricType::Histogram) {
        total += (f.bounds.size() + 1) * (line + bucket_extra) + 2 * (line + 6);
      } else {
        total += line;
      }
      // OpenMetrics: a _created line, and exemplars (" # {labels} value time")
      if (s.created > 0) total += line + 16;
      for (const Exemplar &e : s.exemplars) total += labels_bytes(e.labels) + 2 * kValueGuess + 24;
    }
  }
  return total;
}

// `k="v",...` (values escaped), for a sample's and an exemplar's label set.
void append_label_pairs(std::string &out, const Labels &labels) {
  bool first = true;
  for (const auto &[k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    append_escaped(out, v, true);
    out += '"';
  }
}

// `name suffix {labels[,le="..."]} ` (braces only when there are labels).
void append_sample_head(std::string &out, std::string_view name, std::string_view suffix,
                        const Labels &labels, const std::string *le) {
  out += name;
  out += suffix;
  if (!labels.empty() || le != nullptr) {
    out += '{';
    append_label_pairs(out, labels);
    if (le != nullptr) {
      if (!labels.empty()) out += ',';
      out += "le=\"";
      out += *le;
      out += '"';
    }
    out += '}';
  }
  out += ' ';
}

// A series' `_created` (Unix epoch seconds): microseconds kept, trailing
// zeros dropped (the shortest %g form would round to 10 ms).
void append_created(std::string &out, double created) {
  // Integer arithmetic (snprintf's %f costs a multi-precision division per
  // call, once per series of a render).
  if (!(created >= 0 && created < 9e12)) return append_double_openmetrics(out, created);
  const int64_t us = static_cast<int64_t>(std::llround(created * 1e6));
  char buf[40];
  char *end = std::to_chars(buf, buf + 24, us / 1000000).ptr;
  int64_t frac = us % 1000000;
  if (frac != 0) {
    *end++ = '.';
    char digits[6];
    for (int i = 5; i >= 0; --i, frac /= 10) digits[i] = static_cast<char>('0' + frac % 10);
    int n = 6;
    while (n > 0 && digits[n - 1] == '0') --n;
    for (int i = 0; i < n; ++i) *end++ = digits[i];
  }
  out.append(buf, static_cast<std::size_t>(end - buf));
}

// ` # {labels} value timestamp` after an OpenMetrics sample, for the
// series' exemplar of `bucket` if it has one.
void append_exemplar(std::string &out, const Series &s, std::size_t bucket) {
  for (const Exemplar &e : s.exemplars) {
    if (e.bucket != bucket) continue;
    out += " # {";
    append_label_pairs(out, e.labels);
    out += "} ";
    append_double_openmetrics(out, e.value);
    out += ' ';
    append_created(out, e.timestamp);
    return;
  }
}

std::string_view without_total(const std::string &name) {
  std::string_view n(name);
  constexpr std::string_view kTotal = "_total";
  if (n.size() > kTotal.size() && n.substr(n.size() - kTotal.size()) == kTotal) {
    n.remove_suffix(kTotal.size());
  }
  return n;
}

std::string render_text(std::vector<Family> families, const RenderOptions &options,
                        Dropped *dropped, TextFormat format) {
  Poller poll(options);
  Dropped d = prepare_families(families, options);
  if (dropped != nullptr) *dropped = d;
  const bool om = format == TextFormat::OpenMetrics;
  auto append_value = om ? append_double_openmetrics : append_double;

  std::string out;
  out.reserve(estimate_text_size(families));
  for (const Family &f : families) {
    const std::string_view meta_name =
        om && f.type == MetricType::Counter ? without_total(f.name) : std::string_view(f.name);
    out += "# HELP ";
    out += meta_name;
    out += ' ';
    append_escaped(out, f.help, om);
    out += "\n# TYPE ";
    out += meta_name;
    out += ' ';
    out += type_name(f.type);
    out += '\n';

    std::vector<std::string> le;
    bool negative_bound = false;
    if (f.type == MetricType::Histogram) {
      le.reserve(f.bounds.size() + 1);
      for (double b : f.bounds) {
        std::string s;
        if (om) {
          append_double_openmetrics(s, b);
        } else {
          append_double(s, b);
        }
        le.push_back(std::move(s));
        negative_bound = negative_bound || b < 0;
      }
      le.push_back("+Inf");
    }

    for (const Series &s : f.series) {
      poll.tick();
      if (f.type != MetricType::Histogram) {
        append_sample_head(out, f.name, "", s.labels, nullptr);
        append_value(out, s.value);
        if (om && f.type == MetricType::Counter && !s.exemplars.empty()) append_exemplar(out, s, 0);
        out += '\n';
        if (om && f.type == MetricType::Counter && s.created > 0) {
          append_sample_head(out, without_total(f.name), "_created", s.labels, nullptr);
          append_created(out, s.created);
          out += '\n';
        }
        continue;
      }
      uint64_t cumulative = 0;
      for (std::size_t i = 0; i < le.size(); ++i) {
        cumulative += s.bucket_counts[i];
        append_sample_head(out, f.name, "_bucket", s.labels, &le[i]);
        append_uint(out, cumulative);
        if (om && !s.exemplars.empty()) append_exemplar(out, s, i);
        out += '\n';
      }
      // OpenMetrics: _sum is a counter (no NaN, not negative) and is not
      // allowed with negative buckets; _count goes with it.
      if (om && (negative_bound || std::isnan(s.sum) || s.sum < 0)) continue;
      append_sample_head(out, f.name, "_sum", s.labels, nullptr);
      append_value(out, s.sum);
      out += '\n';
      append_sample_head(out, f.name, "_count", s.labels, nullptr);
      append_uint(out, s.count);
      out += '\n';
      if (om && s.created > 0) {
        append_sample_head(out, f.name, "_created", s.labels, nullptr);
        append_created(out, s.created);
        out += '\n';
      }
    }
  }
  if (om) out += "# EOF\n";
  return out;
}

// --- OTLP JSON ----------------------------------------------------------

const std::string *service_of(const Series &s) {
  for (const auto &[k, v] : s.labels) {
    if (k == "service") return &v;
  }
  return nullptr;
}

void append_attributes(std::string &out, const Labels &labels) {
  out += "\"attributes\":[";
  bool first = true;
  for (const auto &[k, v] : labels) {
    if (k == "service") continue;
    if (!first) out += ',';
    first = false;
    out += "{\"key\":";
    append_json_string(out, k);
    out += ",\"value\":{\"stringValue\":";
    append_json_string(out, v);
    out += "}}";
  }
  out += ']';
}

// A label that OTLP carries in its own field: trace_id (32 hex digits) or
// span_id (16), not all zero.
bool otlp_id(const std::string &v, std::size_t len) {
  if (v.size() != len) return false;
  bool nonzero = false;
  for (char c : v) {
    bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
    nonzero = nonzero || c != '0';
  }
  return nonzero;
}

// Unix epoch seconds as OTLP's fixed64 nanoseconds (a JSON string); false,
// writing nothing, when the time does not fit (before 1970 or after 2262).
bool append_unix_nano(std::string &out, double seconds) {
  if (!(seconds > 0 && seconds < 9.2e9)) return false;
  append_json_string(out, std::to_string(static_cast<int64_t>(std::llround(seconds * 1e6)) * 1000));
  return true;
}

// `,"exemplars":[...]`: trace_id and span_id go to traceId / spanId (as
// hex, OTLP/JSON's encoding), the other labels to filteredAttributes.
void append_otlp_exemplars(std::string &out, const std::vector<Exemplar> &exemplars) {
  out += ",\"exemplars\":[";
  bool first = true;
  for (const Exemplar &e : exemplars) {
    if (!first) out += ',';
    first = false;
    out += "{\"filteredAttributes\":[";
    std::string trace, span;
    bool first_attr = true;
    for (const auto &[k, v] : e.labels) {
      std::string lower;
      if (k == "trace_id" && otlp_id(v, 32)) {
        for (char c : v) trace += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        continue;
      }
      if (k == "span_id" && otlp_id(v, 16)) {
        for (char c : v) span += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        continue;
      }
      if (!first_attr) out += ',';
      first_attr = false;
      out += "{\"key\":";
      append_json_string(out, k);
      out += ",\"value\":{\"stringValue\":";
      append_json_string(out, v);
      out += "}}";
    }
    out += ']';
    if (std::string t; append_unix_nano(t, e.timestamp)) {
      out += ",\"timeUnixNano\":";
      out += t;
    }
    out += ",\"asDouble\":";
    append_json_double(out, e.value);
    if (!span.empty()) {
      out += ",\"spanId\":";
      append_json_string(out, span);
    }
    if (!trace.empty()) {
      out += ",\"traceId\":";
      append_json_string(out, trace);
    }
    out += '}';
  }
  out += ']';
}

}  // namespace

// --- public -------------------------------------------------------------

std::string format_double(double v) {
  char buf[kDoubleBuf];
  return std::string(buf, write_double(buf, v));
}

std::string escape_label_value(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  append_escaped(out, s, true);
  return out;
}

std::string escape_help(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  append_escaped(out, s, false);
  return out;
}

std::string escape_help_openmetrics(std::string_view s) { return escape_label_value(s); }

Dropped prepare_families(std::vector<Family> &families, const RenderOptions &options) {
  Poller poll(options);
  Dropped d;
  std::stable_sort(families.begin(), families.end(),
                   [](const Family &a, const Family &b) { return a.name < b.name; });

  std::unordered_set<std::string> claimed;
  for (auto &n : occupied_names(kDroppedFamilyName, MetricType::Gauge)) claimed.insert(n);

  std::vector<Family> kept;
  kept.reserve(families.size() + 1);
  for (Family &f : families) {
    if (!valid_name(f) || (f.type == MetricType::Histogram && !valid_bounds(f.bounds))) {
      d.invalid += f.series.size();
      continue;
    }
    const std::vector<std::string> names = occupied_names(f.name, f.type);
    if (std::any_of(names.begin(), names.end(),
                    [&claimed](const std::string &n) { return claimed.count(n) > 0; })) {
      d.duplicate += f.series.size();
      continue;
    }

    std::vector<Series> series;
    series.reserve(f.series.size());
    for (Series &s : f.series) {
      poll.tick();
      if (prepare_series(f, s)) {
        series.push_back(std::move(s));
      } else {
        ++d.invalid;
      }
    }
    // Sort by labels through one flat key per series ("n1\0v1\0n2\0v2\0":
    // names and values hold no NUL, so comparing keys compares the label
    // lists pair by pair) and a permutation, instead of moving Series
    // objects around: one memcmp per comparison, one move per series.
    // The keys live in one buffer (one allocation, not one per series); an
    // input already in order (is_sorted) skips the sort.
    {
      std::string keys;
      std::size_t total = 0;
      for (const Series &s : series) {
        for (const auto &[name, value] : s.labels) total += name.size() + value.size() + 2;
      }
      keys.reserve(total);
      struct Key {
        std::size_t offset, length, index;
      };
      std::vector<Key> order;
      order.reserve(series.size());
      for (std::size_t i = 0; i < series.size(); ++i) {
        const std::size_t start = keys.size();
        for (const auto &[name, value] : series[i].labels) {
          keys.append(name).push_back('\0');
          keys.append(value).push_back('\0');
        }
        order.push_back(Key{start, keys.size() - start, i});
      }
      const auto view = [&keys](const Key &k) {
        return std::string_view(keys.data() + k.offset, k.length);
      };
      // Ties by index: the first one wins.
      const auto less = [&view](const Key &a, const Key &b) {
        const int c = view(a).compare(view(b));
        return c < 0 || (c == 0 && a.index < b.index);
      };
      if (!std::is_sorted(order.begin(), order.end(), less)) {
        std::sort(order.begin(), order.end(), less);
      }
      std::vector<Series> sorted;
      sorted.reserve(series.size());
      for (std::size_t i = 0; i < order.size(); ++i) {
        if (i > 0 && view(order[i]) == view(order[i - 1])) {
          ++d.duplicate;
          continue;
        }
        sorted.push_back(std::move(series[order[i].index]));
      }
      series = std::move(sorted);
    }
    if (options.max_series_per_family > 0 && series.size() > options.max_series_per_family) {
      d.cardinality += series.size() - options.max_series_per_family;
      series.resize(options.max_series_per_family);
    }
    if (series.empty()) continue;

    f.series = std::move(series);
    if (f.help.empty() || !is_valid_utf8(f.help) || f.help.find('\0') != std::string::npos) {
      f.help = f.name + " (no help given)";
    }
    for (auto &n : names) claimed.insert(std::move(n));
    kept.push_back(std::move(f));
  }
  kept.push_back(dropped_family(d));
  families = std::move(kept);
  return d;
}

std::string render_prometheus(std::vector<Family> families, const RenderOptions &options,
                              Dropped *dropped) {
  return render_text(std::move(families), options, dropped, TextFormat::Prometheus);
}

std::string render_openmetrics(std::vector<Family> families, const RenderOptions &options,
                               Dropped *dropped) {
  return render_text(std::move(families), options, dropped, TextFormat::OpenMetrics);
}

std::string render_otlp_json(std::vector<Family> families, const std::string *only_service,
                             int64_t time_unix_nano, const RenderOptions &options,
                             Dropped *dropped) {
  Poller poll(options);
  Dropped d = prepare_families(families, options);
  if (dropped != nullptr) *dropped = d;

  // service.name -> (family index, series indexes), in family order.
  struct Entry {
    std::size_t family;
    std::vector<std::size_t> series;
  };
  std::map<std::string, std::vector<Entry>, std::less<>> resources;
  std::size_t total_series = 0;
  for (std::size_t fi = 0; fi < families.size(); ++fi) {
    const Family &f = families[fi];
    for (std::size_t si = 0; si < f.series.size(); ++si) {
      poll.tick();
      const std::string *svc = service_of(f.series[si]);
      std::string_view service = svc != nullptr ? std::string_view(*svc) : kOtlpDefaultService;
      if (only_service != nullptr && service != *only_service) continue;
      auto it = resources.find(service);
      if (it == resources.end())
        it = resources.emplace(std::string(service), std::vector<Entry>()).first;
      if (it->second.empty() || it->second.back().family != fi) it->second.push_back({fi, {}});
      it->second.back().series.push_back(si);
      ++total_series;
    }
  }

  std::string t;
  append_json_string(t, std::to_string(time_unix_nano));

  std::string out;
  out.reserve(256 + total_series * 160);
  out += "{\"resourceMetrics\":[";
  bool first_resource = true;
  for (const auto &[service, entries] : resources) {
    if (!first_resource) out += ',';
    first_resource = false;
    out += "{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":";
    append_json_string(out, service);
    out += "}}";
    if (!options.service_namespace.empty()) {
      out += ",{\"key\":\"service.namespace\",\"value\":{\"stringValue\":";
      append_json_string(out, options.service_namespace);
      out += "}}";
    }
    out += "]},\"scopeMetrics\":[{\"scope\":{\"name\":";
    append_json_string(out, kOtlpScopeName);
    out += ",\"version\":";
    append_json_string(out, options.scope_version.empty() ? std::string_view(kOtlpScopeVersion)
                                                          : std::string_view(options.scope_version));
    out += "},\"metrics\":[";
    bool first_metric = true;
    for (const Entry &e : entries) {
      const Family &f = families[e.family];
      if (!first_metric) out += ',';
      first_metric = false;
      out += "{\"name\":";
      append_json_string(
          out, f.type == MetricType::Counter ? without_total(f.name) : std::string_view(f.name));
      out += ",\"description\":";
      append_json_string(out, f.help);
      switch (f.type) {
        case MetricType::Counter:
          out += ",\"sum\":{\"aggregationTemporality\":2,\"isMonotonic\":true,\"dataPoints\":[";
          break;
        case MetricType::Gauge:
          out += ",\"gauge\":{\"dataPoints\":[";
          break;
        case MetricType::Histogram:
          out += ",\"histogram\":{\"aggregationTemporality\":2,\"dataPoints\":[";
          break;
      }
      bool first_point = true;
      for (std::size_t si : e.series) {
        poll.tick();
        const Series &s = f.series[si];
        if (!first_point) out += ',';
        first_point = false;
        out += '{';
        append_attributes(out, s.labels);
        if (std::string t; f.type != MetricType::Gauge && append_unix_nano(t, s.created)) {
          out += ",\"startTimeUnixNano\":";
          out += t;
        }
        out += ",\"timeUnixNano\":";
        out += t;
        if (f.type != MetricType::Histogram) {
          out += ",\"asDouble\":";
          append_json_double(out, s.value);
        } else {
          out += ",\"count\":\"";
          append_uint(out, s.count);
          out += "\",\"sum\":";
          append_json_double(out, s.sum);
          out += ",\"bucketCounts\":[";
          for (std::size_t i = 0; i < s.bucket_counts.size(); ++i) {
            if (i > 0) out += ',';
            out += '"';
            append_uint(out, s.bucket_counts[i]);
            out += '"';
          }
          out += "],\"explicitBounds\":[";
          for (std::size_t i = 0; i < f.bounds.size(); ++i) {
            if (i > 0) out += ',';
            append_json_double(out, f.bounds[i]);
          }
          out += ']';
        }
        if (!s.exemplars.empty()) append_otlp_exemplars(out, s.exemplars);
        out += '}';
      }
      out += "]}}";
    }
    out += "]}]}";
  }
  out += "]}";
  return out;
}

}  // namespace aj
