// How a device backend lays out a step over its paged KV pool: the slot form's contiguous block
// runs, the paged form's table rows, logit rows, attention pieces and decode groups, and the
// errors a bad step gets. Host code, so it runs on any machine.
#include "executor/PagedStepLayout.h"

#include <gtest/gtest.h>

#include <vector>

namespace tpc {
namespace {

KvPoolShape pool() {
  KvPoolShape p;
  p.blockSize = 16;
  p.blocks = 40;
  p.blocksPerSequence = 8;  // max context 128
  p.maxContext = 128;
  p.maxBatch = 4;
  return p;
}

TEST(PagedStepLayout, SlotFormMapsEachSlotToItsOwnBlocks) {
  // Slot 2 decodes at position 40 (its block 2); slot 0 runs a 3-token prompt chunk at 15..17.
  const std::vector<int32_t> ids = {1, 2, 3, 4}, positions = {40, 15, 16, 17}, slots = {2, 0, 0, 0};
  StepInput in;
  in.tokenIds = ids.data();
  in.positions = positions.data();
  in.slots = slots.data();
  in.tokens = 4;
  Expected<PagedStepLayout> l = layoutPagedStep(in, pool());
  ASSERT_TRUE(l) << l.errorMessage();
  EXPECT_EQ(l->rows, 2);
  EXPECT_EQ(l->rowOf, (std::vector<int32_t>{0, 1, 1, 1}));
  // Row 0 is slot 2: blocks 16, 17, 18; row 1 is slot 0: blocks 0, 1.
  EXPECT_EQ(std::vector<int32_t>(l->table.begin(), l->table.begin() + 3),
            (std::vector<int32_t>{16, 17, 18}));
  EXPECT_EQ(std::vector<int32_t>(l->table.begin() + 8, l->table.begin() + 10),
            (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(l->logitRows, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_TRUE(l->allRowsSample);

  std::vector<AttentionPiece> pieces = attentionPieces(*l, positions.data(), 0, 4);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[1].first, 1);
  EXPECT_EQ(pieces[1].count, 3);
  EXPECT_EQ(pieces[1].startPosition, 15);
  EXPECT_FALSE(isDecodeStep(pieces));

  const std::vector<int32_t> outside = {4, 0, 0, 0};
  in.slots = outside.data();
  EXPECT_NE(layoutPagedStep(in, pool()).errorMessage().find("max batch of 4"), std::string::npos);
  // Slot 3 at position 127 needs block 31 < 40; a pool of 30 blocks cannot hold it.
  const std::vector<int32_t> last = {3}, lastPosition = {127};
  StepInput one = in;
  one.slots = last.data();
  one.positions = lastPosition.data();
  one.tokens = 1;
  KvPoolShape small = pool();
  small.blocks = 30;
  EXPECT_TRUE(layoutPagedStep(one, pool()));
  EXPECT_NE(layoutPagedStep(one, small).errorMessage().find("needs KV block 31"),
            std::string::npos);
}

struct PagedStep {
  std::vector<int32_t> ids, positions, kvSlots, seqStarts, tables, logitRows;
  int64_t stride = 4;
  StepInput input() const {
    StepInput in;
    in.tokenIds = ids.data();
    in.positions = positions.data();
    in.tokens = static_cast<int64_t>(ids.size());
    in.kvSlots = kvSlots.data();
    in.sequences = static_cast<int64_t>(seqStarts.size()) - 1;
    in.seqStarts = seqStarts.data();
    in.blockTables = tables.data();
    in.blockTableStride = stride;
    in.logitRows = logitRows.data();
    in.logitRowCount = static_cast<int64_t>(logitRows.size());
    return in;
  }
};

// Sequence 0 decodes at position 20 (blocks 7, 3: slot 3 * 16 + 4); sequence 1 decodes at 0
// (block 9); sequence 2 prefills positions 30..32 (blocks 5, 6, 11).
PagedStep mixedStep() {
  PagedStep s;
  s.ids = {1, 2, 3, 4, 5};
  s.positions = {20, 0, 30, 31, 32};
  s.kvSlots = {3 * 16 + 4, 9 * 16, 6 * 16 + 14, 6 * 16 + 15, 11 * 16};
  s.seqStarts = {0, 1, 2, 5};
  s.tables = {7, 3, 0, 0, 9, 0, 0, 0, 5, 6, 11, 0};
  s.logitRows = {0, 1, 4};
  return s;
}

TEST(PagedStepLayout, PagedFormKeepsTheTablesAndGroupsDecodeTokens) {
  const PagedStep s = mixedStep();
  Expected<PagedStepLayout> l = layoutPagedStep(s.input(), pool());
  ASSERT_TRUE(l) << l.errorMessage();
  EXPECT_EQ(l->rows, 3);
  EXPECT_EQ(l->rowOf, (std::vector<int32_t>{0, 1, 2, 2, 2}));
  EXPECT_EQ(std::vector<int32_t>(l->table.begin() + 16, l->table.begin() + 19),
            (std::vector<int32_t>{5, 6, 11}));  // row 2 at the pool's stride of 8
  EXPECT_EQ(l->logitRows, (std::vector<int32_t>{0, 1, 4}));
  EXPECT_FALSE(l->allRowsSample);

  const std::vector<AttentionPiece> pieces = attentionPieces(*l, s.positions.data(), 0, 5);
  ASSERT_EQ(pieces.size(), 3u);
  const auto groups = launchGroups(pieces);
  // The two decode tokens in one launch, the prompt chunk in another.
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0], (std::pair<size_t, size_t>{0, 2}));
  EXPECT_EQ(groups[1], (std::pair<size_t, size_t>{2, 3}));
  // The decode tokens alone are a decode step.
  EXPECT_TRUE(isDecodeStep(attentionPieces(*l, s.positions.data(), 0, 2)));
}

TEST(PagedStepLayout, BadStepsNameTheProblem) {
  const auto error = [](const PagedStep& s) {
    Expected<PagedStepLayout> l = layoutPagedStep(s.input(), pool());
    return l ? std::string() : l.errorMessage();
  };
  PagedStep s = mixedStep();
  s.kvSlots[3] = 7;
  EXPECT_NE(error(s).find("KV slot 7 of token 3"), std::string::npos) << error(s);
  s = mixedStep();
  s.tables[9] = 40;
  EXPECT_NE(error(s).find("block 40 in the table of sequence 2"), std::string::npos) << error(s);
  s = mixedStep();
  s.positions[3] = 35;
  EXPECT_NE(error(s).find("token 3 of sequence 2 is at position 35"), std::string::npos)
      << error(s);
  s = mixedStep();
  s.logitRows = {1, 0};
  EXPECT_NE(error(s).find("logit row 0"), std::string::npos) << error(s);
  // A paged step that names no logit rows wants none.
  s = mixedStep();
  s.logitRows.clear();
  StepInput none = s.input();
  none.logitRows = nullptr;
  Expected<PagedStepLayout> l = layoutPagedStep(none, pool());
  ASSERT_TRUE(l) << l.errorMessage();
  EXPECT_TRUE(l->logitRows.empty());
  none.logitRowCount = 2;
  EXPECT_FALSE(layoutPagedStep(none, pool()));
  s = mixedStep();
  s.seqStarts = {0, 1, 2, 4};
  EXPECT_NE(error(s).find("do not cover"), std::string::npos) << error(s);
  s = mixedStep();
  s.positions = {20, 0, 130, 131, 132};
  EXPECT_NE(error(s).find("max context of 128"), std::string::npos) << error(s);
  // Runs of single tokens break where a row repeats (the slot form allows it).
  PagedStepLayout repeated;
  repeated.rowOf = {0, 1, 0};
  const std::vector<int32_t> positions = {5, 9, 7};
  const auto groups = launchGroups(attentionPieces(repeated, positions.data(), 0, 3));
  EXPECT_EQ(groups.size(), 2u);
}

}  // namespace
}  // namespace tpc
