#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/names.hpp"

namespace aj {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::nan("");

// what() of the std::invalid_argument `f` throws, or "<no error>".
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::invalid_argument &e) {
    return e.what();
  }
  return "<no error>";
}

TEST(MetricName, AcceptsSnakeCase) {
  EXPECT_NO_THROW(validate_metric_name("requests_total", MetricType::Counter));
  EXPECT_NO_THROW(validate_metric_name("_x_total", MetricType::Counter));
  EXPECT_NO_THROW(validate_metric_name("queue_depth", MetricType::Gauge));
  EXPECT_NO_THROW(validate_metric_name("_", MetricType::Gauge));
  EXPECT_NO_THROW(validate_metric_name("latency_seconds2", MetricType::Histogram));
  EXPECT_NO_THROW(validate_metric_name(std::string(200, 'a'), MetricType::Gauge));
}

TEST(MetricName, RejectsBadCharacters) {
  EXPECT_EQ(error_of([] { validate_metric_name("Foo", MetricType::Gauge); }),
            "name: \"Foo\" is not a valid metric name: must match [a-z_][a-z0-9_]*");
  EXPECT_EQ(error_of([] { validate_metric_name("a:b", MetricType::Gauge); }),
            "name: \"a:b\" is not a valid metric name: must match [a-z_][a-z0-9_]*");
  EXPECT_EQ(error_of([] { validate_metric_name("1abc", MetricType::Gauge); }),
            "name: \"1abc\" is not a valid metric name: must match [a-z_][a-z0-9_]*");
  EXPECT_EQ(error_of([] { validate_metric_name("a-b", MetricType::Gauge); }),
            "name: \"a-b\" is not a valid metric name: must match [a-z_][a-z0-9_]*");
  EXPECT_EQ(error_of([] { validate_metric_name("a\"\n\xff", MetricType::Gauge); }),
            "name: \"a\\\"\\x0a\\xff\" is not a valid metric name: must match [a-z_][a-z0-9_]*");
  EXPECT_EQ(error_of([] { validate_metric_name("", MetricType::Gauge); }),
            "name: metric name must not be empty");
}

TEST(MetricName, RejectsTooLong) {
  EXPECT_EQ(error_of([] { validate_metric_name(std::string(201, 'a'), MetricType::Gauge); }),
            "name: metric name is 201 bytes long, at most 200 allowed");
}

TEST(MetricName, CountersEndInTotal) {
  EXPECT_EQ(error_of([] { validate_metric_name("requests", MetricType::Counter); }),
            "name: counter name \"requests\" must end in _total");
  EXPECT_EQ(error_of([] { validate_metric_name("_total", MetricType::Counter); }),
            "name: counter name \"_total\" needs a name before the _total suffix");
  EXPECT_EQ(error_of([] { validate_metric_name("totals_total_x", MetricType::Counter); }),
            "name: counter name \"totals_total_x\" must end in _total");
}

TEST(MetricName, GaugesAndHistogramsAvoidReservedSuffixes) {
  for (const char *suffix : {"_total", "_count", "_sum", "_bucket", "_created", "_info"}) {
    std::string name = std::string("x") + suffix;
    EXPECT_EQ(error_of([&] { validate_metric_name(name, MetricType::Gauge); }),
              "name: gauge name \"" + name + "\" must not end in " + suffix +
                  " (reserved for counters and histograms)");
    EXPECT_EQ(error_of([&] { validate_metric_name(name, MetricType::Histogram); }),
              "name: histogram name \"" + name + "\" must not end in " + suffix +
                  " (reserved for counters and histograms)");
  }
  EXPECT_NO_THROW(validate_metric_name("x_counter", MetricType::Gauge));
  EXPECT_NO_THROW(validate_metric_name("sum", MetricType::Gauge));
  EXPECT_NO_THROW(validate_metric_name("x_count_now", MetricType::Gauge));
}

