// RoPE arithmetic shared by the rope kernel (Rope.cu) and the GEMV that rotates its own q/k rows
// (Gemv.cu), so that both give the same bits: the angle is the f32 product
// inverseFrequency * position, cos and sin are taken in double and rounded once to f32 (as the
// CPU twin does), then scaled by attentionScaling; each product of the rotation is rounded on its
// own (no contraction into an FMA, which the compiler might apply in one kernel and not the other).
#pragma once

#include <cuda_runtime.h>

namespace tpc::cuda::detail {

__device__ __forceinline__ void ropeCosSin(float inverseFrequency, int position,
                                           float attentionScaling, float* cosine, float* sine) {
  const float angle = __fmul_rn(inverseFrequency, static_cast<float>(position));
  double s, c;
  sincos(static_cast<double>(angle), &s, &c);
  *cosine = __fmul_rn(static_cast<float>(c), attentionScaling);
  *sine = __fmul_rn(static_cast<float>(s), attentionScaling);
}

// (first, second) = (x[i], x[i + headDim / 2]) rotated by the angle of pair i.
__device__ __forceinline__ void ropeRotate(float first, float second, float cosine, float sine,
                                           float* rotatedFirst, float* rotatedSecond) {
  *rotatedFirst = __fsub_rn(__fmul_rn(first, cosine), __fmul_rn(second, sine));
  *rotatedSecond = __fadd_rn(__fmul_rn(second, cosine), __fmul_rn(first, sine));
}

}  // namespace tpc::cuda::detail
