// RMSNorm as transformers' LlamaRMSNorm computes it in fp32: the mean of squares, then
// x * rsqrt(variance + eps), then the weight. The mean is accumulated in double so the result
// does not depend on the summation order (torch's own order is an implementation detail).
#include <cassert>
#include <cmath>

#include "kernels/cpu/Kernels.h"

namespace tpc::cpu {
namespace {

// One row; out may alias x because every element is read before it is written.
void normalizeRow(const float* x, const float* w, int64_t width, float eps, float* out) {
  double sumSquares = 0.0;
  for (int64_t i = 0; i < width; ++i) sumSquares += static_cast<double>(x[i]) * x[i];
  const float variance = static_cast<float>(sumSquares / static_cast<double>(width));
  const float inverseRms = 1.0f / std::sqrt(variance + eps);
  for (int64_t i = 0; i < width; ++i) out[i] = w[i] * (x[i] * inverseRms);
}

}  // namespace

void rmsNorm(const float* x, const float* w, int64_t tokens, int64_t width, float eps, float* out) {
  assert(width > 0);
  for (int64_t t = 0; t < tokens; ++t) normalizeRow(x + t * width, w, width, eps, out + t * width);
}

void addRmsNorm(const float* x, const float* residual, const float* w, int64_t tokens,
                int64_t width, float eps, float* sum, float* out) {
  assert(width > 0);
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t base = t * width;
    // Element by element, so `sum` may alias either input.
    for (int64_t i = 0; i < width; ++i) sum[base + i] = x[base + i] + residual[base + i];
    normalizeRow(sum + base, w, width, eps, out + base);
  }
}

void headRmsNorm(const float* x, const float* w, int64_t tokens, int64_t heads, int64_t headDim,
                 float eps, float* out) {
  rmsNorm(x, w, tokens * heads, headDim, eps, out);
}

}  // namespace tpc::cpu