TEST(MetricName, ReservedPrefixes) {
  EXPECT_TRUE(is_reserved_metric_name("agent_runtime_load_factor"));
  EXPECT_TRUE(is_reserved_metric_name("agent_journal_render_dropped_series"));
  EXPECT_FALSE(is_reserved_metric_name("agent_runtimes"));
  EXPECT_FALSE(is_reserved_metric_name("my_agent_journal_x"));
  EXPECT_FALSE(is_reserved_metric_name(""));
}

TEST(TypeName, Spelling) {
  EXPECT_STREQ(type_name(MetricType::Counter), "counter");
  EXPECT_STREQ(type_name(MetricType::Gauge), "gauge");
  EXPECT_STREQ(type_name(MetricType::Histogram), "histogram");
}

TEST(LabelName, AcceptsPrometheusNames) {
  EXPECT_NO_THROW(validate_label_name("a"));
  EXPECT_NO_THROW(validate_label_name("Tool_Name9"));
  EXPECT_NO_THROW(validate_label_name("_x"));
  EXPECT_NO_THROW(validate_label_name("lea"));
  EXPECT_NO_THROW(validate_label_name(std::string(200, 'a')));
}

TEST(LabelName, Rejects) {
  EXPECT_EQ(error_of([] { validate_label_name("le"); }),
            "labels.le: label name \"le\" is reserved");
  EXPECT_EQ(error_of([] { validate_label_name("quantile"); }),
            "labels.quantile: label name \"quantile\" is reserved");
  EXPECT_EQ(error_of([] { validate_label_name("__name__"); }),
            "labels.__name__: label name \"__name__\" is reserved: names starting with __ are "
            "internal");
  EXPECT_EQ(error_of([] { validate_label_name("a-b"); }),
            "labels.a-b: label name \"a-b\" is not valid: must match [a-zA-Z_][a-zA-Z0-9_]*");
  EXPECT_EQ(error_of([] { validate_label_name("9a"); }),
            "labels.9a: label name \"9a\" is not valid: must match [a-zA-Z_][a-zA-Z0-9_]*");
  EXPECT_EQ(error_of([] { validate_label_name("a.b"); }),
            "labels.a.b: label name \"a.b\" is not valid: must match [a-zA-Z_][a-zA-Z0-9_]*");
  EXPECT_EQ(error_of([] { validate_label_name("a\"b"); }),
            "labels.\"a\\\"b\": label name \"a\\\"b\" is not valid: must match "
            "[a-zA-Z_][a-zA-Z0-9_]*");
  EXPECT_EQ(error_of([] { validate_label_name(""); }), "labels.: label name must not be empty");
  // Long names are cut in the path.
  EXPECT_EQ(error_of([] { validate_label_name(std::string(201, 'a')); }).substr(0, 83),
            "labels.\"" + std::string(64, 'a') + "\"...: label");
  EXPECT_NE(error_of([] {
              validate_label_name(std::string(201, 'a'));
            }).find("label name is 201 bytes long, at most 200 allowed"),
            std::string::npos);
}

