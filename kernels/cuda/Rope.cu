// RoPE with rotate_half pairs (element i with element i + headDim / 2), as cpu::rope, with the
// arithmetic of RopeMath.cuh. One block per token: it
// computes the token's headDim / 2 cos/sin pairs once into shared memory, then rotates every head.
#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/RopeMath.cuh"

namespace tpc::cuda {
namespace {

using detail::fromFloat;
using detail::kVecWidth;

constexpr int kThreads = 256;
// headDim up to 1024: cos/sin tables of 512 floats each.
constexpr int64_t kMaxHalf = 512;

template <typename T, bool kVector>
__global__ void ropeKernel(const T* x, const int32_t* positions, int64_t heads, int64_t headDim,
                           const float* inverseFrequencies, float attentionScaling, T* out) {
  __shared__ float cosines[kMaxHalf], sines[kMaxHalf];
  const int64_t t = blockIdx.x;
  const int64_t half = headDim / 2;
  const int position = positions[t];
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x)
    detail::ropeCosSin(inverseFrequencies[i], position, attentionScaling, &cosines[i], &sines[i]);
  __syncthreads();
  const int64_t rowBase = t * heads * headDim;
  // Each thread rotates one pair (or kWidth consecutive pairs) and reads both halves before
  // writing either, so out may alias x.
  if constexpr (kVector) {
    constexpr int kWidth = kVecWidth<T>;
    const int64_t vectorsPerHead = half / kWidth;
    for (int64_t v = threadIdx.x; v < heads * vectorsPerHead; v += blockDim.x) {
      const int64_t h = v / vectorsPerHead, i0 = (v % vectorsPerHead) * kWidth;
      const int64_t base = rowBase + h * headDim;
      float first[kWidth], second[kWidth], rotatedFirst[kWidth], rotatedSecond[kWidth];
      detail::loadVec(x + base + i0, first);
      detail::loadVec(x + base + half + i0, second);
#pragma unroll
      for (int j = 0; j < kWidth; ++j)
        detail::ropeRotate(first[j], second[j], cosines[i0 + j], sines[i0 + j], &rotatedFirst[j],
                           &rotatedSecond[j]);
      detail::storeVec(out + base + i0, rotatedFirst);
      detail::storeVec(out + base + half + i0, rotatedSecond);
    }
  } else {
    for (int64_t p = threadIdx.x; p < heads * half; p += blockDim.x) {
      const int64_t h = p / half, i = p % half;
      const int64_t base = rowBase + h * headDim;
      const float first = detail::toFloat(x[base + i]);
      const float second = detail::toFloat(x[base + half + i]);
      float rotatedFirst, rotatedSecond;
      detail::ropeRotate(first, second, cosines[i], sines[i], &rotatedFirst, &rotatedSecond);
      out[base + i] = fromFloat<T>(rotatedFirst);
      out[base + half + i] = fromFloat<T>(rotatedSecond);
    }
  }
}

}  // namespace

cudaError_t rope(ElementType type, const void* x, const int32_t* positions, int64_t tokens,
                 int64_t heads, int64_t headDim, const float* inverseFrequencies,
                 float attentionScaling, void* out, cudaStream_t stream) {
  if (headDim % 2 != 0 || headDim / 2 > kMaxHalf) return cudaErrorInvalidValue;
  if (tokens <= 0 || heads <= 0 || headDim <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    const auto* src = static_cast<const Element*>(x);
    auto* dst = static_cast<Element*>(out);
    // Vectors of one half-head must start 16-byte aligned: half a multiple of kWidth does it.
    const bool vector = detail::rowsVectorizable<Element>(headDim / 2, {x, out});
    const auto blocks = static_cast<unsigned>(tokens);
    if (vector)
      ropeKernel<Element, true><<<blocks, kThreads, 0, stream>>>(
          src, positions, heads, headDim, inverseFrequencies, attentionScaling, dst);
    else
      ropeKernel<Element, false><<<blocks, kThreads, 0, stream>>>(
          src, positions, heads, headDim, inverseFrequencies, attentionScaling, dst);
    return cudaGetLastError();
  });
}

}  // namespace tpc::cuda
