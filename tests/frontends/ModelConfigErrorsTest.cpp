// Every way a config.json is refused: each message must name the file and the key or value at
// fault, and nothing may crash.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "frontends/ModelSpec.h"
#include "tests/frontends/ConfigTestUtil.h"

namespace tpc {
namespace {

using nlohmann::json;
using test::minimalConfig;
using test::parseError;

json with(json j, const std::string& key, json value) {
  j[key] = std::move(value);
  return j;
}
json without(json j, const std::string& key) {
  j.erase(key);
  return j;
}

TEST(ModelConfigErrors, UnknownModelTypeListsSupported) {
  EXPECT_EQ(parseError(with(minimalConfig("llama"), "model_type", "gpt2")),
            "config.json: model_type \"gpt2\" is not supported (supported: llama, mistral, "
            "qwen2, qwen3, qwen3_moe, mixtral)");
  EXPECT_CONTAINS(parseError(without(minimalConfig("llama"), "model_type")),
                  "config.json: model_type is missing (supported: llama,");
  EXPECT_CONTAINS(parseError(with(minimalConfig("llama"), "model_type", 3)),
                  "model_type must be a string, got number 3");
}

TEST(ModelConfigErrors, MissingRequiredKeys) {
  for (const char* key : {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                          "intermediate_size"}) {
    EXPECT_EQ(parseError(without(minimalConfig("llama"), key)),
              std::string("config.json: ") + key + " is missing");
  }
  EXPECT_EQ(parseError(without(minimalConfig("qwen3_moe"), "moe_intermediate_size")),
            "config.json: moe_intermediate_size is missing");
  // Mixtral's intermediate_size is its expert width, so it is required there too.
  EXPECT_EQ(parseError(without(minimalConfig("mixtral"), "intermediate_size")),
            "config.json: intermediate_size is missing");
  EXPECT_EQ(parseError(without(minimalConfig("mixtral"), "num_experts_per_tok")),
            "config.json: num_experts_per_tok is missing");
  EXPECT_EQ(parseError(without(minimalConfig("mixtral"), "num_local_experts")),
            "config.json: num_local_experts is missing (or num_experts)");
  EXPECT_EQ(parseError(without(minimalConfig("qwen3_moe"), "num_experts")),
            "config.json: num_experts is missing (or num_local_experts)");
  EXPECT_EQ(parseError(with(minimalConfig("llama"), "vocab_size", nullptr)),
            "config.json: vocab_size is null, expected an integer");
}

TEST(ModelConfigErrors, WrongJsonTypes) {
  json base = minimalConfig("llama");
  EXPECT_EQ(parseError(with(base, "vocab_size", "32000")),
            "config.json: vocab_size must be an integer, got string \"32000\"");
  EXPECT_EQ(parseError(with(base, "hidden_size", 64.5)),
            "config.json: hidden_size must be an integer, got number 64.5");
  EXPECT_EQ(parseError(with(base, "num_hidden_layers", json::array({2}))),
            "config.json: num_hidden_layers must be an integer, got array");
  EXPECT_EQ(parseError(with(base, "tie_word_embeddings", "yes")),
            "config.json: tie_word_embeddings must be a boolean, got string \"yes\"");
  EXPECT_EQ(parseError(with(base, "rms_norm_eps", true)),
            "config.json: rms_norm_eps must be a number, got boolean true");
  EXPECT_EQ(parseError(with(base, "rope_scaling", 5)),
            "config.json: rope_scaling must be an object, got number 5");
  EXPECT_EQ(parseError(with(base, "rope_theta", "1e4")),
            "config.json: rope_theta must be a number, got string \"1e4\"");
  EXPECT_EQ(parseError(with(base, "eos_token_id", json::array({1, "2"}))),
            "config.json: eos_token_id item must be an integer, got string \"2\"");
  EXPECT_EQ(parseError(with(base, "eos_token_id", "2")),
            "config.json: eos_token_id must be an integer or a list of integers, got string "
            "\"2\"");
  EXPECT_EQ(parseError(with(minimalConfig("qwen3_moe"), "mlp_only_layers", 0)),
            "config.json: mlp_only_layers must be a list of integers, got number 0");
  EXPECT_EQ(parseError(with(base, "torch_dtype", 16)),
            "config.json: torch_dtype must be a string, got number 16");
  EXPECT_EQ(parseError(with(base, "rope_scaling", {{"rope_type", "linear"}, {"factor", "2"}})),
            "config.json: rope_scaling.factor must be a number, got string \"2\"");
  EXPECT_CONTAINS(parseError(with(base, "vocab_size", std::string(500, 'x'))), "xxx...\"");
}

TEST(ModelConfigErrors, NonPositiveAndHugeSizes) {
  json base = minimalConfig("llama");
  EXPECT_EQ(parseError(with(base, "vocab_size", 0)),
            "config.json: vocab_size must be positive, got 0");
  EXPECT_EQ(parseError(with(base, "num_hidden_layers", -1)),
            "config.json: num_hidden_layers must be positive, got -1");
  EXPECT_EQ(parseError(with(base, "intermediate_size", 0)),
            "config.json: intermediate_size must be positive, got 0");
  EXPECT_EQ(parseError(with(base, "num_attention_heads", 0)),
            "config.json: num_attention_heads must be positive, got 0");
  EXPECT_EQ(parseError(with(base, "num_key_value_heads", 0)),
            "config.json: num_key_value_heads must be positive, got 0");
  EXPECT_EQ(parseError(with(base, "hidden_size", int64_t{1} << 40)),
            "config.json: hidden_size is too large: 1099511627776 (limit 1048576)");
  EXPECT_EQ(parseError(with(base, "vocab_size", UINT64_MAX)),
            "config.json: vocab_size is too large: 18446744073709551615");
  EXPECT_EQ(parseError(with(base, "rms_norm_eps", 0.0)),
            "config.json: rms_norm_eps must be a positive number, got 0");
  EXPECT_EQ(parseError(with(base, "max_position_embeddings", 0)),
            "config.json: max_position_embeddings must be positive, got 0");
  EXPECT_EQ(parseError(with(base, "rope_theta", -1.0)),
            "config.json: rope_theta must be a positive number, got -1");
  EXPECT_EQ(parseError(with(base, "eos_token_id", -3)),
            "config.json: eos_token_id must be at least 0, got -3");
  EXPECT_EQ(parseError(with(minimalConfig("mistral"), "sliding_window", -5)),
            "config.json: sliding_window must be at least 0, got -5");
}

TEST(ModelConfigErrors, HeadArithmetic) {
  json base = minimalConfig("llama");
  EXPECT_EQ(parseError(with(base, "num_key_value_heads", 3)),
            "config.json: num_attention_heads (4) is not a multiple of num_key_value_heads (3)");
  EXPECT_EQ(parseError(with(base, "num_attention_heads", 5)),
            "config.json: hidden_size (64) is not divisible by num_attention_heads (5) and "
            "head_dim is not given");
  EXPECT_EQ(parseError(with(base, "head_dim", 0)), "config.json: head_dim must be positive, got 0");
  EXPECT_EQ(parseError(with(base, "head_dim", 15)), "config.json: head_dim must be even, got 15");
}

TEST(ModelConfigErrors, Rope) {
  json base = minimalConfig("llama");
  for (const char* type : {"dynamic", "longrope", "mrope"}) {
    EXPECT_EQ(parseError(with(base, "rope_scaling", {{"rope_type", type}, {"factor", 2.0}})),
              std::string("config.json: rope_scaling.rope_type \"") + type +
                  "\" is not supported (supported: default, linear, llama3, yarn)");
  }
  EXPECT_EQ(parseError(with(base, "rope_parameters", {{"rope_type", "dynamic"}})),
            "config.json: rope_parameters.rope_type \"dynamic\" is not supported (supported: "
            "default, linear, llama3, yarn)");
  EXPECT_EQ(parseError(with(base, "rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}})),
            "config.json: rope_scaling.rope_type \"dynamic\" is not supported (supported: "
            "default, linear, llama3, yarn)");
  EXPECT_EQ(parseError(with(base, "rope_scaling", {{"factor", 2.0}})),
            "config.json: rope_scaling.rope_type is missing");
  EXPECT_EQ(parseError(with(base, "rope_scaling", {{"rope_type", "linear"}})),
            "config.json: rope_scaling.factor is missing");
  json llama3 = {{"rope_type", "llama3"},
                 {"factor", 8.0},
                 {"high_freq_factor", 4.0},
                 {"original_max_position_embeddings", 64}};
  EXPECT_EQ(parseError(with(base, "rope_scaling", llama3)),
            "config.json: rope_scaling.low_freq_factor is missing");
  llama3["low_freq_factor"] = 4.0;
  EXPECT_EQ(parseError(with(base, "rope_scaling", llama3)),
            "config.json: rope_scaling.high_freq_factor (4) must be greater than "
            "rope_scaling.low_freq_factor (4)");
  EXPECT_EQ(parseError(with(base, "rope_scaling", {{"rope_type", "linear"}, {"factor", 0.0}})),
            "config.json: rope_scaling.factor must be a positive number, got 0");
  EXPECT_EQ(parseError(with(base, "rope_scaling",
                            {{"rope_type", "yarn"}, {"factor", 4.0}, {"mscale", 0.707}})),
            "config.json: rope_scaling.mscale is set: DeepSeek-style yarn is not supported");
  json perLayer = {{"full_attention", {{"rope_type", "default"}, {"rope_theta", 1e6}}},
                   {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 1e4}}}};
  EXPECT_EQ(parseError(with(base, "rope_parameters", perLayer)),
            "config.json: rope_parameters holds parameters per layer type (\"full_attention\"); a "
            "single set is supported");
}

TEST(ModelConfigErrors, UnsupportedFeatures) {
  json base = minimalConfig("llama");
  EXPECT_EQ(parseError(with(base, "torch_dtype", "int8")),
            "config.json: torch_dtype \"int8\" is not supported (supported: bfloat16, float16, "
            "float32)");
  EXPECT_EQ(parseError(with(base, "dtype", "float8_e4m3fn")),
            "config.json: dtype \"float8_e4m3fn\" is not supported (supported: bfloat16, "
            "float16, float32)");
  EXPECT_EQ(parseError(with(base, "hidden_act", "gelu")),
            "config.json: hidden_act \"gelu\" is not supported (only \"silu\")");
  EXPECT_EQ(parseError(with(base, "mlp_bias", true)),
            "config.json: mlp_bias is true: MLP biases are not supported");
  for (const char* type : {"llama", "qwen3", "qwen3_moe"}) {
    EXPECT_EQ(parseError(with(minimalConfig(type), "attention_bias", true)),
              std::string("config.json: attention_bias is true, which in ") + type +
                  " puts a bias on o_proj as well as q/k/v: not supported");
  }
  EXPECT_EQ(parseError(with(base, "quantization_config", {{"quant_method", "fp8"}})),
            "config.json: quantization_config is present (quant_method \"fp8\"): quantized "
            "checkpoints are not supported");
  EXPECT_EQ(parseError(with(base, "quantization_config", json::object())),
            "config.json: quantization_config is present: quantized checkpoints are not "
            "supported");
}

TEST(ModelConfigErrors, Experts) {
  json moe = minimalConfig("qwen3_moe");
  EXPECT_EQ(parseError(with(moe, "num_local_experts", 8)),
            "config.json: num_experts (4) and num_local_experts (8) disagree");
  EXPECT_EQ(parseError(with(moe, "num_experts_per_tok", 5)),
            "config.json: num_experts_per_tok (5) exceeds num_experts (4)");
  EXPECT_EQ(parseError(with(moe, "num_experts", 0)),
            "config.json: num_experts must be positive, got 0");
  EXPECT_EQ(parseError(with(moe, "decoder_sparse_step", 0)),
            "config.json: decoder_sparse_step must be positive, got 0");
  EXPECT_EQ(parseError(with(moe, "mlp_only_layers", json::array({0, 2}))),
            "config.json: mlp_only_layers names layer 2, outside 0..1");
  EXPECT_EQ(
      parseError(with(without(moe, "intermediate_size"), "mlp_only_layers", json::array({1}))),
      "config.json: layer 1 has a dense MLP (decoder_sparse_step, mlp_only_layers) but "
      "intermediate_size is 0");
  EXPECT_EQ(parseError(with(minimalConfig("mixtral"), "num_experts_per_tok", 0)),
            "config.json: num_experts_per_tok must be positive, got 0");
  EXPECT_EQ(parseError(with(minimalConfig("mixtral"), "intermediate_size", 0)),
            "config.json: intermediate_size must be positive, got 0");
}

TEST(ModelConfigErrors, MalformedDocuments) {
  Expected<ModelSpec> notJson = parseModelConfig("{\"model_type\": ", "m/config.json");
  ASSERT_FALSE(notJson);
  EXPECT_CONTAINS(notJson.errorMessage(), "m/config.json: not valid JSON: parse error at line 1");
  Expected<ModelSpec> empty = parseModelConfig("", "config.json");
  ASSERT_FALSE(empty);
  EXPECT_CONTAINS(empty.errorMessage(), "config.json: not valid JSON");
  Expected<ModelSpec> array = parseModelConfig("[1, 2]", "config.json");
  ASSERT_FALSE(array);
  EXPECT_EQ(array.errorMessage(), "config.json: expected a JSON object, got array");
  // Deep nesting must neither crash the parser nor the error message.
  std::string deep = "{\"model_type\": \"llama\", \"vocab_size\": " + std::string(100000, '[') +
                     std::string(100000, ']') + "}";
  Expected<ModelSpec> nested = parseModelConfig(deep, "config.json");
  ASSERT_FALSE(nested);
  EXPECT_EQ(nested.errorMessage(), "config.json: vocab_size must be an integer, got array");
  // Whatever bytes the file holds, the message stays one printable line.
  Expected<ModelSpec> junk = parseModelConfig(R"({"model_type": "ll\nam\u00e9"})", "config.json");
  ASSERT_FALSE(junk);
  EXPECT_EQ(junk.errorMessage(),
            "config.json: model_type \"ll?am??\" is not supported (supported: "
            "llama, mistral, qwen2, qwen3, qwen3_moe, mixtral)");
  Expected<ModelSpec> badBytes = parseModelConfig("{\"a\": \x01\xfe\n}", "config.json");
  ASSERT_FALSE(badBytes);
  EXPECT_EQ(badBytes.errorMessage().find_first_of("\n\x01\xfe"), std::string::npos)
      << badBytes.errorMessage();
  Expected<ModelSpec> nul = parseModelConfig(std::string("{\"a\":1}\0junk", 12), "config.json");
  EXPECT_FALSE(nul);
}

TEST(ModelConfigErrors, ValidateCatchesInconsistentSpecs) {
  ModelSpec s = *test::parseJson(minimalConfig("llama"));
  s.qkNorm = true;
  Error e = validateModelSpec(s, "spec");
  ASSERT_TRUE(e);
  EXPECT_CONTAINS(e.message(), "spec: q/k RMSNorm belongs to qwen3 and qwen3_moe only");
  s.qkNorm = false;
  s.dtype = DType::I8;
  Error d = validateModelSpec(s, "spec");
  ASSERT_TRUE(d);
  EXPECT_EQ(d.message(), "spec: dtype i8 is not a weight dtype (bfloat16, float16 or float32)");
  s.dtype = DType::BF16;
  s.moe.numExperts = 4;
  Error m = validateModelSpec(s, "spec");
  ASSERT_TRUE(m);
  EXPECT_EQ(m.message(), "spec: llama is a dense family but the spec has 4 experts");
}

}  // namespace
}  // namespace tpc
