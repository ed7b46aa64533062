// Small builders shared by the config and preset suites: a minimal valid config.json per
// family, and parsing that reports the error text.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "frontends/ModelSpec.h"

namespace tpc::test {

// Checks that `text` contains `part`, printing both when it does not.
#define EXPECT_CONTAINS(text, part)                          \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "expected to find: " << (part) << "\n                in: " << (text)

// The fewest keys a config of `modelType` needs.
inline nlohmann::json minimalConfig(const std::string& modelType) {
  nlohmann::json j = {{"model_type", modelType},  {"vocab_size", 1000},
                      {"hidden_size", 64},        {"num_hidden_layers", 2},
                      {"num_attention_heads", 4}, {"intermediate_size", 128}};
  if (modelType == "qwen3_moe") {
    j["moe_intermediate_size"] = 32;
    j["num_experts"] = 4;
    j["num_experts_per_tok"] = 2;
  } else if (modelType == "mixtral") {
    j["num_local_experts"] = 4;
    j["num_experts_per_tok"] = 2;
  }
  return j;
}

inline Expected<ModelSpec> parseJson(const nlohmann::json& j) {
  return parseModelConfig(j.dump(), "config.json");
}

// The error message parsing `j` gives; fails the test when parsing succeeds.
inline std::string parseError(const nlohmann::json& j) {
  Expected<ModelSpec> spec = parseJson(j);
  EXPECT_FALSE(spec) << "parsed without error: " << j.dump();
  return spec ? std::string() : spec.errorMessage();
}

}  // namespace tpc::test
