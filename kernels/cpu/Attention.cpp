// Causal grouped-query attention over a paged-by-slot KV cache, in fp32 like transformers'
// eager path: scores = (q . k) * scale, softmax with the maximum subtracted, then the weighted
// sum of v. The dot products and the weighted sum are GEMVs over the cache rows of one KV head.
#include <cblas.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cmath>
#include <cstring>

#include "kernels/cpu/Kernels.h"
#include "kernels/cpu/Scratch.h"
#include "kernels/cpu/Softmax.h"

namespace tpc::cpu {
namespace {

// Start of the row for (slot, position, kvHead) in a cache tensor.
int64_t cacheOffset(const KvCache& c, int64_t slot, int64_t position, int64_t kvHead) {
  return ((slot * c.maxContext + position) * c.kvHeads + kvHead) * c.headDim;
}

}  // namespace

void attention(const float* q, const float* k, const float* v, const int32_t* positions,
               const int32_t* slots, int64_t tokens, int64_t heads, float scale, KvCache& cache,
               float* out) {
  const int64_t kvHeads = cache.kvHeads, headDim = cache.headDim;
  assert(kvHeads > 0 && heads % kvHeads == 0);
  const int64_t kvWidth = kvHeads * headDim;
  assert(kvWidth <= INT_MAX && cache.maxContext <= INT_MAX);
  // Every token's k and v land in the cache first, so the tokens of one prompt see each other.
  for (int64_t t = 0; t < tokens; ++t) {
    assert(slots[t] >= 0 && slots[t] < cache.slots);
    assert(positions[t] >= 0 && positions[t] < cache.maxContext);
    const int64_t row = cacheOffset(cache, slots[t], positions[t], 0);
    std::memcpy(cache.k + row, k + t * kvWidth, sizeof(float) * kvWidth);
    std::memcpy(cache.v + row, v + t * kvWidth, sizeof(float) * kvWidth);
  }
  const int64_t group = heads / kvHeads;
  float* scores = detail::scratch<float>(cache.maxContext);
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t visible = static_cast<int64_t>(positions[t]) + 1;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kvHead = h / group;
      const float* query = q + (t * heads + h) * headDim;
      const float* keys = cache.k + cacheOffset(cache, slots[t], 0, kvHead);
      const float* values = cache.v + cacheOffset(cache, slots[t], 0, kvHead);
      float* result = out + (t * heads + h) * headDim;
      // keys/values: `visible` rows of headDim, kvWidth apart (the other KV heads in between).
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(visible), static_cast<int>(headDim),
                  scale, keys, static_cast<int>(kvWidth), query, 1, 0.0f, scores, 1);
      softmaxInPlace(scores, visible);
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(visible), static_cast<int>(headDim),
                  1.0f, values, static_cast<int>(kvWidth), scores, 1, 0.0f, result, 1);
    }
  }
}

}  // namespace tpc::cpu
