// How `cuda::attention` splits the context, as plain host code (no CUDA needed) so the choice and
// the workspace size can be unit-tested anywhere. The split depends only on the sizes, never on
// positions, so a captured graph keeps its launch shapes: blocks whose chunk starts past a
// token's position leave at once.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace tpc::cuda {

// Positions per context chunk for a decode step: small enough that a short context still gives
// each KV head several blocks, large enough that the combine stays cheap.
constexpr int64_t kAttentionMinChunk = 32;
// Upper bound on tokens x splits: beyond it chunks double, so prefill (many tokens, already
// plenty of blocks) uses few splits and a small workspace. It also bounds the splits of one token.
constexpr int64_t kAttentionMaxTokenSplits = 1024;

struct AttentionSplits {
  int64_t chunk = kAttentionMinChunk;
  int64_t splits = 1;
};

inline AttentionSplits attentionSplits(int64_t tokens, int64_t maxContext) {
  AttentionSplits s;
  const auto splitsFor = [&](int64_t chunk) {
    return std::max<int64_t>(1, (maxContext + chunk - 1) / chunk);
  };
  while (s.chunk < maxContext &&
         std::max<int64_t>(tokens, 1) * splitsFor(s.chunk) > kAttentionMaxTokenSplits)
    s.chunk *= 2;
  s.splits = splitsFor(s.chunk);
  return s;
}

// Partial results of one call with exactly `tokens` tokens: per (token, head, split) the
// unnormalized accumulator [headDim] and (max, sum). A single split writes `out` directly.
inline size_t attentionPartialBytes(int64_t tokens, int64_t heads, int64_t headDim,
                                    int64_t maxContext) {
  const AttentionSplits s = attentionSplits(tokens, maxContext);
  if (s.splits <= 1 || tokens <= 0) return 0;
  return static_cast<size_t>(tokens * heads * s.splits * (headDim + 2)) * sizeof(float);
}

// Enough for every call with at most `tokens` tokens (fewer tokens may use more splits), so a
// backend can size the workspace once for its largest batch.
inline size_t attentionWorkspaceBound(int64_t tokens, int64_t heads, int64_t headDim,
                                      int64_t maxContext) {
  size_t largest = 0;
  for (int64_t n = 1; n <= tokens; ++n)
    largest = std::max(largest, attentionPartialBytes(n, heads, headDim, maxContext));
  return largest;
}

}  // namespace tpc::cuda
