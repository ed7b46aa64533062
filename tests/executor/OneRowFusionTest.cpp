// One-token views and fusions, checked against the structure of compiled presets: what the plan
// says each layer holds (heads, widths), not what the planner computed.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
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
    // The folds into GEMVs apart (NormsAndRopesFoldIntoTheLinearThatAloneReadsThem).
    const OneRowFusion f = planOneRowFusion(plan->plan(), 0, {false, false});
    const StepsByOp steps = stepsOf(prog);
    ASSERT_EQ(steps.split.size(), static_cast<size_t>(2 * spec.numLayers));  // qkv and gate/up

    size_t privateBytes = 0;
    std::map<int64_t, int64_t> storage;  // private block: base -> bytes per token
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
      storage[base] = offset;
    }

    // Every swiglu is written by the gate/up linear that feeds its split.
    ASSERT_EQ(steps.swiglu.size(), static_cast<size_t>(spec.numLayers));
    EXPECT_EQ(f.swigluInto.size(), steps.swiglu.size());
    for (auto [linear, swiglu] : f.swigluInto) {
      EXPECT_EQ(prog.steps()->Get(linear)->op()->string_view(), "linear");
      EXPECT_EQ(prog.steps()->Get(swiglu)->op()->string_view(), "swiglu");
      EXPECT_TRUE(f.skip[swiglu]);
      EXPECT_EQ(linear + 2, swiglu);  // linear, split, swiglu
      // Its result has storage of its own at one token: the pair writes it while still reading
      // the linear's input, which the memory plan may place on the same bytes.
      const uint32_t act = prog.steps()->Get(swiglu)->results()->Get(0);
      ASSERT_TRUE(f.views.count(act));
      EXPECT_EQ(f.views.at(act).second, 0);
      const int64_t bytes = prog.buffers()->Get(act)->bytes_per_token();
      privateBytes += (static_cast<size_t>(bytes) + 255) / 256 * 256;
      EXPECT_FALSE(storage.count(f.views.at(act).first));
      storage[f.views.at(act).first] = bytes;
    }
    EXPECT_EQ(f.privateBytes, privateBytes);
    // No two storages of the private block share a byte.
    int64_t end = 0;
    for (auto [base, bytes] : storage) {
      EXPECT_GE(base, end);
      end = base + bytes;
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

// In steps of several decode rows each Llama layer's attention reads q, k and v from the qkv
// linear's rows (its split and both ropes skipped) and its swiglu reads the gate/up rows (that
// split skipped). Both results get storage of their own in the rows' private block, one slot per
// kind shared by every layer: the memory plan puts them on the bytes they read in most layers.
// With the rope folds off the attention keeps its split (the swiglu still reads past its own).
TEST(OneRowFusion, DecodeRowsReadTheLinearsRowsPastTheirSplits) {
  const ModelSpec spec = test::presetSpec(Family::Llama);
  for (int64_t world : {1, 2}) {
    SCOPED_TRACE("world " + std::to_string(world));
    Expected<LoadedPlan> plan = test::compileSpec(spec, world);
    ASSERT_TRUE(plan) << plan.errorMessage();
    const plan::RankProgram& prog = *plan->plan().ranks()->Get(0);
    const OneRowFusion f = planOneRowFusion(plan->plan(), 0);
    const auto step = [&](uint32_t i) -> const plan::Step& { return *prog.steps()->Get(i); };
    const auto bytes = [&](uint32_t b) { return prog.buffers()->Get(b)->bytes_per_token(); };
    size_t skipped = 0;
    for (bool s : f.skipInFusedRows) skipped += s;
    EXPECT_EQ(skipped, static_cast<size_t>(4 * spec.numLayers));  // 2 splits, 2 ropes each

    ASSERT_EQ(f.attentionReadsSplit.size(), static_cast<size_t>(spec.numLayers));
    int64_t attentionBytes = 0;
    for (auto [attention, read] : f.attentionReadsSplit) {
      const plan::Step& as = step(attention);
      const plan::Step& sp = step(read.split);
      EXPECT_EQ(as.op()->string_view(), "attention");
      ASSERT_EQ(sp.op()->string_view(), "split");
      ASSERT_EQ(sp.results()->size(), 3u);  // q, k, v
      EXPECT_EQ(step(read.qRope).op()->string_view(), "rope");
      EXPECT_EQ(step(read.qRope).operands()->Get(0)->index(), sp.results()->Get(0));
      EXPECT_EQ(step(read.qRope + 1).operands()->Get(0)->index(), sp.results()->Get(1));
      EXPECT_EQ(as.operands()->Get(0)->index(), step(read.qRope).results()->Get(0));
      EXPECT_EQ(as.operands()->Get(1)->index(), step(read.qRope + 1).results()->Get(0));
      EXPECT_EQ(as.operands()->Get(2)->index(), sp.results()->Get(2));
      for (uint32_t i : {read.split, read.qRope, read.qRope + 1}) EXPECT_TRUE(f.skipInFusedRows[i]);
      EXPECT_FALSE(f.skipInFusedRows[attention]);
      const uint32_t out = as.results()->Get(0);
      ASSERT_TRUE(f.rowViews.count(out));
      EXPECT_EQ(f.rowViews.at(out), 0);
      attentionBytes = std::max<int64_t>(attentionBytes, bytes(out));
    }
    ASSERT_EQ(f.swigluReadsSplit.size(), static_cast<size_t>(spec.numLayers));
    const int64_t actSlot = (attentionBytes + 255) / 256 * 256;
    for (auto [swiglu, split] : f.swigluReadsSplit) {
      const plan::Step& ws = step(swiglu);
      const plan::Step& sp = step(split);
      EXPECT_EQ(ws.op()->string_view(), "swiglu");
      ASSERT_EQ(sp.results()->size(), 2u);  // gate, up
      EXPECT_EQ(ws.operands()->Get(0)->index(), sp.results()->Get(0));
      EXPECT_EQ(ws.operands()->Get(1)->index(), sp.results()->Get(1));
      EXPECT_TRUE(f.skipInFusedRows[split]);
      const uint32_t act = ws.results()->Get(0);
      ASSERT_TRUE(f.rowViews.count(act));
      EXPECT_EQ(f.rowViews.at(act), actSlot);  // apart from the attention's slot
      EXPECT_GE(f.rowsPrivateBytesPerToken, actSlot + bytes(act));
    }
    EXPECT_EQ(f.rowViews.size(), static_cast<size_t>(2 * spec.numLayers));

    const OneRowFusion off = planOneRowFusion(plan->plan(), 0, {true, false});
    EXPECT_TRUE(off.attentionReadsSplit.empty());
    EXPECT_EQ(off.swigluReadsSplit.size(), static_cast<size_t>(spec.numLayers));
    skipped = 0;
    for (bool s : off.skipInFusedRows) skipped += s;
    EXPECT_EQ(skipped, static_cast<size_t>(spec.numLayers));
  }
}

// Qwen3 normalizes q and k per head before rope: the rope inputs are not views, so the ropes
// do not fuse with each other (the splits and the MLP still fuse). Instead each layer's two head
// norms and two ropes fold into its attention, which then reads the split's q and k views; with
// the rope folds off they all run.
TEST(OneRowFusion, HeadNormsAndRopesFoldIntoTheAttention) {
  const ModelSpec spec = test::presetSpec(Family::Qwen3);
  for (int64_t world : {1, 2}) {
    SCOPED_TRACE("world " + std::to_string(world));
    Expected<LoadedPlan> plan = test::compileSpec(spec, world);
    ASSERT_TRUE(plan) << plan.errorMessage();
    const plan::RankProgram& prog = *plan->plan().ranks()->Get(0);
    const OneRowFusion f = planOneRowFusion(plan->plan(), 0);
    EXPECT_TRUE(f.fusedRopeHeads.empty());
    EXPECT_TRUE(f.ropeInto.empty());
    EXPECT_EQ(f.swigluInto.size(), static_cast<size_t>(spec.numLayers));
    ASSERT_EQ(f.normedRopesInto.size(), static_cast<size_t>(spec.numLayers));
    const auto op = [&](uint32_t step) { return prog.steps()->Get(step)->op()->string_view(); };
    const auto operand = [&](uint32_t step, uint32_t i) {
      return prog.steps()->Get(step)->operands()->Get(i)->index();
    };
    const auto result = [&](uint32_t step) { return prog.steps()->Get(step)->results()->Get(0); };
    for (auto [attention, folded] : f.normedRopesInto) {
      EXPECT_EQ(op(attention), "attention");
      EXPECT_FALSE(f.skip[attention]);
      EXPECT_EQ(op(folded.qNorm), "head_rms_norm");
      EXPECT_EQ(op(folded.kNorm), "head_rms_norm");
      EXPECT_EQ(op(folded.qRope), "rope");
      EXPECT_EQ(op(folded.kRope), "rope");
      for (uint32_t step : {folded.qNorm, folded.kNorm, folded.qRope, folded.kRope})
        EXPECT_TRUE(f.skip[step]);
      // The attention reads the ropes' results, the ropes the norms', the norms the q and k
      // views of the layer's qkv split.
      EXPECT_EQ(operand(attention, 0), result(folded.qRope));
      EXPECT_EQ(operand(attention, 1), result(folded.kRope));
      EXPECT_EQ(operand(folded.qRope, 0), result(folded.qNorm));
      EXPECT_EQ(operand(folded.kRope, 0), result(folded.kNorm));
      EXPECT_TRUE(f.views.count(operand(folded.qNorm, 0)));
      EXPECT_TRUE(f.views.count(operand(folded.kNorm, 0)));
    }
    const OneRowFusion off = planOneRowFusion(plan->plan(), 0, {true, false});
    EXPECT_TRUE(off.normedRopesInto.empty());
    for (auto [attention, folded] : f.normedRopesInto)
      for (uint32_t step : {folded.qNorm, folded.kNorm, folded.qRope, folded.kRope})
        EXPECT_FALSE(off.skip[step]);
  }
}

// Llama-3.2-1B's hidden rows (2048 bf16: the norm kernel's one-block path) fold each layer's
// attention norm into the qkv linear after it (not the MLP's into the gate/up pair, whose kernel
// does not gain from it); each layer's fused rope folds into its attention. The tiny preset's rows
// (128) take the warp-per-row norm, which the GEMV does not repeat, so no norm folds there (its
// ropes still do); with both folds off nothing folds.
TEST(OneRowFusion, NormsAndRopesFoldIntoTheLinearThatAloneReadsThem) {
  const ModelSpec spec = test::presetSpec(Family::Llama, "llama3.2-1b");
  Expected<LoadedPlan> plan = test::compileSpec(spec, 1);
  ASSERT_TRUE(plan) << plan.errorMessage();
  const plan::RankProgram& prog = *plan->plan().ranks()->Get(0);
  const OneRowFusion f = planOneRowFusion(plan->plan(), 0);
  size_t intoGateUp = 0;
  for (auto [linear, norm] : f.normInto) {
    const plan::Step& ns = *prog.steps()->Get(norm);
    const plan::Step& ls = *prog.steps()->Get(linear);
    const std::string_view op = ns.op()->string_view();
    EXPECT_TRUE(op == "rms_norm" || op == "add_rms_norm") << op;
    EXPECT_EQ(ls.op()->string_view(), "linear");
    EXPECT_EQ(linear, norm + 1);
    EXPECT_TRUE(f.skip[norm]);
    EXPECT_FALSE(f.skip[linear]);
    // The linear reads the normed row (add_rms_norm's second result).
    EXPECT_EQ(ls.operands()->Get(0)->index(), ns.results()->Get(op == "add_rms_norm" ? 1 : 0));
    intoGateUp += f.swigluInto.count(linear);
    // The GEMV reads the norm's inputs while writing the linear's result: never the same bytes.
    const uint32_t result = ls.results()->Get(0);
    const plan::Buffer& out = *prog.buffers()->Get(result);
    for (const plan::Ref* in : *ns.operands()) {
      if (in->kind() != plan::RefKind::Buffer || f.views.count(result) ||
          f.views.count(in->index()))
        continue;
      const plan::Buffer& b = *prog.buffers()->Get(in->index());
      EXPECT_TRUE(out.arena_offset() + out.bytes_per_token() <= b.arena_offset() ||
                  b.arena_offset() + b.bytes_per_token() <= out.arena_offset())
          << "linear step " << linear;
    }
  }
  EXPECT_GE(f.normInto.size(), static_cast<size_t>(spec.numLayers));
  EXPECT_LE(f.normInto.size(), static_cast<size_t>(spec.numLayers + 1));  // and the lm_head's
  EXPECT_EQ(intoGateUp, 0u);

  // The rope of each layer (the first of its fused pair) folds into the attention right after it.
  EXPECT_EQ(f.ropeInto.size(), static_cast<size_t>(spec.numLayers));
  for (auto [attention, rope] : f.ropeInto) {
    const plan::Step& as = *prog.steps()->Get(attention);
    EXPECT_EQ(as.op()->string_view(), "attention");
    EXPECT_EQ(prog.steps()->Get(rope)->op()->string_view(), "rope");
    EXPECT_TRUE(f.skip[rope]);
    EXPECT_TRUE(f.skip[rope + 1]);  // its fused twin
    EXPECT_EQ(attention, rope + 2);
    // The attention reads the two rotated views.
    EXPECT_EQ(as.operands()->Get(0)->index(), prog.steps()->Get(rope)->results()->Get(0));
    EXPECT_EQ(as.operands()->Get(1)->index(), prog.steps()->Get(rope + 1)->results()->Get(0));
  }
  // With several decode rows the attention reads the ropes' inputs instead: only where its
  // result shares no arena bytes with them (at any token count: offsets are per token).
  const auto range = [&](uint32_t b) {
    const plan::Buffer& buffer = *prog.buffers()->Get(b);
    return std::pair<int64_t, int64_t>{buffer.arena_offset(),
                                       buffer.arena_offset() + buffer.bytes_per_token()};
  };
  size_t safe = 0;
  for (auto [attention, rope] : f.ropeInto) {
    const auto out = range(prog.steps()->Get(attention)->results()->Get(0));
    bool disjoint = true;
    for (uint32_t r : {rope, rope + 1}) {
      const auto in = range(prog.steps()->Get(r)->operands()->Get(0)->index());
      disjoint = disjoint && (out.second <= in.first || in.second <= out.first);
    }
    EXPECT_EQ(f.ropeIntoRows.count(attention) == 1, disjoint) << "attention step " << attention;
    if (disjoint) {
      EXPECT_EQ(f.ropeIntoRows.at(attention), rope);
      EXPECT_TRUE(f.skipInDecodeRows[rope]);
      EXPECT_TRUE(f.skipInDecodeRows[rope + 1]);
    }
    safe += disjoint;
  }
  EXPECT_EQ(f.ropeIntoRows.size(), safe);
  EXPECT_EQ(
      static_cast<size_t>(std::count(f.skipInDecodeRows.begin(), f.skipInDecodeRows.end(), true)),
      2 * safe);
  EXPECT_GT(safe, 0u);  // the Llama layout leaves them apart, so the multi-row fold runs

  const OneRowFusion unfolded = planOneRowFusion(plan->plan(), 0, {false, false});
  EXPECT_TRUE(unfolded.normInto.empty());
  EXPECT_TRUE(unfolded.ropeInto.empty());
  EXPECT_TRUE(unfolded.ropeIntoRows.empty());
  Expected<LoadedPlan> tiny = test::compileSpec(test::presetSpec(Family::Llama), 1);
  ASSERT_TRUE(tiny) << tiny.errorMessage();
  const OneRowFusion tinyFolds = planOneRowFusion(tiny->plan(), 0);
  EXPECT_TRUE(tinyFolds.normInto.empty());
  EXPECT_EQ(tinyFolds.ropeInto.size(), 2u);  // two layers
}

}  // namespace
}  // namespace tpc
