#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/exposition.hpp"
#include "core/names.hpp"

namespace aj {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::nan("");

const char kDroppedZeros[] =
    "# HELP agent_journal_render_dropped_series Series left out of this render, by reason\n"
    "# TYPE agent_journal_render_dropped_series gauge\n"
    "agent_journal_render_dropped_series{reason=\"cardinality\"} 0\n"
    "agent_journal_render_dropped_series{reason=\"duplicate\"} 0\n"
    "agent_journal_render_dropped_series{reason=\"invalid\"} 0\n";

const char kDroppedZerosOpenMetrics[] =
    "# HELP agent_journal_render_dropped_series Series left out of this render, by reason\n"
    "# TYPE agent_journal_render_dropped_series gauge\n"
    "agent_journal_render_dropped_series{reason=\"cardinality\"} 0.0\n"
    "agent_journal_render_dropped_series{reason=\"duplicate\"} 0.0\n"
    "agent_journal_render_dropped_series{reason=\"invalid\"} 0.0\n";

// Where the tests' series keep their labels and exemplars.
Arena &test_arena() {
  static Arena arena;
  return arena;
}

Series point(Labels labels, double value) {
  Series s;
  s.labels = test_arena().labels(labels);
  s.value = value;
  return s;
}

Series hist_point(Labels labels, std::vector<uint64_t> buckets, double sum) {
  Series s;
  s.labels = test_arena().labels(labels);
  s.bucket_counts = std::move(buckets);
  s.sum = sum;
  for (uint64_t c : s.bucket_counts) s.count += c;
  return s;
}

// Appends an exemplar to the series (its span rewritten in the arena).
void add_exemplar(Series &s, std::size_t bucket, const Labels &labels, double value, double ts) {
  Exemplar *e = test_arena().array<Exemplar>(s.exemplars.size() + 1);
  for (std::size_t i = 0; i < s.exemplars.size(); ++i) new (&e[i]) Exemplar(s.exemplars[i]);
  new (&e[s.exemplars.size()]) Exemplar{bucket, test_arena().labels(labels), value, ts};
  s.exemplars = Span<Exemplar>{e, s.exemplars.count + 1};
}

Family family(std::string name, MetricType type, std::string help, std::vector<Series> series,
              std::vector<double> bounds = {}) {
  Family f;
  f.name = std::move(name);
  f.type = type;
  f.help = std::move(help);
  f.series = std::move(series);
  f.bounds = std::move(bounds);
  return f;
}

Family counter_family() {
  return family("requests_total", MetricType::Counter, "Requests served",
                {point({{"method", "get"}, {"code", "200"}}, 5), point({{"code", "500"}}, 1.5)});
}

Family gauge_family() {
  return family("temperature", MetricType::Gauge, "Odd values",
                {point({{"k", "nan"}}, kNaN), point({{"k", "pinf"}}, kInf),
                 point({{"k", "minf"}}, -kInf), point({}, -0.25)});
}

Family histogram_family() {
  return family("latency_seconds", MetricType::Histogram, "Latency",
                {hist_point({{"tool", "grep"}, {"agent", "a1"}}, {1, 2, 3}, 4.25)}, {0.5, 1});
}

// --- format_double ------------------------------------------------------

TEST(FormatDouble, LikePrometheus) {
  EXPECT_EQ(format_double(kNaN), "NaN");
  EXPECT_EQ(format_double(kInf), "+Inf");
  EXPECT_EQ(format_double(-kInf), "-Inf");
  EXPECT_EQ(format_double(0), "0");
  EXPECT_EQ(format_double(-0.0), "-0");
  EXPECT_EQ(format_double(1), "1");
  EXPECT_EQ(format_double(5), "5");
  EXPECT_EQ(format_double(-2.5), "-2.5");
  EXPECT_EQ(format_double(0.1), "0.1");
  EXPECT_EQ(format_double(0.005), "0.005");
  EXPECT_EQ(format_double(0.025), "0.025");
  EXPECT_EQ(format_double(0.0001), "0.0001");
  EXPECT_EQ(format_double(0.00001), "1e-05");
  EXPECT_EQ(format_double(1.5e-7), "1.5e-07");
  EXPECT_EQ(format_double(12345.678), "12345.678");
  EXPECT_EQ(format_double(100000), "100000");
  EXPECT_EQ(format_double(123456), "123456");
  EXPECT_EQ(format_double(1e6), "1e+06");
  EXPECT_EQ(format_double(1234567), "1.234567e+06");
  EXPECT_EQ(format_double(1e-300), "1e-300");
  EXPECT_EQ(format_double(1.7976931348623157e308), "1.7976931348623157e+308");
  EXPECT_EQ(format_double(5e-324), "5e-324");
  EXPECT_EQ(format_double(123456789012345680.0), "1.2345678901234568e+17");
}

void expect_round_trip(double v) {
  std::string s = format_double(v);
  double back = std::strtod(s.c_str(), nullptr);
  EXPECT_EQ(std::memcmp(&v, &back, sizeof v), 0) << s;
}

TEST(FormatDouble, RoundTrips) {
  for (double v :
       {0.1, 0.2, 0.3, 1e-300, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308,
        123456789012345680.0, 9007199254740993.0, 1.0 / 3, -1e21, 1e22, 0.000123456789}) {
    expect_round_trip(v);
    expect_round_trip(-v);
  }
  std::mt19937_64 rng(42);
  for (int i = 0; i < 200000; ++i) {
    uint64_t bits = rng();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    if (std::isnan(v)) continue;
    expect_round_trip(v);
    if (HasFailure()) break;
  }
}

// Go's 'g' the long way, for reference: std::to_chars' shortest scientific
// form, rewritten without exponent when it is in [-4, 6).
std::string go_format_reference(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char sci[64];
  char *end = std::to_chars(sci, sci + sizeof sci - 1, v, std::chars_format::scientific).ptr;
  *end = '\0';
  const char *e = std::find(sci, end, 'e');
  const int exp = std::atoi(e + 1);
  if (exp < -4 || exp >= 6) return std::string(sci, end);
  std::string digits;
  for (const char *p = sci; p != e; ++p) {
    if (*p >= '0' && *p <= '9') digits += *p;
  }
  std::string out = sci[0] == '-' ? "-" : "";
  if (exp >= 0) {
    const std::size_t int_digits = static_cast<std::size_t>(exp) + 1;
    digits.resize(std::max(digits.size(), int_digits), '0');
    out += digits.substr(0, int_digits);
    if (digits.size() > int_digits) out += "." + digits.substr(int_digits);
  } else {
    out += "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
  }
  return out;
}

// format_double takes shortcuts (integers, decimals of up to 15 digits):
// they must agree with the long way everywhere, at the edges of each
// shortcut (1e-4, 1e6, 15 and 16 digits, neighbours of short decimals) too.
TEST(FormatDouble, ShortcutsMatchTheLongWay) {
  std::vector<double> values = {0.0,
                                -0.0,
                                1e-4,
                                1e6,
                                999999.5,
                                999999.9999999999,
                                0.3,
                                0.1 + 0.2,
                                1.0 / 3,
                                2.5e-4,
                                123456.789,
                                0.000123456789012345,
                                99999.99999999999,
                                1234567.5,
                                1e15,
                                1e-5,
                                4503599627370496.5};
  for (double edge : {1e-4, 1e6, 0.001, 0.1, 1.0, 10.0, 100000.0, 0.5}) {
    double lo = edge, hi = edge;
    for (int i = 0; i < 50; ++i) {
      lo = std::nextafter(lo, 0.0);
      hi = std::nextafter(hi, kInf);
      values.push_back(lo);
      values.push_back(hi);
    }
  }
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    // a decimal of up to 16 digits, scaled, and its neighbours
    const double m = static_cast<double>(rng() % 10000000000000000ULL);
    const double v = m / std::pow(10.0, static_cast<double>(rng() % 22));
    values.push_back(v);
    values.push_back(std::nextafter(v, 0.0));
    values.push_back(std::nextafter(v, kInf));
    values.push_back(static_cast<double>(rng() % 2000000) / 8 - 125000);
  }
  for (double v : values) {
    for (double x : {v, -v}) {
      ASSERT_EQ(format_double(x), go_format_reference(x)) << std::hexfloat << x;
    }
  }
}

