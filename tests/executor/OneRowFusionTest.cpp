// One-token views and fusions, checked against the structure of compiled presets: what the plan
// says each layer holds (heads, widths), not what the planner computed.
#include <gtest/gtest.h>

#include <algorithm>
#include <string_view>

#include "executor/OneRowFusion.h"
#include "tests/support/Fixtures.h"

namespace tpc {
namespace {

struct StepsByOp {
  std::vector<uint32_t> split, swiglu, rope, linear;
};

StepsByOp stepsOf(const plan::RankProgram& prog) {
  StepsByOp out;
  for (uint32_t i = 0; i < prog.steps()->size(); ++i) {
    std::string_view op = prog.steps()->Get(i)->op()->string_view();
    if (op == "split") out.split.push_back(i);
    if (op == "swiglu") out.swiglu.push_back(i);
    if (op == "rope") out.rope.push_back(i);
    if (op == "linear") out.linear.push_back(i);
  }
  return out;
}

TEST(OneRowFusion, LlamaSplitsBecomeViewsAndSwigluAndRopesFuse) {
  for (int64_t world : {1, 2}) {
    SCOPED_TRACE("world " + std::to_string(world));
    const ModelSpec spec = test::presetSpec(Family::Llama);
    Expected<LoadedPlan> plan = test::compileSpec(spec, world);
    ASSERT_TRUE(plan) << plan.errorMessage();
    const plan::RankProgram& prog = *plan->plan().ranks()->Get(0);
    const OneRowFusion f = planOneRowFusion(plan->plan(), 0);
    const StepsByOp steps = stepsOf(prog);
    ASSERT_EQ(steps.split.size(), static_cast<size_t>(2 * spec.numLayers));  // qkv and gate/up

    size_t privateBytes = 0;
    for (uint32_t i : steps.split) {
      const plan::Step& s = *prog.steps()->Get(i);
      EXPECT_TRUE(f.skip[i]);
      const uint32_t source = s.operands()->Get(0)->index();
      ASSERT_TRUE(f.views.count(source));
      const int64_t base = f.views.at(source).first;
      EXPECT_EQ(f.views.at(source).second, 0);
      // The results are consecutive ranges of the operand, in order.
      int64_t offset = 0;
      for (uint32_t r : *s.results()) {
        const plan::Buffer& b = *prog.buffers()->Get(r);
        EXPECT_EQ(f.views.at(r).first, base);
        EXPECT_EQ(f.views.at(r).second, offset);
        offset += b.bytes_per_token();
      }
      EXPECT_EQ(offset, prog.buffers()->Get(source)->bytes_per_token());
      privateBytes += (static_cast<size_t>(offset) + 255) / 256 * 256;
    }
    EXPECT_EQ(f.privateBytes, privateBytes);

    // Every swiglu is written by the gate/up linear that feeds its split.
    ASSERT_EQ(steps.swiglu.size(), static_cast<size_t>(spec.numLayers));
    EXPECT_EQ(f.swigluInto.size(), steps.swiglu.size());
    for (auto [linear, swiglu] : f.swigluInto) {
      EXPECT_EQ(prog.steps()->Get(linear)->op()->string_view(), "linear");
      EXPECT_EQ(prog.steps()->Get(swiglu)->op()->string_view(), "swiglu");
      EXPECT_TRUE(f.skip[swiglu]);
      EXPECT_EQ(linear + 2, swiglu);  // linear, split, swiglu
    }

    // One rope launch per layer, over this rank's query and key heads.
    const int64_t heads = spec.numHeads / world;
    const int64_t kvHeads = std::max<int64_t>(spec.numKvHeads / world, 1);
    ASSERT_EQ(steps.rope.size(), static_cast<size_t>(2 * spec.numLayers));
    EXPECT_EQ(f.fusedRopeHeads.size(), static_cast<size_t>(spec.numLayers));
    for (size_t n = 0; n < steps.rope.size(); n += 2) {
      ASSERT_TRUE(f.fusedRopeHeads.count(steps.rope[n]));
      EXPECT_EQ(f.fusedRopeHeads.at(steps.rope[n]), heads + kvHeads);
      EXPECT_FALSE(f.skip[steps.rope[n]]);
      EXPECT_TRUE(f.skip[steps.rope[n + 1]]);
    }
    // Nothing else is skipped.
    size_t skipped = 0;
    for (bool s : f.skip) skipped += s;
    EXPECT_EQ(skipped, steps.split.size() + steps.swiglu.size() + steps.rope.size() / 2);
  }
}

// Qwen3 normalizes q and k per head before rope: the rope inputs are not views, so the ropes
// stay apart (the splits and the MLP still fuse).
TEST(OneRowFusion, RopesAfterHeadNormsStayApart) {
  const ModelSpec spec = test::presetSpec(Family::Qwen3);
  Expected<LoadedPlan> plan = test::compileSpec(spec, 1);
  ASSERT_TRUE(plan) << plan.errorMessage();
  const OneRowFusion f = planOneRowFusion(plan->plan(), 0);
  EXPECT_TRUE(f.fusedRopeHeads.empty());
  EXPECT_EQ(f.swigluInto.size(), static_cast<size_t>(spec.numLayers));
}

}  // namespace
}  // namespace tpc
