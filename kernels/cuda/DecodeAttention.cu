// Decode attention in one launch (split-K "flash decoding") on tensor cores. A block owns
// (split, KV head, token); the token's positions 0..position are cut into tiles of kTile rows and
// the tiles into at most `splits` runs of consecutive tiles, one per block. The host picks
// `splits` from the call's size so that the grid holds a few blocks per SM: a single token
// spreads its context over many blocks, a large batch gives each block a long run of tiles and so
// pays the block's fixed latencies (the queries, the merge) once per run instead of once per tile.
// A block streams its tiles through a double buffer in shared memory with cp.async (the first
// two tiles are issued before waiting for the kernel ahead, a dependent launch, so their latency
// hides behind that kernel's tail; the token's own row comes from k/v after the wait, its key
// rotated when the layer's rope is folded in, and goes to the cache too). Each of the four warps
// takes 8 keys of every tile for all the query heads of the KV head's group at once: the heads are
// the rows of an mma (mma.sync m16n8k16 for S = Q K^T, m16n8k8 for P V, f32 accumulation; rows past
// the group are zero), so every K and V element is read from shared memory once per tile by
// ldmatrix and never converted one by one - the scalar kernel this replaces was bound by those
// loads and conversions once per query head. Each warp keeps an online softmax per head in the exp2
// domain, with P rounded to the storage type for the P V product as the prefill kernel does; the
// four warps then meet in shared memory. With several splits the partial results (max, sum,
// unnormalized values) meet in the last block of a (token, KV head) to finish - found by an
// acquire-release atomic counter, which also publishes the partials - which merges them in split
// order (so the result does not depend on which block came last) and resets the counter for the
// next step or graph replay.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cuda/atomic>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <type_traits>

#include "kernels/cuda/DecodeAttention.h"
#include "kernels/cuda/DependentLaunch.cuh"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/HeadNorm.cuh"
#include "kernels/cuda/RopeMath.cuh"
#include "kernels/cuda/TensorCores.cuh"