// --- escaping -----------------------------------------------------------

TEST(Escape, LabelValuesAndHelp) {
  EXPECT_EQ(escape_label_value("plain"), "plain");
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(escape_label_value("tab\there \xc3\xa9"), "tab\there \xc3\xa9");
  EXPECT_EQ(escape_help("a\"b\\c\nd"), "a\"b\\\\c\\nd");
  EXPECT_EQ(escape_help_openmetrics("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

// --- Prometheus text ----------------------------------------------------

TEST(Prometheus, Counter) {
  EXPECT_EQ(render_prometheus({counter_family()}, {}),
            std::string("# HELP requests_total Requests served\n"
                        "# TYPE requests_total counter\n"
                        "requests_total{code=\"200\",method=\"get\"} 5\n"
                        "requests_total{code=\"500\"} 1.5\n") +
                kDroppedZeros);
}

TEST(Prometheus, GaugeSpecialValues) {
  EXPECT_EQ(render_prometheus({gauge_family()}, {}), std::string("# HELP temperature Odd values\n"
                                                                 "# TYPE temperature gauge\n"
                                                                 "temperature -0.25\n"
                                                                 "temperature{k=\"minf\"} -Inf\n"
                                                                 "temperature{k=\"nan\"} NaN\n"
                                                                 "temperature{k=\"pinf\"} +Inf\n") +
                                                         kDroppedZeros);
}

TEST(Prometheus, HistogramWithLabels) {
  EXPECT_EQ(render_prometheus({histogram_family()}, {}),
            std::string("# HELP latency_seconds Latency\n"
                        "# TYPE latency_seconds histogram\n"
                        "latency_seconds_bucket{agent=\"a1\",tool=\"grep\",le=\"0.5\"} 1\n"
                        "latency_seconds_bucket{agent=\"a1\",tool=\"grep\",le=\"1\"} 3\n"
                        "latency_seconds_bucket{agent=\"a1\",tool=\"grep\",le=\"+Inf\"} 6\n"
                        "latency_seconds_sum{agent=\"a1\",tool=\"grep\"} 4.25\n"
                        "latency_seconds_count{agent=\"a1\",tool=\"grep\"} 6\n") +
                kDroppedZeros);
}

TEST(Prometheus, HistogramWithoutLabels) {
  Family f = family("h", MetricType::Histogram, "H", {hist_point({}, {0, 7}, kNaN)}, {1e6});
  EXPECT_EQ(render_prometheus({f}, {}), std::string("# HELP h H\n"
                                                    "# TYPE h histogram\n"
                                                    "h_bucket{le=\"1e+06\"} 0\n"
                                                    "h_bucket{le=\"+Inf\"} 7\n"
                                                    "h_sum NaN\n"
                                                    "h_count 7\n") +
                                            kDroppedZeros);
}

TEST(Prometheus, EscapesLabelValuesAndHelp) {
  Family f =
      family("g", MetricType::Gauge, "Line one\nC:\\path \"q\"", {point({{"v", "a\"b\\c\nd"}}, 1)});
  EXPECT_EQ(render_prometheus({f}, {}), std::string("# HELP g Line one\\nC:\\\\path \"q\"\n"
                                                    "# TYPE g gauge\n"
                                                    "g{v=\"a\\\"b\\\\c\\nd\"} 1\n") +
                                            kDroppedZeros);
}

TEST(Prometheus, EmptyOrInvalidHelpIsGenerated) {
  Family a = family("a", MetricType::Gauge, "", {point({}, 1)});
  Family b = family("b", MetricType::Gauge, "bad \xff", {point({}, 2)});
  EXPECT_EQ(render_prometheus({a, b}, {}), std::string("# HELP a a (no help given)\n"
                                                       "# TYPE a gauge\n"
                                                       "a 1\n"
                                                       "# HELP b b (no help given)\n"
                                                       "# TYPE b gauge\n"
                                                       "b 2\n") +
                                               kDroppedZeros);
}

TEST(Prometheus, EmptyModelHasOnlyTheDroppedFamily) {
  EXPECT_EQ(render_prometheus({}, {}), kDroppedZeros);
  Family empty = family("nothing", MetricType::Gauge, "no series", {});
  EXPECT_EQ(render_prometheus({empty}, {}), kDroppedZeros);
}

TEST(Prometheus, DeterministicOrder) {
  std::vector<Family> model = {
      histogram_family(), gauge_family(), counter_family(),
      family("a_first", MetricType::Gauge, "x",
             {point({{"z", "1"}}, 1), point({{"a", "2"}}, 2), point({{"a", "1"}, {"b", "1"}}, 3)})};
  const std::string want = render_prometheus(model, {});
  std::mt19937 rng(7);
  for (int i = 0; i < 20; ++i) {
    std::shuffle(model.begin(), model.end(), rng);
    for (Family &f : model) std::shuffle(f.series.begin(), f.series.end(), rng);
    EXPECT_EQ(render_prometheus(model, {}), want);
  }
  EXPECT_LT(want.find("# HELP a_first"), want.find("# HELP latency_seconds"));
  EXPECT_LT(want.find("# HELP latency_seconds"), want.find("# HELP requests_total"));
  EXPECT_LT(want.find("# HELP requests_total"), want.find("# HELP temperature"));
  EXPECT_LT(want.find("a_first{a=\"1\",b=\"1\"} 3"), want.find("a_first{a=\"2\"} 2"));
  EXPECT_LT(want.find("a_first{a=\"2\"} 2"), want.find("a_first{z=\"1\"} 1"));
}

// --- dropping -----------------------------------------------------------

TEST(Dropping, DuplicatesAfterNormalization) {
  Family f = family("g", MetricType::Gauge, "G",
                    {point({{"a", "1"}, {"b", ""}}, 1), point({{"a", "1"}}, 2),
                     point({{"a", "2"}}, 3), point({{"b", "x"}, {"a", "2"}}, 4)});
  Dropped d;
  EXPECT_EQ(render_prometheus({f}, {}, &d),
            "# HELP g G\n"
            "# TYPE g gauge\n"
            "g{a=\"1\"} 1\n"
            "g{a=\"2\"} 3\n"
            "g{a=\"2\",b=\"x\"} 4\n"
            "# HELP agent_journal_render_dropped_series Series left out of this render, by "
            "reason\n"
            "# TYPE agent_journal_render_dropped_series gauge\n"
            "agent_journal_render_dropped_series{reason=\"cardinality\"} 0\n"
            "agent_journal_render_dropped_series{reason=\"duplicate\"} 1\n"
            "agent_journal_render_dropped_series{reason=\"invalid\"} 0\n");
  EXPECT_EQ(d.duplicate, 1u);
  EXPECT_EQ(d.cardinality, 0u);
  EXPECT_EQ(d.invalid, 0u);
}

// Series order is the order of their label lists (pairs compared name,
// then value); the first of equal ones is kept. Label sets here share long
// beginnings and end at every offset around the 8-byte steps the sort
// takes, some being the beginning of others.
TEST(Dropping, LabelOrderWithSharedPrefixes) {
  const std::vector<std::string> values = {
      "x",        "xy",        "host-1",    "host-12",          "host-123",          "abcdefg",
      "abcdefgh", "abcdefghi", "abcdefgh1", "abcdefghijklmnop", "abcdefghijklmnopq", "\x7f",
      "\xc3\xa9"};
  const std::vector<std::string> names = {"a", "ab", "instance", "instancf", "p"};
  std::mt19937_64 rng(11);
  std::vector<Series> series;
  std::vector<std::pair<Labels, double>> given;
  for (int i = 0; i < 3000; ++i) {
    Labels labels;
    const int n = static_cast<int>(rng() % 4);
    for (int k = 0; k < n; ++k) {
      const std::string &name = names[rng() % names.size()];
      bool taken = false;
      for (const auto &[have, v] : labels) taken = taken || have == name;
      if (!taken) labels.emplace_back(name, values[rng() % values.size()]);
    }
    series.push_back(point(labels, i));
    given.emplace_back(std::move(labels), i);
  }
  // The reference: labels sorted by name, series stably by their labels.
  std::vector<std::pair<Labels, double>> expected = given;
  for (auto &s : expected) {
    std::stable_sort(s.first.begin(), s.first.end(),
                     [](const auto &a, const auto &b) { return a.first < b.first; });
  }
  std::stable_sort(expected.begin(), expected.end(),
                   [](const auto &a, const auto &b) { return a.first < b.first; });
  uint64_t duplicates = 0;
  std::vector<std::pair<Labels, double>> unique;
  for (auto &s : expected) {
    if (!unique.empty() && unique.back().first == s.first) {
      ++duplicates;
    } else {
      unique.push_back(std::move(s));
    }
  }
  std::vector<Family> families = {family("g", MetricType::Gauge, "G", series)};
  RenderOptions opts;
  opts.max_series_per_family = 0;
  const Dropped d = prepare_families(families, opts);
  EXPECT_EQ(d.duplicate, duplicates);
  ASSERT_EQ(families[0].series.size(), unique.size());
  for (std::size_t i = 0; i < unique.size(); ++i) {
    EXPECT_EQ(to_labels(families[0].series[i].labels), unique[i].first) << i;
    EXPECT_EQ(families[0].series[i].value, unique[i].second) << i;
  }
  // Already in order: the same again.
  std::vector<Family> again = {family("g", MetricType::Gauge, "G", families[0].series)};
  EXPECT_EQ(prepare_families(again, opts).duplicate, 0u);
  ASSERT_EQ(again[0].series.size(), unique.size());
  for (std::size_t i = 0; i < unique.size(); ++i) {
    EXPECT_EQ(to_labels(again[0].series[i].labels), unique[i].first) << i;
  }
}

TEST(Dropping, CardinalityKeepsFirstInLabelOrder) {
  Family f = family("g", MetricType::Gauge, "G",
                    {point({{"i", "3"}}, 3), point({{"i", "1"}}, 1), point({{"i", "2"}}, 2)});
  RenderOptions opts;
  opts.max_series_per_family = 2;
  Dropped d;
  std::string out =
      render_prometheus({f, family("h", MetricType::Gauge, "H", {point({}, 9)})}, opts, &d);
  EXPECT_EQ(out,
            "# HELP g G\n"
            "# TYPE g gauge\n"
            "g{i=\"1\"} 1\n"
            "g{i=\"2\"} 2\n"
            "# HELP h H\n"
            "# TYPE h gauge\n"
            "h 9\n"
            "# HELP agent_journal_render_dropped_series Series left out of this render, by "
            "reason\n"
            "# TYPE agent_journal_render_dropped_series gauge\n"
            "agent_journal_render_dropped_series{reason=\"cardinality\"} 1\n"
            "agent_journal_render_dropped_series{reason=\"duplicate\"} 0\n"
            "agent_journal_render_dropped_series{reason=\"invalid\"} 0\n");
  EXPECT_EQ(d.cardinality, 1u);

  opts.max_series_per_family = 0;  // no limit
  render_prometheus({f}, opts, &d);
  EXPECT_EQ(d.cardinality, 0u);
}

TEST(Dropping, Invalid) {
  Series bad_shape = hist_point({{"s", "short"}}, {1, 2}, 1);  // needs 3 buckets
  Series bad_count = hist_point({{"s", "count"}}, {1, 2, 3}, 1);
  bad_count.count = 5;
  Series le_label = hist_point({{"le", "1"}}, {1, 2, 3}, 1);
  Series good = hist_point({{"s", "ok"}}, {1, 0, 0}, 0.5);
  std::vector<Family> model = {
      family("h", MetricType::Histogram, "H", {bad_shape, bad_count, le_label, good}, {0.5, 1}),
      family("Bad", MetricType::Gauge, "bad name", {point({}, 1), point({{"a", "1"}}, 1)}),
      family("c", MetricType::Counter, "no _total", {point({}, 1)}),
      family("c_total", MetricType::Counter, "C",
             {point({{"k", "neg"}}, -1), point({{"k", "nan"}}, kNaN), point({{"k", "ok"}}, 0)}),
      family("g", MetricType::Gauge, "G",
             {point({{"__x", "1"}}, 1), point({{"v", "\xff"}}, 1),
              point({{"a", "1"}, {"a", "2"}}, 1)}),
      family("unsorted", MetricType::Histogram, "U", {hist_point({}, {1, 1, 1}, 1)}, {2, 1}),
      family("infbound", MetricType::Histogram, "I", {hist_point({}, {1, 1}, 1)}, {kInf}),
  };
  Dropped d;
  std::string out = render_prometheus(model, {}, &d);
  EXPECT_EQ(d.invalid, 3u + 2u + 1u + 2u + 3u + 1u + 1u);
  EXPECT_EQ(d.duplicate, 0u);
  EXPECT_EQ(out,
            "# HELP c_total C\n"
            "# TYPE c_total counter\n"
            "c_total{k=\"ok\"} 0\n"
            "# HELP h H\n"
            "# TYPE h histogram\n"
            "h_bucket{s=\"ok\",le=\"0.5\"} 1\n"
            "h_bucket{s=\"ok\",le=\"1\"} 1\n"
            "h_bucket{s=\"ok\",le=\"+Inf\"} 1\n"
            "h_sum{s=\"ok\"} 0.5\n"
            "h_count{s=\"ok\"} 1\n"
            "# HELP agent_journal_render_dropped_series Series left out of this render, by "
            "reason\n"
            "# TYPE agent_journal_render_dropped_series gauge\n"
            "agent_journal_render_dropped_series{reason=\"cardinality\"} 0\n"
            "agent_journal_render_dropped_series{reason=\"duplicate\"} 0\n"
            "agent_journal_render_dropped_series{reason=\"invalid\"} 13\n");
}

TEST(Dropping, SameNameOrCollidingFamiliesKeepTheFirst) {
  std::vector<Family> model = {
      family("x", MetricType::Gauge, "first", {point({}, 1)}),
      family("x", MetricType::Gauge, "second", {point({}, 2), point({{"a", "1"}}, 3)}),
      family("x_total", MetricType::Counter, "collides with x in OpenMetrics", {point({}, 4)}),
      // OpenMetrics family h_bucket: collides with histogram h's samples.
      family("h_bucket_total", MetricType::Counter, "collides with histogram h", {point({}, 5)}),
      family("h", MetricType::Histogram, "H", {hist_point({}, {1}, 1)}, {}),
      family("agent_journal_render_dropped_series", MetricType::Gauge, "mine", {point({}, 6)}),
  };
  Dropped d;
  std::string out = render_prometheus(model, {}, &d);
  EXPECT_EQ(d.duplicate, 2u + 1u + 1u + 1u);
  EXPECT_EQ(out,
            "# HELP h H\n"
            "# TYPE h histogram\n"
            "h_bucket{le=\"+Inf\"} 1\n"
            "h_sum 1\n"
            "h_count 1\n"
            "# HELP x first\n"
            "# TYPE x gauge\n"
            "x 1\n"
            "# HELP agent_journal_render_dropped_series Series left out of this render, by "
            "reason\n"
            "# TYPE agent_journal_render_dropped_series gauge\n"
            "agent_journal_render_dropped_series{reason=\"cardinality\"} 0\n"
            "agent_journal_render_dropped_series{reason=\"duplicate\"} 5\n"
            "agent_journal_render_dropped_series{reason=\"invalid\"} 0\n");
}

TEST(Dropping, PrepareIsShared) {
  std::vector<Family> model = {gauge_family(), counter_family()};
  Dropped d = prepare_families(model, {});
  ASSERT_EQ(model.size(), 3u);
  EXPECT_EQ(model[0].name, "requests_total");
  EXPECT_EQ(model[1].name, "temperature");
  EXPECT_EQ(model[2].name, kDroppedFamilyName);
  EXPECT_EQ(model[2].series.size(), 3u);
  EXPECT_EQ(d.duplicate + d.invalid + d.cardinality, 0u);
  EXPECT_EQ(to_labels(model[0].series[0].labels), (Labels{{"code", "200"}, {"method", "get"}}));
}

// --- cancellation -------------------------------------------------------

int g_polls = 0;
int g_cancel_at = 0;  // 0 = never
bool count_polls() {
  ++g_polls;
  return g_cancel_at != 0 && g_polls >= g_cancel_at;
}

std::vector<Family> many_series(int n) {
  Family f = family("g", MetricType::Gauge, "G", {});
  for (int i = 0; i < n; ++i) f.series.push_back(point({{"i", std::to_string(i)}}, i));
  return {f};
}

TEST(Cancellation, PollsAboutEveryThousandSeries) {
  RenderOptions opts;
  opts.interrupted = count_polls;
  g_polls = 0;
  g_cancel_at = 0;
  render_prometheus(many_series(10000), opts);
  EXPECT_GE(g_polls, 15);
  EXPECT_LE(g_polls, 30);
}

TEST(Cancellation, ThrowsCancelled) {
  RenderOptions opts;
  opts.interrupted = count_polls;
  for (int at : {1, 2, 5, 12}) {
    g_polls = 0;
    g_cancel_at = at;
    EXPECT_THROW(render_prometheus(many_series(10000), opts), Cancelled) << at;
    EXPECT_EQ(g_polls, at);
    g_polls = 0;
    EXPECT_THROW(render_openmetrics(many_series(10000), opts), Cancelled) << at;
    g_polls = 0;
    EXPECT_THROW(render_otlp_json(many_series(10000), nullptr, 1, opts), Cancelled) << at;
  }
  g_cancel_at = 0;
}

// --- OpenMetrics --------------------------------------------------------

TEST(OpenMetrics, CounterGaugeHistogram) {
  Family esc =
      family("g", MetricType::Gauge, "Line one\nC:\\path \"q\"", {point({{"v", "a\"b\\c\nd"}}, 1)});
  EXPECT_EQ(render_openmetrics({counter_family(), gauge_family(), histogram_family(), esc}, {}),
            std::string("# HELP g Line one\\nC:\\\\path \\\"q\\\"\n"
                        "# TYPE g gauge\n"
                        "g{v=\"a\\\"b\\\\c\\nd\"} 1.0\n"
                        "# HELP latency_seconds Latency\n"
                        "# TYPE latency_seconds histogram\n"
                        "latency_seconds_bucket{agent=\"a1\",tool=\"grep\",le=\"0.5\"} 1\n"
                        "latency_seconds_bucket{agent=\"a1\",tool=\"grep\",le=\"1.0\"} 3\n"
                        "latency_seconds_bucket{agent=\"a1\",tool=\"grep\",le=\"+Inf\"} 6\n"
                        "latency_seconds_sum{agent=\"a1\",tool=\"grep\"} 4.25\n"
                        "latency_seconds_count{agent=\"a1\",tool=\"grep\"} 6\n"
                        "# HELP requests Requests served\n"
                        "# TYPE requests counter\n"
                        "requests_total{code=\"200\",method=\"get\"} 5.0\n"
                        "requests_total{code=\"500\"} 1.5\n"
                        "# HELP temperature Odd values\n"
                        "# TYPE temperature gauge\n"
                        "temperature -0.25\n"
                        "temperature{k=\"minf\"} -Inf\n"
                        "temperature{k=\"nan\"} NaN\n"
                        "temperature{k=\"pinf\"} +Inf\n") +
                kDroppedZerosOpenMetrics + "# EOF\n");
}

TEST(OpenMetrics, CreatedForCountersAndHistograms) {
  Family c = counter_family();
  c.series[0].created = 1700000000.25;  // requests_total{method=get,code=200}
  Family h = histogram_family();
  h.series[0].created = 1700000001;
  Family g = gauge_family();
  g.series[0].created = 1700000002;  // gauges have none
  std::string out = render_openmetrics({c, h, g}, {});
  EXPECT_NE(out.find("requests_total{code=\"200\",method=\"get\"} 5.0\n"
                     "requests_created{code=\"200\",method=\"get\"} 1700000000.25\n"
                     "requests_total{code=\"500\"} 1.5\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("latency_seconds_count{agent=\"a1\",tool=\"grep\"} 6\n"
                     "latency_seconds_created{agent=\"a1\",tool=\"grep\"} 1700000001\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("temperature_created"), std::string::npos) << out;
  // the 0.0.4 text format has no _created
  EXPECT_EQ(render_prometheus({c, h, g}, {}).find("_created"), std::string::npos);
}

TEST(OpenMetrics, HistogramSumOnlyWhenAllowed) {
  std::vector<Family> model = {
      family("h_nan", MetricType::Histogram, "N", {hist_point({}, {1, 1}, kNaN)}, {1}),
      family("h_negsum", MetricType::Histogram, "S", {hist_point({}, {1, 1}, -3)}, {1}),
      family("h_negbound", MetricType::Histogram, "B", {hist_point({}, {1, 1}, 3)}, {-1}),
  };
  std::string out = render_openmetrics(model, {});
  EXPECT_EQ(out, std::string("# HELP h_nan N\n"
                             "# TYPE h_nan histogram\n"
                             "h_nan_bucket{le=\"1.0\"} 1\n"
                             "h_nan_bucket{le=\"+Inf\"} 2\n"
                             "# HELP h_negbound B\n"
                             "# TYPE h_negbound histogram\n"
                             "h_negbound_bucket{le=\"-1.0\"} 1\n"
                             "h_negbound_bucket{le=\"+Inf\"} 2\n"
                             "# HELP h_negsum S\n"
                             "# TYPE h_negsum histogram\n"
                             "h_negsum_bucket{le=\"1.0\"} 1\n"
                             "h_negsum_bucket{le=\"+Inf\"} 2\n") +
                     kDroppedZerosOpenMetrics + "# EOF\n");
  // The Prometheus text keeps them.
  std::string prom = render_prometheus(model, {});
  EXPECT_NE(prom.find("h_nan_sum NaN\nh_nan_count 2\n"), std::string::npos);
  EXPECT_NE(prom.find("h_negbound_sum 3\nh_negbound_count 2\n"), std::string::npos);
  EXPECT_NE(prom.find("h_negsum_sum -3\nh_negsum_count 2\n"), std::string::npos);
}

// --- OTLP JSON ----------------------------------------------------------

const nlohmann::json *metric_named(const nlohmann::json &resource, const std::string &name) {
  for (const auto &m : resource["scopeMetrics"][0]["metrics"]) {
    if (m["name"] == name) return &m;
  }
  return nullptr;
}

std::string service_name(const nlohmann::json &resource) {
  const auto &attrs = resource["resource"]["attributes"];
  EXPECT_EQ(attrs.size(), 1u);
  EXPECT_EQ(attrs[0]["key"], "service.name");
  return attrs[0]["value"]["stringValue"];
}

std::vector<Family> otlp_model() {
  return {
      family("calls_total", MetricType::Counter, "Calls",
             {point({{"service", "alpha"}, {"tool", "grep"}}, 3),
              point({{"service", "beta"}, {"tool", "sed"}}, 4), point({{"tool", "awk"}}, 5)}),
      family("load", MetricType::Gauge, "Load \"quoted\"\n\\",
             {point({{"service", "alpha"}}, kNaN), point({{"service", "beta"}}, kInf),
              point({{"x", "tab\there"}}, -kInf), point({{"service", "beta"}, {"y", "1"}}, 0.5)}),
      family("wait_seconds", MetricType::Histogram, "Wait",
             {hist_point({{"service", "alpha"}, {"q", "a"}}, {1, 2, 3}, 2.5)}, {0.1, 1}),
  };
}

TEST(Otlp, ShapeAndValues) {
  const std::string text = render_otlp_json(otlp_model(), nullptr, 1700000000123456789, {});
  nlohmann::json doc = nlohmann::json::parse(text);  // throws when invalid
  const auto &rms = doc["resourceMetrics"];
  ASSERT_EQ(rms.size(), 3u);
  EXPECT_EQ(service_name(rms[0]), "agent_journal");
  EXPECT_EQ(service_name(rms[1]), "alpha");
  EXPECT_EQ(service_name(rms[2]), "beta");
  for (const auto &rm : rms) {
    ASSERT_EQ(rm["scopeMetrics"].size(), 1u);
    EXPECT_EQ(rm["scopeMetrics"][0]["scope"],
              (nlohmann::json{{"name", "agent_journal"}, {"version", "unknown"}}));
    EXPECT_EQ(rm["resource"]["attributes"].size(), 1u);  // no service.namespace unless set
  }

  // Default resource: calls{tool=awk}, load{x=...}, the dropped family.
  const auto *calls = metric_named(rms[0], "calls");
  ASSERT_NE(calls, nullptr);
  EXPECT_EQ((*calls)["description"], "Calls");
  EXPECT_EQ((*calls)["sum"]["aggregationTemporality"], 2);
  EXPECT_EQ((*calls)["sum"]["isMonotonic"], true);
  EXPECT_EQ((*calls)["sum"]["dataPoints"],
            nlohmann::json::parse(R"([{"attributes":[{"key":"tool","value":{"stringValue":"awk"}}],
                                       "timeUnixNano":"1700000000123456789","asDouble":5}])"));
  const auto *load0 = metric_named(rms[0], "load");
  ASSERT_NE(load0, nullptr);
  EXPECT_EQ((*load0)["description"], "Load \"quoted\"\n\\");
  EXPECT_EQ((*load0)["gauge"]["dataPoints"][0]["asDouble"], "-Infinity");
  EXPECT_EQ((*load0)["gauge"]["dataPoints"][0]["attributes"][0]["value"]["stringValue"],
            "tab\there");
  const auto *dropped = metric_named(rms[0], kDroppedFamilyName);
  ASSERT_NE(dropped, nullptr);
  EXPECT_EQ((*dropped)["gauge"]["dataPoints"].size(), 3u);

  // alpha: the service label is gone from the attributes.
  const auto *calls_a = metric_named(rms[1], "calls");
  ASSERT_NE(calls_a, nullptr);
  EXPECT_EQ((*calls_a)["sum"]["dataPoints"][0]["attributes"],
            nlohmann::json::parse(R"([{"key":"tool","value":{"stringValue":"grep"}}])"));
  EXPECT_EQ((*calls_a)["sum"]["dataPoints"][0]["asDouble"], 3);
  EXPECT_EQ((*metric_named(rms[1], "load"))["gauge"]["dataPoints"][0]["asDouble"], "NaN");
  EXPECT_EQ((*metric_named(rms[1], "load"))["gauge"]["dataPoints"][0]["attributes"],
            nlohmann::json::array());
  const auto *wait = metric_named(rms[1], "wait_seconds");
  ASSERT_NE(wait, nullptr);
  EXPECT_EQ((*wait)["histogram"],
            nlohmann::json::parse(R"({"aggregationTemporality":2,"dataPoints":[
              {"attributes":[{"key":"q","value":{"stringValue":"a"}}],
               "timeUnixNano":"1700000000123456789","count":"6","sum":2.5,
               "bucketCounts":["1","2","3"],"explicitBounds":[0.1,1]}]})"));
  EXPECT_EQ(metric_named(rms[1], kDroppedFamilyName), nullptr);

  // beta: two load points, in label order.
  const auto &beta_load = (*metric_named(rms[2], "load"))["gauge"]["dataPoints"];
  ASSERT_EQ(beta_load.size(), 2u);
  EXPECT_EQ(beta_load[0]["asDouble"], "Infinity");
  EXPECT_EQ(beta_load[1]["asDouble"], 0.5);
  EXPECT_EQ(beta_load[1]["attributes"][0]["key"], "y");
  EXPECT_EQ(metric_named(rms[2], "wait_seconds"), nullptr);
}

TEST(Otlp, StartTimeForCumulativePoints) {
  Family c = counter_family();
  c.series[0].created = 1700000000.25;
  Family g = gauge_family();
  g.series[0].created = 1700000002;
  nlohmann::json doc = nlohmann::json::parse(render_otlp_json({c, g}, nullptr, 1700000005000000000, {}));
  const auto &rm = doc["resourceMetrics"][0];
  const auto *requests = metric_named(rm, "requests");
  ASSERT_NE(requests, nullptr);
  int with_start = 0;
  for (const auto &dp : (*requests)["sum"]["dataPoints"]) {
    if (!dp.contains("startTimeUnixNano")) continue;
    ++with_start;
    EXPECT_EQ(dp["startTimeUnixNano"], "1700000000250000000");
  }
  EXPECT_EQ(with_start, 1);
  const auto *temperature = metric_named(rm, "temperature");
  ASSERT_NE(temperature, nullptr);
  for (const auto &dp : (*temperature)["gauge"]["dataPoints"]) EXPECT_FALSE(dp.contains("startTimeUnixNano"));
}

TEST(OpenMetrics, ExemplarsOnBucketsAndCounters) {
  Family c = counter_family();
  // requests_total{code="500"} is series 1 after sorting; give series 0 one
  add_exemplar(c.series[0], 0, {{"trace_id", "abc"}, {"agent_id", "a1"}}, 2, 1700000003.5);
  Family h = histogram_family();  // bounds 0.5, 1; counts 1 2 3
  add_exemplar(h.series[0], 1, {{"sequence", "42"}}, 0.75, 1700000004);
  add_exemplar(h.series[0], 2, {{"sequence", "43"}}, 7, 1700000005.25);
  add_exemplar(h.series[0], 9, {{"sequence", "44"}}, 7, 1700000005);  // no such bucket
  std::string out = render_openmetrics({c, h}, {});
  EXPECT_NE(out.find("requests_total{code=\"200\",method=\"get\"} 5.0 # {agent_id=\"a1\",trace_id=\"abc\"} 2.0 1700000003.5\n"),
            std::string::npos) << out;
  EXPECT_NE(out.find("latency_seconds_bucket{agent=\"a1\",tool=\"grep\",le=\"0.5\"} 1\n"
                     "latency_seconds_bucket{agent=\"a1\",tool=\"grep\",le=\"1.0\"} 3 # {sequence=\"42\"} 0.75 1700000004\n"
                     "latency_seconds_bucket{agent=\"a1\",tool=\"grep\",le=\"+Inf\"} 6 # {sequence=\"43\"} 7.0 1700000005.25\n"),
            std::string::npos) << out;
  EXPECT_EQ(out.find("\"44\""), std::string::npos) << out;
  // not in the 0.0.4 text format
  EXPECT_EQ(render_prometheus({c, h}, {}).find(" # {"), std::string::npos);
}

// Copies of a model share their labels: preparing one (sorting labels,
// dropping empty values and bad exemplars, all written anew) leaves what
// the others see as it was.
TEST(Model, CopiesRenderAlike) {
  Family c = family("requests_total", MetricType::Counter, "Requests",
                    {point({{"z", "1"}, {"empty", ""}, {"a", "2"}}, 5)});
  add_exemplar(c.series[0], 0, {{"trace_id", std::string(130, 'x')}}, 1, 1700000000);
  add_exemplar(c.series[0], 0, {{"b", "2"}, {"a", "1"}}, 2, 1700000001);
  const std::vector<Family> model = {c};
  const std::string first = render_openmetrics(model, {});
  EXPECT_NE(first.find("requests_total{a=\"2\",z=\"1\"} 5.0 # {a=\"1\",b=\"2\"} 2.0 1700000001\n"),
            std::string::npos)
      << first;
  EXPECT_EQ(render_openmetrics(model, {}), first);
  EXPECT_EQ(to_labels(model[0].series[0].labels), (Labels{{"z", "1"}, {"empty", ""}, {"a", "2"}}));
  EXPECT_EQ(model[0].series[0].exemplars.size(), 2u);
}

// The *_buffer renders write where RenderOptions::allocate says, and
// give back what they do not keep.
int g_allocated = 0, g_released = 0;
void *counting_allocate(std::size_t n) {
  ++g_allocated;
  return std::malloc(n);
}
void counting_release(void *p) {
  ++g_released;
  std::free(p);
}

TEST(Render, BufferFromTheCallersAllocator) {
  const std::vector<Family> model = {counter_family(), histogram_family(), gauge_family()};
  RenderOptions opts;
  opts.allocate = counting_allocate;
  opts.release = counting_release;
  {
    RenderedText t = render_openmetrics_buffer(model, opts);
    EXPECT_EQ(t.view(), render_openmetrics(model, {}));
    EXPECT_EQ(t.c_str()[t.size], '\0');
    RenderedText p = render_prometheus_buffer(model, opts);
    EXPECT_EQ(p.view(), render_prometheus(model, {}));
    RenderedText o = render_otlp_json_buffer(model, nullptr, 1700000009000000000, opts);
    EXPECT_EQ(o.view(), render_otlp_json(model, nullptr, 1700000009000000000, {}));
    EXPECT_GE(g_allocated, 3);
  }
  EXPECT_EQ(g_released, g_allocated);
  // A cancelled render gives its buffer back too.
  opts.interrupted = [] { return true; };
  EXPECT_THROW(render_openmetrics_buffer(model, opts), Cancelled);
  EXPECT_EQ(g_released, g_allocated);
}

TEST(OpenMetrics, InvalidExemplarLeftOutSeriesKept) {
  Family c = counter_family();
  std::string long_value(130, 'x');
  add_exemplar(c.series[0], 0, {{"trace_id", long_value}}, 1, 1700000000);
  std::string out = render_openmetrics({c}, {});
  EXPECT_NE(out.find("requests_total{code=\"200\",method=\"get\"} 5.0\n"), std::string::npos) << out;
  EXPECT_EQ(out.find(" # {"), std::string::npos) << out;
}

TEST(Otlp, Exemplars) {
  Family c = counter_family();
  add_exemplar(c.series[0], 0,
               {{"trace_id", "4BF92F3577B34DA6A3CE929D0E0E4736"},
                {"span_id", "00f067aa0ba902b7"},
                {"agent_id", "a1"}},
               2, 1700000003.5);
  Family h = histogram_family();
  add_exemplar(h.series[0], 2, {{"trace_id", "not-hex"}}, 7, 1700000005);
  nlohmann::json doc = nlohmann::json::parse(render_otlp_json({c, h}, nullptr, 1700000009000000000, {}));
  const auto &rm = doc["resourceMetrics"][0];
  const auto *requests = metric_named(rm, "requests");
  ASSERT_NE(requests, nullptr);
  int seen = 0;
  for (const auto &dp : (*requests)["sum"]["dataPoints"]) {
    if (!dp.contains("exemplars")) continue;
    ++seen;
    const auto &e = dp["exemplars"][0];
    EXPECT_EQ(e["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(e["spanId"], "00f067aa0ba902b7");
    EXPECT_EQ(e["timeUnixNano"], "1700000003500000000");
    EXPECT_EQ(e["asDouble"], 2);
    ASSERT_EQ(e["filteredAttributes"].size(), 1u);
    EXPECT_EQ(e["filteredAttributes"][0]["key"], "agent_id");
  }
  EXPECT_EQ(seen, 1);
  const auto *latency = metric_named(rm, "latency_seconds");
  ASSERT_NE(latency, nullptr);
  const auto &e = (*latency)["histogram"]["dataPoints"][0]["exemplars"][0];
  EXPECT_FALSE(e.contains("traceId"));  // not 32 hex digits: an attribute
  EXPECT_EQ(e["filteredAttributes"][0]["key"], "trace_id");
  EXPECT_EQ(e["asDouble"], 7);
}

TEST(Otlp, ScopeVersionAndServiceNamespace) {
  RenderOptions opts;
  opts.scope_version = "0.5.0";
  opts.service_namespace = "team \"a\"";
  nlohmann::json doc = nlohmann::json::parse(render_otlp_json(otlp_model(), nullptr, 1, opts));
  for (const auto &rm : doc["resourceMetrics"]) {
    EXPECT_EQ(rm["scopeMetrics"][0]["scope"]["version"], "0.5.0");
    const auto &attrs = rm["resource"]["attributes"];
    ASSERT_EQ(attrs.size(), 2u);
    EXPECT_EQ(attrs[0]["key"], "service.name");
    EXPECT_EQ(attrs[1], (nlohmann::json{{"key", "service.namespace"},
                                        {"value", {{"stringValue", "team \"a\""}}}}));
  }
}

TEST(Otlp, OnlyService) {
  const std::string alpha = "alpha";
  nlohmann::json doc = nlohmann::json::parse(render_otlp_json(otlp_model(), &alpha, 1, {}));
  ASSERT_EQ(doc["resourceMetrics"].size(), 1u);
  EXPECT_EQ(service_name(doc["resourceMetrics"][0]), "alpha");
  EXPECT_EQ(doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"].size(), 3u);

  const std::string nobody = "nobody";
  EXPECT_EQ(render_otlp_json(otlp_model(), &nobody, 1, {}), "{\"resourceMetrics\":[]}");

  const std::string deflt = "agent_journal";
  doc = nlohmann::json::parse(render_otlp_json(otlp_model(), &deflt, -5, {}));
  ASSERT_EQ(doc["resourceMetrics"].size(), 1u);
  EXPECT_EQ(doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]
               ["timeUnixNano"],
            "-5");
}

TEST(Otlp, ValidJsonForNastyStrings) {
  std::string ctl;
  for (int c = 1; c < 0x20; ++c) ctl += static_cast<char>(c);
  Family f = family("g", MetricType::Gauge, ctl + "\"\\ \xe2\x82\xac",
                    {point({{"v", ctl + "\"\\\xf0\x9f\x98\x80"}}, 1e300)});
  nlohmann::json doc = nlohmann::json::parse(render_otlp_json({f}, nullptr, 0, {}));
  const auto &m = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0];
  EXPECT_EQ(m["name"], "g");
  EXPECT_EQ(m["description"], ctl + "\"\\ \xe2\x82\xac");
  EXPECT_EQ(m["gauge"]["dataPoints"][0]["attributes"][0]["value"]["stringValue"],
            ctl + "\"\\\xf0\x9f\x98\x80");
  EXPECT_EQ(m["gauge"]["dataPoints"][0]["asDouble"], 1e300);
}

// --- external validators (skipped when the tools are missing) ----------

std::vector<Family> rich_model() {
  std::vector<Family> m = {
      counter_family(),
      family("tokens_total", MetricType::Counter, "", {point({}, 123456789012345680.0)}),
      gauge_family(),
      histogram_family(),
      family("request_duration_seconds", MetricType::Histogram,
             "Duration with \\ backslash, \"quotes\"\nand a newline",
             {hist_point({{"route", "/a\"b\\c\nd"}, {"service", "alpha"}},
                         {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1000000}, 12345.678),
              hist_point({{"route", "\xc3\xa9t\xc3\xa9"}}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0),
              hist_point({{"route", "nan"}}, {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, kNaN)},
             default_buckets()),
      family("offset_seconds", MetricType::Histogram, "Negative bounds",
             {hist_point({}, {1, 2, 3, 4}, -1.5)}, {-1, 0, 1e-7}),
      family("big_ratio", MetricType::Gauge, "Extremes",
             {point({{"k", "max"}}, 1.7976931348623157e308), point({{"k", "min"}}, 5e-324),
              point({{"k", "tiny"}}, 1e-300), point({{"k", "neg"}}, -0.0)}),
      family("g", MetricType::Gauge, "dup", {point({{"a", "1"}}, 1), point({{"a", "1"}}, 2)}),
      family("bad", MetricType::Gauge, "invalid label", {point({{"le", "x"}}, 1)}),
  };
  // _created and exemplars (counter and histogram buckets), as the library
  // renders them
  m[0].series[0].created = 1700000000.123456;
  add_exemplar(m[0].series[0], 0, {{"trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"}}, 1,
               1700000001.5);
  m[3].series[0].created = 1700000000;
  add_exemplar(m[3].series[0], 0, {{"agent_id", "a1"}, {"sequence", "42"}}, 0.25, 1700000002);
  add_exemplar(m[3].series[0], 2, {{"le", "x"}}, 9, 1700000003);
  return m;
}

bool executable(const char *path) { return access(path, X_OK) == 0; }

// Runs `command` with `input` on stdin; returns its exit status and puts
// stdout+stderr into `output`.
int run_with_input(const std::string &command, const std::string &input, std::string &output) {
  char path[] = "/tmp/aj_unit_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  close(fd);
  FILE *p = popen((command + " >" + path + " 2>&1").c_str(), "w");
  if (p == nullptr) return -1;
  fwrite(input.data(), 1, input.size(), p);
  int status = pclose(p);
  std::ifstream in(path);
  output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  unlink(path);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void dump(const char *name, const std::string &text) {
  if (const char *dir = std::getenv("AJ_DUMP_DIR")) {
    std::ofstream(std::string(dir) + "/" + name) << text;
  }
}

TEST(ExternalValidators, PromtoolAcceptsPrometheusText) {
  const std::string text = render_prometheus(rich_model(), {});
  dump("rich.prom", text);
  if (!executable("/usr/bin/promtool")) GTEST_SKIP() << "no /usr/bin/promtool";
  std::string output;
  EXPECT_EQ(run_with_input("/usr/bin/promtool check metrics", text, output), 0) << output;
  EXPECT_EQ(output, "");
}

TEST(ExternalValidators, PythonParserAcceptsOpenMetrics) {
  const std::string text = render_openmetrics(rich_model(), {});
  dump("rich.om", text);
  std::string output;
  if (!executable("/usr/bin/python3") ||
      run_with_input("/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser'", "",
                     output) != 0) {
    GTEST_SKIP() << "no prometheus_client for /usr/bin/python3";
  }
  const std::string check =
      "/usr/bin/python3 -c 'import sys; from prometheus_client.openmetrics.parser import "
      "text_string_to_metric_families as p; fams = list(p(sys.stdin.read())); "
      "print(len(fams), sum(len(f.samples) for f in fams))'";
  EXPECT_EQ(run_with_input(check, text, output), 0) << output;
  // 9 families (the dropped one included); samples: requests 2 + 1
  // _created, tokens 1, temperature 4, latency 5 + 1 _created,
  // request_duration 14 + 14 + 12 (NaN sum: no _sum/_count), offset 4
  // (negative bounds: no _sum/_count), big_ratio 4, g 1, dropped 3.
  EXPECT_EQ(output, "9 66\n");
}

TEST(ExternalValidators, OtlpJson) {
  const std::string text = render_otlp_json(rich_model(), nullptr, 1700000000000000000, {});
  dump("rich.otlp.json", text);
  EXPECT_NO_THROW(nlohmann::json::parse(text));
}

}  // namespace
}  // namespace aj
