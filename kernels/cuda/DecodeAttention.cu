// Decode attention in one launch. A block owns (chunk of kDecodeChunk positions, KV head,
// token): it stages the chunk's keys and values in shared memory with asynchronous copies, all
// issued before any is waited for (plain loads and stores in one loop wait for each load in turn:
// the cache stores may alias them), so a block has its whole chunk in flight at once; the block
// holding the token's own position takes that row from k/v and writes it to the cache too. It
// computes the scores and
// the softmax-weighted values of every query head of the KV head's group, and leaves them as a
// partial result. The last block of a (token, KV head) to finish - found by an atomic counter,
// after a fence that publishes the partials - merges the chunks in chunk order (so the result does
// not depend on which block came last) and resets the counter for the next step or graph replay.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "kernels/cuda/DecodeAttention.h"
#include "kernels/cuda/DependentLaunch.cuh"
#include "kernels/cuda/DeviceMath.cuh"

namespace tpc::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxGroup = 8;
constexpr int kChunk = static_cast<int>(kDecodeChunk);

template <typename T>
struct DecodeArgs {
  const T* q;
  const T* k;
  const T* v;
  const int32_t* positions;
  const int32_t* slots;
  const int32_t* blockTable;  // null: contiguous slots (KvCacheView)
  int64_t blockSize;
  T* cacheK;
  T* cacheV;
  int64_t heads, kvHeads, maxContext, splits;
  float scale;
  unsigned* counters;   // [tokens][kvHeads]
  float* partialStats;  // [tokens][heads][splits][2]: max, sum
  float* partialAcc;    // [tokens][heads][splits][headDim]
  T* out;
};

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(detail::kFullMask, v, o));
  return v;
}
__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(detail::kFullMask, v, o);
  return v;
}

// 16 bytes from global to shared memory without passing through registers (sm_80 and later);
// the copies land once waitAsyncCopies() returns.
__device__ __forceinline__ void copyAsync16(void* shared, const void* global) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const auto address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(global));
#else
  *static_cast<uint4*>(shared) = *static_cast<const uint4*>(global);
#endif
}

__device__ __forceinline__ void waitAsyncCopies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
#endif
}

