// Causal GQA attention over the KV cache (contiguous slots or a paged pool, KvCacheView), split
// over the context ("flash-decoding"):
//   1. kvWriteKernel stores every token's k and v at (slot, position), so the tokens of one
//      prompt see each other (stream order makes this a barrier before step 2);
//   2. attentionSplitKernel: one block per (token, KV head, context chunk) handles all query
//      heads of the KV-head group, so each K/V row is read once; an online softmax in f32 per
//      warp, merged across the block's warps, written as a partial (max, sum, acc[headDim]);
//   3. combineKernel merges the valid chunks of each (token, head) into out.
// A call that needs a single chunk (long prefill) writes out directly from step 2.
#include <cmath>

#include "kernels/cuda/AttentionPlan.h"
#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DeviceMath.cuh"

namespace tpc::cuda {
namespace {

using detail::fromFloat;
using detail::kFullMask;
using detail::kVecWidth;
using detail::kWarpSize;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
// Query heads handled per pass over the chunk; larger groups loop (re-reading K/V from L2).
constexpr int kHeadBatch = 8;
constexpr int kMaxHeadDim = 256;

// ---- step 1: cache write ----------------------------------------------------------------------

template <typename T, bool kVector>
__global__ void kvWriteKernel(const T* k, const T* v, const int32_t* positions,
                              const int32_t* slots, const int32_t* blockTable, int64_t blockSize,
                              int64_t maxContext, int64_t kvWidth, T* cacheK, T* cacheV) {
  const int64_t t = blockIdx.x;
  const int64_t row =
      detail::cacheRow(blockTable, blockSize, maxContext, slots[t], positions[t]) * kvWidth;
  const T* srcK = k + t * kvWidth;
  const T* srcV = v + t * kvWidth;
  int64_t scalarStart = 0;
  if constexpr (kVector) {
    constexpr int kWidth = kVecWidth<T>;
    const int64_t vectors = kvWidth / kWidth;
    for (int64_t i = threadIdx.x; i < vectors; i += blockDim.x) {
      reinterpret_cast<uint4*>(cacheK + row)[i] = reinterpret_cast<const uint4*>(srcK)[i];
      reinterpret_cast<uint4*>(cacheV + row)[i] = reinterpret_cast<const uint4*>(srcV)[i];
    }
    scalarStart = vectors * kWidth;
  }
  for (int64_t i = scalarStart + threadIdx.x; i < kvWidth; i += blockDim.x) {
    cacheK[row + i] = srcK[i];
    cacheV[row + i] = srcV[i];
  }
}

// ---- step 2: one context chunk ----------------------------------------------------------------

// Loads the kDims elements a lane owns of one head row. Packed: the lane's elements are
// contiguous (headDim == 32 * kDims, 16-byte aligned rows), so one or two wide loads. Otherwise
// lane l owns elements l, l + 32, ... (coalesced scalar loads), zero past headDim.
template <typename T, int kDims, bool kPacked>
__device__ __forceinline__ void loadLaneRow(const T* row, int lane, int64_t headDim,
                                            float (&out)[kDims]) {
  if constexpr (kPacked) {
    const T* p = row + lane * kDims;
    constexpr int kBytes = kDims * static_cast<int>(sizeof(T));
    if constexpr (kBytes % 16 == 0) {
      constexpr int kPer = kVecWidth<T>;
#pragma unroll
      for (int c = 0; c < kDims / kPer; ++c) {
        float part[kPer];
        detail::loadVec(p + c * kPer, part);
#pragma unroll
        for (int j = 0; j < kPer; ++j) out[c * kPer + j] = part[j];
      }
    } else if constexpr (kBytes == 8) {
      const uint2 raw = *reinterpret_cast<const uint2*>(p);
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int j = 0; j < kDims; ++j) out[j] = detail::toFloat(e[j]);
    } else if constexpr (kBytes == 4) {
      const uint32_t raw = *reinterpret_cast<const uint32_t*>(p);
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int j = 0; j < kDims; ++j) out[j] = detail::toFloat(e[j]);
    } else {
#pragma unroll
      for (int j = 0; j < kDims; ++j) out[j] = detail::toFloat(p[j]);
    }
  } else {
#pragma unroll
    for (int j = 0; j < kDims; ++j) {
      const int64_t d = lane + j * kWarpSize;
      out[j] = d < headDim ? detail::toFloat(row[d]) : 0.0f;
    }
  }
}

