#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "core/export.hpp"
#include "core/exposition.hpp"

namespace aj {
namespace {

TEST(ExportHealth, NothingWithoutTargets) {
  std::vector<Family> out;
  append_export_families({}, out);
  EXPECT_TRUE(out.empty());
}

TEST(ExportHealth, OneSeriesPerTargetInBothFamilies) {
  std::vector<Family> out;
  append_export_families({{"textfile", 1700000000.5, 0}, {"otlp", 0, 3}}, out);
  RenderOptions opts;
  std::string text = render_prometheus(std::move(out), opts);
  EXPECT_NE(text.find("# TYPE agent_journal_export_last_success_timestamp_seconds gauge\n"
                      "agent_journal_export_last_success_timestamp_seconds{target=\"otlp\"} 0\n"
                      "agent_journal_export_last_success_timestamp_seconds{target=\"textfile\"} "
                      "1.7000000005e+09\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE agent_journal_export_errors_total counter\n"
                      "agent_journal_export_errors_total{target=\"otlp\"} 3\n"
                      "agent_journal_export_errors_total{target=\"textfile\"} 0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("agent_journal_render_dropped_series{reason=\"invalid\"} 0\n"),
            std::string::npos);
}

TEST(OtlpEndpoint, MetricsUrl) {
  EXPECT_EQ(otlp_metrics_url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/metrics");
  EXPECT_EQ(otlp_metrics_url("http://collector:4318/"), "http://collector:4318/v1/metrics");
  EXPECT_EQ(otlp_metrics_url("HTTPS://c.example/otlp//"), "HTTPS://c.example/otlp/v1/metrics");
}

TEST(OtlpEndpoint, Rejects) {
  EXPECT_NO_THROW(validate_otlp_endpoint(""));
  for (const char *bad : {"ftp://x", "127.0.0.1:4318", "http://", "http:///path", "http://a b",
                          "http://a\nb", "file:///etc/passwd"}) {
    try {
      validate_otlp_endpoint(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const std::invalid_argument &e) {
      EXPECT_EQ(std::string(e.what()).rfind("otlp_endpoint: ", 0), 0u) << e.what();
    }
  }
  EXPECT_THROW(otlp_metrics_url(""), std::invalid_argument);
  EXPECT_THROW(validate_otlp_endpoint("http://" + std::string(3000, 'a')), std::invalid_argument);
}

TEST(OtlpHeaders, Parses) {
  using H = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(parse_otlp_headers(""), H{});
  EXPECT_EQ(parse_otlp_headers(" , "), H{});
  EXPECT_EQ(parse_otlp_headers("Authorization=Bearer x,X-Tenant=a"),
            (H{{"Authorization", "Bearer x"}, {"X-Tenant", "a"}}));
  EXPECT_EQ(parse_otlp_headers(" a = 1 ,, b=x=y,"), (H{{"a", "1"}, {"b", "x=y"}}));
  EXPECT_EQ(parse_otlp_headers("k=a%2Cb%3dc%25"), (H{{"k", "a,b=c%"}}));
  EXPECT_EQ(parse_otlp_headers("empty="), (H{{"empty", ""}}));
}

TEST(OtlpHeaders, Rejects) {
  for (const char *bad : {"novalue", "=x", "bad key=1", "k:=1", "k=%0d%0aX-Injected: 1", "k=%",
                          "k=%4", "k=%zz", "a=1,b"}) {
    try {
      parse_otlp_headers(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const std::invalid_argument &e) {
      EXPECT_EQ(std::string(e.what()).rfind("otlp_headers: item ", 0), 0u) << e.what();
    }
  }
}

}  // namespace
}  // namespace aj
