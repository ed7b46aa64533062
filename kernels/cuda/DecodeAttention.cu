// Decode attention in one launch. A block owns (chunk of kDecodeChunk positions, KV head,
// token): it stages the chunk's keys and values in shared memory (the rows earlier steps wrote
// before waiting for the kernel ahead of it, a dependent launch, so their latency hides behind
// that kernel's tail; the block holding the token's own position takes that row from k/v after
// the wait, rotating the key when the layer's rope is folded in, and writes it to the cache too),
// computes the scores and the softmax-weighted values of every query head of the KV head's
// group, and leaves them as a partial result. The last block of a (token, KV head) to finish -
// found by an atomic counter, after a fence that publishes the partials - merges the chunks in
// chunk order (so the result does not depend on which block came last) and resets the counter for
// the next step or graph replay.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "kernels/cuda/DecodeAttention.h"
#include "kernels/cuda/DependentLaunch.cuh"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/RopeMath.cuh"

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
  const float* ropeInverse;  // null: q and k come rotated
  float ropeScaling;
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
  __shared__ bool lastBlock;
  constexpr int kHalf = kHeadDim / 2;
  __shared__ float ropeCos[kHalf], ropeSin[kHalf];

  const int split = static_cast<int>(blockIdx.x);
  const int64_t kvHead = blockIdx.y, t = blockIdx.z;
  // Positions, slots and block tables are the step's inputs, uploaded before its first kernel:
  // readable before the wait.
  const int position = a.positions[t];
  const int start = split * kChunk;
  if (start > position) return;  // the whole block leaves: no barrier is skipped by some threads
  const int rows = min(kChunk, position + 1 - start);
  const int activeSplits = position / kChunk + 1;
  const int group = static_cast<int>(a.heads / a.kvHeads);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t slot = a.slots[t];
  const int64_t firstHead = kvHead * group;
  const bool rotate = a.ropeInverse != nullptr;
  if (rotate)
    for (int i = threadIdx.x; i < kHalf; i += kThreads)
      detail::ropeCosSin(a.ropeInverse[i], position, a.ropeScaling, &ropeCos[i], &ropeSin[i]);

  // The chunk's rows before this token's own were written by earlier steps: they are staged
  // while the kernel that computes q, k and v (dependent launch) may still run.
  for (int i = threadIdx.x; i < rows * kVectorsPerRow; i += kThreads) {
    const int r = i / kVectorsPerRow, c = (i % kVectorsPerRow) * kVec;
    if (start + r == position) continue;
    const int64_t row = detail::cacheRow(a.blockTable, a.blockSize, a.maxContext, slot, start + r);
    const int64_t cached = (row * a.kvHeads + kvHead) * kHeadDim + c;
    *reinterpret_cast<uint4*>(&keys[r][c]) = *reinterpret_cast<const uint4*>(a.cacheK + cached);
    *reinterpret_cast<uint4*>(&values[r][c]) = *reinterpret_cast<const uint4*>(a.cacheV + cached);
  }
  detail::waitForPrerequisites();
  // Only now may the output projection start: it must not run ahead of a kernel that has not
  // itself waited for its inputs.
  detail::allowDependentLaunch();

  if (rotate) {
    __syncthreads();  // the angles
    // Rotated and rounded to T as the rope step would have stored them, then scaled.
    for (int i = threadIdx.x; i < group * kHalf; i += kThreads) {
      const int g = i / kHalf, p = i % kHalf;
      const T* head = a.q + (t * a.heads + firstHead + g) * kHeadDim;
      float first, second;
      detail::ropeRotate(detail::toFloat(head[p]), detail::toFloat(head[p + kHalf]), ropeCos[p],
                         ropeSin[p], &first, &second);
      query[g][p] = detail::toFloat(detail::fromFloat<T>(first)) * a.scale;
      query[g][p + kHalf] = detail::toFloat(detail::fromFloat<T>(second)) * a.scale;
    }
  } else {
    for (int i = threadIdx.x; i < group * kHeadDim; i += kThreads) {
      const int g = i / kHeadDim, d = i % kHeadDim;
      query[g][d] = detail::toFloat(a.q[(t * a.heads + firstHead + g) * kHeadDim + d]) * a.scale;
    }
  }
  // This token's own row: from k/v (the key rotated first), and into the cache.
  if (position < start + rows) {
    const T* newKey = a.k + (t * a.kvHeads + kvHead) * kHeadDim;
    const T* newValue = a.v + (t * a.kvHeads + kvHead) * kHeadDim;
    const int r = position - start;
    const int64_t row = detail::cacheRow(a.blockTable, a.blockSize, a.maxContext, slot, position);
    T* cachedKey = a.cacheK + (row * a.kvHeads + kvHead) * kHeadDim;
    T* cachedValue = a.cacheV + (row * a.kvHeads + kvHead) * kHeadDim;
    for (int c = threadIdx.x * kVec; c < kHeadDim; c += kThreads * kVec) {
      const uint4 value = *reinterpret_cast<const uint4*>(newValue + c);
      *reinterpret_cast<uint4*>(cachedValue + c) = value;
      *reinterpret_cast<uint4*>(&values[r][c]) = value;
      if (!rotate) {
        const uint4 key = *reinterpret_cast<const uint4*>(newKey + c);
        *reinterpret_cast<uint4*>(cachedKey + c) = key;
        *reinterpret_cast<uint4*>(&keys[r][c]) = key;
      }
    }
    if (rotate)
      for (int p = threadIdx.x; p < kHalf; p += kThreads) {
        float first, second;
        detail::ropeRotate(detail::toFloat(newKey[p]), detail::toFloat(newKey[p + kHalf]),
                           ropeCos[p], ropeSin[p], &first, &second);
        const T rotatedFirst = detail::fromFloat<T>(first);
        const T rotatedSecond = detail::fromFloat<T>(second);
        cachedKey[p] = rotatedFirst;
        cachedKey[p + kHalf] = rotatedSecond;
        keys[r][p] = rotatedFirst;
        keys[r][p + kHalf] = rotatedSecond;
      }
  }
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
    float maximum = -INFINITY;
    for (int s = 0; s < activeSplits; ++s)
      maximum = fmaxf(maximum, __ldcg(a.partialStats + (base + s) * 2));
    float total = 0.0f, acc[kDims];
