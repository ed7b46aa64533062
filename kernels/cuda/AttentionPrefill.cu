// Flash-attention-2 style causal prefill on tensor cores (mma.sync m16n8k16, f32 accumulate).
//
// The cache write is two device-to-device copies where a chunk's rows are contiguous in the cache
// ([slot][position][kvHead][headDim] with consecutive positions); through a block table the rows
// scatter over the pool's blocks and a small kernel writes them. K/V tiles are read through the
// block table too: the cached prefix and the chunk's own keys alike.
//
// One block of 4 warps owns 64 query rows (16 per warp, one mma M) of one query head. It keeps
// its Q fragments in registers and streams the slot's K/V rows of that head's KV head through
// shared memory in tiles of 64 positions, double-buffered with cp.async: K of the next tile loads
// while this tile's softmax runs, V of the next tile while this tile's P V runs. Per tile each
// warp computes S = Q K^T (16 x 64, f32), masks keys past each row's position (only tiles that
// reach past the block's first position need it; tiles past its last position are never
// loaded), keeps a running max and sum per row (online softmax, f32, in the exp2 domain), rescales
// its O accumulator (registers, f32) by the correction and adds P V with P rounded to the storage
// type, as flash-attention does. O / sum is staged through shared memory for 16-byte stores.
//
// Shared rows are padded by 16 bytes, so the 8 rows an ldmatrix phase reads fall in distinct
// banks. Cache rows past the block's last visible position (or past what this chunk wrote) are
// zero-filled rather than read: they may hold anything, and a NaN in V would survive P = 0.
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#include "kernels/cuda/AttentionPrefill.h"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/TensorCores.cuh"

