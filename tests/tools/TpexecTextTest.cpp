// tpexec with text: the prompt goes through the model folder's tokenizer, and the text streamed
// while generating is exactly the decoding of the ids that a plain --prompt-ids run produces.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "frontends/Tokenizer.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using test::runCommand;

std::string tpc() { return test::binPath("tpc"); }
std::string tpexec() { return test::binPath("tpexec"); }
std::string tinyTokenizer() { return test::dataDir() + "/tokenizer/tiny-bpe"; }

class TpexecText : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string model = dir_.file("model");
    test::CommandResult made =
        runCommand(tpc() + " make-model --arch llama --preset tiny --quiet -o " + model +
                   " --tokenizer " + tinyTokenizer());
    ASSERT_EQ(made.exitCode, 0) << made.output;
    plan_ = dir_.file("w2.fb");
    test::CommandResult compiled =
        runCommand(tpc() + " compile " + model + " --quiet --world 2 -o " + plan_);
    ASSERT_EQ(compiled.exitCode, 0) << compiled.output;
    Expected<std::unique_ptr<Tokenizer>> t = Tokenizer::load(tinyTokenizer());
    ASSERT_TRUE(t) << t.errorMessage();
    tokenizer_ = std::move(*t);
  }
  nlohmann::json runJson(const std::string& flags) {
    test::CommandResult r = runCommand(tpexec() + " " + plan_ + " " + flags + " --json");
    EXPECT_EQ(r.exitCode, 0) << r.output;
    return nlohmann::json::parse(r.output, nullptr, false);
  }
  test::TempDir dir_;
  std::string plan_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(TpexecText, StreamedTextIsTheDecodedIds) {
  const std::string flags = " --max-new-tokens 24 --ignore-eos";
  // The ids the text becomes, and what a run on those ids generates.
  std::vector<int32_t> prompt = *tokenizer_->encode("Hello, world!", true);
  std::string ids;
  for (int32_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  nlohmann::json byIds = runJson("--prompt-ids " + ids + flags);
  std::vector<int32_t> generated = byIds["generated_ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(generated.size(), 24u);
  std::string expected = *tokenizer_->decode(generated, {true});

  nlohmann::json byText = runJson("--prompt \"Hello, world!\"" + flags);
  EXPECT_EQ(byText["prompt_ids"].get<std::vector<int32_t>>(), prompt);
  EXPECT_EQ(byText["generated_ids"].get<std::vector<int32_t>>(), generated);
  EXPECT_EQ(byText["text"].get<std::string>(), expected);

  // Streaming: stdout holds the text and nothing else (the summary goes to stderr), once,
  // though two ranks generate.
  test::CommandResult streamed = runCommand(tpexec() + " " + plan_ + " --prompt \"Hello, world!\"" +
                                            flags + " > " + dir_.file("out.txt"));
  ASSERT_EQ(streamed.exitCode, 0) << streamed.output;
  EXPECT_EQ(test::readFile(dir_.file("out.txt")), expected + "\n");
  EXPECT_NE(streamed.output.find("stopped by max_new_tokens"), std::string::npos)
      << streamed.output;
}

// The tiny tokenizer's chat_template is ChatML's; --chat renders it with the Jinja interpreter.
TEST_F(TpexecText, ChatUsesTheTokenizersTemplate) {
  nlohmann::json j = runJson("--prompt Hi --chat --system \"Be brief\" --max-new-tokens 2");
  std::string chatml =
      "<|im_start|>system\nBe brief<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
      "<|im_start|>assistant\n";
  EXPECT_EQ(j["prompt_ids"].get<std::vector<int32_t>>(), *tokenizer_->encode(chatml));
}

TEST_F(TpexecText, BadTextFlagsGiveOneLineErrors) {
  auto oneLine = [](const test::CommandResult& r, int code, const std::string& words) {
    EXPECT_EQ(r.exitCode, code) << r.output;
    EXPECT_EQ(r.lineCount(), 1) << r.output;
    EXPECT_NE(r.output.find(words), std::string::npos) << r.output;
  };
  std::string run = tpexec() + " " + plan_;
  oneLine(runCommand(run + " --prompt hi --prompt-ids 1"), 2, "not both");
  oneLine(runCommand(run + " --prompt hi --chat --raw"), 2, "not both");
  oneLine(runCommand(run + " --prompt hi --system x"), 2, "--system needs --chat");
  oneLine(runCommand(run + " --chat"), 2, "go with --prompt");
  oneLine(runCommand(run + " --prompt hi --tokenizer " + dir_.file("none")), 1, "--tokenizer:");
  // A tokenizer with neither a chat template nor the added tokens of a built-in format: --chat
  // says to use --raw. (The tiny tokenizer alone, without its tokenizer_config.json, now gets
  // the built-in ChatML format that its <|im_start|> token names.)
  test::writeFile(dir_.file("tokenizer.json"),
                  R"({"model": {"type": "BPE", "vocab": {"h": 0, "i": 1}, "merges": []}})");
  oneLine(runCommand(run + " --prompt hi --chat --tokenizer " + dir_.file("tokenizer.json")), 1,
          "--raw");
}

}  // namespace
}  // namespace tpc