// Index into [headDim] of the j-th element a lane owns (see loadLaneRow).
template <int kDims, bool kPacked>
__device__ __forceinline__ int64_t laneDim(int lane, int j) {
  return kPacked ? static_cast<int64_t>(lane) * kDims + j
                 : lane + static_cast<int64_t>(j) * kWarpSize;
}

struct SplitArgs {
  const int32_t* positions;
  const int32_t* slots;
  const int32_t* blockTable;  // null: contiguous slots (KvCacheView)
  int64_t blockSize;
  int64_t heads, kvHeads, headDim, maxContext, chunk, splits;
  float scale;
  float* partialAcc;    // [tokens][heads][splits][headDim]
  float* partialStats;  // [tokens][heads][splits][2]: max, sum
};

// Rows per warp per step: loads of several rows are issued before any is used, so each warp keeps
// that many K and V rows in flight (decode is latency-bound: a 128-position chunk takes two steps
// of 8 warps x 8 rows). Fewer for headDim > 128 to stay within registers (~210 at headDim 128,
// no spills with ptxas 13.0).
template <int kDims>
constexpr int kRowsPerStep = kDims >= 8 ? 2 : 8;

template <typename T, int kDims, bool kPacked>
__global__ void __launch_bounds__(kThreads)
    attentionSplitKernel(const T* q, const T* cacheK, const T* cacheV, SplitArgs a, T* out) {
  constexpr int kRows = kRowsPerStep<kDims>;
  __shared__ float warpMax[kWarps][kHeadBatch], warpSumExp[kWarps][kHeadBatch];
  __shared__ float warpFactor[kWarps][kHeadBatch];
  __shared__ float headMax[kHeadBatch], headSum[kHeadBatch];
  __shared__ float acc[kHeadBatch][kMaxHeadDim];

  const int64_t t = blockIdx.x / a.splits, split = blockIdx.x % a.splits;
  const int64_t kvHead = blockIdx.y;
  const int64_t position = a.positions[t];
  const int64_t start = split * a.chunk;
  if (start > position) return;  // the whole block leaves: no barrier is skipped by some threads
  const int64_t end = detail::minI64(start + a.chunk, position + 1);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int64_t group = a.heads / a.kvHeads, headDim = a.headDim;
  const int64_t kvWidth = a.kvHeads * headDim;
  const int64_t slot = a.slots[t];
  const T* keys = cacheK + kvHead * headDim;  // + cache row * kvWidth
  const T* values = cacheV + kvHead * headDim;
  const auto rowOffset = [&](int64_t position) {
    return detail::cacheRow(a.blockTable, a.blockSize, a.maxContext, slot, position) * kvWidth;
  };

  for (int64_t firstHead = 0; firstHead < group; firstHead += kHeadBatch) {
    const int heads = static_cast<int>(detail::minI64(kHeadBatch, group - firstHead));
    const int64_t headBase = kvHead * group + firstHead;  // first query head of this batch
    float query[kHeadBatch][kDims];
#pragma unroll
    for (int g = 0; g < kHeadBatch; ++g) {
#pragma unroll
      for (int j = 0; j < kDims; ++j) {
        const int64_t d = laneDim<kDims, kPacked>(lane, j);
        query[g][j] = g < heads && d < headDim
                          ? detail::toFloat(q[(t * a.heads + headBase + g) * headDim + d])
                          : 0.0f;
      }
    }
    float runningMax[kHeadBatch], runningSum[kHeadBatch], runningAcc[kHeadBatch][kDims];
#pragma unroll
    for (int g = 0; g < kHeadBatch; ++g) {
      runningMax[g] = -INFINITY;
      runningSum[g] = 0.0f;
#pragma unroll
      for (int j = 0; j < kDims; ++j) runningAcc[g][j] = 0.0f;
    }

    // Warps take interleaved groups of kRows rows, so neighbouring warps read neighbouring rows.
    for (int64_t first = start + static_cast<int64_t>(warp) * kRows; first < end;
         first += static_cast<int64_t>(kWarps) * kRows) {
      float k[kRows][kDims], v[kRows][kDims];
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (first + r < end) {
          const int64_t offset = rowOffset(first + r);
          loadLaneRow<T, kDims, kPacked>(keys + offset, lane, headDim, k[r]);
          loadLaneRow<T, kDims, kPacked>(values + offset, lane, headDim, v[r]);
        } else {
#pragma unroll
          for (int j = 0; j < kDims; ++j) k[r][j] = v[r][j] = 0.0f;
        }
      }
#pragma unroll
      for (int g = 0; g < kHeadBatch; ++g) {
        if (g >= heads) continue;  // uniform across the warp, so the shuffles stay full
        float score[kRows];
        float stepMax = runningMax[g];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          float dot = 0.0f;
#pragma unroll
          for (int j = 0; j < kDims; ++j) dot += query[g][j] * k[r][j];
          dot = detail::warpSum(dot) * a.scale;
          score[r] = first + r < end ? dot : -INFINITY;
          stepMax = fmaxf(stepMax, score[r]);
        }
        // stepMax is finite (row `first` is valid); exp(-inf) = 0 drops empty history and
        // rows past the end.
        const float correction = expf(runningMax[g] - stepMax);
        float weight[kRows], weightSum = 0.0f;
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          weight[r] = expf(score[r] - stepMax);
          weightSum += weight[r];
        }
        runningSum[g] = runningSum[g] * correction + weightSum;
#pragma unroll
        for (int j = 0; j < kDims; ++j) {
          float sum = runningAcc[g][j] * correction;
#pragma unroll
          for (int r = 0; r < kRows; ++r) sum += weight[r] * v[r][j];
          runningAcc[g][j] = sum;
        }
        runningMax[g] = stepMax;
      }
    }

    // Merge the warps: a common maximum per head, each warp's part rescaled to it. Warp 0 always
    // holds row `start`, so every maximum is finite.
    if (lane == 0) {
#pragma unroll
      for (int g = 0; g < kHeadBatch; ++g) {
        warpMax[warp][g] = runningMax[g];
        warpSumExp[warp][g] = runningSum[g];
      }
    }
    __syncthreads();
    if (threadIdx.x < kHeadBatch) {
      const int g = threadIdx.x;
      float maximum = warpMax[0][g];
      for (int w = 1; w < kWarps; ++w) maximum = fmaxf(maximum, warpMax[w][g]);
      float total = 0.0f;
      for (int w = 0; w < kWarps; ++w) {
        const float factor = warpMax[w][g] == -INFINITY ? 0.0f : expf(warpMax[w][g] - maximum);
        warpFactor[w][g] = factor;
        total += warpSumExp[w][g] * factor;
      }
      headMax[g] = maximum;
      headSum[g] = total;
    }
    __syncthreads();
    // Warps add their accumulators in a fixed order, so results do not vary run to run.
    for (int w = 0; w < kWarps; ++w) {
      if (warp == w) {
#pragma unroll
        for (int g = 0; g < kHeadBatch; ++g) {
          if (g >= heads) continue;
          const float factor = warpFactor[w][g];
#pragma unroll
          for (int j = 0; j < kDims; ++j) {
            const int64_t d = laneDim<kDims, kPacked>(lane, j);
            if (d < headDim) acc[g][d] = (w == 0 ? 0.0f : acc[g][d]) + factor * runningAcc[g][j];
          }
        }
      }
      __syncthreads();
    }
    for (int64_t i = threadIdx.x; i < heads * headDim; i += blockDim.x) {
      const int g = static_cast<int>(i / headDim);
      const int64_t d = i % headDim;
      const int64_t head = headBase + g;
      if (a.splits == 1) {
        out[(t * a.heads + head) * headDim + d] = fromFloat<T>(acc[g][d] / headSum[g]);
      } else {
        const int64_t partial = (t * a.heads + head) * a.splits + split;
        a.partialAcc[partial * headDim + d] = acc[g][d];
        if (d == 0) {
          a.partialStats[partial * 2] = headMax[g];
          a.partialStats[partial * 2 + 1] = headSum[g];
        }
      }
    }
    __syncthreads();  // acc and the head statistics are reused by the next batch of heads
  }
}