namespace tpc::cuda {
namespace {

using detail::commitCopies;
using detail::copyAsync16;
using detail::fastExp2;
using detail::loadMatrices;
using detail::loadMatricesTransposed;
using detail::mma16816;
using detail::packPair;
using detail::sharedAddress;
using detail::waitCopies;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * detail::kWarpSize;
constexpr int kQueryRows = 64;  // per block; 16 per warp, the mma's M
constexpr int kKeyRows = 64;    // per K/V tile
constexpr int kRowPad = 8;      // elements (16 bytes) after each shared row, against bank conflicts
constexpr float kLog2E = 1.4426950408889634f;
static_assert(kQueryRows == kWarps * 16, "each warp owns one m16 slice of the query tile");

template <int kHeadDim>
struct SharedLayout {
  static constexpr int kStride = kHeadDim + kRowPad;  // elements per shared row
  static constexpr int kQueryTileBytes = kQueryRows * kStride * 2;
  static constexpr int kKeyTileBytes = kKeyRows * kStride * 2;
  // Q tile, then K stages 0 and 1, then V stages 0 and 1.
  static constexpr int kKeyOffset = kQueryTileBytes;
  static constexpr int kValueOffset = kKeyOffset + 2 * kKeyTileBytes;
  static constexpr int kBytes = kValueOffset + 2 * kKeyTileBytes;
};

// ---- the kernel -------------------------------------------------------------------------------

struct PrefillArgs {
  const void* q;
  const void* cacheK;
  const void* cacheV;
  void* out;
  int64_t tokens, heads, kvHeads, group, startPosition, maxContext, slot;
  int64_t queryTiles;
  const int32_t* blockTable;  // null: contiguous slots (KvCacheView)
  int64_t blockSize;
  float scaleLog2;  // scale * log2(e): scores go straight into exp2
};

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads, 2) prefillAttentionKernel(PrefillArgs a) {
  using Layout = SharedLayout<kHeadDim>;
  constexpr int kStride = Layout::kStride;
  constexpr int kChunksPerRow = kHeadDim / 8;             // 16-byte chunks per head row
  constexpr int kRowsPerPass = kThreads / kChunksPerRow;  // rows the block copies per pass
  constexpr int kDimSteps = kHeadDim / 16;                // k steps of Q K^T
  constexpr int kDimTiles = kHeadDim / 8;                 // n tiles of O
  constexpr int kKeyTiles = kKeyRows / 8;                 // n tiles of S
  constexpr int kKeySteps = kKeyRows / 16;                // k steps of P V
  static_assert(kQueryRows % kRowsPerPass == 0 && kKeyRows % kRowsPerPass == 0);

  extern __shared__ __align__(16) uint8_t shared[];
  const uint32_t queryTile = sharedAddress(shared);
  const uint32_t keyStages = queryTile + Layout::kKeyOffset;
  const uint32_t valueStages = queryTile + Layout::kValueOffset;

  // Heads vary fastest, so the query heads of one KV head run side by side and share its K/V
  // tiles in L2; the last query tiles (the most keys) start first, the short ones fill the tail.
  const int64_t head = blockIdx.x % a.heads;
  const int64_t tileIndex = a.queryTiles - 1 - static_cast<int64_t>(blockIdx.x) / a.heads;
  const int64_t kvHead = head / a.group;
  const int64_t firstToken = tileIndex * kQueryRows;
  const int64_t lastToken = detail::minI64(firstToken + kQueryRows, a.tokens) - 1;
  const int64_t firstPosition = a.startPosition + firstToken;
  const int64_t lastPosition = a.startPosition + lastToken;  // no row of the block sees past it
  const int keyTileCount = static_cast<int>(lastPosition / kKeyRows) + 1;

  const int lane = threadIdx.x % detail::kWarpSize, warp = threadIdx.x / detail::kWarpSize;

  // Copies: thread i moves chunk i % kChunksPerRow of rows i / kChunksPerRow + n * kRowsPerPass.
  const int copyRow = threadIdx.x / kChunksPerRow;
  const int copyColumn = (threadIdx.x % kChunksPerRow) * 8;
  const uint32_t copyOffset = (copyRow * kStride + copyColumn) * 2;
  constexpr uint32_t kPassBytes = kRowsPerPass * kStride * 2;
  const int64_t queryStride = a.heads * kHeadDim, cacheStride = a.kvHeads * kHeadDim;
  const T* queryRows = static_cast<const T*>(a.q) + (firstToken * a.heads + head) * kHeadDim +
                       copyColumn;  // + row * queryStride
  const int64_t headStart = kvHead * kHeadDim + copyColumn;
  const T* keyRows = static_cast<const T*>(a.cacheK) + headStart;  // + cache row * cacheStride
  const T* valueRows = static_cast<const T*>(a.cacheV) + headStart;

  // Rows past the block's last position are zero-filled (their source is a valid dummy address).
  auto loadCacheTile = [&](const T* rows, uint32_t stage, int tile) {
#pragma unroll
    for (int pass = 0; pass < kKeyRows / kRowsPerPass; ++pass) {
      const int64_t position =
          static_cast<int64_t>(tile) * kKeyRows + copyRow + pass * kRowsPerPass;
      const bool valid = position <= lastPosition;
      const int64_t row =
          valid ? detail::cacheRow(a.blockTable, a.blockSize, a.maxContext, a.slot, position) : 0;
      copyAsync16(stage + copyOffset + pass * kPassBytes, rows + row * cacheStride, valid);
    }
  };

  // Prologue: Q with K tile 0 as one group, V tile 0 as the next.
#pragma unroll
  for (int pass = 0; pass < kQueryRows / kRowsPerPass; ++pass) {
    const int row = copyRow + pass * kRowsPerPass;
    const bool valid = firstToken + row < a.tokens;
    copyAsync16(queryTile + copyOffset + pass * kPassBytes,
                valid ? queryRows + row * queryStride : queryRows, valid);
  }
  loadCacheTile(keyRows, keyStages, 0);
  commitCopies();
  loadCacheTile(valueRows, valueStages, 0);
  commitCopies();
  waitCopies<1>();
  __syncthreads();

  // Per-lane ldmatrix addresses (byte offsets within a tile). Q as the A operand: rows
  // lane % 16, column half lane / 16. K as B of Q K^T (rows are keys, i.e. B's n): matrices
  // (keys 0-7, dims 0-7), (keys 0-7, dims 8-15), (keys 8-15, dims 0-7), (keys 8-15, dims 8-15).
  // V as B of P V, transposed (rows are keys, B's k): (keys 0-7, dims 0-7), (keys 8-15, dims
  // 0-7), (keys 0-7, dims 8-15), (keys 8-15, dims 8-15).
  const uint32_t queryLaneOffset = ((warp * 16 + (lane % 16)) * kStride + (lane / 16) * 8) * 2;
  const uint32_t keyLaneOffset =
      (((lane % 8) + (lane / 16) * 8) * kStride + ((lane / 8) % 2) * 8) * 2;
  const uint32_t valueLaneOffset =
      (((lane % 8) + ((lane / 8) % 2) * 8) * kStride + (lane / 16) * 8) * 2;

  uint32_t queryFragments[kDimSteps][4];
#pragma unroll
  for (int step = 0; step < kDimSteps; ++step)
    loadMatrices(queryFragments[step], queryTile + queryLaneOffset + step * 16 * 2);

  // This lane holds rows g = lane / 4 and g + 8 of the warp's 16 (index r = 0, 1 below).
  const int64_t rowPosition = firstPosition + warp * 16 + lane / 4;
  float output[kDimTiles][4] = {};
  float rowMax[2] = {-INFINITY, -INFINITY};
  float rowSum[2] = {0.0f, 0.0f};  // this lane's columns only; the quad is summed at the end

  for (int tile = 0; tile < keyTileCount; ++tile) {
    const int stage = tile % 2;
    const bool prefetch = tile + 1 < keyTileCount;
    if (tile > 0) {
      waitCopies<1>();  // K of this tile has landed; its V may still be in flight
      __syncthreads();  // ...for every thread, and all warps are done with the previous tile's K
    }
    if (prefetch) {
      loadCacheTile(keyRows, keyStages + (stage ^ 1) * Layout::kKeyTileBytes, tile + 1);
      commitCopies();
    }

    float scores[kKeyTiles][4] = {};
    const uint32_t keyTile = keyStages + stage * Layout::kKeyTileBytes + keyLaneOffset;
#pragma unroll
    for (int step = 0; step < kDimSteps; ++step) {
#pragma unroll
      for (int pair = 0; pair < kKeyTiles / 2; ++pair) {
        uint32_t b[4];
        loadMatrices(b, keyTile + (pair * 16 * kStride + step * 16) * 2);
        mma16816<T>(scores[2 * pair], queryFragments[step], b[0], b[1]);
        mma16816<T>(scores[2 * pair + 1], queryFragments[step], b[2], b[3]);
      }
    }

    const int64_t firstKey = static_cast<int64_t>(tile) * kKeyRows;
    // Only tiles reaching past the block's first position hold keys some row must not see.
    const bool masked = firstKey + kKeyRows - 1 > firstPosition;
#pragma unroll
    for (int n = 0; n < kKeyTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        scores[n][e] *= a.scaleLog2;
        if (masked) {
          const int64_t key = firstKey + n * 8 + (lane % 4) * 2 + e % 2;
          if (key > rowPosition + (e / 2) * 8) scores[n][e] = -INFINITY;
        }
      }
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float tileMax = rowMax[r];
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n)
        tileMax = fmaxf(tileMax, fmaxf(scores[n][2 * r], scores[n][2 * r + 1]));
      // The 4 lanes of a quad share a row.
      tileMax = fmaxf(tileMax, __shfl_xor_sync(detail::kFullMask, tileMax, 1));
      tileMax = fmaxf(tileMax, __shfl_xor_sync(detail::kFullMask, tileMax, 2));
      // A row with nothing visible yet keeps max -inf; subtracting 0 instead keeps exp2 at 0
      // rather than NaN (-inf - -inf). Cannot happen in increasing tile order, but costs nothing.
      const float base = tileMax == -INFINITY ? 0.0f : tileMax;
      const float correction = fastExp2(rowMax[r] - base);
      rowMax[r] = tileMax;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kKeyTiles; ++n) {
        scores[n][2 * r] = fastExp2(scores[n][2 * r] - base);
        scores[n][2 * r + 1] = fastExp2(scores[n][2 * r + 1] - base);
        sum += scores[n][2 * r] + scores[n][2 * r + 1];
      }
      rowSum[r] = rowSum[r] * correction + sum;
#pragma unroll
      for (int d = 0; d < kDimTiles; ++d) {
        output[d][2 * r] *= correction;
        output[d][2 * r + 1] *= correction;
      }
    }

    if (prefetch)
      waitCopies<1>();  // V of this tile has landed; K of the next may still be in flight
    else
      waitCopies<0>();
    __syncthreads();  // ...for every thread, and all warps are done with the previous tile's V
    if (prefetch) {
      loadCacheTile(valueRows, valueStages + (stage ^ 1) * Layout::kKeyTileBytes, tile + 1);
      commitCopies();
    }

    const uint32_t valueTile = valueStages + stage * Layout::kKeyTileBytes + valueLaneOffset;