TEST(LabelValue, Utf8AndLength) {
  EXPECT_NO_THROW(validate_label_value("a", ""));
  EXPECT_NO_THROW(validate_label_value("a", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_NO_THROW(validate_label_value("a", "quote \" backslash \\ newline \n"));
  EXPECT_NO_THROW(validate_label_value("a", std::string(4096, 'x')));
  EXPECT_EQ(error_of([] { validate_label_value("a", std::string(4097, 'x')); }),
            "labels.a: label value is 4097 bytes long, at most 4096 allowed");
  EXPECT_EQ(error_of([] { validate_label_value("a", std::string("x\0y", 3)); }),
            "labels.a: label value contains a nul byte");
  for (const char *bad : {"\xff", "\x80", "\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80",
                          "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "ok\xe2\x82"}) {
    EXPECT_EQ(error_of([&] { validate_label_value("tool", bad); }),
              "labels.tool: label value is not valid utf-8")
        << bad;
  }
}

TEST(PlainAscii, EveryPositionOfEveryWord) {
  EXPECT_TRUE(is_plain_ascii(""));
  EXPECT_TRUE(is_plain_ascii("/api/v1/items/12345"));
  // A NUL or a byte >= 0x80 at any offset, in the 8-byte words and in the
  // tail, makes it not plain; 0x01 and 0x7f are plain.
  for (std::size_t len : {1u, 7u, 8u, 9u, 16u, 23u}) {
    for (std::size_t pos = 0; pos < len; ++pos) {
      for (char bad : {'\0', '\x80', '\xff', '\xc3'}) {
        std::string v(len, 'a');
        v[pos] = bad;
        EXPECT_FALSE(is_plain_ascii(v)) << len << " " << pos << " " << int(bad);
      }
      std::string edge(len, '\x7f');
      edge[pos] = '\x01';
      EXPECT_TRUE(is_plain_ascii(edge)) << len << " " << pos;
    }
  }
  // The validator's verdicts are unchanged by its ASCII fast path.
  EXPECT_EQ(error_of([] { validate_label_value("a", std::string("abcdefgh\0ijk", 12)); }),
            "labels.a: label value contains a nul byte");
  EXPECT_EQ(error_of([] { validate_label_value("a", "abcdefghijklmno\xff"); }),
            "labels.a: label value is not valid utf-8");
}

TEST(Labels, SortIsStableAndByName) {
  Labels in{{"zeta", "1"}, {"b", "2"}, {"a", "3"}, {"bb", "4"}, {"B", "5"}, {"_", "6"}};
  Labels want{{"B", "5"}, {"_", "6"}, {"a", "3"}, {"b", "2"}, {"bb", "4"}, {"zeta", "1"}};
  EXPECT_EQ(normalize_labels(in), want);
}

TEST(Utf8, Boundaries) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("\x7f"));
  EXPECT_TRUE(is_valid_utf8("\xc2\x80"));
  EXPECT_TRUE(is_valid_utf8("\xed\x9f\xbf"));       // U+D7FF
  EXPECT_TRUE(is_valid_utf8("\xee\x80\x80"));       // U+E000
  EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));   // U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xf0\x8f\xbf\xbf"));  // overlong
  EXPECT_FALSE(is_valid_utf8("\xc1\xbf"));          // overlong
}

TEST(NormalizeLabels, SortsDropsEmptyAndRejectsDuplicates) {
  Labels in = {{"b", "2"}, {"a", "1"}, {"empty", ""}, {"C", "3"}};
  Labels want = {{"C", "3"}, {"a", "1"}, {"b", "2"}};
  EXPECT_EQ(normalize_labels(in), want);
  EXPECT_EQ(normalize_labels({}), Labels{});
  EXPECT_EQ(normalize_labels({{"x", ""}}), Labels{});
  EXPECT_EQ(error_of([] {
              normalize_labels({{"a", "1"}, {"b", "2"}, {"a", "3"}});
            }),
            "labels.a: label name \"a\" given twice");
  EXPECT_EQ(error_of([] {
              normalize_labels({{"a", ""}, {"a", "3"}});
            }),
            "labels.a: label name \"a\" given twice");
  EXPECT_EQ(error_of([] {
              normalize_labels({{"a", "1"}, {"le", "1"}});
            }),
            "labels.le: label name \"le\" is reserved");
  // Names are checked even when the value is empty.
  EXPECT_EQ(error_of([] {
              normalize_labels({{"__x", ""}});
            }),
            "labels.__x: label name \"__x\" is reserved: names starting with __ are internal");
  EXPECT_EQ(error_of([] {
              normalize_labels({{"a", "\xff"}});
            }),
            "labels.a: label value is not valid utf-8");
}

TEST(DerivedNames, PerType) {
  using V = std::vector<std::string>;
  EXPECT_EQ(derived_sample_names("x_total", MetricType::Counter), V{"x_total"});
  EXPECT_EQ(derived_sample_names("x", MetricType::Gauge), V{"x"});
  EXPECT_EQ(derived_sample_names("x", MetricType::Histogram),
            (V{"x", "x_bucket", "x_sum", "x_count"}));
  EXPECT_EQ(occupied_names("x_total", MetricType::Counter), (V{"x_total", "x", "x_created"}));
  EXPECT_EQ(occupied_names("x", MetricType::Gauge), V{"x"});
  EXPECT_EQ(occupied_names("x", MetricType::Histogram),
            (V{"x", "x_bucket", "x_sum", "x_count", "x_created"}));
}

