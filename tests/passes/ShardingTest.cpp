// Properties of compiled plans for every family at worlds 1, 2, 4 and 8, checked from the
// plan's own weight slices and steps (not from the passes' bookkeeping).
#include <gtest/gtest.h>

#include <map>

#include "codegen/PlanFormat.h"
#include "frontends/GraphBuilder.h"
#include "passes/Pass.h"
#include "tests/support/Fixtures.h"

namespace tpc {
namespace {

using test::compileSpec;
using test::kAllFamilies;
using test::presetSpec;

const int64_t kWorlds[] = {1, 2, 4, 8};

// How many ranks should hold each element of a checkpoint tensor.
int64_t expectedCopies(const std::string& name, const ModelSpec& spec, int64_t world) {
  auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (has("norm.weight") || has("mlp.gate.weight") || has("block_sparse_moe.gate.weight"))
    return world;
  if (has("k_proj") || has("v_proj")) return world > spec.numKvHeads ? world / spec.numKvHeads : 1;
  return 1;
}

// Counts, from the plan's slices, how many ranks hold each element of every checkpoint
// tensor, against expectedCopies. With expert parallelism every expert element still has one
// holder: whole experts instead of slices of each.
void checkCoverage(const std::vector<std::string>& preferredRules) {
  for (Family family : kAllFamilies) {
    ModelSpec spec = presetSpec(family);
    if (!preferredRules.empty() && !spec.isMoe()) continue;
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const ExpectedTensor& t : expectedTensors(spec)) shapes[t.name] = t.shape;
    for (int64_t world : kWorlds) {
      SCOPED_TRACE(std::string(familyName(family)) + " world " + std::to_string(world));
      Expected<LoadedPlan> plan = compileSpec(spec, world, preferredRules);
      ASSERT_TRUE(plan) << plan.errorMessage();
      std::map<std::string, std::vector<int>> copies;
      for (const auto& [name, shape] : shapes) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        copies[name].assign(static_cast<size_t>(n), 0);
      }
      for (const plan::RankProgram* rank : *plan->plan().ranks()) {
        for (const plan::Weight* w : *rank->weights()) {
          for (const plan::WeightSlice* s : *w->slices()) {
            auto it = copies.find(s->tensor()->str());
            ASSERT_NE(it, copies.end()) << "slice of unknown tensor " << s->tensor()->str();
            const std::vector<int64_t>& shape = shapes[s->tensor()->str()];
            int64_t cols = shape.size() == 2 ? shape[1] : 1;
            for (size_t e = 0; e < it->second.size(); ++e) {
              int64_t row = static_cast<int64_t>(e) / cols, col = static_cast<int64_t>(e) % cols;
              int64_t coord = s->dim() == 1 ? col : row;
              if (s->dim() == -1 || (coord >= s->start() && coord < s->start() + s->length()))
                ++it->second[e];
            }
          }
        }
      }
      for (const auto& [name, counts] : copies) {
        int64_t want = expectedCopies(name, spec, world);
        for (size_t e = 0; e < counts.size(); ++e)
          ASSERT_EQ(counts[e], want) << name << " element " << e;
      }
    }
  }
}

TEST(Sharding, SlicesCoverEveryWeightTheRightNumberOfTimes) { checkCoverage({}); }

TEST(Sharding, ExpertParallelHoldsEveryExpertElementOnExactlyOneRank) {
  checkCoverage({"expert-parallel"});
}

