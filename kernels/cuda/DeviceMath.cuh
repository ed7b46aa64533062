// Device helpers shared by the CUDA kernels (private to kernels/cuda): storage types read and
// written as f32, 16-byte vector access with a scalar fallback, warp and block reductions, and the
// host-side dispatch from ElementType to a template argument.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda::detail {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpSize = 32;

__device__ __forceinline__ float toFloat(float x) { return x; }
__device__ __forceinline__ float toFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float toFloat(__half x) { return __half2float(x); }

// Round-to-nearest-even conversions, as torch's .to(dtype).
template <typename T>
__device__ __forceinline__ T fromFloat(float x);
template <>
__device__ __forceinline__ float fromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half fromFloat<__half>(float x) {
  return __float2half_rn(x);
}

// The cache row (index into [rows][kvHeads][headDim]) of `position` in `slot` (KvCacheView): the
// slot's own run without a block table, the block table's entry with one.
// A power-of-2 block size (16, 32: the usual) takes shifts and masks: this runs once per K/V row
// a kernel loads, where 64-bit divisions would cost more than the table lookup itself.
__device__ __forceinline__ int64_t cacheRow(const int32_t* blockTable, int64_t blockSize,
                                            int64_t maxContext, int64_t slot, int64_t position) {
  if (!blockTable) return slot * maxContext + position;
  if ((blockSize & (blockSize - 1)) == 0) {
    const int shift = __ffsll(blockSize) - 1;
    const int64_t block = blockTable[slot * (maxContext >> shift) + (position >> shift)];
    return block * blockSize + (position & (blockSize - 1));
  }
  const int64_t block = blockTable[slot * (maxContext / blockSize) + position / blockSize];
  return block * blockSize + position % blockSize;
}

// A KvCacheView's paging is usable: no table, or a positive block size dividing maxContext.
inline bool pagingValid(const KvCacheView& cache) {
  return !cache.blockTable || (cache.blockSize > 0 && cache.maxContext % cache.blockSize == 0);
}

// Elements per 16-byte vector: 4 f32 or 8 bf16/f16.
template <typename T>
constexpr int kVecWidth = 16 / static_cast<int>(sizeof(T));

// Loads kVecWidth<T> elements at p (16-byte aligned) as floats.
template <typename T>
__device__ __forceinline__ void loadVec(const T* p, float (&out)[kVecWidth<T>]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const T* elements = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < kVecWidth<T>; ++i) out[i] = toFloat(elements[i]);
}

template <typename T>
__device__ __forceinline__ void storeVec(T* p, const float (&in)[kVecWidth<T>]) {
  uint4 raw;
  T* elements = reinterpret_cast<T*>(&raw);
#pragma unroll
  for (int i = 0; i < kVecWidth<T>; ++i) elements[i] = fromFloat<T>(in[i]);
  *reinterpret_cast<uint4*>(p) = raw;
}

// Butterfly sum: every lane ends with the same total (float, double, int, long long).
template <typename V>
__device__ __forceinline__ V warpSum(V v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. Must be reached by every thread of the block. `scratch` holds 32 values and may be
// reused right after the call returns (the trailing barrier protects it).
template <typename V>
__device__ __forceinline__ V blockSum(V v, V* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = warpSum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  V total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];  // same order in every thread
  __syncthreads();
  return total;
}

__device__ __forceinline__ float blockMax(float v, float* scratch) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = warpMax(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float best = scratch[0];
  for (int w = 1; w < warps; ++w) best = fmaxf(best, scratch[w]);
  __syncthreads();
  return best;
}

__device__ __forceinline__ int64_t minI64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether every row of `width` elements starting at each pointer is 16-byte aligned.
template <typename T>
bool rowsVectorizable(int64_t width, std::initializer_list<const void*> pointers) {
  if ((width * static_cast<int64_t>(sizeof(T))) % 16 != 0) return false;
  for (const void* p : pointers)
    if (p && !aligned16(p)) return false;
  return true;
}

inline unsigned gridFor(int64_t items, int threads, int64_t cap = 65535) {
  int64_t blocks = (items + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > cap) blocks = cap;
  return static_cast<unsigned>(blocks);
}

}  // namespace tpc::cuda::detail

// Expands the lambda given as the second argument once per storage type, with `Element` naming
// the type inside it, and calls the one `type` selects.
#define TPC_DISPATCH_ELEMENT(type, ...)      \
  [&] {                                      \
    switch (type) {                          \
      case ::tpc::cuda::ElementType::F32: {  \
        using Element = float;               \
        return __VA_ARGS__();                \
      }                                      \
      case ::tpc::cuda::ElementType::BF16: { \
        using Element = __nv_bfloat16;       \
        return __VA_ARGS__();                \
      }                                      \
      case ::tpc::cuda::ElementType::F16: {  \
        using Element = __half;              \
        return __VA_ARGS__();                \
      }                                      \
    }                                        \
    return cudaErrorInvalidValue;            \
  }()
