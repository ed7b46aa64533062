// model_type llava: the config keys, what is refused, and the tensor names of the three
// checkpoint layouts real llava checkpoints use (the Hub's llava-hf, transformers 5's
// save_pretrained, and the nested model.* form), each resolved against the golden checkpoint.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "frontends/LlavaLayout.h"
#include "frontends/ModelSource.h"
#include "frontends/ModelSpec.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using nlohmann::json;

json goldenConfig(const char* name = "llava-tiny") {
  return json::parse(test::readFile(test::dataDir() + "/hf/" + name + "/config.json"));
}

Expected<ModelSpec> parse(const json& j) { return parseModelConfig(j.dump(), "config.json"); }

TEST(LlavaConfig, ReadsTheTransformersConfig) {
  Expected<ModelSpec> spec = parse(goldenConfig());
  ASSERT_TRUE(spec) << spec.errorMessage();
  EXPECT_EQ(spec->family, Family::Llama);
  EXPECT_EQ(spec->hiddenSize, 64);
  EXPECT_EQ(spec->dtype, DType::F32);  // from the top-level dtype
  ASSERT_TRUE(spec->vision);
  const VisionSpec& v = *spec->vision;
  EXPECT_EQ(v.hiddenSize, 32);
  EXPECT_EQ(v.numHeads, 8);
  EXPECT_EQ(v.imageTokenIndex, 250);
  EXPECT_EQ(v.rows(), 17);
  EXPECT_EQ(v.featureRows(), 16);
  EXPECT_EQ(v.layersRun(), 1);  // hidden state -2 of a 2-layer tower
  EXPECT_TRUE(v.projectorBias);

  Expected<ModelSpec> full = parse(goldenConfig("llava-tiny-full"));
  ASSERT_TRUE(full) << full.errorMessage();
  EXPECT_TRUE(full->vision->keepClassRow);
  EXPECT_EQ(full->vision->featureRows(), 17);
  EXPECT_EQ(full->vision->layersRun(), 2);
  EXPECT_FALSE(full->vision->projectorBias);
}

TEST(LlavaConfig, Llava15SevenBShape) {
  json j = goldenConfig();
  j["vision_config"] = {{"hidden_size", 1024},        {"intermediate_size", 4096},
                        {"num_hidden_layers", 24},    {"num_attention_heads", 16},
                        {"image_size", 336},          {"patch_size", 14},
                        {"hidden_act", "quick_gelu"}, {"model_type", "clip_vision_model"}};
  j["text_config"] = {{"model_type", "llama"},     {"vocab_size", 32064},
                      {"hidden_size", 4096},       {"intermediate_size", 11008},
                      {"num_hidden_layers", 32},   {"num_attention_heads", 32},
                      {"num_key_value_heads", 32}, {"max_position_embeddings", 4096}};
  j["image_token_index"] = 32000;
  j["image_seq_length"] = 576;
  Expected<ModelSpec> spec = parse(j);
  ASSERT_TRUE(spec) << spec.errorMessage();
  EXPECT_EQ(spec->vision->rows(), 577);
  EXPECT_EQ(spec->vision->layersRun(), 23);
}

TEST(LlavaConfig, RefusesWhatItCannotRun) {
  auto expectError = [](const json& j, const std::string& words) {
    Expected<ModelSpec> spec = parse(j);
    ASSERT_FALSE(spec) << "accepted a config that should fail with " << words;
    EXPECT_NE(spec.errorMessage().find(words), std::string::npos) << spec.errorMessage();
  };
  json j = goldenConfig();
  j["vision_config"]["hidden_act"] = "gelu";
  expectError(j, "vision_config.hidden_act \"gelu\" is not supported");
  j = goldenConfig();
  j["image_seq_length"] = 10;
  expectError(j, "image_seq_length 10 differs from the 16 image rows");
  j = goldenConfig();
  j["vision_feature_layer"] = json::array({-2, -5});
  expectError(j, "vision_feature_layer");
  j = goldenConfig();
  j["vision_feature_layer"] = -5;
  expectError(j, "outside the tower's 2 layers");
  j = goldenConfig();
  j["text_config"]["model_type"] = "qwen2";
  expectError(j, "text_config.model_type \"qwen2\" is not supported under llava");
  j = goldenConfig();
  j["image_token_index"] = 300;
  expectError(j, "image_token_index 300 is outside the vocabulary of 256");
  j = goldenConfig();
  j["vision_config"]["image_size"] = 30;
  expectError(j, "image_size 30 must be a multiple of patch_size 8");
  j = goldenConfig();
  j.erase("vision_config");
  expectError(j, "needs text_config and vision_config");
  j = goldenConfig();
  j["vision_feature_select_strategy"] = "cls";
  expectError(j, "vision_feature_select_strategy \"cls\"");
}