// Each rank holds experts / world whole experts, the tokens' expert outputs are summed by one
// all_reduce per MoE layer, and the attention keeps its tensor-parallel rules.
TEST(Sharding, ExpertParallelPlacesWholeExpertsAndExchangesTokensOncePerLayer) {
  for (Family family : {Family::Qwen3Moe, Family::Mixtral}) {
    ModelSpec spec = presetSpec(family);
    for (int64_t world : {2, 4, 8}) {
      SCOPED_TRACE(std::string(familyName(family)) + " world " + std::to_string(world));
      Expected<LoadedPlan> plan = compileSpec(spec, world, {"expert-parallel"});
      ASSERT_TRUE(plan) << plan.errorMessage();
      for (const plan::RankProgram* rank : *plan->plan().ranks()) {
        std::map<std::string, int64_t> expertTensors;  // checkpoint tensor -> slices on rank
        int64_t moeSteps = 0, exchanges = 0;
        const auto& steps = *rank->steps();
        for (flatbuffers::uoffset_t i = 0; i < steps.size(); ++i) {
          const plan::Step* s = steps.Get(i);
          std::string op = s->op()->str(), rule = s->sharding()->str();
          if (op == "attention") {
            EXPECT_EQ(rule, "head-parallel");
          }
          if (op == "moe_router") {
            EXPECT_EQ(rule, "replicated");
          }
          if (op != "moe_experts") continue;
          ++moeSteps;
          EXPECT_EQ(rule, "expert-parallel");
          EXPECT_EQ(planIntAttr(s->attrs(), "experts"), spec.moe.numExperts / world);
          ASSERT_LT(i + 1, steps.size());
          const plan::Step* next = steps.Get(i + 1);
          // The exchange may be fused with the add_rms_norm that follows it (the fuse pass).
          const std::string nextOp = next->op()->str();
          if ((nextOp == "all_reduce" || nextOp == "all_reduce_add_rms_norm") &&
              next->operands()->Get(0)->index() == s->results()->Get(0))
            ++exchanges;
          for (uint32_t o = 3; o < s->operands()->size(); ++o) {
            const plan::Weight* w = rank->weights()->Get(s->operands()->Get(o)->index());
            ASSERT_EQ(w->slices()->size(), 1u) << w->name()->str();
            EXPECT_EQ(w->slices()->Get(0)->dim(), -1) << "a whole expert";
            ++expertTensors[w->slices()->Get(0)->tensor()->str()];
          }
        }
        int64_t moeLayers = 0;
        for (int64_t l = 0; l < spec.numLayers; ++l) moeLayers += spec.layerIsMoe(l) ? 1 : 0;
        EXPECT_EQ(moeSteps, moeLayers);
        EXPECT_EQ(exchanges, moeSteps);
        // Rank r's experts are r * local .. r * local + local - 1 of every MoE layer.
        int64_t local = spec.moe.numExperts / world;
        EXPECT_EQ(static_cast<int64_t>(expertTensors.size()), 3 * local * moeLayers);
        for (const auto& [tensor, count] : expertTensors) {
          EXPECT_EQ(count, 1) << tensor;
          size_t at = tensor.find("experts.") + 8;
          int64_t expert = std::stoll(tensor.substr(at));
          EXPECT_EQ(expert / local, static_cast<int64_t>(rank->rank())) << tensor;
        }
      }
    }
  }
}

TEST(Sharding, ExpertParallelNamesExpertsThatDoNotDivideTheWorld) {
  ModelSpec spec = presetSpec(Family::Qwen3Moe);
  spec.moe.numExperts = 6;
  Graph g = test::buildSpecGraph(spec);
  Error e = runPipeline(g, PassOptions{4, {"expert-parallel"}});
  ASSERT_TRUE(e);
  EXPECT_EQ(e.message(),
            "experts 6 are not divisible by world 4: expert parallelism places whole experts on "
            "ranks");
  // Without expert parallelism the same model shards each expert's intermediate instead.
  Expected<LoadedPlan> tensorParallel = compileSpec(spec, 4);
  EXPECT_TRUE(tensorParallel) << tensorParallel.errorMessage();
}

TEST(Sharding, EveryRankRunsTheSameCollectivesAndDenseLayersHaveTwoAllReduces) {
  for (Family family : kAllFamilies) {
    ModelSpec spec = presetSpec(family);
    for (int64_t world : kWorlds) {
      SCOPED_TRACE(std::string(familyName(family)) + " world " + std::to_string(world));
      Expected<LoadedPlan> plan = compileSpec(spec, world);
      ASSERT_TRUE(plan) << plan.errorMessage();
      std::vector<std::string> first;
      for (const plan::RankProgram* rank : *plan->plan().ranks()) {
        std::vector<std::string> collectives;
        for (const plan::Step* s : *rank->steps()) {
          std::string op = s->op()->str();
          // fuse joins most all-reduces to the add_rms_norm after them; they still reduce.
          if (op == "all_reduce_add_rms_norm") op = "all_reduce";
          if (op == "all_reduce" || op == "all_gather")
            collectives.push_back(op + ":" + std::to_string(s->comm_bytes_per_token()));
        }
        if (rank->rank() == 0) first = collectives;
        EXPECT_EQ(collectives, first) << "rank " << rank->rank();
      }
      size_t reduces = std::count_if(first.begin(), first.end(),
                                     [](auto& c) { return c.rfind("all_reduce", 0) == 0; });
      size_t gathers = first.size() - reduces;
      if (world == 1) {
        EXPECT_TRUE(first.empty());
        continue;
      }
      // One after attention (o_proj) and one after the MLP or MoE block in each layer, one
      // after the vocab-parallel embedding, and the logits gather.
      EXPECT_EQ(reduces, static_cast<size_t>(2 * spec.numLayers + 1));
      EXPECT_EQ(gathers, 1u);
      int64_t hiddenBytes = spec.hiddenSize * 2;  // bf16 activations
      for (size_t i = 0; i < reduces; ++i)
        EXPECT_EQ(first[i], "all_reduce:" + std::to_string(hiddenBytes));
    }
  }
}

