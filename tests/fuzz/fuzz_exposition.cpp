// libFuzzer target: a random metric model (arbitrary names, labels and
// values including NaN/Inf, histograms with random bounds and bucket counts)
// rendered as Prometheus text, OpenMetrics and OTLP JSON. Nothing may throw
// (except Cancelled when asked to cancel) and cheap invariants must hold:
//  - the three renders report the same Dropped counts as prepare_families;
//  - the prepared model is sorted, normalized, within max_series_per_family,
//    the dropped-series family last;
//  - Prometheus: ends with "\n", every line is "# HELP ", "# TYPE " or a
//    sample of the family last TYPE'd, and the line count matches the model;
//  - OpenMetrics: same, "# EOF" once and last;
//  - OTLP: parses with nlohmann, one data point per prepared series (when
//    not filtered by service), resources sorted and unique;
//  - format_double round-trips through strtod.
#include <new>
#include <algorithm>
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/exposition.hpp"
#include "core/names.hpp"
#include "fuzz_common.hpp"

namespace {

using aj::Family;
using aj::MetricType;
using aj::Exemplar;
using aj::Series;
using aj::fuzz::die;

const char *const kFamilyNames[] = {"x",
                                    "x_total",
                                    "x_count",
                                    "x_bucket",
                                    "x_sum",
                                    "x_created",
                                    "y",
                                    "y_total",
                                    "_total",
                                    "http_requests_total",
                                    "request_seconds",
                                    "agent_journal_render_dropped_series",
                                    "agent_journal_render_dropped_series_total",
                                    "agent_journal_render_dropped_series_bucket",
                                    "Bad",
                                    ""};
const char *const kLabelNames[] = {"service", "tier", "a", "b", "B", "_", "le", "quantile",
                                   "__x", "reason", "1a", ""};
const char *const kLabelValues[] = {"svc", "other", "", "a\"b\\c\nd", "\xc3\xa9", "\xff",
                                    "\xed\xa0\x80", "agent_journal", "x\ty\rz"};

template <std::size_t N>
std::string pick_or_random(FuzzedDataProvider &fdp, const char *const (&pool)[N],
                           std::size_t max_len) {
  if (fdp.ConsumeIntegralInRange<int>(0, 4) != 0) {
    return pool[fdp.ConsumeIntegralInRange<std::size_t>(0, N - 1)];
  }
  return fdp.ConsumeRandomLengthString(max_len);
}

double any_double(FuzzedDataProvider &fdp) {
  static const double kSpecial[] = {0.0,
                                    -0.0,
                                    1.0,
                                    -1.0,
                                    0.1,
                                    123456.0,
                                    1e6,
                                    1e-5,
                                    1.5e-7,
                                    9007199254740993.0,
                                    std::numeric_limits<double>::max(),
                                    -std::numeric_limits<double>::max(),
                                    std::numeric_limits<double>::min(),
                                    std::numeric_limits<double>::denorm_min(),
                                    -std::numeric_limits<double>::denorm_min(),
                                    std::numeric_limits<double>::quiet_NaN(),
                                    -std::numeric_limits<double>::quiet_NaN(),
                                    std::numeric_limits<double>::infinity(),
                                    -std::numeric_limits<double>::infinity()};
  return ::aj::fuzz::pick_double(fdp, kSpecial, -100, 1000, 8);
}

uint64_t any_count(FuzzedDataProvider &fdp) {
  switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      return fdp.ConsumeIntegral<uint64_t>();
    case 1:
      return UINT64_MAX - fdp.ConsumeIntegralInRange<uint64_t>(0, 3);
    default:
      return fdp.ConsumeIntegralInRange<uint64_t>(0, 20);
  }
}