// kDims consecutive f32 partials (kDims of 2 or 4, 8- or 16-byte aligned) in one load, through
// L2 as the other blocks wrote them.
template <int kDims>
__device__ __forceinline__ void loadPartial(const float* p, float (&out)[kDims]) {
  if constexpr (kDims == 4) {
    const float4 v = __ldcg(reinterpret_cast<const float4*>(p));
    out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
  } else {
    static_assert(kDims == 2, "head dims of 64 or 128");
    const float2 v = __ldcg(reinterpret_cast<const float2*>(p));
    out[0] = v.x, out[1] = v.y;
  }
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) decodeAttentionKernel(DecodeArgs<T> a) {
  constexpr int kVec = detail::kVecWidth<T>;
  constexpr int kVectorsPerRow = kHeadDim / kVec;
  constexpr int kStride = kHeadDim + kVec;  // one vector of padding spreads rows over the banks
  constexpr int kDims = kHeadDim / 32;      // output dims per lane
  __shared__ __align__(16) T keys[kChunk][kStride];
  __shared__ __align__(16) T values[kChunk][kStride];
  __shared__ float query[kMaxGroup][kHeadDim];
  __shared__ float weights[kMaxGroup][kChunk];
  __shared__ float chunkMax[kMaxGroup], chunkSum[kMaxGroup];
  __shared__ int64_t cacheRows[kChunk];
  __shared__ bool lastBlock;

  detail::allowDependentLaunch();  // the output projection may start fetching its weights
  const int split = static_cast<int>(blockIdx.x);
  const int64_t kvHead = blockIdx.y, t = blockIdx.z;
  const int position = a.positions[t];
  const int start = split * kChunk;
  if (start > position) return;  // the whole block leaves: no barrier is skipped by some threads
  const int rows = min(kChunk, position + 1 - start);
  const int activeSplits = position / kChunk + 1;
  const int group = static_cast<int>(a.heads / a.kvHeads);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t slot = a.slots[t];
  const int64_t firstHead = kvHead * group;

  for (int i = threadIdx.x; i < group * kHeadDim; i += kThreads) {
    const int g = i / kHeadDim, d = i % kHeadDim;
    query[g][d] = detail::toFloat(a.q[(t * a.heads + firstHead + g) * kHeadDim + d]) * a.scale;
  }
  // The chunk's cache rows first (one block-table lookup each, all in parallel), so the copies
  // below depend on no load of their own.
  for (int r = threadIdx.x; r < rows; r += kThreads)
    cacheRows[r] = detail::cacheRow(a.blockTable, a.blockSize, a.maxContext, slot, start + r);
  __syncthreads();
  const T* newKey = a.k + (t * a.kvHeads + kvHead) * kHeadDim;
  const T* newValue = a.v + (t * a.kvHeads + kvHead) * kHeadDim;
  for (int i = threadIdx.x; i < rows * kVectorsPerRow; i += kThreads) {
    const int r = i / kVectorsPerRow, c = (i % kVectorsPerRow) * kVec;
    const int64_t cached = (cacheRows[r] * a.kvHeads + kvHead) * kHeadDim + c;
    if (start + r == position) {  // this token's own row: from k/v, and into the cache
      const uint4 key = *reinterpret_cast<const uint4*>(newKey + c);
      const uint4 value = *reinterpret_cast<const uint4*>(newValue + c);
      *reinterpret_cast<uint4*>(a.cacheK + cached) = key;
      *reinterpret_cast<uint4*>(a.cacheV + cached) = value;
      *reinterpret_cast<uint4*>(&keys[r][c]) = key;
      *reinterpret_cast<uint4*>(&values[r][c]) = value;
    } else {
      copyAsync16(&keys[r][c], a.cacheK + cached);
      copyAsync16(&values[r][c], a.cacheV + cached);
    }
  }
  waitAsyncCopies();
  __syncthreads();

  // Scores and softmax within the chunk: a warp per query head, a lane per key.
  for (int g = warp; g < group; g += kWarps) {
    float score[kChunk / 32];
    float maximum = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < kChunk / 32; ++jj) {
      const int j = lane + jj * 32;
      score[jj] = -INFINITY;
      if (j < rows) {
        float dot = 0.0f;
#pragma unroll
        for (int c = 0; c < kHeadDim; c += kVec) {
          float key[kVec];
          detail::loadVec(&keys[j][c], key);
#pragma unroll
          for (int e = 0; e < kVec; ++e) dot = fmaf(query[g][c + e], key[e], dot);
        }
        score[jj] = dot;
      }
      maximum = fmaxf(maximum, score[jj]);
    }
    maximum = warpMax(maximum);  // finite: row 0 of the chunk is always valid
    float sum = 0.0f;
#pragma unroll
    for (int jj = 0; jj < kChunk / 32; ++jj) {
      const float w = expf(score[jj] - maximum);  // 0 for rows past the end
      weights[g][lane + jj * 32] = w;
      sum += w;
    }
    sum = warpSum(sum);
    if (lane == 0) {
      chunkMax[g] = maximum;
      chunkSum[g] = sum;
    }
  }
  __syncthreads();

  // Weighted values: a warp per query head, kDims consecutive dims per lane.
  const int d0 = lane * kDims;
  for (int g = warp; g < group; g += kWarps) {
    float acc[kDims];
#pragma unroll
    for (int e = 0; e < kDims; ++e) acc[e] = 0.0f;
    for (int j = 0; j < rows; ++j) {
      const float w = weights[g][j];
#pragma unroll
      for (int e = 0; e < kDims; ++e) acc[e] = fmaf(w, detail::toFloat(values[j][d0 + e]), acc[e]);
    }
    const int64_t head = firstHead + g;
    if (activeSplits == 1) {
#pragma unroll
      for (int e = 0; e < kDims; ++e)
        a.out[(t * a.heads + head) * kHeadDim + d0 + e] =
            detail::fromFloat<T>(acc[e] / chunkSum[g]);
    } else {
      const int64_t partial = (t * a.heads + head) * a.splits + split;
#pragma unroll
      for (int e = 0; e < kDims; ++e) a.partialAcc[partial * kHeadDim + d0 + e] = acc[e];
      if (lane == 0) {
        a.partialStats[partial * 2] = chunkMax[g];
        a.partialStats[partial * 2 + 1] = chunkSum[g];
      }
    }
  }
  if (activeSplits == 1) return;

  // The last block of this (token, KV head) merges every chunk.
  __threadfence();
  __syncthreads();
  unsigned* counter = a.counters + t * a.kvHeads + kvHead;
  if (threadIdx.x == 0)
    lastBlock = atomicAdd(counter, 1u) == static_cast<unsigned>(activeSplits - 1);
  __syncthreads();
  if (!lastBlock) return;
  __threadfence();
  for (int g = warp; g < group; g += kWarps) {
    const int64_t base = (t * a.heads + firstHead + g) * a.splits;
    // Unrolled so that several chunks' partials are in flight at once (at 3.6k positions a
    // merge reads 57 of them); the sums still run in chunk order.
    float maximum = -INFINITY;
#pragma unroll 8
    for (int s = 0; s < activeSplits; ++s)
      maximum = fmaxf(maximum, __ldcg(a.partialStats + (base + s) * 2));
    float total = 0.0f, acc[kDims];
#pragma unroll
    for (int e = 0; e < kDims; ++e) acc[e] = 0.0f;
#pragma unroll 8
    for (int s = 0; s < activeSplits; ++s) {
      const float2 stats = __ldcg(reinterpret_cast<const float2*>(a.partialStats) + base + s);
      const float factor = expf(stats.x - maximum);
      total = fmaf(stats.y, factor, total);
      float partial[kDims];
      loadPartial(a.partialAcc + (base + s) * kHeadDim + d0, partial);
#pragma unroll
      for (int e = 0; e < kDims; ++e) acc[e] = fmaf(factor, partial[e], acc[e]);
    }
#pragma unroll
    for (int e = 0; e < kDims; ++e)
      a.out[(t * a.heads + firstHead + g) * kHeadDim + d0 + e] =
          detail::fromFloat<T>(acc[e] / total);
  }
  if (threadIdx.x == 0) *counter = 0;  // ready for the next step
}