namespace tpc::cuda {
namespace {

using detail::commitCopies;
using detail::copyAsync16;
using detail::fastExp2;
using detail::sharedAddress;
using detail::waitCopies;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxGroup = 8;  // query heads per KV head: rows 0..7 of the mma's 16
constexpr int kTile = static_cast<int>(kDecodeTile);
constexpr int kKeysPerWarp = kTile / kWarps;
static_assert(kKeysPerWarp == 8, "each warp scores one n8 slice of every tile");
constexpr int kMaxSplits = static_cast<int>(kDecodeMaxSplits);
constexpr float kLog2E = 1.4426950408889634f;

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
  int64_t qStride, kvStride;  // elements from one token's q (k and v) row to the next
  int splits;                 // most splits per (token, KV head); the partials' stride
  float scale;
  const float* ropeInverse;  // null: q and k come rotated
  float ropeScaling;
  DecodeHeadNorms norms;  // null weights: q and k come normed
  unsigned* counters;     // [tokens][kvHeads]
  float* partialStats;    // [tokens][heads][splits][2]: max (log2 units), sum
  float* partialAcc;      // [tokens][heads][splits][headDim]
  T* out;
};

// kDims consecutive floats (2 or 4, the dims a lane merges) in one access.
template <int kDims>
using FloatVector = std::conditional_t<kDims == 4, float4, float2>;
template <int kDims>
__device__ __forceinline__ void storeFloats(float* p, const float (&v)[kDims]) {
  static_assert(kDims == 2 || kDims == 4, "2 or 4 dims per lane");
  if constexpr (kDims == 4)
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  else
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
}
// Written by other blocks of this launch: through L2 (__ldcg), never a stale L1 line.
template <int kDims>
__device__ __forceinline__ void loadFloats(const float* p, float (&v)[kDims]) {
  const FloatVector<kDims> raw = __ldcg(reinterpret_cast<const FloatVector<kDims>*>(p));
  const auto* elements = reinterpret_cast<const float*>(&raw);
#pragma unroll
  for (int e = 0; e < kDims; ++e) v[e] = elements[e];
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads, 4) decodeAttentionKernel(DecodeArgs<T> a) {
  constexpr int kVec = detail::kVecWidth<T>;
  constexpr int kVectorsPerRow = kHeadDim / kVec;
  // One vector of padding per row: the 8 rows an ldmatrix phase reads fall in distinct banks.
  constexpr int kStride = kHeadDim + kVec;
  constexpr int kSteps = kHeadDim / 16;      // k16 steps of Q K^T
  constexpr int kValueTiles = kHeadDim / 8;  // n8 tiles of P V
  constexpr int kDims = kHeadDim / 32;       // dims per lane when warps and splits merge
  constexpr int kHalf = kHeadDim / 2;
  static_assert(kSteps % 2 == 0 && kValueTiles % 4 == 0, "whole ldmatrix x4 loads");
  __shared__ __align__(16) T keys[2][kTile][kStride];
  __shared__ __align__(16) T values[2][kTile][kStride];
  __shared__ __align__(16) T ownKey[kHeadDim];
  __shared__ __align__(16) T ownValue[kHeadDim];
  __shared__ __align__(16) T query[kMaxGroup][kStride];
  __shared__ float ropeCos[kHalf], ropeSin[kHalf];
  __shared__ float warpMaxima[kWarps][kMaxGroup], warpSums[kWarps][kMaxGroup];
  __shared__ float splitFactors[kMaxGroup][kMaxSplits];
  __shared__ bool lastBlock;
  // The warps' unnormalized outputs [kWarps][kMaxGroup][kHeadDim] once the tiles are done, over
  // the key buffers.
  static_assert(sizeof(keys) >= sizeof(float) * kWarps * kMaxGroup * kHeadDim, "room to merge");
  float* warpOutputs = reinterpret_cast<float*>(&keys[0][0][0]);

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

  // A tile's rows into buffer `buffer`, all copies in flight. The token's own row is not in the
  // cache yet and is filled in from ownKey/ownValue; rows past it are zeroed, not read (they may
  // hold anything, and a NaN in V would survive a weight of 0 in the product).
  const auto stage = [&](int tile, int buffer) {
    const int start = tile * kTile;
    for (int i = threadIdx.x; i < kTile * kVectorsPerRow; i += kThreads) {
      const int r = i / kVectorsPerRow, c = (i % kVectorsPerRow) * kVec;
      const int p = start + r;
      if (p == position) continue;
      int64_t cached = 0;
      if (p < position)
        cached = (detail::cacheRow(a.blockTable, a.blockSize, a.maxContext, slot, p) * a.kvHeads +
                  kvHead) *
                     kHeadDim +
                 c;
      copyAsync16(sharedAddress(&keys[buffer][r][c]), a.cacheK + cached, p < position);
      copyAsync16(sharedAddress(&values[buffer][r][c]), a.cacheV + cached, p < position);
    }
    commitCopies();
  };
  // Rows written by earlier steps: the first tile is fetched while the kernel that computes q, k
  // and v may still run.
  stage(firstTile, 0);
  // Both buffers are filled before the wait: a run of two tiles (a long context at batch 1) then
  // pays no fetch after it; the loop stages from the third tile on.
  if (firstTile + 1 < endTile) stage(firstTile + 1, 1);
  if (rotate)
    for (int i = threadIdx.x; i < kHalf; i += kThreads)
      detail::ropeCosSin(a.ropeInverse[i], position, a.ropeScaling, &ropeCos[i], &ropeSin[i]);
  detail::waitForPrerequisites();
  // Only now may the output projection start: it must not run ahead of a kernel that has not
  // itself waited for its inputs.
  detail::allowDependentLaunch();

  // This token's own row (in the last split only) goes into the cache and into ownKey/ownValue
  // for the tile that holds it: the value as it comes, the key normed and rotated first when
  // those steps are folded in.
  const bool ownsPosition = endTile == tiles;
  const T* newKey = a.k + t * a.kvStride + kvHead * kHeadDim;
  const T* newValue = a.v + t * a.kvStride + kvHead * kHeadDim;
  T* cachedKey = nullptr;
  T* cachedValue = nullptr;
  if (ownsPosition) {
    const int64_t row = detail::cacheRow(a.blockTable, a.blockSize, a.maxContext, slot, position);
    cachedKey = a.cacheK + (row * a.kvHeads + kvHead) * kHeadDim;
    cachedValue = a.cacheV + (row * a.kvHeads + kvHead) * kHeadDim;
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
  }
  if (!rotate) {
    for (int i = threadIdx.x; i < group * kVectorsPerRow; i += kThreads) {
      const int g = i / kVectorsPerRow, d = (i % kVectorsPerRow) * kVec;
      *reinterpret_cast<uint4*>(&query[g][d]) =
          *reinterpret_cast<const uint4*>(a.q + t * a.qStride + (firstHead + g) * kHeadDim + d);
    }
  } else {
    const bool normed = a.norms.q != nullptr;
    if (normed)
      // The head norms first, a warp per row: the group's query heads into `query`, the new key
      // into ownKey (read back below, so the rotation works in place on both).
      for (int r = warp; r <= group; r += kWarps) {
        if (r < group)
          detail::headRmsNormRow<T, kHeadDim>(a.q + t * a.qStride + (firstHead + r) * kHeadDim,
                                              static_cast<const T*>(a.norms.q), a.norms.qEps,
                                              &query[r][0]);
        else if (ownsPosition)
          detail::headRmsNormRow<T, kHeadDim>(newKey, static_cast<const T*>(a.norms.k),
                                              a.norms.kEps, ownKey);
      }
    __syncthreads();  // the angles and the normed rows
    // Rotated and rounded to T as the rope step would have stored them.
    for (int i = threadIdx.x; i < group * kHalf; i += kThreads) {
      const int g = i / kHalf, p = i % kHalf;
      const T* head = normed ? &query[g][0] : a.q + t * a.qStride + (firstHead + g) * kHeadDim;
      float first, second;
      detail::ropeRotate(detail::toFloat(head[p]), detail::toFloat(head[p + kHalf]), ropeCos[p],
                         ropeSin[p], &first, &second);
      query[g][p] = detail::fromFloat<T>(first);
      query[g][p + kHalf] = detail::fromFloat<T>(second);
    }
    if (ownsPosition) {
      const T* key = normed ? ownKey : newKey;
      for (int p = threadIdx.x; p < kHalf; p += kThreads) {
        float first, second;
        detail::ropeRotate(detail::toFloat(key[p]), detail::toFloat(key[p + kHalf]), ropeCos[p],
                           ropeSin[p], &first, &second);
        const T rotatedFirst = detail::fromFloat<T>(first);
        const T rotatedSecond = detail::fromFloat<T>(second);
        cachedKey[p] = rotatedFirst;
        cachedKey[p + kHalf] = rotatedSecond;
        ownKey[p] = rotatedFirst;
        ownKey[p + kHalf] = rotatedSecond;
      }
    }
  }
  __syncthreads();  // the queries and the own row

  // Lane 4g + quad holds the mma fragments of row (query head) g: the queries as the A operand
  // (rows past the group, and rows 8..15, zero), the scores and outputs of keys / dims 2 quad and
  // 2 quad + 1 of each n8 tile.
  const int g = lane / 4, quad = lane % 4;
  // Read again per tile rather than held: the registers go to the output accumulator.
  const auto queryFragment = [&](int step, int half) {
    return g < group
               ? *reinterpret_cast<const uint32_t*>(&query[g][16 * step + 2 * quad + 8 * half])
               : 0u;
  };
  // ldmatrix addresses: lane 8m + r gives row r of matrix m, the warp's key 8 warp + r at the
  // columns of matrix m (8 m, then 32 further per x4 load).
  const int matrixRow = warp * kKeysPerWarp + lane % 8, matrixColumn = (lane / 8) * 8;
  const float scoreScale = a.scale * kLog2E;
  float runMax = -INFINITY, runSum = 0.0f;  // row g over this warp's keys; the sum this lane's part
  float acc[kValueTiles][4];                // O rows g (0, 1) and g + 8 (2, 3: stay zero)
#pragma unroll
  for (int n = 0; n < kValueTiles; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[n][e] = 0.0f;

  for (int tile = firstTile; tile < endTile; ++tile) {
    const int buffer = (tile - firstTile) & 1;
    if (tile + 1 < endTile) {
      if (tile > firstTile) stage(tile + 1, buffer ^ 1);  // the second came before the wait
      waitCopies<1>();
    } else {
      waitCopies<0>();
    }
    const int start = tile * kTile;
    if (tile == tiles - 1)
      for (int c = threadIdx.x * kVec; c < kHeadDim; c += kThreads * kVec) {
        *reinterpret_cast<uint4*>(&keys[buffer][position - start][c]) =
            *reinterpret_cast<const uint4*>(&ownKey[c]);
        *reinterpret_cast<uint4*>(&values[buffer][position - start][c]) =
            *reinterpret_cast<const uint4*>(&ownValue[c]);
      }
    __syncthreads();  // every thread's copies of this tile

    // S = Q K^T for the warp's 8 keys.
    float scores[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const uint32_t keyAddress = sharedAddress(&keys[buffer][matrixRow][matrixColumn]);
#pragma unroll
    for (int pair = 0; pair < kSteps / 2; ++pair) {
      uint32_t b[4];
      detail::loadMatrices(b, keyAddress + pair * 32 * static_cast<uint32_t>(sizeof(T)));
      const uint32_t first[4] = {queryFragment(2 * pair, 0), 0u, queryFragment(2 * pair, 1), 0u};
      const uint32_t second[4] = {queryFragment(2 * pair + 1, 0), 0u,
                                  queryFragment(2 * pair + 1, 1), 0u};
      detail::mma16816<T>(scores, first, b[0], b[1]);
      detail::mma16816<T>(scores, second, b[2], b[3]);
    }
    // Online softmax of row g; keys past the position (zeroed rows) are masked.
    const int key = start + warp * kKeysPerWarp + 2 * quad;
    const float s0 = key <= position ? scores[0] * scoreScale : -INFINITY;
    const float s1 = key + 1 <= position ? scores[1] * scoreScale : -INFINITY;
    float tileMax = fmaxf(s0, s1);
    tileMax = fmaxf(tileMax, __shfl_xor_sync(detail::kFullMask, tileMax, 1));
    tileMax = fmaxf(tileMax, __shfl_xor_sync(detail::kFullMask, tileMax, 2));
    const float newMax = fmaxf(runMax, tileMax);
    // A warp may have seen no key yet (its slice of the first tile past the position).
    const float base = newMax == -INFINITY ? 0.0f : newMax;
    const float correction = fastExp2(runMax - base);  // 0 on the first tile
    const float p0 = fastExp2(s0 - base), p1 = fastExp2(s1 - base);
    runSum = runSum * correction + p0 + p1;
    runMax = newMax;
#pragma unroll
    for (int n = 0; n < kValueTiles; ++n) {
      acc[n][0] *= correction;
      acc[n][1] *= correction;
    }
    // O += P V: P (row g, keys 2 quad..) as the A operand of the k8 product, V transposed.
    const uint32_t weights = detail::packPair<T>(p0, p1);
    const uint32_t valueAddress = sharedAddress(&values[buffer][matrixRow][matrixColumn]);
#pragma unroll
    for (int four = 0; four < kValueTiles / 4; ++four) {
      uint32_t b[4];
      detail::loadMatricesTransposed(b,
                                     valueAddress + four * 32 * static_cast<uint32_t>(sizeof(T)));
#pragma unroll
      for (int m = 0; m < 4; ++m) detail::mma1688<T>(acc[4 * four + m], weights, 0u, b[m]);
    }
    __syncthreads();  // the buffer is free for the tile after next
  }

  // The four warps meet: their outputs and statistics through shared memory (over the key
  // buffers, free after the loop's last barrier).
  runSum += __shfl_xor_sync(detail::kFullMask, runSum, 1);
  runSum += __shfl_xor_sync(detail::kFullMask, runSum, 2);
  if (g < group) {
    float* rowOut = warpOutputs + (warp * kMaxGroup + g) * kHeadDim + 2 * quad;
#pragma unroll
    for (int n = 0; n < kValueTiles; ++n)
      *reinterpret_cast<float2*>(rowOut + 8 * n) = make_float2(acc[n][0], acc[n][1]);
    if (quad == 0) {
      warpMaxima[warp][g] = runMax;
      warpSums[warp][g] = runSum;
    }
  }
  __syncthreads();
  const int d0 = lane * kDims;
  for (int row = warp; row < group; row += kWarps) {
    // Finite: warp 0 holds the run's first key, which every split has.
    float maximum = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) maximum = fmaxf(maximum, warpMaxima[w][row]);
    float total = 0.0f, merged[kDims];
#pragma unroll
    for (int e = 0; e < kDims; ++e) merged[e] = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float factor = fastExp2(warpMaxima[w][row] - maximum);
      total += warpSums[w][row] * factor;
#pragma unroll
      for (int e = 0; e < kDims; ++e)
        merged[e] = fmaf(factor, warpOutputs[(w * kMaxGroup + row) * kHeadDim + d0 + e], merged[e]);
    }
    const int64_t head = firstHead + row;
    if (activeSplits == 1) {
#pragma unroll
      for (int e = 0; e < kDims; ++e)
        a.out[(t * a.heads + head) * kHeadDim + d0 + e] = detail::fromFloat<T>(merged[e] / total);
    } else {
      const int64_t partial = (t * a.heads + head) * a.splits + split;
      storeFloats<kDims>(a.partialAcc + partial * kHeadDim + d0, merged);
      if (lane == 0) {
        a.partialStats[partial * 2] = maximum;
        a.partialStats[partial * 2 + 1] = total;
      }
    }
  }
  if (activeSplits == 1) return;

  // The last block of this (token, KV head) merges every split.
  unsigned* counter = a.counters + t * a.kvHeads + kvHead;
  // One thread counts for the block after the barrier: its acquire-release add publishes the
  // block's partials (ordered before it by the barrier) and, in the last block, makes every
  // other block's visible to the threads past the second barrier (the pattern of a cooperative
  // grid sync) - in place of a full fence in every thread before the add and another after it.
  __syncthreads();
  if (threadIdx.x == 0) {
    ::cuda::atomic_ref<unsigned, ::cuda::thread_scope_device> count(*counter);
    lastBlock = count.fetch_add(1u, ::cuda::memory_order_acq_rel) ==
                static_cast<unsigned>(activeSplits - 1);
  }
  __syncthreads();
  if (!lastBlock) return;
  // Per head: the first kEarly splits' values fetched at once, then splits s and s + 32 to lane
  // s for the statistics (activeSplits <= 64), the factors through shared memory, then every
  // split's values in split order, a lane's loads independent of each other so that many are in
  // flight at once. The early values' round trip overlaps the statistics'.
  static_assert(kMaxSplits <= 64, "two splits per lane");
  constexpr int kEarly = 16;  // 16 x kDims registers a lane
  for (int row = warp; row < group; row += kWarps) {
    const int64_t base = (t * a.heads + firstHead + row) * a.splits;
    float ahead[kEarly][kDims];
#pragma unroll
    for (int s = 0; s < kEarly; ++s)
      if (s < activeSplits) loadFloats<kDims>(a.partialAcc + (base + s) * kHeadDim + d0, ahead[s]);
    float m[2], l[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int s = lane + 32 * h;
      m[h] = s < activeSplits ? __ldcg(a.partialStats + (base + s) * 2) : -INFINITY;
      l[h] = s < activeSplits ? __ldcg(a.partialStats + (base + s) * 2 + 1) : 0.0f;
    }
    const float maximum = detail::warpMax(fmaxf(m[0], m[1]));
    float total = 0.0f;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float factor = fastExp2(m[h] - maximum);  // 0 past the active splits
      splitFactors[row][lane + 32 * h] = factor;
      total += l[h] * factor;
    }
    total = detail::warpSum(total);
    __syncwarp();
    float merged[kDims];
#pragma unroll
    for (int e = 0; e < kDims; ++e) merged[e] = 0.0f;
#pragma unroll
    for (int s = 0; s < kEarly; ++s) {
      if (s >= activeSplits) break;
      const float factor = splitFactors[row][s];
#pragma unroll
      for (int e = 0; e < kDims; ++e) merged[e] = fmaf(factor, ahead[s][e], merged[e]);
    }
#pragma unroll 16
    for (int s = kEarly; s < activeSplits; ++s) {
      float partial[kDims];
      loadFloats<kDims>(a.partialAcc + (base + s) * kHeadDim + d0, partial);
      const float factor = splitFactors[row][s];
#pragma unroll
      for (int e = 0; e < kDims; ++e) merged[e] = fmaf(factor, partial[e], merged[e]);
    }
#pragma unroll
    for (int e = 0; e < kDims; ++e)
      a.out[(t * a.heads + firstHead + row) * kHeadDim + d0 + e] =
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
                   const DecodeRope* rope, int64_t qkvStride) {
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
                  qkvStride > 0 ? qkvStride : heads * kHeadDim,
                  qkvStride > 0 ? qkvStride : cache.kvHeads * kHeadDim,
                  splitsFor(tokens, cache.kvHeads, cache.maxContext),
                  scale,
                  rope ? rope->inverseFrequencies : nullptr,
                  rope ? rope->scaling : 1.0f,
                  rope ? rope->norms : DecodeHeadNorms{},
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
                      cudaStream_t stream, const DecodeRope* rope, int64_t qkvStride) {
  if (headDim == 64)
    return launch<T, 64>(q, k, v, positions, slots, tokens, heads, scale, cache, workspace, out,
                         stream, rope, qkvStride);
  return launch<T, 128>(q, k, v, positions, slots, tokens, heads, scale, cache, workspace, out,
                        stream, rope, qkvStride);
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
                            void* out, cudaStream_t stream, const DecodeRope* rope,
                            int64_t qkvStride) {
  if (rope &&
      (!rope->inverseFrequencies || (rope->norms.q == nullptr) != (rope->norms.k == nullptr)))
    return cudaErrorInvalidValue;
  if (!decodeAttentionSupports(type, heads, cache.kvHeads, cache.headDim) || tokens < 1 ||
      tokens > kDecodeMaxTokens || !detail::pagingValid(cache) ||
      (qkvStride != 0 && (qkvStride < (heads + 2 * cache.kvHeads) * cache.headDim ||
                          qkvStride * static_cast<int64_t>(elementBytes(type)) % 16 != 0)))
    return cudaErrorInvalidValue;
  if (type == ElementType::BF16)
    return launchFor<__nv_bfloat16>(cache.headDim, q, k, v, positions, slots, tokens, heads, scale,
                                    cache, workspace, out, stream, rope, qkvStride);
  return launchFor<__half>(cache.headDim, q, k, v, positions, slots, tokens, heads, scale, cache,
                           workspace, out, stream, rope, qkvStride);
}

}  // namespace tpc::cuda