#pragma unroll
    for (int step = 0; step < kKeySteps; ++step) {
      // The S accumulator of keys [16 step, 16 step + 16) is exactly P's A fragment.
      const uint32_t p[4] = {packPair<T>(scores[2 * step][0], scores[2 * step][1]),
                             packPair<T>(scores[2 * step][2], scores[2 * step][3]),
                             packPair<T>(scores[2 * step + 1][0], scores[2 * step + 1][1]),
                             packPair<T>(scores[2 * step + 1][2], scores[2 * step + 1][3])};
#pragma unroll
      for (int pair = 0; pair < kDimTiles / 2; ++pair) {
        uint32_t b[4];
        loadMatricesTransposed(b, valueTile + (step * 16 * kStride + pair * 16) * 2);
        mma16816<T>(output[2 * pair], p, b[0], b[1]);
        mma16816<T>(output[2 * pair + 1], p, b[2], b[3]);
      }
    }
  }

  // O / sum, staged in this warp's 16 rows of the Q tile: only this warp read them (into its
  // fragments, before the loop), so a warp barrier suffices.
  float inverse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = rowSum[r];
    sum += __shfl_xor_sync(detail::kFullMask, sum, 1);
    sum += __shfl_xor_sync(detail::kFullMask, sum, 2);
    inverse[r] = 1.0f / sum;  // >= 1: the row's maximum contributes exp2(0)
  }
  auto* warpRows = reinterpret_cast<T*>(shared) + warp * 16 * kStride;