std::vector<Family> build_model(FuzzedDataProvider &fdp) {
  std::vector<Family> families;
  const int nf = fdp.ConsumeIntegralInRange<int>(0, 8);
  for (int fi = 0; fi < nf && fdp.remaining_bytes() > 0; ++fi) {
    Family f;
    f.name = pick_or_random(fdp, kFamilyNames, 64);
    f.type = static_cast<MetricType>(fdp.ConsumeIntegralInRange<int>(0, 2));
    f.help = fdp.ConsumeBool() ? fdp.ConsumeRandomLengthString(80) : std::string();
    if (f.type == MetricType::Histogram || fdp.ConsumeIntegralInRange<int>(0, 7) == 0) {
      const int nb = fdp.ConsumeIntegralInRange<int>(0, 12);
      double b = any_double(fdp);
      for (int i = 0; i < nb; ++i) {
        f.bounds.push_back(b);
        // Mostly increasing, so that histograms are not all dropped.
        b = fdp.ConsumeIntegralInRange<int>(0, 5) == 0 ? any_double(fdp)
                                                       : b + std::fabs(any_double(fdp)) + 0.5;
      }
    }
    const int ns = fdp.ConsumeIntegralInRange<int>(0, 8);
    for (int si = 0; si < ns; ++si) {
      Series s;
      const int nl = fdp.ConsumeIntegralInRange<int>(0, 4);
      aj::Labels labels;  // copied into the family's arena, as the loaders do
      for (int li = 0; li < nl; ++li) {
        labels.emplace_back(pick_or_random(fdp, kLabelNames, 24),
                            pick_or_random(fdp, kLabelValues, 40));
      }
      s.labels = f.store().labels(labels);
      s.value = any_double(fdp);
      if (f.type == MetricType::Histogram || fdp.ConsumeIntegralInRange<int>(0, 7) == 0) {
        std::size_t nbc = f.bounds.size() + 1;
        if (fdp.ConsumeIntegralInRange<int>(0, 7) == 0) {
          nbc = fdp.ConsumeIntegralInRange<std::size_t>(0, 14);
        }
        uint64_t total = 0;
        for (std::size_t i = 0; i < nbc; ++i) {
          s.bucket_counts.push_back(any_count(fdp));
          total += s.bucket_counts.back();  // may wrap: such series are invalid
        }
        s.count = fdp.ConsumeIntegralInRange<int>(0, 7) == 0 ? any_count(fdp) : total;
        s.sum = any_double(fdp);
      }
      // 0.6.0: _created and exemplars (any times, buckets, labels)
      if (fdp.ConsumeBool()) s.created = any_double(fdp);
      const int ne = fdp.ConsumeIntegralInRange<int>(0, 3);
      Exemplar *ex = f.store().array<Exemplar>(ne);
      for (int ei = 0; ei < ne; ++ei) {
        Exemplar e;
        e.bucket = fdp.ConsumeIntegralInRange<std::size_t>(0, 13);
        const int nel = fdp.ConsumeIntegralInRange<int>(0, 3);
        aj::Labels el;
        for (int li = 0; li < nel; ++li)
          el.emplace_back(pick_or_random(fdp, kLabelNames, 24), pick_or_random(fdp, kLabelValues, 40));
        e.labels = f.store().labels(el);
        e.value = any_double(fdp);
        e.timestamp = any_double(fdp);
        new (&ex[ei]) Exemplar(e);
      }
      s.exemplars = aj::Span<Exemplar>{ex, static_cast<uint32_t>(ne)};
      f.series.push_back(std::move(s));
    }
    families.push_back(std::move(f));
  }
  return families;
}

bool same(const aj::Dropped &a, const aj::Dropped &b) {
  return a.duplicate == b.duplicate && a.cardinality == b.cardinality && a.invalid == b.invalid;
}

void check_prepared(const std::vector<Family> &fams, const aj::RenderOptions &options) {
  AJ_FUZZ_CHECK(!fams.empty() && fams.back().name == aj::kDroppedFamilyName &&
                    fams.back().series.size() == 3,
                "prepare_families", "dropped-series family not last");
  for (std::size_t i = 0; i < fams.size(); ++i) {
    const Family &f = fams[i];
    AJ_FUZZ_CHECK(i + 1 == fams.size() || i == 0 || fams[i - 1].name <= f.name,
                  "prepare_families", "families not sorted");
    AJ_FUZZ_CHECK(!f.series.empty(), "prepare_families", "family without series kept");
    AJ_FUZZ_CHECK(options.max_series_per_family == 0 ||
                      f.series.size() <= options.max_series_per_family || i + 1 == fams.size(),
                  "prepare_families", "over max_series_per_family");
    AJ_FUZZ_CHECK(!f.help.empty() && aj::is_valid_utf8(f.help), "prepare_families", "bad help");
    for (std::size_t j = 0; j < f.series.size(); ++j) {
      const Series &s = f.series[j];
      AJ_FUZZ_CHECK(j == 0 || aj::to_labels(f.series[j - 1].labels) < aj::to_labels(s.labels), "prepare_families",
                    "series not sorted/unique in " + f.name);
      if (f.type == MetricType::Histogram) {
        AJ_FUZZ_CHECK(s.bucket_counts.size() == f.bounds.size() + 1, "prepare_families",
                      "histogram shape kept");
      }
      if (f.type == MetricType::Counter) {
        AJ_FUZZ_CHECK(!std::isnan(s.value) && s.value >= 0, "prepare_families",
                      "bad counter value kept");
      }
    }
  }
}

bool negative_bound(const Family &f) {
  for (double b : f.bounds) {
    if (b < 0) return true;
  }
  return false;
}

