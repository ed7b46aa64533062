// select_rows may be read in place of its operand only when nothing after it writes over the
// operand (executor/SelectRowsAlias.h). The Llama-3.2-1B plan gives the lm_head's logits bytes that
// overlap the final norm's row, which its select reads: reading the row in place there would let
// the lm_head overwrite its own input, so the alias must be refused.
#include <gtest/gtest.h>

#include <string_view>

#include "executor/SelectRowsAlias.h"
#include "tests/support/Fixtures.h"

namespace tpc {
namespace {

struct ArenaRange {
  int64_t begin, end;
};

ArenaRange rangeOf(const plan::RankProgram& prog, uint32_t buffer) {
  const plan::Buffer& b = *prog.buffers()->Get(buffer);
  return {b.arena_offset(), b.arena_offset() + b.bytes_per_token()};
}

int64_t selectStepOf(const plan::RankProgram& prog) {
  for (uint32_t i = 0; i < prog.steps()->size(); ++i)
    if (prog.steps()->Get(i)->op()->string_view() == "select_rows") return i;
  return -1;
}

TEST(SelectRowsAlias, RefusedWhereTheLmHeadWritesOverTheSelectedRow) {
  Expected<LoadedPlan> plan = test::compileSpec(test::presetSpec(Family::Llama, "llama3.2-1b"), 1);
  ASSERT_TRUE(plan) << plan.errorMessage();
  const plan::RankProgram& prog = *plan->plan().ranks()->Get(0);
  const int64_t select = selectStepOf(prog);
  ASSERT_GE(select, 0);
  const auto step = static_cast<uint32_t>(select);
  // The case this guards: the next step is the lm_head, reading the select's result, and its
  // logits overlap the select's operand in the arena.
  const plan::Step& lmHead = *prog.steps()->Get(step + 1);
  ASSERT_EQ(lmHead.op()->string_view(), "linear");
  ASSERT_EQ(lmHead.operands()->Get(0)->index(), prog.steps()->Get(step)->results()->Get(0));
  const ArenaRange row = rangeOf(prog, prog.steps()->Get(step)->operands()->Get(0)->index());
  const ArenaRange logits = rangeOf(prog, lmHead.results()->Get(0));
  ASSERT_TRUE(logits.begin < row.end && row.begin < logits.end)
      << "the plan no longer overlaps them; pick a plan that does";
  EXPECT_FALSE(selectRowsMayAlias(prog, step));
}

}  // namespace
}  // namespace tpc
