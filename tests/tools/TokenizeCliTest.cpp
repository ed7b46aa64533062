// tpc tokenize as a user meets it: JSON lines in and out, round trips, and one-line errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using test::runCommand;

std::string tpc() { return test::binPath("tpc"); }
std::string tinyTokenizer() { return test::dataDir() + "/tokenizer/tiny-bpe"; }

TEST(TpcTokenize, TextGoesToIdsAndBack) {
  test::TempDir dir;
  std::vector<std::string> texts = {"Hello, world!", "two\nlines\tand tabs", "日本語 🙂",
                                    "x<|im_start|>y", "   "};
  std::string input;
  for (const std::string& t : texts) input += nlohmann::json(t).dump() + "\n";
  test::writeFile(dir.file("in.jsonl"), input);
  test::CommandResult ids = runCommand(tpc() + " tokenize " + tinyTokenizer() + " < " +
                                       dir.file("in.jsonl") + " > " + dir.file("ids.jsonl"));
  ASSERT_EQ(ids.exitCode, 0) << ids.output;
  std::string idLines = test::readFile(dir.file("ids.jsonl"));
  EXPECT_EQ(std::count(idLines.begin(), idLines.end(), '\n'), static_cast<long>(texts.size()));
  EXPECT_NE(idLines.find("498"), std::string::npos) << "<|im_start|> is one token: " << idLines;
  test::CommandResult back =
      runCommand(tpc() + " tokenize " + tinyTokenizer() + " --decode < " + dir.file("ids.jsonl"));
  ASSERT_EQ(back.exitCode, 0) << back.output;
  EXPECT_EQ(back.output, input);
}

TEST(TpcTokenize, BadInputGivesOneLineErrors) {
  test::TempDir dir;
  auto oneLine = [](const test::CommandResult& r, int code, const std::string& words) {
    EXPECT_EQ(r.exitCode, code) << r.output;
    EXPECT_EQ(r.lineCount(), 1) << r.output;
    EXPECT_NE(r.output.find(words), std::string::npos) << r.output;
  };
  test::writeFile(dir.file("tokenizer.json"), R"({"model": {"type": "BPE", "vocab": {}}})");
  test::writeFile(dir.file("lines.jsonl"), "\"fine\"\nnot json\n");
  test::writeFile(dir.file("ids.jsonl"), "[1, 2]\n[100000]\n");
  std::string tiny = tpc() + " tokenize " + tinyTokenizer();
  oneLine(runCommand(tpc() + " tokenize " + dir.path() + " < /dev/null"), 1,
          "\"merges\" must be an array");
  oneLine(runCommand(tpc() + " tokenize " + dir.file("missing") + " < /dev/null"), 1,
          "no such file");
  oneLine(runCommand(tiny + " < " + dir.file("lines.jsonl") + " > /dev/null"), 1,
          "stdin line 2: expected a JSON string");
  oneLine(runCommand(tiny + " --decode < " + dir.file("ids.jsonl") + " > /dev/null"), 1,
          "stdin line 2: token id 100000 is outside the vocab of 500");
  oneLine(runCommand(tiny + " --decode --add-special < /dev/null"), 2, "--add-special");
}

}  // namespace
}  // namespace tpc