#pragma unroll
  for (int d = 0; d < kDimTiles; ++d) {
    const int column = d * 8 + (lane % 4) * 2;
    const int row = lane / 4;
    *reinterpret_cast<uint32_t*>(warpRows + row * kStride + column) =
        packPair<T>(output[d][0] * inverse[0], output[d][1] * inverse[0]);
    *reinterpret_cast<uint32_t*>(warpRows + (row + 8) * kStride + column) =
        packPair<T>(output[d][2] * inverse[1], output[d][3] * inverse[1]);
  }
  __syncwarp();
  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int i = 0; i < 16 * kChunksPerRow / detail::kWarpSize; ++i) {
    const int chunk = lane + i * detail::kWarpSize;
    const int row = chunk / kChunksPerRow, column = (chunk % kChunksPerRow) * 8;
    const int64_t token = firstToken + warp * 16 + row;
    if (token < a.tokens)
      *reinterpret_cast<uint4*>(out + (token * a.heads + head) * kHeadDim + column) =
          *reinterpret_cast<const uint4*>(warpRows + row * kStride + column);
  }
}

// The paged cache write: token i's k and v rows go to the pool rows of positions
// startPosition + i of `slot`, which need not be contiguous. One block per token.
template <typename T>
__global__ void pagedWriteKernel(const T* k, const T* v, int64_t startPosition, int64_t slot,
                                 const int32_t* blockTable, int64_t blockSize, int64_t maxContext,
                                 int64_t rowVectors, T* cacheK, T* cacheV) {
  const int64_t i = blockIdx.x;
  const int64_t row = detail::cacheRow(blockTable, blockSize, maxContext, slot, startPosition + i);
  const auto* srcK = reinterpret_cast<const uint4*>(k) + i * rowVectors;
  const auto* srcV = reinterpret_cast<const uint4*>(v) + i * rowVectors;
  auto* dstK = reinterpret_cast<uint4*>(cacheK) + row * rowVectors;
  auto* dstV = reinterpret_cast<uint4*>(cacheV) + row * rowVectors;
  for (int64_t c = threadIdx.x; c < rowVectors; c += blockDim.x) {
    dstK[c] = srcK[c];
    dstV[c] = srcV[c];
  }
}

// ---- host side --------------------------------------------------------------------------------

// The kernel needs more than the default 48 KB of dynamic shared memory, which is a per-device
// function attribute: set once per device (host-side, so graph capture is unaffected).
template <typename T, int kHeadDim>
cudaError_t configureOnce() {
  static std::atomic<uint64_t> configuredDevices{0};
  int device = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status != cudaSuccess) return status;
  const uint64_t bit = device < 64 ? uint64_t{1} << device : 0;
  if (bit && (configuredDevices.load(std::memory_order_acquire) & bit)) return cudaSuccess;
  const auto kernel = prefillAttentionKernel<T, kHeadDim>;
  status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                SharedLayout<kHeadDim>::kBytes);
  // Two blocks per SM need most of the unified L1/shared storage as shared memory.
  if (status == cudaSuccess)
    status = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  cudaSharedmemCarveoutMaxShared);
  if (status == cudaSuccess && bit) configuredDevices.fetch_or(bit, std::memory_order_release);
  return status;
}