TEST(FamilyCollision, DetectsOverlaps) {
  using E = std::vector<std::pair<std::string, MetricType>>;
  const E existing = {{"x_count", MetricType::Gauge},
                      {"h", MetricType::Histogram},
                      {"c_total", MetricType::Counter},
                      {"g", MetricType::Gauge}};
  EXPECT_NO_THROW(check_family_collision("y", MetricType::Gauge, existing));
  EXPECT_NO_THROW(check_family_collision("x_count2", MetricType::Gauge, existing));
  EXPECT_NO_THROW(check_family_collision("y", MetricType::Histogram, existing));
  EXPECT_NO_THROW(check_family_collision("x_counts", MetricType::Histogram, existing));
  EXPECT_NO_THROW(check_family_collision("anything", MetricType::Gauge, {}));

  EXPECT_EQ(error_of([&] { check_family_collision("x", MetricType::Histogram, existing); }),
            "name: histogram \"x\" collides with gauge \"x_count\": both use the name \"x_count\"");
  EXPECT_EQ(error_of([&] { check_family_collision("h_count", MetricType::Gauge, existing); }),
            "name: gauge \"h_count\" collides with histogram \"h\": both use the name "
            "\"h_count\"");
  EXPECT_EQ(error_of([&] { check_family_collision("h_bucket", MetricType::Gauge, existing); }),
            "name: gauge \"h_bucket\" collides with histogram \"h\": both use the name "
            "\"h_bucket\"");
  EXPECT_EQ(error_of([&] { check_family_collision("h", MetricType::Gauge, existing); }),
            "name: gauge \"h\" collides with histogram \"h\": both use the name \"h\"");
  // Counter c_total is family c in OpenMetrics.
  EXPECT_EQ(error_of([&] { check_family_collision("c", MetricType::Gauge, existing); }),
            "name: gauge \"c\" collides with counter \"c_total\": both use the name \"c\"");
  EXPECT_EQ(error_of([&] { check_family_collision("c", MetricType::Histogram, existing); }),
            "name: histogram \"c\" collides with counter \"c_total\": both use the name \"c\"");
  EXPECT_EQ(error_of([&] { check_family_collision("g_total", MetricType::Counter, existing); }),
            "name: counter \"g_total\" collides with gauge \"g\": both use the name \"g\"");
  EXPECT_EQ(error_of([&] { check_family_collision("c_total", MetricType::Counter, existing); }),
            "name: counter \"c_total\" collides with counter \"c_total\": both use the name "
            "\"c_total\"");
  // Counter h_bucket_total is family h_bucket in OpenMetrics; histogram h
  // writes h_bucket samples.
  EXPECT_NE(error_of([&] {
              check_family_collision("h_bucket_total", MetricType::Counter, existing);
            }).find("collides with histogram \"h\""),
            std::string::npos);
  // _created series of OpenMetrics.
  EXPECT_NE(error_of([&] {
              check_family_collision("h_created_total", MetricType::Counter, existing);
            }).find("both use the name \"h_created\""),
            std::string::npos);
}

TEST(Buckets, Defaults) {
  EXPECT_EQ(default_buckets(),
            (std::vector<double>{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}));
  EXPECT_EQ(validate_buckets(default_buckets()), default_buckets());
}

TEST(Buckets, TrailingInfRemoved) {
  EXPECT_EQ(validate_buckets({1, 2, kInf}), (std::vector<double>{1, 2}));
  EXPECT_EQ(validate_buckets({-5, 0, 5}), (std::vector<double>{-5, 0, 5}));
}

