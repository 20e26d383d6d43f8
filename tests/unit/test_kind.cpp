#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/kind.hpp"

namespace aj {
namespace {

using nlohmann::json;

TEST(Kind, StringTypeMember) {
  EXPECT_EQ(derive_kind(json::parse(R"({"type": "tool_call", "tool": "grep"})")), "tool_call");
  EXPECT_EQ(derive_kind(json::parse(R"({"type": "started"})")), "started");
}

TEST(Kind, SerdeTaggedEnum) {
  EXPECT_EQ(derive_kind(json::parse(R"({"Started": {"agent": 1}})")), "Started");
  EXPECT_EQ(derive_kind(json::parse(R"({"Stopped": null})")), "Stopped");
}

TEST(Kind, NonStringTypeFallsThrough) {
  EXPECT_EQ(derive_kind(json::parse(R"({"type": 5, "x": 1})")), "unknown");
  // Exactly one key: that key, whatever it is.
  EXPECT_EQ(derive_kind(json::parse(R"({"type": {"a": 1}})")), "type");
}

TEST(Kind, Unknown) {
  EXPECT_EQ(derive_kind(json::parse(R"({"a": 1, "b": 2})")), "unknown");
  EXPECT_EQ(derive_kind(json::object()), "unknown");
  EXPECT_EQ(derive_kind(json::parse(R"(["Started"])")), "unknown");
  EXPECT_EQ(derive_kind(json("Started")), "unknown");
  EXPECT_EQ(derive_kind(json(nullptr)), "unknown");
  EXPECT_EQ(derive_kind(json(3)), "unknown");
}

TEST(Kind, EmptyIsUnknown) {
  EXPECT_EQ(derive_kind(json::parse(R"({"type": ""})")), "unknown");
  EXPECT_EQ(derive_kind(json::parse(R"({"": 1})")), "unknown");
}

TEST(Kind, GlueEntryPoint) {
  const std::string t = "message";
  EXPECT_EQ(derive_kind(&t, 3, "ignored"), "message");
  EXPECT_EQ(derive_kind(nullptr, 1, "Started"), "Started");
  EXPECT_EQ(derive_kind(nullptr, 2, "Started"), "unknown");
  EXPECT_EQ(derive_kind(nullptr, 0, ""), "unknown");
}

TEST(Kind, CappedAt200Bytes) {
  const std::string ascii(300, 'k');
  EXPECT_EQ(derive_kind(&ascii, 1, {}), std::string(200, 'k'));
  EXPECT_EQ(derive_kind(nullptr, 1, ascii), std::string(200, 'k'));
  const std::string exact(200, 'e');
  EXPECT_EQ(derive_kind(&exact, 1, {}), exact);
}

TEST(Kind, CapKeepsUtf8Whole) {
  // 199 ASCII bytes then a 2-byte character: byte 200 would split it.
  const std::string two = std::string(199, 'a') + "\xc3\xa9" + "tail";
  EXPECT_EQ(derive_kind(&two, 1, {}), std::string(199, 'a'));
  // 4-byte characters: 50 of them fill 200 bytes exactly, a 51st is dropped.
  std::string four;
  for (int i = 0; i < 51; ++i) four += "\xf0\x9f\x93\x9d";
  std::string fifty;
  for (int i = 0; i < 50; ++i) fifty += "\xf0\x9f\x93\x9d";
  EXPECT_EQ(derive_kind(&four, 1, {}), fifty);
  // 198 ASCII bytes then a 4-byte character: cut back to 198.
  const std::string straddle = std::string(198, 'b') + "\xf0\x9f\x93\x9d";
  EXPECT_EQ(derive_kind(nullptr, 1, straddle), std::string(198, 'b'));
}

}  // namespace
}  // namespace aj

#include "core/exposition.hpp"
#include "core/journal_metrics.hpp"

TEST(JournalMetrics, RendersTheFourFamilies) {
  aj::JournalTotals t;
  t.agents = 2;
  t.live_entries = 7;
  t.appended_entries = 12;
  t.compacted_entries = 5;
  std::vector<aj::Family> fams;
  aj::append_journal_families(t, fams);
  std::string text = aj::render_prometheus(fams, aj::RenderOptions{});
  EXPECT_NE(text.find("\nagent_journal_agents 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nagent_journal_live_entries 7\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE agent_journal_appended_entries_total counter\n"
                      "agent_journal_appended_entries_total 12\n"),
            std::string::npos);
  EXPECT_NE(text.find("\nagent_journal_compacted_entries_total 5\n"), std::string::npos);
}

TEST(JournalMetrics, LeaseFamilies) {
  aj::LeaseTotals t;
  t.active = 3;
  std::vector<aj::Family> fams;
  aj::append_lease_families(t, fams);
  std::string text = aj::render_openmetrics(fams, aj::RenderOptions{});
  EXPECT_NE(text.find("\nagent_journal_leases_active 3.0\n"), std::string::npos) << text;
  // takeovers render as 0 until their series exists; fenced writes only
  // when counted (a preloaded library)
  EXPECT_NE(text.find("\nagent_journal_lease_takeovers_total 0.0\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("fenced"), std::string::npos) << text;

  t.takeovers_rendered = true;
  t.has_fenced = true;
  t.fenced = 4;
  t.fenced_since = 1700000000.5;
  fams.clear();
  aj::append_lease_families(t, fams);
  text = aj::render_openmetrics(fams, aj::RenderOptions{});
  EXPECT_EQ(text.find("takeovers"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE agent_journal_fenced_writes counter\n"
                      "agent_journal_fenced_writes_total 4.0\n"
                      "agent_journal_fenced_writes_created 1700000000.5\n"),
            std::string::npos)
      << text;
}
