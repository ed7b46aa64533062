#include "frontends/GraphBuilder.h"

#include <gtest/gtest.h>

#include <map>

#include "frontends/ModelSource.h"
#include "frontends/Presets.h"
#include "frontends/RandomModel.h"
#include "ir/Verifier.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

constexpr Family kFamilies[] = {Family::Llama, Family::Mistral,  Family::Qwen2,
                                Family::Qwen3, Family::Qwen3Moe, Family::Mixtral};

ModelSpec tinySpec(Family f) {
  Expected<ModelSpec> spec = makePresetSpec(f, "tiny", DType::BF16);
  EXPECT_TRUE(spec) << spec.errorMessage();
  return *spec;
}

std::map<OpKind, int> countOps(const Graph& g) {
  std::map<OpKind, int> counts;
  for (const Node* n : g.nodes()) counts[n->op]++;
  return counts;
}

TEST(GraphBuilder, BuildsEveryFamilyFromAGeneratedCheckpoint) {
  for (Family family : kFamilies) {
    SCOPED_TRACE(familyName(family));
    ModelSpec spec = tinySpec(family);
    test::TempDir dir;
    Expected<RandomModelResult> written = writeRandomModel(spec, dir.file("model"), {});
    ASSERT_TRUE(written) << written.errorMessage();
    Expected<ModelSource> model = openModel(dir.file("model"));
    ASSERT_TRUE(model) << model.errorMessage();
    EXPECT_EQ(model->spec, spec) << "config.json written by make-model reads back as the same spec";
    Expected<Graph> g = buildGraph(model->spec, model->lookup(), BuildOptions{});
    ASSERT_TRUE(g) << g.errorMessage();
    EXPECT_FALSE(verifyGraph(*g));

    // Every checkpoint tensor is a parameter, and their sizes add up to the spec's count.
    EXPECT_EQ(g->parameters().size(), model->checkpoint.tensorNames().size());
    int64_t elements = 0;
    for (const Value* p : g->parameters()) elements += staticElementCount(p->shape);
    EXPECT_EQ(elements, parameterCount(spec));

    std::map<OpKind, int> ops = countOps(*g);
    int64_t L = spec.numLayers, moeLayers = 0;
    for (int64_t l = 0; l < L; ++l) moeLayers += spec.layerIsMoe(l);
    EXPECT_EQ(ops[OpKind::Attention], L);
    EXPECT_EQ(ops[OpKind::Rope], 2 * L);
    EXPECT_EQ(ops[OpKind::RmsNorm], 2 * L + 1);
    EXPECT_EQ(ops[OpKind::HeadRmsNorm], spec.qkNorm ? 2 * L : 0);
    EXPECT_EQ(ops[OpKind::MoeRouter], moeLayers);
    EXPECT_EQ(ops[OpKind::SwiGlu], L - moeLayers);
    EXPECT_EQ(ops[OpKind::Linear], 4 * L + 3 * (L - moeLayers) + 1);
    ASSERT_EQ(g->outputs().size(), 1u);
    EXPECT_EQ(g->outputs()[0]->shape.back().size, spec.vocabSize);
  }
}

TEST(GraphBuilder, QkvBiasAndTiedEmbeddings) {
  ModelSpec spec = tinySpec(Family::Qwen2);
  ASSERT_TRUE(spec.attentionBias && spec.tieWordEmbeddings);
  std::vector<ExpectedTensor> tensors = expectedTensors(spec);
  auto has = [&](const std::string& name) {
    for (const ExpectedTensor& t : tensors)
      if (t.name == name) return true;
    return false;
  };
  EXPECT_TRUE(has("model.layers.0.self_attn.q_proj.bias"));
  EXPECT_TRUE(has("model.layers.0.self_attn.v_proj.bias"));
  EXPECT_FALSE(has("model.layers.0.self_attn.o_proj.bias"));
  EXPECT_FALSE(has("lm_head.weight")) << "tied embeddings reuse model.embed_tokens.weight";
  EXPECT_TRUE(has("model.layers.1.self_attn.k_proj.bias"));
}

// A lookup over the tensors the spec needs, with one changed by `edit`.
TensorLookup editedLookup(const ModelSpec& spec, std::map<std::string, TensorMeta>& storage) {
  for (const ExpectedTensor& t : expectedTensors(spec))
    storage[t.name] = TensorMeta{spec.dtype, t.shape};
  return [&storage](const std::string& name) -> std::optional<TensorMeta> {
    auto it = storage.find(name);
    if (it == storage.end()) return std::nullopt;
    return it->second;
  };
}

TEST(GraphBuilder, MissingMisshapenAndUnsupportedTensorsAreNamed) {
  ModelSpec spec = tinySpec(Family::Qwen3);
  std::map<std::string, TensorMeta> tensors;
  TensorLookup lookup = editedLookup(spec, tensors);

  tensors.erase("model.layers.1.mlp.up_proj.weight");
  Expected<Graph> missing = buildGraph(spec, lookup, {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.errorMessage(),
            "missing tensor \"model.layers.1.mlp.up_proj.weight\" (expected shape [" +
                std::to_string(spec.intermediateSize) + ", " + std::to_string(spec.hiddenSize) +
                "])");

  tensors["model.layers.1.mlp.up_proj.weight"] =
      TensorMeta{DType::BF16, {spec.intermediateSize, spec.hiddenSize}};
  tensors["model.layers.0.self_attn.k_norm.weight"] = TensorMeta{DType::BF16, {spec.headDim + 1}};
  Expected<Graph> misshapen = buildGraph(spec, lookup, {});
  ASSERT_FALSE(misshapen);
  EXPECT_NE(
      misshapen.errorMessage().find(
          "tensor \"model.layers.0.self_attn.k_norm.weight\" has shape [" +
          std::to_string(spec.headDim + 1) + "], expected [" + std::to_string(spec.headDim) + "]"),
      std::string::npos)
      << misshapen.errorMessage();

  tensors["model.layers.0.self_attn.k_norm.weight"] = TensorMeta{DType::F8_E4M3, {spec.headDim}};
  Expected<Graph> fp8 = buildGraph(spec, lookup, {});
  ASSERT_FALSE(fp8);
  EXPECT_NE(fp8.errorMessage().find("has dtype F8_E4M3"), std::string::npos) << fp8.errorMessage();
}

TEST(GraphBuilder, MoeLayersFollowSparseStepAndMlpOnlyLayers) {
  ModelSpec spec = tinySpec(Family::Qwen3Moe);
  spec.numLayers = 4;
  spec.moe.decoderSparseStep = 2;
  spec.moe.mlpOnlyLayers = {3};
  if (spec.intermediateSize == 0) spec.intermediateSize = 64;
  std::map<std::string, TensorMeta> tensors;
  Expected<Graph> g = buildGraph(spec, editedLookup(spec, tensors), {});
  ASSERT_TRUE(g) << g.errorMessage();
  std::vector<int64_t> moeLayers;
  for (const Node* n : g->nodes())
    if (n->op == OpKind::MoeRouter) moeLayers.push_back(std::stoll(n->result()->name.substr(1)));
  EXPECT_EQ(moeLayers, (std::vector<int64_t>{1}))
      << "layer 1 is sparse; layer 3 is listed in mlp_only_layers";
}

}  // namespace
}  // namespace tpc
