// The pipeline pass on preset graphs: which layers each stage gets (balanced by weight bytes or
// as given), what crosses each boundary (the hidden state forward, the logits back to every
// other stage), the per-stage programs lowering makes of it, and one clear error for each bad
// request. The expectations are counted from the model's shape, not read off the pass.
#include <gtest/gtest.h>

#include <map>

#include "codegen/Lowering.h"
#include "codegen/PlanFormat.h"
#include "codegen/PlanSummary.h"
#include "ir/Parser.h"
#include "ir/Printer.h"
#include "ir/Verifier.h"
#include "passes/Pass.h"
#include "passes/PipelineStages.h"
#include "tests/support/Fixtures.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

PassOptions stages(int64_t world, int64_t pp, std::vector<int64_t> layers = {}) {
  PassOptions o;
  o.world = world;
  o.pp = pp;
  o.stageLayers = std::move(layers);
  return o;
}

// Layers per stage, counted from the attention nodes' `layer` and the stage of each node.
std::vector<int64_t> layersPerStage(const Graph& g, int64_t pp) {
  std::vector<int64_t> counts(static_cast<size_t>(pp), 0);
  std::vector<int64_t> stage = nodeStages(g);
  for (size_t i = 0; i < g.nodes().size(); ++i)
    if (g.nodes()[i]->op == OpKind::Attention) ++counts[static_cast<size_t>(stage[i])];
  return counts;
}

Error compile(Graph& g, const PassOptions& options) { return runPipeline(g, options); }

TEST(PipelinePass, TwoStagesOfTheTinyLlamaSendTheHiddenStateAndTheLogitsBack) {
  ModelSpec spec = test::presetSpec(Family::Llama, "tiny", DType::F32);
  Graph g = test::buildSpecGraph(spec);
  ASSERT_FALSE(compile(g, stages(4, 2)));
  EXPECT_EQ(g.attrs.getInt("pp"), 2);
  EXPECT_EQ(g.attrs.getInt("world"), 4);
  EXPECT_EQ(layersPerStage(g, 2), (std::vector<int64_t>{1, 1}));
  std::vector<int64_t> stage = nodeStages(g);
  std::map<std::pair<int64_t, int64_t>, int64_t> sentBytes;  // (from, to) -> bytes per token
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const Node* n = g.nodes()[i];
    if (n->op != OpKind::Send) continue;
    const Value* v = n->operand(0);
    EXPECT_TRUE(v->sharding.isReplicated()) << v->name;
    sentBytes[{stage[i], n->attrs.getInt("peer_stage")}] +=
        static_cast<int64_t>(*byteSize(v->dtype, staticElementCount(v->shape)));
  }
  // Forward: the residual stream, hidden_size bf16 (the activations' dtype); back: the
  // logits, vocab_size f32.
  EXPECT_EQ(sentBytes, (std::map<std::pair<int64_t, int64_t>, int64_t>{
                           {{0, 1}, spec.hiddenSize * 2}, {{1, 0}, spec.vocabSize * 4}}));
  // The embedding on stage 0, the lm_head on the last stage.
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    if (g.nodes()[i]->op == OpKind::Embedding) {
      EXPECT_EQ(stage[i], 0);
    }
    if (g.nodes()[i]->op == OpKind::SelectRows) {
      EXPECT_EQ(stage[i], 1);
    }
  }
  EXPECT_EQ(g.outputs().size(), 2u);  // one per stage

  // The printed graph parses back to the same text.
  std::string once = printGraph(g);
  Expected<Graph> parsed = parseGraph(once, "pipeline.tpcir");
  ASSERT_TRUE(parsed) << parsed.errorMessage();
  EXPECT_FALSE(verifyGraph(*parsed));
  EXPECT_EQ(printGraph(*parsed), once);
}

TEST(PipelinePass, BalancesFourEqualLayersAndHonoursStageLayers) {
  ModelSpec spec = test::presetSpec(Family::Llama, "small", DType::F32);
  ASSERT_EQ(spec.numLayers, 4);
  {
    Graph g = test::buildSpecGraph(spec);
    ASSERT_FALSE(compile(g, stages(4, 4)));
    EXPECT_EQ(layersPerStage(g, 4), (std::vector<int64_t>{1, 1, 1, 1}));
  }
  {
    Graph g = test::buildSpecGraph(spec);
    ASSERT_FALSE(compile(g, stages(2, 2, {1, 3})));
    EXPECT_EQ(layersPerStage(g, 2), (std::vector<int64_t>{1, 3}));
    EXPECT_EQ(g.attrs.getInts("stage_layers"), (std::vector<int64_t>{1, 3}));
  }
  {
    // The embedding (stage 0) and the lm_head (last stage) weigh alike here, so the balanced
    // cut is in the middle.
    Graph g = test::buildSpecGraph(spec);
    ASSERT_FALSE(compile(g, stages(2, 2)));
    EXPECT_EQ(layersPerStage(g, 2), (std::vector<int64_t>{2, 2}));
  }
}

