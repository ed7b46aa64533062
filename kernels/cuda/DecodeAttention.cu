// Decode attention in one launch (split-K "flash decoding"). A block owns (split, KV head,
// token); the token's positions 0..position are cut into tiles of kTile rows and the tiles into
// at most `splits` runs of consecutive tiles, one per block. The host picks `splits` from the
// call's size so that the grid holds a few blocks per SM: a single token spreads its context
// over many blocks, a large batch gives each block a long run of tiles and so pays the block's
// fixed latencies (the queries, the merge) once per run instead of once per tile.
// A block streams its tiles through a double buffer in shared memory with cp.async (the first
// tile is issued before waiting for the kernel ahead, a dependent launch, so its latency hides
// behind that kernel's tail; the token's own row comes from k/v after the wait, its key rotated
// when the layer's rope is folded in, and goes to the cache too) and keeps an online softmax per
// query head of the KV head's group. With several splits the partial results (max, sum,
// unnormalized values) meet in the last block of a (token, KV head) to finish - found by an
// atomic counter, after a fence that publishes the partials - which merges them in split order
// (so the result does not depend on which block came last) and resets the counter for the next
// step or graph replay.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/DecodeAttention.h"
#include "kernels/cuda/DependentLaunch.cuh"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/RopeMath.cuh"

namespace tpc::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxGroup = 8;
constexpr int kHeadsPerWarp = kMaxGroup / kWarps;
constexpr int kTile = static_cast<int>(kDecodeTile);  // one key per lane
static_assert(kTile == 32, "the score loop gives each lane one key of a tile");
constexpr int kMaxSplits = static_cast<int>(kDecodeMaxSplits);

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
  int64_t heads, kvHeads, maxContext;
  int splits;  // most splits per (token, KV head); the partials' stride
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

// 16 bytes global -> shared without a register round trip, so every copy of a tile is in
// flight at once (sm_80 and later; a plain copy elsewhere).
__device__ __forceinline__ void copyAsync16(void* shared, const void* global) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const auto address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(address), "l"(global));
#else
  *static_cast<uint4*>(shared) = *static_cast<const uint4*>(global);
#endif
}
__device__ __forceinline__ void commitCopies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
// Waits until at most `kPending` of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void waitCopies() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#endif
}

