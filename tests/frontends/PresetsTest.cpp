// Presets: every one is valid, survives config.json write → parse unchanged, and has the
// published size where it copies a real checkpoint.
#include "frontends/Presets.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/frontends/ConfigTestUtil.h"

namespace tpc {
namespace {

const Family kAll[] = {Family::Llama, Family::Mistral,  Family::Qwen2,
                       Family::Qwen3, Family::Qwen3Moe, Family::Mixtral};

ModelSpec preset(Family f, const char* name, DType dtype = DType::BF16) {
  Expected<ModelSpec> s = makePresetSpec(f, name, dtype);
  EXPECT_TRUE(s) << (s ? "" : s.errorMessage());
  return s ? *s : ModelSpec{};
}

TEST(Presets, EveryPresetRoundTripsThroughConfigJson) {
  int count = 0;
  for (Family f : kAll) {
    std::vector<std::string> names = presetNames(f);
    ASSERT_GE(names.size(), 3u);
    EXPECT_EQ(names[0], "tiny");
    EXPECT_EQ(names[1], "small");
    ASSERT_EQ(presets(f).size(), names.size());
    for (const std::string& name : names) {
      for (DType dtype : {DType::BF16, DType::F16, DType::F32}) {
        SCOPED_TRACE(std::string(familyName(f)) + " " + name + " " + std::string(irName(dtype)));
        ModelSpec spec = preset(f, name.c_str(), dtype);
        EXPECT_EQ(spec.family, f);
        EXPECT_EQ(spec.dtype, dtype);
        std::string text = writeModelConfig(spec);
        Expected<ModelSpec> back = parseModelConfig(text, "written");
        ASSERT_TRUE(back) << back.errorMessage() << "\n" << text;
        EXPECT_TRUE(*back == spec) << text << writeModelConfig(*back);
        EXPECT_EQ(writeModelConfig(*back), text);  // deterministic
        ++count;
      }
    }
  }
  EXPECT_GE(count, 3 * 18);
}

TEST(Presets, WrittenConfigHasTheFamilysKeys) {
  using nlohmann::json;
  json llama = json::parse(writeModelConfig(preset(Family::Llama, "tiny")));
  EXPECT_EQ(llama["architectures"], json::array({"LlamaForCausalLM"}));
  EXPECT_EQ(llama["model_type"], "llama");
  EXPECT_EQ(llama["hidden_act"], "silu");
  EXPECT_EQ(llama["torch_dtype"], "bfloat16");
  EXPECT_EQ(llama["rope_scaling"]["rope_type"], "llama3");
  EXPECT_EQ(llama["rope_scaling"]["original_max_position_embeddings"], 64);
  EXPECT_FALSE(llama.contains("rope_parameters"));

  json moe = json::parse(writeModelConfig(preset(Family::Qwen3Moe, "qwen3-30b-a3b")));
  EXPECT_EQ(moe["architectures"], json::array({"Qwen3MoeForCausalLM"}));
  EXPECT_EQ(moe["num_experts"], 128);
  EXPECT_EQ(moe["moe_intermediate_size"], 768);
  EXPECT_EQ(moe["intermediate_size"], 6144);
  EXPECT_EQ(moe["norm_topk_prob"], true);
  EXPECT_EQ(moe["mlp_only_layers"], json::array());
  EXPECT_FALSE(moe.contains("num_local_experts"));

  json mixtral = json::parse(writeModelConfig(preset(Family::Mixtral, "mixtral-8x7b")));
  EXPECT_EQ(mixtral["architectures"], json::array({"MixtralForCausalLM"}));
  EXPECT_EQ(mixtral["num_local_experts"], 8);
  EXPECT_EQ(mixtral["intermediate_size"], 14336);
  EXPECT_FALSE(mixtral.contains("num_experts"));
  EXPECT_FALSE(mixtral.contains("moe_intermediate_size"));

  json qwen2 = json::parse(writeModelConfig(preset(Family::Qwen2, "tiny")));
  EXPECT_EQ(qwen2["architectures"], json::array({"Qwen2ForCausalLM"}));
  EXPECT_EQ(qwen2["tie_word_embeddings"], true);
  EXPECT_EQ(qwen2["use_sliding_window"], false);

  // Keys come out sorted with a 2-space indent.
  std::string text = writeModelConfig(preset(Family::Mistral, "tiny"));
  EXPECT_EQ(text.substr(0, 22), "{\n  \"architectures\": [");
  EXPECT_EQ(text.back(), '\n');
}

TEST(Presets, TinyShapes) {
  for (Family f : kAll) {
    SCOPED_TRACE(familyName(f));
    ModelSpec s = preset(f, "tiny");
    EXPECT_EQ(s.vocabSize, 500);  // not a multiple of 8: exercises vocab padding
    EXPECT_EQ(s.hiddenSize, 128);
    EXPECT_EQ(s.numLayers, 2);
    EXPECT_EQ(s.numHeads, 8);
    EXPECT_EQ(s.numKvHeads, 2);
    EXPECT_EQ(s.headDim, f == Family::Qwen3 ? 32 : 16);
    EXPECT_EQ(s.eosTokenIds, std::vector<int64_t>{2});
    EXPECT_EQ(s.bosTokenId, 1);
    EXPECT_LT(parameterCount(s) * 2, int64_t{1} << 20);  // under 1 MiB in bf16
  }
  EXPECT_TRUE(preset(Family::Qwen2, "tiny").tieWordEmbeddings);
  EXPECT_EQ(preset(Family::Llama, "tiny").rope.type, RopeType::Llama3);
  ModelSpec moe = preset(Family::Qwen3Moe, "tiny");
  EXPECT_FALSE(moe.layerIsMoe(0));
  EXPECT_TRUE(moe.layerIsMoe(1));
  EXPECT_EQ(moe.moe.numExperts, 8);
  EXPECT_EQ(moe.moe.topK, 2);
  EXPECT_EQ(moe.moe.intermediateSize, 32);
  ModelSpec small = preset(Family::Qwen3Moe, "small");
  EXPECT_FALSE(small.layerIsMoe(0));
  EXPECT_TRUE(small.layerIsMoe(1));
}

TEST(Presets, SmallIsTensOfMillions) {
  for (Family f : kAll) {
    SCOPED_TRACE(familyName(f));
    int64_t n = parameterCount(preset(f, "small"));
    EXPECT_GE(n, 10'000'000);
    EXPECT_LE(n, 30'000'000);
  }
}

TEST(Presets, RealShapesHaveThePublishedSizes) {
  struct Case {
    Family family;
    const char* name;
    double billions;  // from the model cards
    double tolerance;
  };
  const Case cases[] = {
      {Family::Llama, "llama3-8b", 8.03, 0.005},
      {Family::Llama, "llama3.2-1b", 1.236, 0.001},
      {Family::Llama, "llama3-70b", 70.55, 0.01},
      {Family::Mistral, "mistral-7b", 7.248, 0.001},
      {Family::Qwen2, "qwen2.5-0.5b", 0.494, 0.001},
      {Family::Qwen2, "qwen2.5-7b", 7.62, 0.005},
      {Family::Qwen3, "qwen3-0.6b", 0.596, 0.001},
      {Family::Qwen3, "qwen3-8b", 8.19, 0.005},
      {Family::Qwen3Moe, "qwen3-30b-a3b", 30.5, 0.05},
      {Family::Mixtral, "mixtral-8x7b", 46.7, 0.05},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_NEAR(parameterCount(preset(c.family, c.name)) / 1e9, c.billions, c.tolerance);
  }
  ModelSpec l = preset(Family::Llama, "llama3-8b");
  EXPECT_EQ(l.rope.theta, 500000.0);
  EXPECT_EQ(l.rope.factor, 8.0);
  EXPECT_EQ(l.rope.originalMaxPositionEmbeddings, 8192);
  EXPECT_EQ(l.maxPositionEmbeddings, 131072);
  EXPECT_EQ(l.eosTokenIds, (std::vector<int64_t>{128001, 128009}));
  EXPECT_EQ(l.bosTokenId, 128000);
  ModelSpec l1 = preset(Family::Llama, "llama3.2-1b");
  EXPECT_TRUE(l1.tieWordEmbeddings);
  EXPECT_EQ(l1.headDim, 64);
  EXPECT_EQ(l1.rope.factor, 32.0);
}

TEST(Presets, Errors) {
  Expected<ModelSpec> unknown = makePresetSpec(Family::Llama, "huge", DType::BF16);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.errorMessage(),
            "preset \"huge\" does not exist for llama (presets: tiny, small, llama3-8b, "
            "llama3.2-1b, llama3-70b)");
  Expected<ModelSpec> wrongFamily = makePresetSpec(Family::Llama, "qwen3-30b-a3b", DType::BF16);
  ASSERT_FALSE(wrongFamily);
  EXPECT_EQ(wrongFamily.errorMessage(),
            "preset \"qwen3-30b-a3b\" is a qwen3_moe model, not llama (llama presets: tiny, "
            "small, llama3-8b, llama3.2-1b, llama3-70b)");
  Expected<ModelSpec> badType = makePresetSpec(Family::Qwen2, "tiny", DType::I32);
  ASSERT_FALSE(badType);
  EXPECT_EQ(badType.errorMessage(), "dtype i32 is not a weight dtype (bf16, f16 or f32)");
}

TEST(Presets, ParseFamily) {
  EXPECT_EQ(*parseFamily("llama"), Family::Llama);
  EXPECT_EQ(*parseFamily("qwen3_moe"), Family::Qwen3Moe);
  EXPECT_EQ(*parseFamily("mixtral"), Family::Mixtral);
  Expected<Family> bad = parseFamily("Llama");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.errorMessage(),
            "model_type \"Llama\" is not supported (supported: llama, mistral, qwen2, qwen3, "
            "qwen3_moe, mixtral)");
  for (Family f : kAll) EXPECT_EQ(*parseFamily(familyName(f)), f);
}

}  // namespace
}  // namespace tpc