#pragma unroll
    for (int e = 0; e < kDims; ++e) acc[e] = 0.0f;
    for (int s = 0; s < activeSplits; ++s) {
      const float factor = expf(__ldcg(a.partialStats + (base + s) * 2) - maximum);
      total = fmaf(__ldcg(a.partialStats + (base + s) * 2 + 1), factor, total);
#pragma unroll
      for (int e = 0; e < kDims; ++e)
        acc[e] = fmaf(factor, __ldcg(a.partialAcc + (base + s) * kHeadDim + d0 + e), acc[e]);
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
                   const KvCacheView& cache, void* workspace, void* out, cudaStream_t stream,
                   const DecodeRope* rope) {
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
                  rope ? rope->inverseFrequencies : nullptr,
                  rope ? rope->scaling : 1.0f,
                  reinterpret_cast<unsigned*>(base + layout.counters),
                  reinterpret_cast<float*>(base + layout.stats),
                  reinterpret_cast<float*>(base + layout.acc),
                  static_cast<T*>(out)};
  dim3 grid(static_cast<unsigned>(a.splits), static_cast<unsigned>(cache.kvHeads),
            static_cast<unsigned>(tokens));
  // TPC_NO_ATTENTION_EARLY=1: a plain launch (the cache rows are then staged after the kernel
  // ahead has finished), to measure what the early start gains.
  static const bool early = !environmentFlag("TPC_NO_ATTENTION_EARLY");
  if (!early) {
    decodeAttentionKernel<T, kHeadDim><<<grid, kThreads, 0, stream>>>(a);
    return cudaGetLastError();
  }
  const cudaError_t e =
      detail::launchDependent(decodeAttentionKernel<T, kHeadDim>, grid, dim3(kThreads), stream, a);
  return e != cudaSuccess ? e : cudaGetLastError();
}

template <typename T>
cudaError_t launchFor(int64_t headDim, const void* q, const void* k, const void* v,
                      const int32_t* positions, const int32_t* slots, int64_t tokens, int64_t heads,
                      float scale, const KvCacheView& cache, void* workspace, void* out,
                      cudaStream_t stream, const DecodeRope* rope) {
  if (headDim == 64)
    return launch<T, 64>(q, k, v, positions, slots, tokens, heads, scale, cache, workspace, out,
                         stream, rope);
  return launch<T, 128>(q, k, v, positions, slots, tokens, heads, scale, cache, workspace, out,
                        stream, rope);
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
                            void* out, cudaStream_t stream, const DecodeRope* rope) {
  if (rope && !rope->inverseFrequencies) return cudaErrorInvalidValue;
  if (!decodeAttentionSupports(type, heads, cache.kvHeads, cache.headDim) || tokens < 1 ||
      tokens > kDecodeMaxTokens || !detail::pagingValid(cache))
    return cudaErrorInvalidValue;
  if (type == ElementType::BF16)
    return launchFor<__nv_bfloat16>(cache.headDim, q, k, v, positions, slots, tokens, heads, scale,
                                    cache, workspace, out, stream, rope);
  return launchFor<__half>(cache.headDim, q, k, v, positions, slots, tokens, heads, scale, cache,
                           workspace, out, stream, rope);
}

}  // namespace tpc::cuda