// kDims (2 or 4) consecutive elements of a row in shared memory, as floats, in one load.
template <typename T, int kDims>
__device__ __forceinline__ void loadValues(const T* p, float (&out)[kDims]) {
  static_assert(sizeof(T) == 2 && (kDims == 2 || kDims == 4), "2 or 4 half-width elements");
  using Raw = std::conditional_t<kDims == 4, uint2, unsigned>;
  const Raw raw = *reinterpret_cast<const Raw*>(p);
  const T* elements = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int e = 0; e < kDims; ++e) out[e] = detail::toFloat(elements[e]);
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) decodeAttentionKernel(DecodeArgs<T> a) {
  constexpr int kVec = detail::kVecWidth<T>;
  constexpr int kVectorsPerRow = kHeadDim / kVec;
  constexpr int kStride = kHeadDim + kVec;  // one vector of padding spreads rows over the banks
  constexpr int kDims = kHeadDim / 32;      // output dims per lane
  constexpr int kHalf = kHeadDim / 2;
  __shared__ __align__(16) T keys[2][kTile][kStride];
  __shared__ __align__(16) T values[2][kTile][kStride];
  __shared__ __align__(16) T ownKey[kHeadDim];
  __shared__ __align__(16) T ownValue[kHeadDim];
  __shared__ float query[kMaxGroup][kHeadDim];
  __shared__ float ropeCos[kHalf], ropeSin[kHalf];
  __shared__ bool lastBlock;

  const int split = static_cast<int>(blockIdx.x);
  const int64_t kvHead = blockIdx.y, t = blockIdx.z;
  // Positions, slots and block tables are the step's inputs, uploaded before its first kernel:
  // readable before the wait.
  const int position = a.positions[t];
  const int tiles = position / kTile + 1;
  const int perSplit = (tiles + a.splits - 1) / a.splits;
  const int activeSplits = (tiles + perSplit - 1) / perSplit;
  if (split >= activeSplits) return;  // the whole block leaves: no barrier is skipped
  const int firstTile = split * perSplit, endTile = min(tiles, firstTile + perSplit);
  const int group = static_cast<int>(a.heads / a.kvHeads);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t slot = a.slots[t];
  const int64_t firstHead = kvHead * group;
  const bool rotate = a.ropeInverse != nullptr;

  // A tile's rows into buffer `buffer`, all copies in flight; the token's own row is not in the
  // cache yet and is filled in from ownKey/ownValue.
  const auto stage = [&](int tile, int buffer) {
    const int start = tile * kTile, rows = min(kTile, position + 1 - start);
    for (int i = threadIdx.x; i < rows * kVectorsPerRow; i += kThreads) {
      const int r = i / kVectorsPerRow, c = (i % kVectorsPerRow) * kVec;
      if (start + r == position) continue;
      const int64_t row =
          detail::cacheRow(a.blockTable, a.blockSize, a.maxContext, slot, start + r);
      const int64_t cached = (row * a.kvHeads + kvHead) * kHeadDim + c;
      copyAsync16(&keys[buffer][r][c], a.cacheK + cached);
      copyAsync16(&values[buffer][r][c], a.cacheV + cached);
    }
    commitCopies();
  };
  // Rows written by earlier steps: the first tile is fetched while the kernel that computes q, k
  // and v may still run.
  stage(firstTile, 0);
  if (rotate)
    for (int i = threadIdx.x; i < kHalf; i += kThreads)
      detail::ropeCosSin(a.ropeInverse[i], position, a.ropeScaling, &ropeCos[i], &ropeSin[i]);
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
    for (int i = threadIdx.x; i < group * kVectorsPerRow; i += kThreads) {
      const int g = i / kVectorsPerRow, d = (i % kVectorsPerRow) * kVec;
      float values[kVec];
      detail::loadVec(a.q + (t * a.heads + firstHead + g) * kHeadDim + d, values);
#pragma unroll
      for (int e = 0; e < kVec; ++e) query[g][d + e] = values[e] * a.scale;
    }
  }
  // This token's own row (in the last split only): from k/v (the key rotated first), into the
  // cache and into ownKey/ownValue for the tile that holds it.
  const bool ownsPosition = endTile == tiles;
  if (ownsPosition) {
    const T* newKey = a.k + (t * a.kvHeads + kvHead) * kHeadDim;
    const T* newValue = a.v + (t * a.kvHeads + kvHead) * kHeadDim;
    const int64_t row = detail::cacheRow(a.blockTable, a.blockSize, a.maxContext, slot, position);
    T* cachedKey = a.cacheK + (row * a.kvHeads + kvHead) * kHeadDim;
    T* cachedValue = a.cacheV + (row * a.kvHeads + kvHead) * kHeadDim;
    for (int c = threadIdx.x * kVec; c < kHeadDim; c += kThreads * kVec) {
      const uint4 value = *reinterpret_cast<const uint4*>(newValue + c);
      *reinterpret_cast<uint4*>(cachedValue + c) = value;
      *reinterpret_cast<uint4*>(&ownValue[c]) = value;
      if (!rotate) {
        const uint4 key = *reinterpret_cast<const uint4*>(newKey + c);
        *reinterpret_cast<uint4*>(cachedKey + c) = key;
        *reinterpret_cast<uint4*>(&ownKey[c]) = key;
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
        ownKey[p] = rotatedFirst;
        ownKey[p + kHalf] = rotatedSecond;
      }
  }
  __syncthreads();  // the queries and the own row

  // Online softmax per query head: a warp per head (kHeadsPerWarp at most), a lane per key for
  // the scores and kDims consecutive dims per lane for the values.
  const int d0 = lane * kDims;
  float runMax[kHeadsPerWarp], runSum[kHeadsPerWarp], acc[kHeadsPerWarp][kDims];
#pragma unroll
  for (int h = 0; h < kHeadsPerWarp; ++h) {
    runMax[h] = -INFINITY;
    runSum[h] = 0.0f;
#pragma unroll
    for (int e = 0; e < kDims; ++e) acc[h][e] = 0.0f;
  }
  for (int tile = firstTile; tile < endTile; ++tile) {
    const int buffer = (tile - firstTile) & 1;
    if (tile + 1 < endTile) {
      stage(tile + 1, buffer ^ 1);
      waitCopies<1>();
    } else {
      waitCopies<0>();
    }
    const int start = tile * kTile, rows = min(kTile, position + 1 - start);
    if (tile == tiles - 1)
      for (int c = threadIdx.x * kVec; c < kHeadDim; c += kThreads * kVec) {
        *reinterpret_cast<uint4*>(&keys[buffer][position - start][c]) =
            *reinterpret_cast<const uint4*>(&ownKey[c]);
        *reinterpret_cast<uint4*>(&values[buffer][position - start][c]) =
            *reinterpret_cast<const uint4*>(&ownValue[c]);
      }
    __syncthreads();  // every thread's copies of this tile
#pragma unroll
    for (int h = 0; h < kHeadsPerWarp; ++h) {
      const int g = warp + h * kWarps;
      if (g >= group) break;
      float score = -INFINITY;
      if (lane < rows) {
        // Two chains of FMAs (even and odd vectors) halve the dependent latency.
        float dot[2] = {0.0f, 0.0f};
#pragma unroll
        for (int c = 0; c < kHeadDim; c += kVec) {
          float key[kVec];
          detail::loadVec(&keys[buffer][lane][c], key);
#pragma unroll
          for (int e = 0; e < kVec; ++e)
            dot[(c / kVec) % 2] = fmaf(query[g][c + e], key[e], dot[(c / kVec) % 2]);
        }
        score = dot[0] + dot[1];
      }
      const float newMax = fmaxf(runMax[h], warpMax(score));  // finite: row 0 is valid
      const float correction = expf(runMax[h] - newMax);      // 0 on the first tile
      const float w = expf(score - newMax);                   // 0 for rows past the end
      runSum[h] = runSum[h] * correction + warpSum(w);
      runMax[h] = newMax;
#pragma unroll
      for (int e = 0; e < kDims; ++e) acc[h][e] *= correction;

        // Unrolled (rows past the end skipped, not multiplied by zero: their shared memory is
        // stale) so the loads and shuffles of later rows overlap the FMAs of earlier ones.
#pragma unroll
      for (int j = 0; j < kTile; ++j) {
        if (j >= rows) break;
        const float wj = __shfl_sync(detail::kFullMask, w, j);
        float value[kDims];
        loadValues<T, kDims>(&values[buffer][j][d0], value);
#pragma unroll
        for (int e = 0; e < kDims; ++e) acc[h][e] = fmaf(wj, value[e], acc[h][e]);
      }
    }
    __syncthreads();  // the buffer is free for the tile after next
  }

#pragma unroll
  for (int h = 0; h < kHeadsPerWarp; ++h) {
    const int g = warp + h * kWarps;
    if (g >= group) break;
    const int64_t head = firstHead + g;
    if (activeSplits == 1) {
#pragma unroll
      for (int e = 0; e < kDims; ++e)
        a.out[(t * a.heads + head) * kHeadDim + d0 + e] =
            detail::fromFloat<T>(acc[h][e] / runSum[h]);
    } else {
      const int64_t partial = (t * a.heads + head) * a.splits + split;
#pragma unroll
      for (int e = 0; e < kDims; ++e) a.partialAcc[partial * kHeadDim + d0 + e] = acc[h][e];
      if (lane == 0) {
        a.partialStats[partial * 2] = runMax[h];
        a.partialStats[partial * 2 + 1] = runSum[h];
      }
    }
  }
  if (activeSplits == 1) return;

  // The last block of this (token, KV head) merges every split.
  __threadfence();
  __syncthreads();
  unsigned* counter = a.counters + t * a.kvHeads + kvHead;
  if (threadIdx.x == 0)
    lastBlock = atomicAdd(counter, 1u) == static_cast<unsigned>(activeSplits - 1);
  __syncthreads();
  if (!lastBlock) return;
  __threadfence();
  // Splits s and s + 32 to lane s for the statistics (activeSplits <= 64), then every split's
  // values in split order, all loads of a lane independent so they are in flight together.
  static_assert(kMaxSplits <= 64, "two splits per lane");
  for (int g = warp; g < group; g += kWarps) {
    const int64_t base = (t * a.heads + firstHead + g) * a.splits;
    float m[2], l[2], factor[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int s = lane + 32 * h;
      m[h] = s < activeSplits ? __ldcg(a.partialStats + (base + s) * 2) : -INFINITY;
      l[h] = s < activeSplits ? __ldcg(a.partialStats + (base + s) * 2 + 1) : 0.0f;
    }
    const float maximum = warpMax(fmaxf(m[0], m[1]));
#pragma unroll
    for (int h = 0; h < 2; ++h)
      factor[h] = lane + 32 * h < activeSplits ? expf(m[h] - maximum) : 0.0f;
    const float total = warpSum(l[0] * factor[0] + l[1] * factor[1]);
    float merged[kDims];
#pragma unroll
    for (int e = 0; e < kDims; ++e) merged[e] = 0.0f;
#pragma unroll 4
    for (int s = 0; s < activeSplits; ++s) {
      const float f = __shfl_sync(detail::kFullMask, s < 32 ? factor[0] : factor[1], s % 32);
#pragma unroll
      for (int e = 0; e < kDims; ++e)
        merged[e] = fmaf(f, __ldcg(a.partialAcc + (base + s) * kHeadDim + d0 + e), merged[e]);
    }
#pragma unroll
    for (int e = 0; e < kDims; ++e)
      a.out[(t * a.heads + firstHead + g) * kHeadDim + d0 + e] =
          detail::fromFloat<T>(merged[e] / total);
  }
  if (threadIdx.x == 0) *counter = 0;  // ready for the next step
}