// The golden checkpoint is in transformers 5's layout; the other two are its names rewritten.
std::string hubName(const std::string& n) {
  if (n.rfind("vision_tower.", 0) == 0) return "vision_tower.vision_model." + n.substr(13);
  return n;
}
std::string nestedName(const std::string& n) {
  if (n.rfind("vision_tower.", 0) == 0) return "model.vision_tower.vision_model." + n.substr(13);
  if (n.rfind("multi_modal_projector.", 0) == 0) return "model." + n;
  if (n == "language_model.lm_head.weight") return "lm_head.weight";
  if (n.rfind("language_model.model.", 0) == 0) return "model.language_model." + n.substr(21);
  return n;
}

TEST(LlavaLayout, AllThreeLayoutsResolveEveryTensor) {
  Expected<ModelSource> source = openModel(test::dataDir() + "/hf/llava-tiny");
  ASSERT_TRUE(source) << source.errorMessage();
  std::vector<std::string> names = source->checkpoint.tensorNames();
  using Rename = std::string (*)(const std::string&);
  const std::pair<const char*, Rename> layouts[] = {
      {"transformers 5", [](const std::string& n) { return n; }},
      {"hub llava-hf", hubName},
      {"nested", nestedName}};
  for (const auto& [what, rename] : layouts) {
    SCOPED_TRACE(what);
    std::map<std::string, TensorMeta> renamed;
    for (const std::string& n : names) renamed[rename(n)] = *source->lookup()(n);
    TensorLookup lookup = [&](const std::string& n) -> std::optional<TensorMeta> {
      auto it = renamed.find(n);
      if (it == renamed.end()) return std::nullopt;
      return it->second;
    };
    Expected<Graph> text = buildGraph(source->spec, lookup, {DType::F32});
    ASSERT_TRUE(text) << text.errorMessage();
    Expected<Graph> tower = buildVisionGraph(source->spec, lookup, {DType::F32});
    ASSERT_TRUE(tower) << tower.errorMessage();
    size_t used = 0;
    for (const Graph* g : {&*text, &*tower})
      for (const Value* p : g->parameters()) {
        EXPECT_TRUE(renamed.count(p->pieces[0].tensor)) << p->pieces[0].tensor;
        ++used;
      }
    // Every tensor but the tower's last layer and post_layernorm (hidden state -2) is used.
    EXPECT_EQ(used, names.size() - 16 - 2);
  }
}

TEST(LlavaLayout, NamesItsCanonicalNames) {
  Expected<ModelSource> source = openModel(test::dataDir() + "/hf/llava-tiny");
  ASSERT_TRUE(source) << source.errorMessage();
  Expected<LlavaLayout> layout = detectLlavaLayout(source->lookup());
  ASSERT_TRUE(layout) << layout.errorMessage();
  EXPECT_EQ(layout->tower, "vision_tower.");
  EXPECT_EQ(layout->textName("model.layers.1.mlp.up_proj.weight"),
            "language_model.model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(layout->textName("lm_head.weight"), "language_model.lm_head.weight");
  TensorLookup none = [](const std::string&) -> std::optional<TensorMeta> { return std::nullopt; };
  Expected<LlavaLayout> missing = detectLlavaLayout(none);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.errorMessage().find("not a llava checkpoint layout"), std::string::npos);
}

}  // namespace
}  // namespace tpc