// ---- step 3: merge the chunks -----------------------------------------------------------------

constexpr int kCombineThreads = 128;

template <typename T>
__global__ void combineKernel(const int32_t* positions, int64_t heads, int64_t headDim,
                              int64_t chunk, int64_t splits, const float* partialAcc,
                              const float* partialStats, T* out) {
  __shared__ float factors[kAttentionMaxTokenSplits];
  __shared__ float scratch[kWarpSize];
  const int64_t row = blockIdx.x;  // token * heads + head
  const int64_t t = row / heads;
  const int64_t valid = detail::minI64(splits, positions[t] / chunk + 1);
  const float* stats = partialStats + row * splits * 2;
  float maximum = -INFINITY;
  for (int64_t s = threadIdx.x; s < valid; s += blockDim.x) maximum = fmaxf(maximum, stats[s * 2]);
  maximum = detail::blockMax(maximum, scratch);
  float total = 0.0f;
  for (int64_t s = threadIdx.x; s < valid; s += blockDim.x) {
    const float factor = expf(stats[s * 2] - maximum);
    factors[s] = factor;
    total += stats[s * 2 + 1] * factor;
  }
  total = detail::blockSum(total, scratch);  // its barriers also publish `factors`
  const float* acc = partialAcc + row * splits * headDim;
  for (int64_t d = threadIdx.x; d < headDim; d += blockDim.x) {
    float sum = 0.0f;
    for (int64_t s = 0; s < valid; ++s) sum += factors[s] * acc[s * headDim + d];
    out[row * headDim + d] = fromFloat<T>(sum / total);
  }
}