template <typename T, int kHeadDim>
cudaError_t launchPrefill(const PrefillArgs& args, cudaStream_t stream) {
  const cudaError_t status = configureOnce<T, kHeadDim>();
  if (status != cudaSuccess) return status;
  const auto blocks = static_cast<unsigned>(args.queryTiles * args.heads);
  prefillAttentionKernel<T, kHeadDim>
      <<<blocks, kThreads, SharedLayout<kHeadDim>::kBytes, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

bool prefillAttentionSupports(ElementType type, int64_t headDim) {
  return (type == ElementType::BF16 || type == ElementType::F16) &&
         (headDim == 64 || headDim == 128);
}

cudaError_t prefillAttention(ElementType type, const void* q, const void* k, const void* v,
                             int64_t tokens, int64_t heads, int64_t startPosition, int32_t slot,
                             float scale, const KvCacheView& cache, void* out,
                             cudaStream_t stream) {
  const int64_t headDim = cache.headDim, kvHeads = cache.kvHeads;
  if (!prefillAttentionSupports(type, headDim) || kvHeads <= 0 || heads <= 0 ||
      heads % kvHeads != 0 || tokens < 0 || startPosition < 0 ||
      startPosition + tokens > cache.maxContext || slot < 0 || slot >= cache.slots ||
      !detail::pagingValid(cache))
    return cudaErrorInvalidValue;
  for (const void* p : std::initializer_list<const void*>{q, k, v, cache.k, cache.v, out})
    if (!detail::aligned16(p)) return cudaErrorInvalidValue;
  const int64_t queryTiles = (tokens + kQueryRows - 1) / kQueryRows;
  if (queryTiles * heads > INT_MAX) return cudaErrorInvalidValue;
  if (tokens == 0) return cudaGetLastError();

  const size_t rowBytes = static_cast<size_t>(kvHeads * headDim) * elementBytes(type);
  cudaError_t status = cudaSuccess;
  if (cache.blockTable) {
    // headDim 64 or 128 in 2-byte elements: rows are whole 16-byte vectors.
    const auto rowVectors = static_cast<int64_t>(rowBytes / 16);
    const auto threads = static_cast<unsigned>(rowVectors < 256 ? rowVectors : 256);
    pagedWriteKernel<uint16_t><<<static_cast<unsigned>(tokens), threads, 0, stream>>>(
        static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v), startPosition, slot,
        cache.blockTable, cache.blockSize, cache.maxContext, rowVectors,
        static_cast<uint16_t*>(cache.k), static_cast<uint16_t*>(cache.v));
    status = cudaGetLastError();
  } else {
    // The chunk's rows are one contiguous run of the slot: [startPosition, +tokens) x kvHeads.
    const size_t firstRow = static_cast<size_t>(slot) * cache.maxContext + startPosition;
    status = cudaMemcpyAsync(static_cast<uint8_t*>(cache.k) + firstRow * rowBytes, k,
                             tokens * rowBytes, cudaMemcpyDeviceToDevice, stream);
    if (status == cudaSuccess)
      status = cudaMemcpyAsync(static_cast<uint8_t*>(cache.v) + firstRow * rowBytes, v,
                               tokens * rowBytes, cudaMemcpyDeviceToDevice, stream);
  }
  if (status != cudaSuccess) return status;

  const PrefillArgs args{q,
                         cache.k,
                         cache.v,
                         out,
                         tokens,
                         heads,
                         kvHeads,
                         heads / kvHeads,
                         startPosition,
                         cache.maxContext,
                         slot,
                         queryTiles,
                         cache.blockTable,
                         cache.blockSize,
                         scale * kLog2E};
  if (type == ElementType::BF16)
    return headDim == 64 ? launchPrefill<__nv_bfloat16, 64>(args, stream)
                         : launchPrefill<__nv_bfloat16, 128>(args, stream);
  return headDim == 64 ? launchPrefill<__half, 64>(args, stream)
                       : launchPrefill<__half, 128>(args, stream);
}

}  // namespace tpc::cuda