TEST(Buckets, Rejects) {
  EXPECT_EQ(error_of([] { validate_buckets({}); }),
            "buckets: at least one bucket bound is required");
  EXPECT_EQ(error_of([] { validate_buckets({kInf}); }),
            "buckets: at least one finite bucket bound is required");
  EXPECT_EQ(error_of([] {
              validate_buckets({1, kNaN, 3});
            }),
            "buckets[1]: NaN is not a valid bucket bound");
  EXPECT_EQ(error_of([] { validate_buckets({kNaN}); }),
            "buckets[0]: NaN is not a valid bucket bound");
  EXPECT_EQ(error_of([] {
              validate_buckets({-kInf, 1});
            }),
            "buckets[0]: -Inf is not a valid bucket bound");
  EXPECT_EQ(error_of([] {
              validate_buckets({1, kInf, 3});
            }),
            "buckets[1]: +Inf is only allowed as the last bound");
  EXPECT_EQ(error_of([] {
              validate_buckets({1, kInf, kInf});
            }),
            "buckets[1]: +Inf is only allowed as the last bound");
  EXPECT_EQ(error_of([] {
              validate_buckets({1, 0.5});
            }),
            "buckets[1]: bounds must be strictly increasing: 0.5 does not exceed 1");
  EXPECT_EQ(error_of([] {
              validate_buckets({0.1, 0.2, 0.2});
            }),
            "buckets[2]: bounds must be strictly increasing: 0.2 does not exceed 0.2");
  std::vector<double> many;
  for (int i = 0; i < 101; ++i) many.push_back(i);
  EXPECT_EQ(error_of([&] { validate_buckets(many); }),
            "buckets: 101 bounds given, at most 100 allowed");
  many.pop_back();
  EXPECT_EQ(validate_buckets(many).size(), 100u);
  many.push_back(kInf);  // 100 finite + the implicit one
  EXPECT_EQ(validate_buckets(many).size(), 100u);
}

// Found by tests/fuzz/fuzz_names: a name longer than 64 bytes whose escapes
// made its quoted (and cut) form exactly two bytes longer than the name was
// taken for a plain one and printed raw, invalid UTF-8 included.
TEST(LabelName, LongEscapedNameIsQuotedInThePath) {
  const std::string name = std::string("\xff") + std::string(69, 'a');
  const std::string what = error_of([&] { validate_label_name(name); });
  EXPECT_EQ(what.substr(0, 16), "labels.\"\\xffaaaa");
  EXPECT_TRUE(is_valid_utf8(what)) << what;
  const std::string what2 = error_of([&] { normalize_labels({{name, "v"}}); });
  EXPECT_TRUE(is_valid_utf8(what2)) << what2;
  // Every name past 64 bytes is quoted and cut, length 67 included (it
  // used to be printed whole).
  const std::string plain(67, 'a');
  EXPECT_EQ(error_of([&] { validate_label_value(plain, std::string(1, '\0')); }),
            "labels.\"" + std::string(64, 'a') + "\"...: label value contains a nul byte");
}


TEST(ExemplarLabels, SortedAndLimited) {
  Labels l = normalize_exemplar_labels({{"trace_id", "abc"}, {"agent_id", "a"}});
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0].first, "agent_id");
  // 128 characters in all is fine, 129 is not; characters, not bytes
  EXPECT_NO_THROW(normalize_exemplar_labels({{"k", std::string(127, 'x')}}));
  EXPECT_EQ(error_of([&] { normalize_exemplar_labels({{"k", std::string(128, 'x')}}); }),
            "exemplar: labels are 129 characters in all, at most 128 allowed (OpenMetrics)");
  std::string e_acute = "\xc3\xa9";
  std::string v;
  for (int i = 0; i < 127; i++) v += e_acute;
  EXPECT_NO_THROW(normalize_exemplar_labels({{"k", v}}));
  EXPECT_EQ(error_of([&] { normalize_exemplar_labels({}); }), "exemplar: must have at least one label");
  EXPECT_EQ(error_of([&] { normalize_exemplar_labels({{"1x", "v"}}); }),
            "exemplar.1x: label name \"1x\" is not valid: must match [a-zA-Z_][a-zA-Z0-9_]*");
  EXPECT_EQ(error_of([&] { normalize_exemplar_labels({{"k", "\xff"}}); }),
            "exemplar.k: label value is not valid utf-8");
}