template <typename T, int kDims>
void launchSplit(bool packed, dim3 grid, const T* q, const T* cacheK, const T* cacheV,
                 const SplitArgs& args, T* out, cudaStream_t stream) {
  if (packed)
    attentionSplitKernel<T, kDims, true>
        <<<grid, kThreads, 0, stream>>>(q, cacheK, cacheV, args, out);
  else
    attentionSplitKernel<T, kDims, false>
        <<<grid, kThreads, 0, stream>>>(q, cacheK, cacheV, args, out);
}

template <typename T>
cudaError_t launchAttention(const void* q, const void* k, const void* v, const int32_t* positions,
                            const int32_t* slots, int64_t tokens, int64_t heads, float scale,
                            const KvCacheView& cache, void* workspace, void* out,
                            cudaStream_t stream) {
  const int64_t headDim = cache.headDim, kvHeads = cache.kvHeads;
  const int64_t kvWidth = kvHeads * headDim;
  auto* cacheK = static_cast<T*>(cache.k);
  auto* cacheV = static_cast<T*>(cache.v);
  const bool vectorWrite = detail::rowsVectorizable<T>(kvWidth, {k, v, cache.k, cache.v});
  const auto tokenBlocks = static_cast<unsigned>(tokens);
  if (vectorWrite)
    kvWriteKernel<T, true><<<tokenBlocks, kThreads, 0, stream>>>(
        static_cast<const T*>(k), static_cast<const T*>(v), positions, slots, cache.blockTable,
        cache.blockSize, cache.maxContext, kvWidth, cacheK, cacheV);
  else
    kvWriteKernel<T, false><<<tokenBlocks, kThreads, 0, stream>>>(
        static_cast<const T*>(k), static_cast<const T*>(v), positions, slots, cache.blockTable,
        cache.blockSize, cache.maxContext, kvWidth, cacheK, cacheV);

  const AttentionSplits plan = attentionSplits(tokens, cache.maxContext);
  auto* partialAcc = static_cast<float*>(workspace);
  SplitArgs args{positions,
                 slots,
                 cache.blockTable,
                 cache.blockSize,
                 heads,
                 kvHeads,
                 headDim,
                 cache.maxContext,
                 plan.chunk,
                 plan.splits,
                 scale,
                 partialAcc,
                 partialAcc ? partialAcc + tokens * heads * plan.splits * headDim : nullptr};
  const dim3 grid(static_cast<unsigned>(tokens * plan.splits), static_cast<unsigned>(kvHeads));
  const int dims = static_cast<int>((headDim + kWarpSize - 1) / kWarpSize);
  const int kDims = dims <= 1 ? 1 : dims <= 2 ? 2 : dims <= 4 ? 4 : 8;
  const bool packed = headDim == static_cast<int64_t>(kWarpSize) * kDims &&
                      detail::aligned16(cache.k) && detail::aligned16(cache.v) &&
                      (headDim * static_cast<int64_t>(sizeof(T))) % 16 == 0;
  const auto* qs = static_cast<const T*>(q);
  auto* os = static_cast<T*>(out);
  switch (kDims) {
    case 1:
      launchSplit<T, 1>(packed, grid, qs, cacheK, cacheV, args, os, stream);
      break;
    case 2:
      launchSplit<T, 2>(packed, grid, qs, cacheK, cacheV, args, os, stream);
      break;
    case 4:
      launchSplit<T, 4>(packed, grid, qs, cacheK, cacheV, args, os, stream);
      break;
    default:
      launchSplit<T, 8>(packed, grid, qs, cacheK, cacheV, args, os, stream);
      break;
  }
  if (plan.splits > 1)
    combineKernel<T><<<static_cast<unsigned>(tokens * heads), kCombineThreads, 0, stream>>>(
        positions, heads, headDim, plan.chunk, plan.splits, args.partialAcc, args.partialStats, os);
  return cudaGetLastError();
}

}  // namespace

size_t attentionWorkspaceBytes(int64_t tokens, int64_t heads, int64_t headDim, int64_t maxContext) {
  return attentionWorkspaceBound(tokens, heads, headDim, maxContext);
}

cudaError_t attention(ElementType type, const void* q, const void* k, const void* v,
                      const int32_t* positions, const int32_t* slots, int64_t tokens, int64_t heads,
                      float scale, const KvCacheView& cache, void* workspace, void* out,
                      cudaStream_t stream) {
  if (cache.headDim <= 0 || cache.headDim > kMaxHeadDim || cache.kvHeads <= 0 ||
      heads % cache.kvHeads != 0 || cache.maxContext <= 0 || cache.kvHeads > 65535 ||
      !detail::pagingValid(cache))
    return cudaErrorInvalidValue;
  if (tokens <= 0) return cudaGetLastError();
  if (attentionPartialBytes(tokens, heads, cache.headDim, cache.maxContext) > 0 && !workspace)
    return cudaErrorInvalidValue;
  return TPC_DISPATCH_ELEMENT(type, [&] {
    return launchAttention<Element>(q, k, v, positions, slots, tokens, heads, scale, cache,
                                    workspace, out, stream);
  });
}

}  // namespace tpc::cuda
