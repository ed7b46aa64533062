// The chat templates of real checkpoints (and ours) rendered by frontends/jinja against
// @huggingface/jinja, the interpreter transformers.js renders them with: every committed
// conversation under tests/data/chat/conversations, with and without the generation prompt,
// byte for byte; where the oracle raises, we must fail too.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "frontends/ChatTemplate.h"
#include "frontends/Tokenizer.h"
#include "tests/frontends/JinjaOracleUtil.h"

namespace tpc {
namespace {

struct Conversation {
  std::string name;
  nlohmann::ordered_json messages, tools;
};

std::vector<Conversation> conversations() {
  std::vector<Conversation> out;
  std::vector<std::filesystem::path> files;
  for (const auto& entry :
       std::filesystem::directory_iterator(test::dataDir() + "/chat/conversations"))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(test::readFile(file.string()));
    out.push_back({file.filename().string(), j.at("messages"),
                   j.contains("tools") ? j["tools"] : nlohmann::ordered_json()});
  }
  return out;
}

TEST(ChatTemplateOracle, EveryConversationMatchesHuggingFaceJinja) {
  ASSERT_TRUE(test::jinjaOracleInstalled());
  std::vector<Conversation> chats = conversations();
  ASSERT_GE(chats.size(), 50u);
  std::vector<test::OracleCase> cases;
  std::vector<std::string> labels;
  std::vector<TokenizerSettings> settings;
  for (const std::string& dir : test::chatTemplateDirs()) {
    Expected<TokenizerSettings> s = Tokenizer::loadSettings(dir);
    ASSERT_TRUE(s) << s.errorMessage();
    ASSERT_FALSE(s->chatTemplate.empty()) << dir;
    for (const Conversation& chat : chats)
      for (bool prompt : {true, false}) {
        cases.push_back({dir, chat.messages, chat.tools, prompt});
        labels.push_back(std::filesystem::path(dir).lexically_normal().string() + " " + chat.name +
                         (prompt ? " +prompt" : ""));
        settings.push_back(*s);
      }
  }
  std::vector<nlohmann::json> oracle = test::renderWithOracle(cases);
  ASSERT_EQ(oracle.size(), cases.size());
  size_t rendered = 0, raised = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    Expected<std::string> ours = renderConversation(settings[i], cases[i].messages, cases[i].tools,
                                                    cases[i].addGenerationPrompt);
    if (oracle[i].contains("error")) {
      ++raised;
      EXPECT_FALSE(ours) << labels[i] << ": the oracle raised '"
                         << oracle[i]["error"].get<std::string>() << "' but we rendered";
      if (!ours) {
        EXPECT_EQ(ours.errorMessage().find('\n'), std::string::npos) << ours.errorMessage();
        EXPECT_NE(ours.errorMessage().find("line "), std::string::npos) << ours.errorMessage();
      }
      continue;
    }
    ++rendered;
    ASSERT_TRUE(ours) << labels[i] << ": " << ours.errorMessage();
    EXPECT_EQ(*ours, oracle[i]["text"].get<std::string>()) << labels[i];
  }
  // Both outcomes must be exercised, or the comparison proves less than it claims.
  EXPECT_GT(rendered, cases.size() / 2);
  EXPECT_GT(raised, 20u);
}

// The message of a failure comes from the template: raise_exception's text, on its line.
TEST(ChatTemplateOracle, RaiseExceptionNamesTheTemplateLine) {
  Expected<TokenizerSettings> s =
      Tokenizer::loadSettings(test::dataDir() + "/chat/templates/mistral-strict");
  ASSERT_TRUE(s) << s.errorMessage();
  nlohmann::ordered_json messages = nlohmann::ordered_json::parse(
      R"([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])");
  Expected<std::string> r = renderConversation(*s, messages, nullptr, true);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.errorMessage(),
            "chat template line 10: Conversation roles must alternate "
            "user/assistant/user/assistant/...");
}

}  // namespace
}  // namespace tpc