// Lines the text format writes for the prepared model.
std::size_t expected_lines(const std::vector<Family> &fams, bool om) {
  std::size_t n = om ? 1 : 0;  // # EOF
  for (const Family &f : fams) {
    n += 2;
    for (const Series &s : f.series) {
      if (f.type != MetricType::Histogram) {
        n += 1;
        if (om && f.type == MetricType::Counter && s.created > 0) n += 1;  // _created
        continue;
      }
      n += f.bounds.size() + 1;
      if (!(om && (negative_bound(f) || std::isnan(s.sum) || s.sum < 0)))
        n += 2 + (om && s.created > 0 ? 1 : 0);  // _sum, _count (, _created)
    }
  }
  return n;
}

bool metric_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == ':';
}

void check_text(const std::string &out, const std::vector<Family> &fams, bool om) {
  const char *where = om ? "render_openmetrics" : "render_prometheus";
  AJ_FUZZ_CHECK(!out.empty() && out.back() == '\n', where, "does not end with a newline");
  if (om) {
    // "# EOF" may occur inside a HELP text or label value, never as a line
    // of its own before the last one.
    AJ_FUZZ_CHECK(out.size() >= 7 && out.find("\n# EOF\n") == out.size() - 7, where,
                  "# EOF is not once and last");
  }
  std::size_t lines = 0;
  std::string family;  // the name of the last # TYPE
  std::size_t start = 0;
  while (start < out.size()) {
    const std::size_t end = out.find('\n', start);
    std::string_view line(out.data() + start, end - start);
    start = end + 1;
    ++lines;
    if (om && start == out.size()) {
      AJ_FUZZ_CHECK(line == "# EOF", where, "last line is not # EOF");
      break;
    }
    if (line.substr(0, 7) == "# HELP ") continue;
    if (line.substr(0, 7) == "# TYPE ") {
      const std::size_t sp = line.find(' ', 7);
      AJ_FUZZ_CHECK(sp != std::string_view::npos, where, "TYPE line without type");
      const std::string_view type = line.substr(sp + 1);
      AJ_FUZZ_CHECK(type == "counter" || type == "gauge" || type == "histogram", where,
                    "bad TYPE " + std::string(type));
      family = std::string(line.substr(7, sp - 7));
      continue;
    }
    // An OpenMetrics exemplar (" # {labels} value timestamp") follows a
    // sample; the 0.0.4 format has none.
    std::string_view line_exemplar;
    if (const std::size_t ex = line.find(" # {"); ex != std::string_view::npos &&
                                                  line.find('"') == std::string_view::npos) {
      AJ_FUZZ_CHECK(om, where, "exemplar in the 0.0.4 format: " + std::string(line.substr(0, 80)));
      line_exemplar = line.substr(ex + 3);
      line = line.substr(0, ex);
    } else if (om) {
      // labels may hold " # {" inside quotes: find the exemplar after the label set
      const std::size_t close = line.find("} ");
      const std::size_t ex2 = close == std::string_view::npos ? close : line.find(" # {", close);
      if (ex2 != std::string_view::npos) {
        line_exemplar = line.substr(ex2 + 3);
        line = line.substr(0, ex2);
      }
    }
    if (!line_exemplar.empty()) {
      AJ_FUZZ_CHECK(line_exemplar.find("} ") != std::string_view::npos &&
                        std::count(line_exemplar.begin(), line_exemplar.end(), ' ') >= 2,
                    where, "malformed exemplar: " + std::string(line_exemplar.substr(0, 80)));
    }
    AJ_FUZZ_CHECK(!family.empty() && line.substr(0, family.size()) == family, where,
                  "sample outside its family: " + std::string(line.substr(0, 80)));
    std::size_t i = 0;
    while (i < line.size() && metric_name_char(line[i])) ++i;
    AJ_FUZZ_CHECK(i > 0 && i < line.size() && (line[i] == '{' || line[i] == ' '), where,
                  "malformed sample line: " + std::string(line.substr(0, 80)));
    const std::size_t sp = line.rfind(' ');
    AJ_FUZZ_CHECK(sp != std::string_view::npos && sp + 1 < line.size(), where,
                  "sample without value");
    if (line[i] == '{') {
      AJ_FUZZ_CHECK(line[sp - 1] == '}', where, "unterminated label set");
    }
  }
  const std::size_t want = expected_lines(fams, om);
  AJ_FUZZ_CHECK(lines == want, where,
                "wrote " + std::to_string(lines) + " lines, expected " + std::to_string(want));
}