TEST(PipelinePass, LoweringGivesEachStageItsLayersAndItsTensorParallelSlices) {
  ModelSpec spec = test::presetSpec(Family::Llama, "small", DType::F32);
  Graph g = test::buildSpecGraph(spec);
  ASSERT_FALSE(compile(g, stages(4, 2, {1, 3})));
  Expected<LoadedPlan> plan = test::compileSpec(spec, 1);  // the whole model, for its weights
  ASSERT_TRUE(plan) << plan.errorMessage();
  uint64_t whole = plan->plan().ranks()->Get(0)->weight_bytes();
  PlanSource source;
  source.fileOf = [](const std::string&) -> std::optional<size_t> { return 0; };
  source.files.push_back({"model.safetensors", 0, 0});
  Expected<std::vector<uint8_t>> bytes = lowerToPlan(g, source, PlanLimits{});
  ASSERT_TRUE(bytes) << bytes.errorMessage();
  Expected<LoadedPlan> staged = LoadedPlan::fromBytes(*bytes, "staged");
  ASSERT_TRUE(staged) << staged.errorMessage();
  const plan::Plan& p = staged->plan();
  ASSERT_EQ(p.world(), 4u);
  uint64_t stageBytes[2] = {0, 0};
  for (uint32_t r = 0; r < 4; ++r) {
    const plan::RankProgram* prog = p.ranks()->Get(r);
    int64_t attention = 0;
    for (const plan::Step* s : *prog->steps()) attention += s->op()->string_view() == "attention";
    EXPECT_EQ(attention, r < 2 ? 1 : 3) << "rank " << r;
    EXPECT_EQ(prog->outputs()->size(), 1u);
    stageBytes[r / 2] += prog->weight_bytes();
  }
  // The grid as tpc dump shows it: the hidden state (bf16) forward, the f32 logits back.
  PlanSummary summary = summarizePlan(p);
  ASSERT_EQ(summary.stages.size(), 2u);
  EXPECT_EQ(summary.tp, 2);
  EXPECT_EQ(summary.stages[0].firstLayer, 0);
  EXPECT_EQ(summary.stages[0].lastLayer, 0);
  EXPECT_EQ(summary.stages[1].firstRank, 2u);
  EXPECT_EQ(summary.stages[1].firstLayer, 1);
  EXPECT_EQ(summary.stages[1].lastLayer, 3);
  using Sends = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(summary.stages[0].sendsTo, (Sends{{1, spec.hiddenSize * 2}}));
  EXPECT_EQ(summary.stages[1].sendsTo, (Sends{{0, spec.vocabSize * 4}}));
  // Each stage's two ranks hold one copy of its layers between them; the norms (replicated)
  // are held twice, so the total is a little above the whole model's.
  EXPECT_GE(stageBytes[0] + stageBytes[1], whole);
  EXPECT_LT(stageBytes[0] + stageBytes[1], whole + whole / 50);
}

TEST(PipelinePass, BadRequestsGetOneClearError) {
  ModelSpec spec = test::presetSpec(Family::Llama, "tiny", DType::F32);  // 2 layers
  auto failure = [&](const PassOptions& o) {
    Graph g = test::buildSpecGraph(spec);
    Error e = compile(g, o);
    return e ? e.message() : std::string("(no error)");
  };
  EXPECT_EQ(failure(stages(4, 4)),
            "pipeline: 2 layers cannot fill 4 stages (every stage needs at least one layer)");
  EXPECT_EQ(failure(stages(4, 3)),
            "--pp 3 does not divide world 4 (every stage needs the same number of "
            "tensor-parallel ranks)");
  EXPECT_EQ(failure(stages(2, 2, {1, 2})),
            "--stage-layers adds up to 3 layers but the model has 2");
  EXPECT_EQ(failure(stages(2, 2, {2})), "--stage-layers lists 1 stages but --pp is 2");
  EXPECT_EQ(failure(stages(2, 2, {2, 0})),
            "--stage-layers: every stage needs at least one layer, got 0");
}

}  // namespace
}  // namespace tpc

namespace tpc {
namespace {

// The tiny llama on 2 stages of 2 ranks, compared with checked-in text read and checked by
// hand: layer 0 and the vocab-parallel embedding on stage 0, which sends %l0.h and receives
// the gathered logits; stage 1 receives %l0.h, runs layer 1, the final norm and the lm_head,
// gathers the logits and sends them back; every node carries its stage.
TEST(GoldenIr, TinyLlamaOnTwoStagesOfTwoRanks) {
  std::string path = test::dataDir() + "/golden/tiny-llama.w4.pp2.tpcir";
  Graph g = test::buildSpecGraph(test::presetSpec(Family::Llama));
  ASSERT_FALSE(runPipeline(g, stages(4, 2)));
  std::string actual = printGraph(g);
  EXPECT_EQ(actual, test::readFile(path)) << "staged IR differs from " << path;
}

}  // namespace
}  // namespace tpc
