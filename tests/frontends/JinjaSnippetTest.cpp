// Template snippets (tests/data/chat/snippets.txt) through frontends/jinja and through
// @huggingface/jinja: each construct, filter, test and method on each kind of value, the
// JavaScript corners (formatting, equality, whitespace) and the errors; equal output, or both fail.
#include <gtest/gtest.h>

#include <filesystem>

#include "frontends/ChatTemplate.h"
#include "tests/frontends/JinjaOracleUtil.h"

namespace tpc {
namespace {

std::vector<std::string> snippets() {
  std::string text = test::readFile(test::dataDir() + "/chat/snippets.txt");
  std::vector<std::string> out;
  size_t start = text.find("%%%\n");
  while (start != std::string::npos) {
    start += 4;
    size_t end = text.find("\n%%%\n", start);
    out.push_back(
        text.substr(start, end == std::string::npos ? text.size() - 1 - start : end - start));
    start = end == std::string::npos ? end : end + 1;
  }
  return out;
}

TEST(JinjaSnippets, MatchHuggingFaceJinja) {
  ASSERT_TRUE(test::jinjaOracleInstalled());
  std::vector<std::string> all = snippets();
  ASSERT_GE(all.size(), 70u);
  nlohmann::ordered_json messages = nlohmann::ordered_json::parse(
      R"([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])");
  test::TempDir dir;
  std::vector<test::OracleCase> cases;
  std::vector<TokenizerSettings> settings;
  for (size_t i = 0; i < all.size(); ++i) {
    std::string folder = dir.file("s" + std::to_string(i));
    std::filesystem::create_directory(folder);
    test::writeFile(folder + "/chat_template.jinja", all[i]);
    test::writeFile(folder + "/tokenizer_config.json",
                    R"({"bos_token": "<s>", "eos_token": "</s>"})");
    cases.push_back({folder, messages, nlohmann::ordered_json(), true});
    TokenizerSettings s;
    s.chatTemplate = all[i];
    s.templateTokens = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
    settings.push_back(s);
  }
  std::vector<nlohmann::json> oracle = test::renderWithOracle(cases);
  ASSERT_EQ(oracle.size(), all.size());
  size_t failures = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    Expected<std::string> ours = renderConversation(settings[i], messages, nullptr, true);
    if (oracle[i].contains("error")) {
      ++failures;
      EXPECT_FALSE(ours) << all[i]
                         << "\n  the oracle raised: " << oracle[i]["error"].get<std::string>()
                         << "\n  we rendered: " << (ours ? *ours : "");
      continue;
    }
    ASSERT_TRUE(ours) << all[i] << "\n  " << ours.errorMessage();
    EXPECT_EQ(*ours, oracle[i]["text"].get<std::string>()) << all[i];
  }
  EXPECT_GT(failures, 10u);
}

}  // namespace
}  // namespace tpc