struct WorkspaceLayout {
  size_t counters, stats, acc, total;
};

// Blocks a call aims for per SM: enough resident blocks (5 fit by shared memory) to hide each
// one's latencies, few enough that a large batch keeps long runs of tiles per block.
// TPC_DECODE_BLOCKS_PER_SM=N overrides it, to measure the choice.
int blocksPerSm() {
  static const int blocks = [] {
    const char* text = std::getenv("TPC_DECODE_BLOCKS_PER_SM");
    const int n = text ? std::atoi(text) : 0;
    return n > 0 ? n : 4;
  }();
  return blocks;
}

// Most splits per (token, KV head) of a call with `tokens` tokens: blocksPerSm() blocks per SM
// over the call's (token, KV head) pairs, at least one, never more than the context has tiles or
// kMaxSplits.
// Shorter contexts use fewer (a split has at least one tile). It depends on the call's size, so
// a graph's launch shape is fixed; a token's result can differ (in rounding) with the batch.
int splitsFor(int64_t tokens, int64_t kvHeads, int64_t maxContext) {
  static const int sms = [] {
    int device = 0, count = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
      count = 132;
    return std::max(count, 1);
  }();
  const int64_t pairs = std::max<int64_t>(tokens, 1) * std::max<int64_t>(kvHeads, 1);
  // Rounded down: a batch with a pair per SM or more keeps one split each, one long run of tiles
  // per block (measured on the H200, Llama-3-8B shape, 64 sequences at ~600 positions: 7.48
  // ms/step against 7.84 with two splits each).
  const auto bySms = static_cast<int>(blocksPerSm() * sms / pairs);
  const auto byContext = static_cast<int>((maxContext + kTile - 1) / kTile);
  return std::max(1, std::min({bySms, byContext, kMaxSplits}));
}

WorkspaceLayout layoutOf(int64_t tokens, int64_t heads, int64_t kvHeads, int64_t headDim,
                         int64_t maxContext) {
  const auto align = [](size_t n) { return (n + 255) / 256 * 256; };
  const auto splits = static_cast<size_t>(splitsFor(tokens, kvHeads, maxContext));
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
                  splitsFor(tokens, cache.kvHeads, cache.maxContext),
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
  // As many resident blocks as the shared memory allows (the driver may otherwise keep more L1).
  static const cudaError_t carveout = cudaFuncSetAttribute(
      decodeAttentionKernel<T, kHeadDim>, cudaFuncAttributePreferredSharedMemoryCarveout,
      cudaSharedmemCarveoutMaxShared);
  if (carveout != cudaSuccess) return carveout;
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
  // Fewer tokens may take more splits each: the largest layout of any call up to `tokens`.
  size_t largest = 0;
  for (int64_t n = 1; n <= std::min(tokens, kDecodeMaxTokens); ++n)
    largest = std::max(largest, layoutOf(n, heads, kvHeads, headDim, maxContext).total);
  return largest;
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