// The arena forms decide as the owning ones do, and never write the array
// they were given.
TEST(LabelSpans, AsNormalizeLabels) {
  const std::vector<Labels> cases = {
      {},
      {{"a", "1"}},
      {{"b", "2"}, {"a", "1"}},
      {{"a", ""}, {"b", "2"}},
      {{"x", ""}},
      {{"a", "1"}, {"b", "2"}, {"a", "3"}},
      {{"a", ""}, {"a", "3"}},
      {{"a", "1"}, {"le", "1"}},
      {{"quantile", "1"}},
      {{"__x", ""}},
      {{"9a", "v"}},
      {{"a", "\xff"}},
      {{"a", std::string("x\0y", 3)}},
      {{"a", std::string(4097, 'v')}},
      {{"a", std::string(4096, 'v')}},
      {{"t", "caf\xc3\xa9"}, {"s", "\"q\"\n\\"}},
      {{"instance", "h"}, {"path", "/p"}, {"status", "200"}},
  };
  Arena arena;
  KnownNames known;
  for (int pass = 0; pass < 2; ++pass) {  // the second with names known
    for (const Labels &in : cases) {
      Span<Label> span = arena.labels(in);
      const Span<Label> given = span;
      bool want_ok = true;
      Labels want;
      try {
        want = normalize_labels(in);
      } catch (const std::invalid_argument &) {
        want_ok = false;
      }
      EXPECT_EQ(normalize_label_span(span, arena, pass == 0 ? nullptr : &known), want_ok)
          << ::testing::PrintToString(in);
      if (want_ok) {
        EXPECT_EQ(to_labels(span), want) << ::testing::PrintToString(in);
      }
      EXPECT_EQ(to_labels(given), in);  // untouched
    }
  }
}

TEST(LabelSpans, AsNormalizeExemplarLabels) {
  const std::vector<Labels> cases = {
      {},
      {{"trace_id", "abc"}, {"agent_id", "a"}},
      {{"le", "x"}},
      {{"k", ""}},
      {{"k", std::string(127, 'x')}},
      {{"k", std::string(128, 'x')}},
      {{"k", "\xc3\xa9" + std::string(126, 'x')}},
      {{"k", "\xc3\xa9" + std::string(127, 'x')}},
      {{"k", "\xff"}},
      {{"1x", "v"}},
      {{"__x", "v"}},
      {{"a", "1"}, {"a", "2"}},
  };
  Arena arena;
  KnownNames known;
  for (int pass = 0; pass < 2; ++pass) {
    for (const Labels &in : cases) {
      Span<Label> span = arena.labels(in);
      bool want_ok = true;
      Labels want;
      try {
        want = normalize_exemplar_labels(in);
      } catch (const std::invalid_argument &) {
        want_ok = false;
      }
      EXPECT_EQ(normalize_exemplar_label_span(span, arena, pass == 0 ? nullptr : &known), want_ok)
          << ::testing::PrintToString(in);
      if (want_ok) {
        EXPECT_EQ(to_labels(span), want) << ::testing::PrintToString(in);
      }
    }
  }
}

TEST(Arena, KeepsWhatItHandedOut) {
  Arena arena;
  std::vector<std::string_view> views;
  for (int i = 0; i < 20000; ++i) views.push_back(arena.str(std::to_string(i)));
  views.push_back(arena.str(std::string(100000, 'z')));  // larger than a block
  for (int i = 0; i < 20000; ++i) ASSERT_EQ(views[i], std::to_string(i));
  EXPECT_EQ(views.back(), std::string(100000, 'z'));
  EXPECT_TRUE(arena.str("").empty());
  double *d = arena.array<double>(3);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(d) % alignof(double), 0u);
}

}  // namespace
}  // namespace aj
