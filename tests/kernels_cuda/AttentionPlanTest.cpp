// Host-only checks of how attention splits the context (runs without a GPU).
#include <gtest/gtest.h>

#include "kernels/cuda/AttentionPlan.h"

namespace tpc::cuda {
namespace {

TEST(AttentionPlan, DecodeUsesMinimumChunks) {
  EXPECT_EQ(attentionSplits(1, 4096).chunk, kAttentionMinChunk);
  EXPECT_EQ(attentionSplits(1, 4096).splits, 4096 / kAttentionMinChunk);
  EXPECT_EQ(attentionSplits(1, kAttentionMinChunk).splits, 1);
  EXPECT_EQ(attentionSplits(1, kAttentionMinChunk + 1).splits, 2);
  // 8 tokens x 256 chunks of 32 would pass the bound: chunks double to 64.
  EXPECT_EQ(attentionSplits(8, 8192).splits, kAttentionMaxTokenSplits / 8);
}

TEST(AttentionPlan, TokensTimesSplitsStayBounded) {
  for (int64_t tokens : {1, 2, 7, 33, 100, 257, 1000, 1025, 5000})
    for (int64_t maxContext : {1, 127, 128, 1000, 4096, 131072, 1 << 20}) {
      const AttentionSplits s = attentionSplits(tokens, maxContext);
      SCOPED_TRACE(std::to_string(tokens) + " tokens, context " + std::to_string(maxContext));
      EXPECT_GE(s.splits, 1);
      EXPECT_GE(s.chunk * s.splits, maxContext);        // every position is in some chunk
      EXPECT_LT(s.chunk * (s.splits - 1), maxContext);  // and no chunk is wholly past the end
      EXPECT_TRUE(s.splits == 1 || tokens * s.splits <= kAttentionMaxTokenSplits);
      EXPECT_LE(s.splits, kAttentionMaxTokenSplits);  // the combine kernel's shared array
    }
}

TEST(AttentionPlan, WorkspaceCoversEveryCallWithFewerTokens) {
  const int64_t heads = 32, headDim = 128, maxContext = 8192;
  const size_t bound = attentionWorkspaceBound(300, heads, headDim, maxContext);
  for (int64_t tokens = 1; tokens <= 300; ++tokens)
    EXPECT_LE(attentionPartialBytes(tokens, heads, headDim, maxContext), bound);
  // Decode: maxContext / kAttentionMinChunk chunks of (acc[128], max, sum) per head.
  EXPECT_EQ(attentionPartialBytes(1, heads, headDim, maxContext),
            static_cast<size_t>(maxContext / kAttentionMinChunk) * 32 * 130 * 4);
  // A single chunk needs no workspace.
  EXPECT_EQ(attentionPartialBytes(2000, heads, headDim, 1024), 0u);
}

}  // namespace
}  // namespace tpc::cuda
