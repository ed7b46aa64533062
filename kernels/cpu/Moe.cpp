// Sparse mixture of experts as transformers' Qwen3-MoE and Mixtral blocks compute it: fp32
// softmax router, top-k, optional renormalisation; then each expert's SwiGLU MLP on the tokens
// routed to it, scaled by the routing weight and added in expert order (HF's index_add_ loop).
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

void sgemmNT(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
             int64_t ldb, float* c, int64_t ldc) {
  assert(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && lda <= INT_MAX && ldc <= INT_MAX);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb), 0.0f,
              c, static_cast<int>(ldc));
}

}  // namespace

void moeRouter(const float* x, const float* gate, int64_t tokens, int64_t hidden,
               int64_t numExperts, int64_t topK, bool normTopkProb, float* weights,
               int32_t* experts) {
  assert(topK > 0 && topK <= numExperts);
  float* probs = detail::scratch<float>(tokens * numExperts);
  linear(x, gate, nullptr, tokens, hidden, numExperts, probs);
  for (int64_t t = 0; t < tokens; ++t) {
    float* row = probs + t * numExperts;
    softmaxInPlace(row, numExperts);
    // Selection by repeated maximum: topK is small, and the strict comparison keeps the lower
    // index on ties. Chosen entries are marked -1, below any probability.
    float* w = weights + t * topK;
    int32_t* chosen = experts + t * topK;
    float selectedSum = 0.0f;
    // A NaN (from a non-finite hidden state) ranks below every probability but above the
    // mark, so the k experts are always distinct; the CUDA twin ranks them the same way.
    auto rank = [](float p) { return std::isnan(p) ? -0.5f : p; };
    for (int64_t j = 0; j < topK; ++j) {
      int64_t best = 0;
      for (int64_t e = 1; e < numExperts; ++e)
        if (rank(row[e]) > rank(row[best])) best = e;
      w[j] = row[best];
      chosen[j] = static_cast<int32_t>(best);
      selectedSum += row[best];
      row[best] = -1.0f;
    }
    if (normTopkProb)
      for (int64_t j = 0; j < topK; ++j) w[j] /= selectedSum;
  }
}

void moeExperts(const float* x, const float* weights, const int32_t* experts, int64_t tokens,
                int64_t hidden, int64_t intermediate, int64_t topK,
                const float* const* gateOrGateUp, const float* const* up, const float* const* down,
                float* out) {
  const int64_t assignments = tokens * topK;
  if (assignments == 0 || intermediate == 0) return;
  int64_t numExperts = 0;
  for (int64_t a = 0; a < assignments; ++a)
    numExperts = std::max<int64_t>(numExperts, experts[a] + 1);
  // Counting sort of the (token, k) assignments by expert, so each expert runs one GEMM over
  // all of its tokens instead of one GEMV per token. Choices of other ranks' experts (negative
  // ids) are left out.
  auto* starts = detail::scratch<int64_t>(numExperts + 1);
  auto* order = detail::scratch<int64_t, 1>(assignments);
  std::fill(starts, starts + numExperts + 1, 0);
  for (int64_t a = 0; a < assignments; ++a)
    if (experts[a] >= 0) ++starts[experts[a] + 1];
  for (int64_t e = 0; e < numExperts; ++e) starts[e + 1] += starts[e];
  auto* cursor = detail::scratch<int64_t, 2>(numExperts);
  std::copy(starts, starts + numExperts, cursor);
  for (int64_t a = 0; a < assignments; ++a)
    if (experts[a] >= 0) order[cursor[experts[a]]++] = a;

  // Buffers for the busiest expert only: each expert's rows reuse them in turn.
  int64_t maxRows = 0;
  for (int64_t e = 0; e < numExperts; ++e) maxRows = std::max(maxRows, starts[e + 1] - starts[e]);
  float* gathered = detail::scratch<float, 0>(maxRows * hidden);
  // Per row: gate activations then up activations; the SwiGLU product overwrites the gate half.
  float* gateUpRows = detail::scratch<float, 1>(maxRows * 2 * intermediate);
  float* expertOut = detail::scratch<float, 2>(maxRows * hidden);
  const int64_t width = 2 * intermediate;
  for (int64_t e = 0; e < numExperts; ++e) {
    const int64_t rows = starts[e + 1] - starts[e];
    if (rows == 0) continue;
    const int64_t* mine = order + starts[e];
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(gathered + r * hidden, x + (mine[r] / topK) * hidden, sizeof(float) * hidden);
    if (up) {
      sgemmNT(rows, intermediate, hidden, gathered, hidden, gateOrGateUp[e], hidden, gateUpRows,
              width);
      sgemmNT(rows, intermediate, hidden, gathered, hidden, up[e], hidden,
              gateUpRows + intermediate, width);
    } else {
      sgemmNT(rows, width, hidden, gathered, hidden, gateOrGateUp[e], hidden, gateUpRows, width);
    }
    for (int64_t r = 0; r < rows; ++r) {
      float* row = gateUpRows + r * width;
      swiglu(row, row + intermediate, intermediate, row);
    }
    sgemmNT(rows, hidden, intermediate, gateUpRows, width, down[e], intermediate, expertOut,
            hidden);
    for (int64_t r = 0; r < rows; ++r) {
      const float weight = weights[mine[r]];
      float* dst = out + (mine[r] / topK) * hidden;
      const float* src = expertOut + r * hidden;
      for (int64_t i = 0; i < hidden; ++i) dst[i] += src[i] * weight;
    }
  }
}

void moeLocalExperts(const int32_t* experts, int64_t assignments, int64_t first, int64_t count,
                     int32_t* local) {
  for (int64_t a = 0; a < assignments; ++a) {
    const int64_t e = static_cast<int64_t>(experts[a]) - first;
    local[a] = e >= 0 && e < count ? static_cast<int32_t>(e) : -1;
  }
}

}  // namespace tpc::cpu
