// The built-in chat formats against the Jinja rendering of transformers.js: Llama-3's own
// template, ChatML (Qwen's format), and Mistral's [INST] template. --chat now renders a
// tokenizer's template itself (frontends/jinja, checked in ChatTemplateOracleTest); these
// formats remain for tokenizers that carry none, so they are still held to the templates.
#include "frontends/ChatTemplate.h"

#include <gtest/gtest.h>

#include "tests/frontends/TokenizerOracleUtil.h"

namespace tpc {
namespace {

using Chat = std::vector<ChatMessage>;

std::vector<Chat> conversations(bool withSystem) {
  std::vector<Chat> chats = {
      {{"user", "Hello!"}},
      {{"user", "  What is 2+2?\n"}},
      {{"user", "日本語で答えて 🙂"}, {"assistant", "はい。"}, {"user", "ありがとう"}},
      {{"user", "Write code:\n```py\nprint(1)\n```"}, {"assistant", "Done."}, {"user", "More"}},
      {{"user", "<|im_start|> and [INST] inside text"}},
  };
  if (withSystem) {
    chats.push_back({{"system", "You are terse."}, {"user", "Hi"}});
    chats.push_back({{"system", "  spaced  "}, {"user", "x"}, {"assistant", "y"}, {"user", "z"}});
  }
  return chats;
}

// `detect`: whether the tokenizer's own tokenizer_config.json names the format (the Mistral
// template is the oracle's, applied to the Llama-2 files, which carry none).
void compareWithOracle(const std::string& oracleName, const std::string& tokenizerName, bool detect,
                       ChatFormat expected, bool withSystem) {
  ASSERT_TRUE(test::oracleInstalled());
  Expected<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::load(test::oracleTokenizerDir(tokenizerName));
  ASSERT_TRUE(tokenizer) << tokenizer.errorMessage();
  const TokenizerSettings& settings = (*tokenizer)->settings();
  if (detect) {
    Expected<ChatFormat> format = detectChatFormat(**tokenizer);
    ASSERT_TRUE(format) << format.errorMessage();
    EXPECT_EQ(*format, expected);
  }
  test::TempDir dir;
  std::string input;
  std::vector<Chat> chats = conversations(withSystem);
  for (const Chat& chat : chats) {
    nlohmann::json messages = nlohmann::json::array();
    for (const ChatMessage& m : chat)
      messages.push_back({{"role", m.role}, {"content", m.content}});
    input += messages.dump() + "\n";
  }
  test::writeFile(dir.file("chats.jsonl"), input);
  std::vector<nlohmann::json> oracle = test::runOracle("chat", oracleName, dir.file("chats.jsonl"));
  ASSERT_EQ(oracle.size(), chats.size());
  for (size_t i = 0; i < chats.size(); ++i) {
    Expected<std::string> ours = renderChat(expected, chats[i], settings);
    ASSERT_TRUE(ours) << ours.errorMessage();
    EXPECT_EQ(*ours, oracle[i].get<std::string>()) << oracleName << " chat " << i;
  }
}

TEST(ChatTemplate, Llama3MatchesItsJinjaTemplate) {
  compareWithOracle("llama3", "llama3", true, ChatFormat::Llama3, true);
}

TEST(ChatTemplate, ChatMLMatchesJinja) {
  compareWithOracle("qwen3-chatml", "qwen3", true, ChatFormat::ChatML, true);
}

TEST(ChatTemplate, MistralMatchesJinja) {
  compareWithOracle("mistral", "llama2", false, ChatFormat::Mistral, false);
}

TEST(ChatTemplate, MistralRefusesASystemTurn) {
  Expected<std::string> r = renderChat(ChatFormat::Mistral, {{"system", "x"}, {"user", "y"}}, {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.errorMessage().find("alternation"), std::string::npos) << r.errorMessage();
}

// Without a template, the built-in format comes from the added tokens.
TEST(ChatTemplate, NoTemplateFallsBackToTheFormatItsTokensName) {
  const char* json =
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
          "added_tokens": [{"id": 1, "content": "<|im_start|>", "special": true}]})";
  Expected<std::unique_ptr<Tokenizer>> t = Tokenizer::fromJson(json, "", "t.json");
  ASSERT_TRUE(t) << t.errorMessage();
  Expected<ChatFormat> format = detectChatFormat(**t);
  ASSERT_TRUE(format) << format.errorMessage();
  EXPECT_EQ(*format, ChatFormat::ChatML);
}

TEST(ChatTemplate, MissingOrUnknownTemplateSuggestsRaw) {
  const char* json = R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})";
  for (const char* config : {"", R"({"chat_template": "{{ messages }}"})"}) {
    Expected<std::unique_ptr<Tokenizer>> t = Tokenizer::fromJson(json, config, "t.json");
    ASSERT_TRUE(t) << t.errorMessage();
    Expected<ChatFormat> format = detectChatFormat(**t);
    ASSERT_FALSE(format);
    EXPECT_NE(format.errorMessage().find("--raw"), std::string::npos) << format.errorMessage();
    EXPECT_EQ(format.errorMessage().find('\n'), std::string::npos);
  }
}

}  // namespace
}  // namespace tpc