void check_otlp(const std::string &out, const std::vector<Family> &fams, bool filtered) {
  const nlohmann::json doc = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  AJ_FUZZ_CHECK(!doc.is_discarded(), "render_otlp_json", "output is not valid JSON");
  AJ_FUZZ_CHECK(doc.is_object() && doc.contains("resourceMetrics") &&
                    doc["resourceMetrics"].is_array(),
                "render_otlp_json", "no resourceMetrics array");
  std::size_t points = 0;
  std::string previous;
  bool first = true;
  for (const auto &rm : doc["resourceMetrics"]) {
    const std::string service =
        rm.at("resource").at("attributes").at(0).at("value").at("stringValue").get<std::string>();
    AJ_FUZZ_CHECK(first || previous < service, "render_otlp_json", "resources not sorted/unique");
    first = false;
    previous = service;
    for (const auto &m : rm.at("scopeMetrics").at(0).at("metrics")) {
      for (const char *kind : {"sum", "gauge", "histogram"}) {
        if (m.contains(kind)) points += m[kind].at("dataPoints").size();
      }
    }
  }
  if (!filtered) {
    std::size_t want = 0;
    for (const Family &f : fams) want += f.series.size();
    AJ_FUZZ_CHECK(points == want, "render_otlp_json",
                  std::to_string(points) + " data points for " + std::to_string(want) + " series");
  }
}

void check_format_double(double v) {
  const std::string s = aj::format_double(v);
  if (std::isnan(v)) {
    AJ_FUZZ_CHECK(s == "NaN", "format_double", s);
    return;
  }
  if (std::isinf(v)) {
    AJ_FUZZ_CHECK(s == (v > 0 ? "+Inf" : "-Inf"), "format_double", s);
    return;
  }
  char *end = nullptr;
  const double back = std::strtod(s.c_str(), &end);
  AJ_FUZZ_CHECK(end == s.c_str() + s.size() && back == v && std::signbit(back) == std::signbit(v),
                "format_double", s + " does not round-trip");
}

bool g_cancel = false;
bool interrupted() { return g_cancel; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  aj::RenderOptions options;
  options.max_series_per_family = fdp.ConsumeIntegralInRange<std::size_t>(0, 10);
  const int service_choice = fdp.ConsumeIntegralInRange<int>(0, 3);
  const int64_t time_unix_nano = fdp.ConsumeIntegral<int64_t>();
  const bool cancel = fdp.ConsumeIntegralInRange<int>(0, 31) == 0;
  const double probe = any_double(fdp);
  std::vector<Family> model = build_model(fdp);

  check_format_double(probe);
  for (const Family &f : model) {
    for (double b : f.bounds) check_format_double(b);
    for (const Series &s : f.series) check_format_double(s.value);
  }

  std::string only_service;
  const std::string *only = nullptr;
  if (service_choice == 1) {
    only_service = "svc";
    only = &only_service;
  } else if (service_choice == 2) {
    only_service = aj::kOtlpDefaultService;
    only = &only_service;
  }

  if (cancel) {
    g_cancel = true;
    options.interrupted = interrupted;
    bool cancelled = false;
    try {
      aj::render_prometheus(model, options);
    } catch (const aj::Cancelled &) {
      cancelled = true;
    } catch (const std::exception &e) {
      die("render_prometheus", e.what());
    }
    g_cancel = false;
    AJ_FUZZ_CHECK(cancelled, "render_prometheus", "interrupted() ignored");
  }

  aj::Dropped d0, d1, d2, d3;
  std::vector<Family> prepared;
  std::string prom, om, otlp;
  try {
    prepared = model;
    d0 = aj::prepare_families(prepared, options);
    prom = aj::render_prometheus(model, options, &d1);
    om = aj::render_openmetrics(model, options, &d2);
    otlp = aj::render_otlp_json(model, only, time_unix_nano, options, &d3);
  } catch (const std::exception &e) {
    die("render", std::string("threw: ") + e.what());
  } catch (...) {
    die("render", "threw a non-std exception");
  }
  AJ_FUZZ_CHECK(same(d0, d1) && same(d0, d2) && same(d0, d3), "render",
                "formats disagree on dropped series");
  std::size_t given = 0, kept = 0;
  for (const Family &f : model) given += f.series.size();
  for (std::size_t i = 0; i + 1 < prepared.size(); ++i) kept += prepared[i].series.size();
  AJ_FUZZ_CHECK(kept + d0.duplicate + d0.cardinality + d0.invalid == given, "prepare_families",
                "kept + dropped != given (" + std::to_string(kept) + " + " +
                    std::to_string(d0.duplicate) + " + " + std::to_string(d0.cardinality) + " + " +
                    std::to_string(d0.invalid) + " != " + std::to_string(given) + ")");

  check_prepared(prepared, options);
  check_text(prom, prepared, false);
  check_text(om, prepared, true);
  check_otlp(otlp, prepared, only != nullptr);
  return 0;
}