TEST(Sharding, LogitsAreGatheredWithoutVocabPadding) {
  ModelSpec spec = presetSpec(Family::Llama);
  ASSERT_NE(spec.vocabSize % 8, 0)
      << "the tiny preset should have a vocab that world 8 does not divide";
  Expected<LoadedPlan> plan = compileSpec(spec, 8);
  ASSERT_TRUE(plan) << plan.errorMessage();
  for (const plan::RankProgram* rank : *plan->plan().ranks()) {
    const plan::Buffer* logits = rank->buffers()->Get(rank->outputs()->Get(0));
    ASSERT_EQ(logits->shape()->size(), 2u);
    EXPECT_EQ(logits->shape()->Get(1), spec.vocabSize);
  }
}

TEST(Sharding, KvHeadsAreReplicatedWhenTheWorldExceedsThem) {
  ModelSpec spec = presetSpec(Family::Llama);  // 8 heads, 2 KV heads
  ASSERT_EQ(spec.numKvHeads, 2);
  Graph g = test::compiledGraph(spec, 8);
  for (const Node* n : g.nodes()) {
    if (n->op != OpKind::Attention) continue;
    EXPECT_EQ(n->attrs.getInt("heads"), spec.numHeads / 8);
    EXPECT_EQ(n->attrs.getInt("kv_heads"), 1);
    EXPECT_EQ(n->operand(1)->sharding, Sharding::split(1, 2));  // K: 2 pieces, 4 ranks each
  }
  Expected<LoadedPlan> plan = compileSpec(spec, 8);
  ASSERT_TRUE(plan);
  for (const plan::RankProgram* rank : *plan->plan().ranks())
    for (const plan::Weight* w : *rank->weights())
      for (const plan::WeightSlice* s : *w->slices())
        if (s->tensor()->str() == "model.layers.0.self_attn.k_proj.weight") {
          EXPECT_EQ(s->start(), (rank->rank() / 4) * spec.headDim) << "rank " << rank->rank();
        }
}

TEST(Sharding, WorldRulesNameTheProblem) {
  ModelSpec spec = presetSpec(Family::Llama);
  for (int64_t world : {3, 5, 6, 7}) {
    Graph g = test::buildSpecGraph(spec);
    Error e = runPipeline(g, PassOptions{world});
    ASSERT_TRUE(e);
    EXPECT_EQ(e.message(), "world " + std::to_string(world) + " is not a power of 2");
  }
  for (int64_t world : {0, 2048}) {
    Graph g = test::buildSpecGraph(spec);
    Error e = runPipeline(g, PassOptions{world});
    ASSERT_TRUE(e);
    EXPECT_NE(e.message().find("out of range"), std::string::npos);
  }
}

TEST(Sharding, IndivisibleDimensionsAreNamed) {
  struct Case {
    int64_t heads, kvHeads, intermediate, world;
    const char* expected;
  };
  const Case cases[] = {
      {12, 4, 128, 8, "num_attention_heads 12 is not divisible by world 8"},
      {12, 6, 128, 4, "num_key_value_heads 6 is not divisible by world 4"},
      {8, 2, 100, 8, "intermediate_size 100 is not divisible by world 8"},
  };
  for (const Case& c : cases) {
    ModelSpec spec = presetSpec(Family::Llama);
    spec.numHeads = c.heads;
    spec.numKvHeads = c.kvHeads;
    spec.headDim = 8;
    spec.hiddenSize = c.heads * 8;
    spec.intermediateSize = c.intermediate;
    Graph g = test::buildSpecGraph(spec);
    Error e = runPipeline(g, PassOptions{c.world});
    ASSERT_TRUE(e) << c.expected;
    EXPECT_EQ(e.message(), c.expected);
  }
  ModelSpec moe = presetSpec(Family::Qwen3Moe);
  moe.moe.intermediateSize = 36;
  Graph g = test::buildSpecGraph(moe);
  Error e = runPipeline(g, PassOptions{8});
  ASSERT_TRUE(e);
  EXPECT_EQ(e.message(), "moe_intermediate_size 36 is not divisible by world 8");
}

}  // namespace
}  // namespace tpc
