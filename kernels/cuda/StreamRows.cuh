// The inner loop of the streaming MoE kernels (MoeStreaming.h): a warp's dot products of a few
// weight rows with a few input rows, the weights streamed with 16-byte loads, several per lane in
// flight before any is used (the dense GEMV's recipe, Gemv.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/DeviceMath.cuh"

namespace tpc::cuda::detail {

// The elements of one 16-byte vector as floats.
template <class T>
__device__ __forceinline__ void unpack16(const uint4& v, float (&out)[16 / sizeof(T)]) {
  const T* elements = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int i = 0; i < static_cast<int>(16 / sizeof(T)); ++i) out[i] = toFloat(elements[i]);
}

// acc[r][t] += rows[r] . inputs[t] over `vectors` 16-byte vectors, for r < kRows and
// t < tokens (at most kTokens): lane l takes vectors l, l + 32, ..., with kUnroll vectors of
// every row loaded before any is used. Each lane's partial sums run in a fixed order; the caller
// reduces over the warp. Weights are read once (__ldcs, evict first). Inputs were written by an
// earlier kernel that this one may overlap (dependent launch), and every row reuses them, so
// they take coherent cached loads (__ldca), never the read-only path (see DependentLaunch.cuh).
template <class T, int kRows, int kTokens, int kUnroll>
__device__ __forceinline__ void streamRows(const uint4* const (&rows)[kRows],
                                           const uint4* const (&inputs)[kTokens], int tokens,
                                           int64_t vectors, float (&acc)[kRows][kTokens]) {
  constexpr int kElems = 16 / sizeof(T);
  const int lane = threadIdx.x & 31;
  for (int64_t first = lane; first < vectors; first += 32 * kUnroll) {
    uint4 w[kUnroll][kRows];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = first + u * 32;
#pragma unroll
      for (int r = 0; r < kRows; ++r)
        w[u][r] = v < vectors ? __ldcs(rows[r] + v) : make_uint4(0, 0, 0, 0);
    }
    // Each weight and input vector is converted once, then used for every pair.
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = first + u * 32;
      if (v >= vectors) break;
      float wf[kRows][kElems];
#pragma unroll
      for (int r = 0; r < kRows; ++r) unpack16<T>(w[u][r], wf[r]);
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        if (t >= tokens) break;
        float xf[kElems];
        unpack16<T>(__ldca(inputs[t] + v), xf);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          float sum = 0.0f;
#pragma unroll
          for (int i = 0; i < kElems; ++i) sum = fmaf(wf[r][i], xf[i], sum);
          acc[r][t] += sum;
        }
      }
    }
  }
}

// Butterfly sums of acc[r][t] for t < tokens: every lane ends with every total.
template <int kRows, int kTokens>
__device__ __forceinline__ void warpSums(float (&acc)[kRows][kTokens], int tokens) {
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    if (t >= tokens) break;
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r][t] = warpSum(acc[r][t]);
  }
}

}  // namespace tpc::cuda::detail
