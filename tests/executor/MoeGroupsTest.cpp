// The host side of the grouped MoE path: which steps take it, where each expert's rows start,
// and a workspace layout whose regions are aligned, disjoint and large enough. Expected values
// are worked out by hand from the rules in executor/MoeGroups.h.
#include "executor/MoeGroups.h"

#include <gtest/gtest.h>

#include <random>

namespace tpc {
namespace {

TEST(MoeGroups, OnlyStepsWithManyAssignmentsOutsideAGraphRunGrouped) {
  // One decode token of a top-8 model, a few of a top-2 model: the per-assignment kernels.
  EXPECT_FALSE(moeRunsGrouped(1, 8, false));
  EXPECT_FALSE(moeRunsGrouped(7, 2, false));
  EXPECT_FALSE(moeRunsGrouped(kMoeGroupedMinAssignments - 1, 1, false));
  // From the threshold up: grouped.
  EXPECT_TRUE(moeRunsGrouped(kMoeGroupedMinAssignments, 1, false));
  EXPECT_TRUE(moeRunsGrouped(2, 8, false));
  EXPECT_TRUE(moeRunsGrouped(10, 2, false));  // the golden MoE prompts' prefill
  EXPECT_TRUE(moeRunsGrouped(2048, 8, false));
  // A CUDA Graph being captured never waits for the host, whatever its size.
  EXPECT_FALSE(moeRunsGrouped(2048, 8, true));
  EXPECT_FALSE(moeRunsGrouped(256, 8, true));
}

TEST(MoeGroups, GroupsSkipEmptyExpertsAndPadToTheRowAlignment) {
  const int32_t counts[] = {0, 3, 0, 5, 1, 0};
  std::vector<ExpertGroup> unpadded = expertGroups(counts, 6, 1);
  ASSERT_EQ(unpadded.size(), 3u);
  EXPECT_EQ(unpadded[0].expert, 1);
  EXPECT_EQ(unpadded[0].firstRow, 0);
  EXPECT_EQ(unpadded[0].rows, 3);
  EXPECT_EQ(unpadded[1].expert, 3);
  EXPECT_EQ(unpadded[1].firstRow, 3);
  EXPECT_EQ(unpadded[1].rows, 5);
  EXPECT_EQ(unpadded[2].expert, 4);
  EXPECT_EQ(unpadded[2].firstRow, 8);
  EXPECT_EQ(groupedRowsUsed(unpadded, 1), 9);
  // Rows padded to 4: 3 -> 4, 5 -> 8, 1 -> 4.
  std::vector<ExpertGroup> padded = expertGroups(counts, 6, 4);
  ASSERT_EQ(padded.size(), 3u);
  EXPECT_EQ(padded[0].firstRow, 0);
  EXPECT_EQ(padded[1].firstRow, 4);
  EXPECT_EQ(padded[2].firstRow, 12);
  EXPECT_EQ(padded[2].rows, 1);
  EXPECT_EQ(groupedRowsUsed(padded, 4), 16);
  const int32_t none[] = {0, 0};
  EXPECT_TRUE(expertGroups(none, 2, 4).empty());
  EXPECT_EQ(groupedRowsUsed({}, 4), 0);
}

TEST(MoeGroups, RowAlignmentPutsEveryRowBufferOn256Bytes) {
  // Qwen3-30B-A3B in bf16: rows of 4096, 1536 and f32 3072 and 8192 bytes, all whole 256s.
  std::optional<MoeGroupedLayout> qwen = moeGroupedLayout({2048, 2048, 768, 8, 128, 2});
  ASSERT_TRUE(qwen);
  EXPECT_EQ(qwen->rowAlign, 1);
  EXPECT_EQ(qwen->rowCapacity, 2048 * 8);
  // bf16 intermediate 64: 128-byte activation rows, so experts start on even rows.
  std::optional<MoeGroupedLayout> small = moeGroupedLayout({300, 256, 64, 8, 128, 2});
  ASSERT_TRUE(small);
  EXPECT_EQ(small->rowAlign, 2);
  // f32 hidden 200 (800-byte rows) and intermediate 72 (288): both 32 * odd, so 8 rows.
  std::optional<MoeGroupedLayout> odd = moeGroupedLayout({40, 200, 72, 4, 16, 4});
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->rowAlign, 8);
  // Capacity: 160 assignments plus 7 padding rows for each of at most 16 experts, a multiple of 8.
  EXPECT_EQ(odd->rowCapacity, 160 + 16 * 7);
  // Rows that are not whole 16-byte words (bf16 hidden 36: 72 bytes) have no grouped layout.
  EXPECT_FALSE(moeGroupedLayout({40, 36, 64, 2, 8, 2}));
  EXPECT_FALSE(moeGroupedLayout({40, 64, 36, 2, 8, 2}));
  EXPECT_FALSE(moeGroupedLayout({0, 64, 64, 2, 8, 2}));
}

TEST(MoeGroups, RegionsAreAlignedDisjointAndHoldAnyRouting) {
  const MoeShape shapes[] = {{300, 256, 64, 8, 128, 2},
                             {300, 256, 512, 2, 8, 4},
                             {40, 200, 72, 4, 16, 4},
                             {1, 64, 32, 2, 8, 2},
                             {2048, 4096, 14336, 2, 8, 2}};
  std::mt19937 rng(7);
  for (const MoeShape& s : shapes) {
    SCOPED_TRACE("tokens " + std::to_string(s.tokens) + " hidden " + std::to_string(s.hidden));
    std::optional<MoeGroupedLayout> layout = moeGroupedLayout(s);
    ASSERT_TRUE(layout);
    const int64_t assignments = s.tokens * s.topK;
    const auto element = static_cast<int64_t>(s.elementBytes);
    const int64_t rowBytes = std::max(s.hidden, s.intermediate) * element;
    const int64_t projectionBytes = std::max(2 * s.intermediate, s.hidden) * 4;
    // In order, each on 256 bytes, each after the previous one's end.
    const size_t starts[] = {layout->counts, layout->firstRows,   layout->slots, layout->rowSources,
                             layout->rows,   layout->projections, layout->bytes};
    const int64_t sizes[] = {s.numExperts * 4,
                             s.numExperts * 4,
                             assignments * 4,
                             layout->rowCapacity * 4,
                             layout->rowCapacity * rowBytes,
                             layout->rowCapacity * projectionBytes};
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(starts[i] % 256, 0u) << "region " << i;
      EXPECT_GE(starts[i + 1], starts[i] + static_cast<size_t>(sizes[i])) << "region " << i;
    }
    EXPECT_EQ(layout->rowCapacity % layout->rowAlign, 0);
    // Random routings, the worst included (every expert's count one past a multiple of the
    // alignment): the padded rows fit, and every group's rows start on 256 bytes in each buffer.
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<int32_t> counts(static_cast<size_t>(s.numExperts), 0);
      if (trial == 0) {
        int64_t left = assignments;
        for (int64_t e = 0; e < s.numExperts && left > 0; ++e, --left) counts[e] = 1;
        for (int64_t e = 0; left >= layout->rowAlign; e = (e + 1) % s.numExperts) {
          counts[e] += static_cast<int32_t>(layout->rowAlign);
          left -= layout->rowAlign;
        }
        counts[0] += static_cast<int32_t>(left);
      } else {
        std::uniform_int_distribution<int64_t> pick(0, s.numExperts - 1);
        for (int64_t a = 0; a < assignments; ++a) ++counts[static_cast<size_t>(pick(rng))];
      }
      std::vector<ExpertGroup> groups = expertGroups(counts.data(), s.numExperts, layout->rowAlign);
      EXPECT_LE(groupedRowsUsed(groups, layout->rowAlign), layout->rowCapacity);
      for (const ExpertGroup& g : groups)
        for (int64_t stride : {s.hidden * element, s.intermediate * element, s.intermediate * 4,
                               2 * s.intermediate * 4, s.hidden * 4})
          EXPECT_EQ((g.firstRow * stride) % 256, 0) << "expert " << g.expert;
    }
  }
}

}  // namespace
}  // namespace tpc
