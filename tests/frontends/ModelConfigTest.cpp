// Parsing config.json: both key spellings, defaults, the MoE layer rule, and real published
// configs under tests/data/configs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "frontends/ModelSpec.h"
#include "tests/frontends/ConfigTestUtil.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using nlohmann::json;
using test::minimalConfig;
using test::parseJson;

// One config per family in the pre-transformers-5 spelling, with a different rope flavour per
// family so every scaling type is read in both spellings somewhere.
json oldForm(Family f) {
  json j = minimalConfig(std::string(familyName(f)));
  j["num_key_value_heads"] = 2;
  j["torch_dtype"] = "float16";
  j["rms_norm_eps"] = 1e-5;
  j["max_position_embeddings"] = 4096;
  j["eos_token_id"] = json::array({7, 9});
  j["bos_token_id"] = 5;
  j["tie_word_embeddings"] = f == Family::Qwen2;
  switch (f) {
    case Family::Llama:
      j["rope_theta"] = 500000.0;
      j["rope_scaling"] = {{"rope_type", "llama3"},
                           {"factor", 8.0},
                           {"low_freq_factor", 1.0},
                           {"high_freq_factor", 4.0},
                           {"original_max_position_embeddings", 1024}};
      break;
    case Family::Mistral:
      j["rope_theta"] = 1e6;
      j["rope_scaling"] = nullptr;
      break;
    case Family::Qwen2:
      j["rope_theta"] = 1e6;
      // The legacy "type" key, as Qwen2.5's long-context instructions spell it.
      j["rope_scaling"] = {
          {"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 1024}};
      break;
    case Family::Qwen3:
      j["head_dim"] = 32;
      j["rope_theta"] = 1e6;
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
      break;
    case Family::Qwen3Moe:
      j["rope_theta"] = 1e6;
      j["norm_topk_prob"] = true;
      j["mlp_only_layers"] = json::array({0});
      break;
    case Family::Mixtral:
      j["rope_theta"] = 1e6;
      break;
  }
  return j;
}

// The same model as transformers 5 writes it: rope_parameters, dtype, and the other spelling
// of the expert count.
json newForm(Family f) {
  json j = oldForm(f);
  json params = j.contains("rope_scaling") && j["rope_scaling"].is_object() ? j["rope_scaling"]
                                                                            : json::object();
  if (params.contains("type")) {
    params["rope_type"] = params["type"];
    params.erase("type");
  }
  if (!params.contains("rope_type")) params["rope_type"] = "default";
  params["rope_theta"] = j["rope_theta"];
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = params;
  j["dtype"] = j["torch_dtype"];
  j.erase("torch_dtype");
  if (j.contains("num_experts")) {
    j["num_local_experts"] = j["num_experts"];
    j.erase("num_experts");
  } else if (j.contains("num_local_experts")) {
    j["num_experts"] = j["num_local_experts"];
    j.erase("num_local_experts");
  }
  return j;
}

const Family kAll[] = {Family::Llama, Family::Mistral,  Family::Qwen2,
                       Family::Qwen3, Family::Qwen3Moe, Family::Mixtral};

TEST(ModelConfig, OldAndNewKeyFormsGiveTheSameSpec) {
  for (Family f : kAll) {
    SCOPED_TRACE(familyName(f));
    Expected<ModelSpec> oldSpec = parseJson(oldForm(f));
    Expected<ModelSpec> newSpec = parseJson(newForm(f));
    ASSERT_TRUE(oldSpec) << oldSpec.errorMessage();
    ASSERT_TRUE(newSpec) << newSpec.errorMessage();
    EXPECT_TRUE(*oldSpec == *newSpec) << writeModelConfig(*oldSpec) << writeModelConfig(*newSpec);
    EXPECT_EQ(oldSpec->family, f);
    EXPECT_EQ(oldSpec->dtype, DType::F16);
    EXPECT_EQ(oldSpec->numKvHeads, 2);
    EXPECT_EQ(oldSpec->eosTokenIds, (std::vector<int64_t>{7, 9}));
    EXPECT_EQ(oldSpec->bosTokenId, 5);
    EXPECT_EQ(oldSpec->rmsNormEps, 1e-5);
    EXPECT_NE(oldSpec->rope.theta, 1e4);  // read, not defaulted
    EXPECT_EQ(oldSpec->isMoe(), f == Family::Qwen3Moe || f == Family::Mixtral);
    if (oldSpec->isMoe()) {
      EXPECT_EQ(oldSpec->moe.numExperts, 4);
      EXPECT_EQ(oldSpec->moe.topK, 2);
      EXPECT_TRUE(oldSpec->moe.normTopkProb);
    }
  }
}

TEST(ModelConfig, RopeFlavoursAreRead) {
  ModelSpec llama = *parseJson(oldForm(Family::Llama));
  EXPECT_EQ(llama.rope.type, RopeType::Llama3);
  EXPECT_EQ(llama.rope.theta, 500000.0);
  EXPECT_EQ(llama.rope.factor, 8.0);
  EXPECT_EQ(llama.rope.lowFreqFactor, 1.0);
  EXPECT_EQ(llama.rope.highFreqFactor, 4.0);
  EXPECT_EQ(llama.rope.originalMaxPositionEmbeddings, 1024);

  ModelSpec qwen2 = *parseJson(oldForm(Family::Qwen2));
  EXPECT_EQ(qwen2.rope.type, RopeType::Yarn);
  EXPECT_EQ(qwen2.rope.factor, 4.0);
  EXPECT_EQ(qwen2.rope.betaFast, 32.0);
  EXPECT_EQ(qwen2.rope.betaSlow, 1.0);
  EXPECT_EQ(qwen2.rope.attentionFactor, 0.0);

  ModelSpec qwen3 = *parseJson(oldForm(Family::Qwen3));
  EXPECT_EQ(qwen3.rope.type, RopeType::Linear);
  EXPECT_EQ(qwen3.rope.factor, 2.0);

  ModelSpec mistral = *parseJson(oldForm(Family::Mistral));
  EXPECT_EQ(mistral.rope.type, RopeType::Default);
  EXPECT_EQ(mistral.rope.theta, 1e6);

  // rope_parameters wins over a stray top-level rope_theta.
  json j = newForm(Family::Mistral);
  j["rope_theta"] = 1234.0;
  EXPECT_EQ(parseJson(j)->rope.theta, 1e6);
}

TEST(ModelConfig, DefaultsFollowTheFamily) {
  for (Family f : kAll) {
    SCOPED_TRACE(familyName(f));
    Expected<ModelSpec> s = parseJson(minimalConfig(std::string(familyName(f))));
    ASSERT_TRUE(s) << s.errorMessage();
    EXPECT_EQ(s->numKvHeads, 4);
    EXPECT_EQ(s->headDim, 16);
    EXPECT_EQ(s->dtype, DType::BF16);
    EXPECT_EQ(s->rope.type, RopeType::Default);
    EXPECT_EQ(s->rope.theta, f == Family::Mixtral ? 1e6 : 1e4);
    EXPECT_FALSE(s->tieWordEmbeddings);
    EXPECT_EQ(s->slidingWindow, 0);
    EXPECT_EQ(s->attentionBias, f == Family::Qwen2);
    EXPECT_EQ(s->qkNorm, f == Family::Qwen3 || f == Family::Qwen3Moe);
    const bool llamaLike = f == Family::Llama || f == Family::Mistral || f == Family::Mixtral;
    EXPECT_EQ(s->bosTokenId, llamaLike ? 1 : -1);
    EXPECT_EQ(s->eosTokenIds, llamaLike ? std::vector<int64_t>{2} : std::vector<int64_t>{});
  }
  ModelSpec mixtral = *parseJson(minimalConfig("mixtral"));
  EXPECT_EQ(mixtral.intermediateSize, 0);
  EXPECT_EQ(mixtral.moe.intermediateSize, 128);  // intermediate_size is the expert width
  EXPECT_TRUE(mixtral.moe.normTopkProb);
  ModelSpec qwenMoe = *parseJson(minimalConfig("qwen3_moe"));
  EXPECT_EQ(qwenMoe.intermediateSize, 128);
  EXPECT_EQ(qwenMoe.moe.intermediateSize, 32);
  EXPECT_FALSE(qwenMoe.moe.normTopkProb);
  EXPECT_EQ(qwenMoe.moe.decoderSparseStep, 1);
}

TEST(ModelConfig, NullMeansDefault) {
  json j = minimalConfig("llama");
  j["head_dim"] = nullptr;
  j["num_key_value_heads"] = nullptr;
  j["rope_scaling"] = nullptr;
  j["sliding_window"] = nullptr;
  j["torch_dtype"] = nullptr;
  j["bos_token_id"] = nullptr;  // explicitly no BOS token
  j["eos_token_id"] = nullptr;
  ModelSpec s = *parseJson(j);
  EXPECT_EQ(s.headDim, 16);
  EXPECT_EQ(s.numKvHeads, 4);
  EXPECT_EQ(s.bosTokenId, -1);
  EXPECT_TRUE(s.eosTokenIds.empty());
}

TEST(ModelConfig, Qwen3ExplicitHeadDim) {
  json j = minimalConfig("qwen3");
  j["hidden_size"] = 1024;
  j["num_attention_heads"] = 16;
  j["num_key_value_heads"] = 8;
  j["head_dim"] = 128;  // not 1024 / 16
  ModelSpec s = *parseJson(j);
  EXPECT_EQ(s.headDim, 128);
  EXPECT_TRUE(s.qkNorm);
  // An explicit head_dim also frees hidden_size from dividing by the head count.
  j["hidden_size"] = 1000;
  EXPECT_TRUE(parseJson(j));
}

TEST(ModelConfig, DTypeSpellings) {
  json j = minimalConfig("llama");
  for (auto [name, type] : {std::pair{"bfloat16", DType::BF16}, std::pair{"float16", DType::F16},
                            std::pair{"float32", DType::F32}, std::pair{"auto", DType::BF16}}) {
    j["torch_dtype"] = name;
    EXPECT_EQ(parseJson(j)->dtype, type) << name;
  }
  j["dtype"] = "float32";  // transformers 5's key wins over the legacy one
  j["torch_dtype"] = "float16";
  EXPECT_EQ(parseJson(j)->dtype, DType::F32);
}

TEST(ModelConfig, SlidingWindow) {
  json q = minimalConfig("qwen2");
  q["sliding_window"] = 32768;  // Qwen checkpoints carry it even when it is off
  EXPECT_EQ(parseJson(q)->slidingWindow, 0);
  q["use_sliding_window"] = true;
  EXPECT_EQ(parseJson(q)->slidingWindow, 32768);
  json m = minimalConfig("mistral");
  m["sliding_window"] = 4096;
  EXPECT_EQ(parseJson(m)->slidingWindow, 4096);
}

TEST(ModelConfig, AttentionBiasKeyPerFamily) {
  json m = minimalConfig("mistral");
  m["attention_bias"] = true;  // transformers ignores it for mistral, and so do we
  EXPECT_FALSE(parseJson(m)->attentionBias);
  json q = minimalConfig("qwen2");
  q["attention_bias"] = false;  // qwen2 has q/k/v bias regardless
  EXPECT_TRUE(parseJson(q)->attentionBias);
}

TEST(ModelConfig, Qwen3MoeLayerRule) {
  json j = minimalConfig("qwen3_moe");
  j["num_hidden_layers"] = 8;
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = json::array({3});
  ModelSpec s = *parseJson(j);
  std::vector<int64_t> moeLayers;
  for (int64_t i = 0; i < s.numLayers; ++i)
    if (s.layerIsMoe(i)) moeLayers.push_back(i);
  EXPECT_EQ(moeLayers, (std::vector<int64_t>{1, 5, 7}));

  ModelSpec mixtral = *parseJson(minimalConfig("mixtral"));
  EXPECT_TRUE(mixtral.layerIsMoe(0));
  EXPECT_TRUE(mixtral.layerIsMoe(1));
  ModelSpec dense = *parseJson(minimalConfig("llama"));
  EXPECT_FALSE(dense.layerIsMoe(0));
}

TEST(ModelConfig, Qwen3MoeNeedsDenseWidthOnlyForDenseLayers) {
  json j = minimalConfig("qwen3_moe");
  j.erase("intermediate_size");
  ModelSpec s = *parseJson(j);  // every layer is sparse
  EXPECT_EQ(s.intermediateSize, 0);
  EXPECT_EQ(writeModelConfig(s).find("\"intermediate_size\""), std::string::npos);
  EXPECT_TRUE(*parseJson(json::parse(writeModelConfig(s))) == s);
}

// Published configs, copied from the Hugging Face hub.
ModelSpec loadData(const std::string& name) {
  Expected<ModelSpec> s = loadModelConfig(test::dataDir() + "/configs/" + name);
  EXPECT_TRUE(s) << (s ? "" : s.errorMessage());
  return s ? *s : ModelSpec{};
}

TEST(ModelConfig, RealLlama3) {
  ModelSpec s = loadData("llama-3-8b.json");
  EXPECT_EQ(s.family, Family::Llama);
  EXPECT_EQ(s.vocabSize, 128256);
  EXPECT_EQ(s.hiddenSize, 4096);
  EXPECT_EQ(s.numLayers, 32);
  EXPECT_EQ(s.numHeads, 32);
  EXPECT_EQ(s.numKvHeads, 8);
  EXPECT_EQ(s.headDim, 128);
  EXPECT_EQ(s.intermediateSize, 14336);
  EXPECT_EQ(s.rope.type, RopeType::Default);
  EXPECT_EQ(s.rope.theta, 500000.0);
  EXPECT_EQ(s.rmsNormEps, 1e-5);
  EXPECT_EQ(s.maxPositionEmbeddings, 8192);
  EXPECT_EQ(s.eosTokenIds, std::vector<int64_t>{128001});
  EXPECT_EQ(s.bosTokenId, 128000);
  EXPECT_EQ(parameterCount(s), 8030261248);

  ModelSpec s31 = loadData("llama-3.1-8b-instruct.json");
  EXPECT_EQ(s31.rope.type, RopeType::Llama3);
  EXPECT_EQ(s31.rope.factor, 8.0);
  EXPECT_EQ(s31.rope.originalMaxPositionEmbeddings, 8192);
  EXPECT_EQ(s31.maxPositionEmbeddings, 131072);
  EXPECT_EQ(s31.eosTokenIds, (std::vector<int64_t>{128001, 128008, 128009}));
}

TEST(ModelConfig, RealQwen3Moe) {
  ModelSpec s = loadData("qwen3-30b-a3b.json");
  EXPECT_EQ(s.family, Family::Qwen3Moe);
  EXPECT_EQ(s.vocabSize, 151936);
  EXPECT_EQ(s.hiddenSize, 2048);
  EXPECT_EQ(s.numLayers, 48);
  EXPECT_EQ(s.numHeads, 32);
  EXPECT_EQ(s.numKvHeads, 4);
  EXPECT_EQ(s.headDim, 128);
  EXPECT_EQ(s.intermediateSize, 6144);
  EXPECT_EQ(s.moe.numExperts, 128);
  EXPECT_EQ(s.moe.topK, 8);
  EXPECT_EQ(s.moe.intermediateSize, 768);
  EXPECT_TRUE(s.moe.normTopkProb);
  EXPECT_TRUE(s.qkNorm);
  EXPECT_FALSE(s.attentionBias);
  EXPECT_EQ(s.rope.theta, 1e6);
  EXPECT_EQ(s.rmsNormEps, 1e-6);
  EXPECT_EQ(s.slidingWindow, 0);
  for (int64_t i = 0; i < s.numLayers; ++i) EXPECT_TRUE(s.layerIsMoe(i)) << i;
  // Qwen's model card says 30.5B parameters.
  EXPECT_NEAR(parameterCount(s) / 1e9, 30.5, 0.05);
}

TEST(ModelConfig, RealMixtral) {
  ModelSpec s = loadData("mixtral-8x7b-v0.1.json");
  EXPECT_EQ(s.family, Family::Mixtral);
  EXPECT_EQ(s.vocabSize, 32000);
  EXPECT_EQ(s.moe.numExperts, 8);
  EXPECT_EQ(s.moe.topK, 2);
  EXPECT_EQ(s.moe.intermediateSize, 14336);
  EXPECT_EQ(s.intermediateSize, 0);
  EXPECT_EQ(s.moe.routerAuxLossCoef, 0.02);
  EXPECT_EQ(s.rope.theta, 1e6);
  EXPECT_EQ(s.slidingWindow, 0);
  EXPECT_NEAR(parameterCount(s) / 1e9, 46.7, 0.05);
}

TEST(ModelConfig, RealQwen25) {
  ModelSpec s = loadData("qwen2.5-0.5b.json");
  EXPECT_EQ(s.family, Family::Qwen2);
  EXPECT_EQ(s.hiddenSize, 896);
  EXPECT_EQ(s.numHeads, 14);
  EXPECT_EQ(s.numKvHeads, 2);
  EXPECT_EQ(s.headDim, 64);
  EXPECT_EQ(s.intermediateSize, 4864);
  EXPECT_TRUE(s.tieWordEmbeddings);
  EXPECT_TRUE(s.attentionBias);
  EXPECT_EQ(s.slidingWindow, 0);  // sliding_window 32768 but use_sliding_window false
  EXPECT_EQ(s.eosTokenIds, std::vector<int64_t>{151643});
  EXPECT_NEAR(parameterCount(s) / 1e9, 0.494, 0.001);  // model card: 0.49B
}

TEST(ModelConfig, RealQwen3SavedByTransformers5) {
  ModelSpec s = loadData("qwen3-0.6b-transformers5.json");
  EXPECT_EQ(s.family, Family::Qwen3);
  EXPECT_EQ(s.hiddenSize, 1024);
  EXPECT_EQ(s.headDim, 128);
  EXPECT_EQ(s.numKvHeads, 8);
  EXPECT_EQ(s.rope.theta, 1e6);
  EXPECT_EQ(s.dtype, DType::BF16);
  EXPECT_TRUE(s.tieWordEmbeddings);
  EXPECT_NEAR(parameterCount(s) / 1e9, 0.596, 0.001);  // model card: 0.6B
}

TEST(ModelConfig, LoadFromFolderAndMissingFile) {
  test::TempDir dir;
  test::writeFile(dir.file("config.json"), minimalConfig("qwen2").dump());
  Expected<ModelSpec> s = loadModelConfig(dir.path());
  ASSERT_TRUE(s) << s.errorMessage();
  EXPECT_EQ(s->family, Family::Qwen2);

  Expected<ModelSpec> missing = loadModelConfig(dir.file("nope.json"));
  ASSERT_FALSE(missing);
  EXPECT_CONTAINS(missing.errorMessage(), dir.file("nope.json") + ": cannot read");

  test::writeFile(dir.file("bad.json"), "{\"model_type\": \"llama\", \"vocab_size\": 0}");
  Expected<ModelSpec> bad = loadModelConfig(dir.file("bad.json"));
  ASSERT_FALSE(bad);
  EXPECT_CONTAINS(bad.errorMessage(), dir.file("bad.json") + ": hidden_size is missing");
}

}  // namespace
}  // namespace tpc
