// One row of a per-head RMSNorm (the q_norm / k_norm of Qwen3-style attention: rows of headDim
// elements, at most 32 16-byte vectors) by one warp, with the arithmetic of Norms.cu's kernels
// (cpu::rmsNorm's): lane v holds vector v, the squares summed in f32 in element order, a warp
// butterfly sum, 1 / sqrt(mean + eps), then w * (x * inverse) rounded to T. The head norm kernel
// and the decode attention that folds the norm in both call it, so the two give the same bits.
#pragma once

#include "kernels/cuda/DeviceMath.cuh"

namespace tpc::cuda::detail {

template <typename T, int kWidth>
__device__ __forceinline__ void headRmsNormRow(const T* x, const T* weight, float eps, T* out) {
  constexpr int kVec = kVecWidth<T>;
  static_assert(kWidth % kVec == 0 && kWidth / kVec <= kWarpSize, "a vector per lane at most");
  const int lane = threadIdx.x % kWarpSize;
  const bool active = lane < kWidth / kVec;
  float values[kVec] = {};
  float squares = 0.0f;
  if (active) {
    loadVec(x + lane * kVec, values);
#pragma unroll
    for (int i = 0; i < kVec; ++i) squares += values[i] * values[i];
  }
  const float variance = warpSum(squares) / static_cast<float>(kWidth);
  const float inverseRms = 1.0f / sqrtf(variance + eps);
  if (active) {
    float w[kVec];
    loadVec(weight + lane * kVec, w);
#pragma unroll
    for (int i = 0; i < kVec; ++i) values[i] = w[i] * (values[i] * inverseRms);
    storeVec(out + lane * kVec, values);
  }
}

}  // namespace tpc::cuda::detail