struct WorkspaceLayout {
  size_t counters, stats, acc, total;
};

WorkspaceLayout layoutOf(int64_t tokens, int64_t heads, int64_t kvHeads, int64_t headDim,
                         int64_t maxContext) {
  const auto align = [](size_t n) { return (n + 255) / 256 * 256; };
  const auto splits = static_cast<size_t>((maxContext + kChunk - 1) / kChunk);
  const auto rows = static_cast<size_t>(tokens * heads) * splits;
  WorkspaceLayout w{};
  // The counters sit first at a size that does not depend on `tokens`: a call with fewer
  // tokens must never lay its partials over counters a larger call relies on being zero.
  w.counters = 0;
  w.stats = align(static_cast<size_t>(kDecodeMaxTokens * kvHeads) * sizeof(unsigned));
  w.acc = w.stats + align(rows * 2 * sizeof(float));
  w.total = w.acc + align(rows * static_cast<size_t>(headDim) * sizeof(float));
  return w;
}

template <typename T, int kHeadDim>
cudaError_t launch(const void* q, const void* k, const void* v, const int32_t* positions,
                   const int32_t* slots, int64_t tokens, int64_t heads, float scale,
                   const KvCacheView& cache, void* workspace, void* out, cudaStream_t stream) {
  const WorkspaceLayout layout = layoutOf(tokens, heads, cache.kvHeads, kHeadDim, cache.maxContext);
  auto* base = static_cast<char*>(workspace);
  DecodeArgs<T> a{static_cast<const T*>(q),
                  static_cast<const T*>(k),
                  static_cast<const T*>(v),
                  positions,
                  slots,
                  cache.blockTable,
                  cache.blockSize,
                  static_cast<T*>(cache.k),
                  static_cast<T*>(cache.v),
                  heads,
                  cache.kvHeads,
                  cache.maxContext,
                  (cache.maxContext + kChunk - 1) / kChunk,
                  scale,
                  reinterpret_cast<unsigned*>(base + layout.counters),
                  reinterpret_cast<float*>(base + layout.stats),
                  reinterpret_cast<float*>(base + layout.acc),
                  static_cast<T*>(out)};
  dim3 grid(static_cast<unsigned>(a.splits), static_cast<unsigned>(cache.kvHeads),
            static_cast<unsigned>(tokens));
  decodeAttentionKernel<T, kHeadDim><<<grid, kThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launchFor(int64_t headDim, const void* q, const void* k, const void* v,
                      const int32_t* positions, const int32_t* slots, int64_t tokens, int64_t heads,
                      float scale, const KvCacheView& cache, void* workspace, void* out,
                      cudaStream_t stream) {
  if (headDim == 64)
    return launch<T, 64>(q, k, v, positions, slots, tokens, heads, scale, cache, workspace, out,
                         stream);
  return launch<T, 128>(q, k, v, positions, slots, tokens, heads, scale, cache, workspace, out,
                        stream);
}

}  // namespace

bool decodeAttentionSupports(ElementType type, int64_t heads, int64_t kvHeads, int64_t headDim) {
  return (type == ElementType::BF16 || type == ElementType::F16) &&
         (headDim == 64 || headDim == 128) && kvHeads > 0 && heads % kvHeads == 0 &&
         heads / kvHeads <= kMaxGroup;
}

size_t decodeAttentionWorkspaceBytes(int64_t tokens, int64_t heads, int64_t kvHeads,
                                     int64_t headDim, int64_t maxContext) {
  return layoutOf(tokens, heads, kvHeads, headDim, maxContext).total;
}

cudaError_t decodeAttention(ElementType type, const void* q, const void* k, const void* v,
                            const int32_t* positions, const int32_t* slots, int64_t tokens,
                            int64_t heads, float scale, const KvCacheView& cache, void* workspace,
                            void* out, cudaStream_t stream) {
  if (!decodeAttentionSupports(type, heads, cache.kvHeads, cache.headDim) || tokens < 1 ||
      tokens > kDecodeMaxTokens || !detail::pagingValid(cache))
    return cudaErrorInvalidValue;
  if (type == ElementType::BF16)
    return launchFor<__nv_bfloat16>(cache.headDim, q, k, v, positions, slots, tokens, heads, scale,
                                    cache, workspace, out, stream);
  return launchFor<__half>(cache.headDim, q, k, v, positions, slots, tokens, heads, scale, cache,
                           workspace, out, stream);
}

}  // namespace tpc::cuda
