// Causal grouped-query attention over a paged KV cache: the same arithmetic as attention() (fp32
// scores scaled, softmax with the maximum subtracted, weighted sum of values), but each
// sequence's positions live in fixed-size blocks named by its block table, so sequences of any
// length share one pool and a prefix's blocks can be shared between sequences.
#include <cblas.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstring>

#include "kernels/cpu/Kernels.h"
#include "kernels/cpu/Scratch.h"
#include "kernels/cpu/Softmax.h"

namespace tpc::cpu {
namespace {

// Start of the row for (physical slot, kvHead) in a pool tensor.
int64_t poolOffset(const KvPool& p, int64_t slot, int64_t kvHead) {
  return (slot * p.kvHeads + kvHead) * p.headDim;
}

}  // namespace

void pagedAttention(const float* q, const float* k, const float* v, const PagedBatch& batch,
                    int64_t heads, float scale, KvPool& pool, float* out) {
  const int64_t kvHeads = pool.kvHeads, headDim = pool.headDim, blockSize = pool.blockSize;
  assert(kvHeads > 0 && heads % kvHeads == 0 && blockSize > 0);
  const int64_t kvWidth = kvHeads * headDim;
  assert(kvWidth <= INT_MAX && blockSize <= INT_MAX);
  // Every token's k and v land in the pool first, so the tokens of one chunk see each other.
  for (int64_t t = 0; t < batch.tokens; ++t) {
    assert(batch.kvSlots[t] >= 0 && batch.kvSlots[t] < pool.blocks * blockSize);
    const int64_t row = poolOffset(pool, batch.kvSlots[t], 0);
    std::memcpy(pool.k + row, k + t * kvWidth, sizeof(float) * kvWidth);
    std::memcpy(pool.v + row, v + t * kvWidth, sizeof(float) * kvWidth);
  }
  const int64_t group = heads / kvHeads;
  int64_t longest = 0;
  for (int64_t t = 0; t < batch.tokens; ++t)
    longest = std::max<int64_t>(longest, batch.positions[t] + 1);
  float* scores = detail::scratch<float>(longest);
  for (int64_t s = 0; s < batch.sequences; ++s) {
    const int32_t* table = batch.blockTables + s * batch.blockTableStride;
    for (int64_t t = batch.seqStarts[s]; t < batch.seqStarts[s + 1]; ++t) {
      const int64_t visible = static_cast<int64_t>(batch.positions[t]) + 1;
      const int64_t blocks = (visible + blockSize - 1) / blockSize;
      assert(blocks <= batch.blockTableStride);
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t kvHead = h / group;
        const float* query = q + (t * heads + h) * headDim;
        float* result = out + (t * heads + h) * headDim;
        // Scores block by block: each block's rows are contiguous, kvWidth apart.
        for (int64_t b = 0; b < blocks; ++b) {
          assert(table[b] >= 0 && table[b] < pool.blocks);
          const int64_t rows = std::min(blockSize, visible - b * blockSize);
          cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(rows),
                      static_cast<int>(headDim), scale,
                      pool.k + poolOffset(pool, table[b] * blockSize, kvHead),
                      static_cast<int>(kvWidth), query, 1, 0.0f, scores + b * blockSize, 1);
        }
        softmaxInPlace(scores, visible);
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t rows = std::min(blockSize, visible - b * blockSize);
          cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(rows), static_cast<int>(headDim),
                      1.0f, pool.v + poolOffset(pool, table[b] * blockSize, kvHead),
                      static_cast<int>(kvWidth), scores + b * blockSize, 1, b == 0 ? 0.0f : 1.0f,
                      result, 1);
        }
      }
    }
  }
}

}  // namespace tpc::cpu
