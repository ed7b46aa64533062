#include <gtest/gtest.h>

#include <map>

#include "passes/Pass.h"
#include "tests/support/Fixtures.h"

namespace tpc {
namespace {

std::map<OpKind, int> countOps(const Graph& g) {
  std::map<OpKind, int> counts;
  for (const Node* n : g.nodes()) counts[n->op]++;
  return counts;
}

TEST(Fuse, OneGemmForQkvAndOneForGateUpPerLayer) {
  for (int64_t world : {1, 2, 8}) {
    ModelSpec spec = test::presetSpec(Family::Llama);
    Graph g = test::compiledGraph(spec, world);
    std::map<OpKind, int> ops = countOps(g);
    int64_t L = spec.numLayers;
    EXPECT_EQ(ops[OpKind::Linear], 4 * L + 1) << "qkv, o, gate_up, down per layer, and lm_head";
    EXPECT_EQ(ops[OpKind::Split], 2 * L);
    // Every residual add feeds a norm; past world 1 the all-reduce before it joins them.
    EXPECT_EQ(ops[OpKind::AddRmsNorm] + ops[OpKind::AllReduceAddRmsNorm], 2 * L);
    EXPECT_EQ(ops[OpKind::AllReduceAddRmsNorm], world == 1 ? 0 : 2 * L);
    EXPECT_EQ(ops[OpKind::AllReduce], world == 1 ? 0 : 1) << "only the embedding's stands alone";
    EXPECT_EQ(ops[OpKind::Add], 0);
    EXPECT_EQ(ops[OpKind::RmsNorm], 1) << "only layer 0's input norm has no add before it";
    const Value* qkv = g.findValue("model.layers.0.self_attn.qkv_proj.weight");
    ASSERT_NE(qkv, nullptr);
    ASSERT_EQ(qkv->pieces.size(), 3u);
    EXPECT_EQ(qkv->pieces[1].tensor, "model.layers.0.self_attn.k_proj.weight");
    ASSERT_NE(g.findValue("model.layers.0.mlp.gate_up_proj.weight"), nullptr);
  }
}

// The fused step reads what the all-reduce read (the row-parallel partial sums) and the residual
// the add read; turned off, the pipeline keeps the two steps.
TEST(Fuse, AllReduceJoinsTheAddRmsNormItFeeds) {
  for (Family family : test::kAllFamilies) {
    SCOPED_TRACE(familyName(family));
    ModelSpec spec = test::presetSpec(family);
    Graph g = test::compiledGraph(spec, 4);
    int fused = 0;
    for (const Node* n : g.nodes()) {
      if (n->op != OpKind::AllReduceAddRmsNorm) continue;
      ++fused;
      EXPECT_TRUE(n->operand(0)->sharding.isPartial()) << n->operand(0)->name;
      EXPECT_TRUE(n->operand(1)->sharding.isReplicated()) << n->operand(1)->name;
      EXPECT_EQ(n->attrs.getString("sharding"), "all-reduce");
      EXPECT_TRUE(n->attrs.has("eps"));
    }
    EXPECT_EQ(fused, 2 * spec.numLayers);

    Graph unfused = test::buildSpecGraph(spec);
    ASSERT_FALSE(runPipeline(unfused, PassOptions{4, {}, false}));
    std::map<OpKind, int> ops = countOps(unfused);
    EXPECT_EQ(ops[OpKind::AllReduceAddRmsNorm], 0);
    EXPECT_EQ(ops[OpKind::AllReduce], 2 * spec.numLayers + 1);
    EXPECT_EQ(ops[OpKind::AddRmsNorm], 2 * spec.numLayers);
  }
}

TEST(Fuse, ExpertGateAndUpAreConcatenated) {
  ModelSpec spec = test::presetSpec(Family::Mixtral);
  Graph g = test::compiledGraph(spec, 2);
  int experts = 0;
  for (const Node* n : g.nodes()) {
    if (n->op != OpKind::MoeExperts) continue;
    ++experts;
    EXPECT_EQ(n->attrs.getInt("params_per_expert"), 2);
    EXPECT_EQ(n->operands.size(), 3 + 2 * static_cast<size_t>(spec.moe.numExperts));
  }
  EXPECT_EQ(experts, spec.numLayers);
  EXPECT_NE(g.findValue("model.layers.0.block_sparse_moe.experts.0.w13.weight"), nullptr);
}

// Recomputes liveness from the graph and checks that values alive at once never share bytes.
TEST(PlanMemory, LiveValuesNeverOverlap) {
  for (Family family : test::kAllFamilies) {
    ModelSpec spec = test::presetSpec(family);
    Graph g = test::compiledGraph(spec, 2);
    std::vector<const Value*> values(g.inputs().begin(), g.inputs().end());
    std::map<const Value*, size_t> born, dies;
    for (const Value* v : values) born[v] = 0;
    for (size_t i = 0; i < g.nodes().size(); ++i) {
      for (const Value* op : g.nodes()[i]->operands) dies[op] = i;
      for (const Value* r : g.nodes()[i]->results) {
        values.push_back(r);
        born[r] = i;
      }
    }
    for (const Value* v : g.outputs()) dies[v] = g.nodes().size();
    int64_t arena = g.attrs.getInt("arena_bytes_per_token");
    auto bytes = [](const Value* v) {
      return static_cast<int64_t>(*byteSize(v->dtype, staticElementCount(v->shape)));
    };
    for (const Value* a : values) {
      ASSERT_GE(a->arenaOffset, 0) << a->name;
      EXPECT_LE(a->arenaOffset + bytes(a), arena) << a->name;
      EXPECT_EQ(a->arenaOffset % 16, 0) << a->name;
      for (const Value* b : values) {
        if (a >= b) continue;
        size_t aEnd = std::max(born[a], dies.count(a) ? dies[a] : born[a]);
        size_t bEnd = std::max(born[b], dies.count(b) ? dies[b] : born[b]);
        bool liveTogether = born[a] <= bEnd && born[b] <= aEnd;
        bool overlap = a->arenaOffset < b->arenaOffset + bytes(b) &&
                       b->arenaOffset < a->arenaOffset + bytes(a);
        EXPECT_FALSE(liveTogether && overlap)
            << a->name << " and " << b->name << " share arena bytes";
      }
    }
  }
}

}  // namespace
}  // namespace tpc
