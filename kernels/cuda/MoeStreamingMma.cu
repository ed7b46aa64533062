// The grouped MoE expert kernels on tensor cores (MoeStreamingMma.h).
//
// A block (four warps) takes one touched expert (grid y: the slot) and a block of its weight rows
// (grid x). Its warps form row groups of kWeightTiles 16-row tiles, split over the k range by up to
// four warps where rows are long (Mixtral's down: 14336), and loop over the expert's assignments
// in passes of 8 * kTokenTiles. In mma terms the weight rows are M (a tile of 16), the tokens N
// (a tile of 8), hidden or intermediate K. Gate/up tiles hold 8 gate rows over the same 8 up rows,
// so each lane's accumulators hold gate and up of the same (row, token) and SwiGLU needs no
// exchange; down tiles hold 16 hidden rows.
//
// Weights go straight from global memory to registers: the mma's A fragment for lane 4g + t is
// rows g and g + 8 at k {2t, 2t + 1, 2t + 8, 2t + 9}, and the B fragment token g at the same k.
// A dot product does not care about the order of k, so inside each 32-wide k block the lane
// instead loads 16 bytes of each of its rows, physical k [8t, 8t + 8), and uses [8t, 8t + 4) as
// the first mma step's logical k and [8t + 4, 8t + 8) as the second's; its token's input takes
// the same 16 bytes, so A and B agree. One warp-wide load then covers 8 rows x 32 k in 64-byte
// pieces, read once (__ldcs), eight per lane per stage, and the next stage's loads are issued
// before this stage's products (two stages in flight). The inputs (gathered x rows for gate/up,
// activation rows for down) are a few KB per token that every row block of the expert reuses:
// they come through L1 (__ldca: written by the kernel before, so coherent loads after the wait).
//
// Every (row, token) sum runs over k in the same order whatever the tiling, the pass or the
// tokens beside it (a tile's columns do not mix), and split parts are added in part order, so
// results are deterministic and a token's bits do not depend on the rest of the step.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cuda/DependentLaunch.cuh"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/MoeExpertGroups.cuh"
#include "kernels/cuda/MoeStreamingMma.h"
#include "kernels/cuda/TensorCores.cuh"

namespace tpc::cuda {
namespace {

using detail::fromFloat;
using detail::mma16816;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * detail::kWarpSize;
constexpr int kVectorsPerBlock = 4;  // 16-byte vectors of a row in one 32-wide k block
constexpr int kLoadsPerStage = 8;    // weight vectors per lane per stage
constexpr int kMaxTokenTiles = 8;
// Rows longer than this are split over several warps of a block (more warps in flight where a
// few experts have few long rows). The split depends on the shape alone, never on a step's
// tokens, so neither does any sum's order.
constexpr int64_t kSplitRun = 4096;

// Few tokens per pass: one weight tile per warp (more warps). More: two, so the input bytes a
// warp reads through L1 stay within twice its weight bytes.
__host__ __device__ constexpr int weightTilesFor(int tokenTiles) { return tokenTiles >= 4 ? 2 : 1; }

// Blocks per SM the register budget is held to: what ptxas fits without spilling (128 to 254
// registers). Even 8 warps of two 4 KB stages each keep 32 to 64 KB of weights in flight per SM.
__host__ __device__ constexpr int minBlocksFor(int tokenTiles) {
  return tokenTiles == 1 ? 4 : tokenTiles == 2 ? 3 : 2;
}

int splitsFor(int64_t k) {
  const int64_t wanted = (k + kSplitRun - 1) / kSplitRun;
  return wanted >= 3 ? 4 : static_cast<int>(wanted < 1 ? 1 : wanted);
}

// 32-bit word i of a 16-byte vector (i is a constant once the loops are unrolled).
__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// One stage of a lane's weight vectors: kUnroll k blocks x kWeightTiles tiles x rows g, g + 8.
template <int kWeightTiles, int kUnroll>
struct WeightStage {
  uint4 v[kUnroll][kWeightTiles][2];
};

// Lane (g, t)'s vectors 4 * block + t of its rows for k blocks [block, block + kUnroll); zeros
// past `end` or the row's `vectors`. rows[w][h] points at vector t of tile w's row g + 8h.
template <int kWeightTiles, int kUnroll>
__device__ __forceinline__ void loadWeights(WeightStage<kWeightTiles, kUnroll>& stage,
                                            const uint4* const (&rows)[kWeightTiles][2],
                                            int64_t block, int64_t end, int64_t vectors, int t) {
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t v = (block + u) * kVectorsPerBlock;
    const bool inside = block + u < end && v + t < vectors;
#pragma unroll
    for (int w = 0; w < kWeightTiles; ++w)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        stage.v[u][w][h] = inside ? __ldcs(rows[w][h] + v) : make_uint4(0, 0, 0, 0);
  }
}

// acc[w][j] += weight tile w x token tile j over the stage's k blocks, for the first `usedTiles`
// token tiles (the others hold no token of this pass). inputs[j] points at vector t of token g
// of tile j, which is present where 8j < `present`; absent tokens (padding) multiply zeros.
template <class T, int kWeightTiles, int kTokenTiles, int kUnroll>
__device__ __forceinline__ void multiplyStage(const WeightStage<kWeightTiles, kUnroll>& stage,
                                              const uint4* const (&inputs)[kTokenTiles],
                                              int present, int usedTiles, int64_t block,
                                              int64_t end, int64_t vectors, int t,
                                              float (&acc)[kWeightTiles][kTokenTiles][4]) {
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    if (block + u >= end) break;  // alike for the whole warp
    const int64_t v = (block + u) * kVectorsPerBlock;
    const bool inside = v + t < vectors;
    uint4 b[kTokenTiles];
#pragma unroll
    for (int j = 0; j < kTokenTiles; ++j)
      b[j] = inside && 8 * j < present ? __ldca(inputs[j] + v) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int step = 0; step < 2; ++step) {
#pragma unroll
      for (int w = 0; w < kWeightTiles; ++w) {
        const uint4& row = stage.v[u][w][0];
        const uint4& row8 = stage.v[u][w][1];
        const uint32_t a[4] = {word(row, 2 * step), word(row8, 2 * step), word(row, 2 * step + 1),
                               word(row8, 2 * step + 1)};
#pragma unroll
        for (int j = 0; j < kTokenTiles; ++j)
          if (kTokenTiles == 1 || j < usedTiles)  // alike for the whole warp
            mma16816<T>(acc[w][j], a, word(b[j], 2 * step), word(b[j], 2 * step + 1));
      }
    }
  }
}

// The products over k blocks [first, end), two stages of weight loads in flight.
template <class T, int kWeightTiles, int kTokenTiles>
__device__ __forceinline__ void multiplyRange(const uint4* const (&rows)[kWeightTiles][2],
                                              const uint4* const (&inputs)[kTokenTiles],
                                              int present, int usedTiles, int64_t first,
                                              int64_t end, int64_t vectors, int t,
                                              float (&acc)[kWeightTiles][kTokenTiles][4]) {
  constexpr int kUnroll = kLoadsPerStage / (2 * kWeightTiles);
  WeightStage<kWeightTiles, kUnroll> even, odd;
  loadWeights(even, rows, first, end, vectors, t);
  for (int64_t block = first; block < end; block += 2 * kUnroll) {
    loadWeights(odd, rows, block + kUnroll, end, vectors, t);
    multiplyStage<T>(even, inputs, present, usedTiles, block, end, vectors, t, acc);
    loadWeights(even, rows, block + 2 * kUnroll, end, vectors, t);
    multiplyStage<T>(odd, inputs, present, usedTiles, block + kUnroll, end, vectors, t, acc);
  }
}

template <int kWeightTiles, int kTokenTiles>
constexpr size_t splitScratchBytes() {
  return sizeof(float) * kWarps * kWeightTiles * kTokenTiles * 4 * detail::kWarpSize;
}

// Adds the partial sums of the `splits` warps of this warp's row group (consecutive warps) in
// part order into part 0's accumulators, through `scratch` (splitScratchBytes). Every warp of the
// block calls it; true for the warps that then hold totals.
template <int kWeightTiles, int kTokenTiles>
__device__ __forceinline__ bool addSplits(float (&acc)[kWeightTiles][kTokenTiles][4], int splits,
                                          float* scratch) {
  if (splits == 1) return true;
  constexpr int kValues = kWeightTiles * kTokenTiles * 4;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int part = warp % splits;
  float* mine = scratch + warp * kValues * detail::kWarpSize + lane;
  if (part > 0) {
#pragma unroll
    for (int w = 0; w < kWeightTiles; ++w)
#pragma unroll
      for (int j = 0; j < kTokenTiles; ++j)
#pragma unroll
        for (int c = 0; c < 4; ++c)
          mine[((w * kTokenTiles + j) * 4 + c) * detail::kWarpSize] = acc[w][j][c];
  }
  __syncthreads();
  if (part == 0) {
    for (int p = 1; p < splits; ++p) {
      const float* other = mine + p * kValues * detail::kWarpSize;
#pragma unroll
      for (int w = 0; w < kWeightTiles; ++w)
#pragma unroll
        for (int j = 0; j < kTokenTiles; ++j)
#pragma unroll
          for (int c = 0; c < 4; ++c)
            acc[w][j][c] += other[((w * kTokenTiles + j) * 4 + c) * detail::kWarpSize];
    }
  }
  __syncthreads();  // the scratch is free for the next pass
  return part == 0;
}

// This warp's place in its block: row group (of the grid's row blocks) and k part.
struct WarpPlace {
  int64_t rowGroup;
  int part;
  int g, t;  // lane 4g + t
};

__device__ __forceinline__ WarpPlace warpPlace(int splits) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  return {static_cast<int64_t>(blockIdx.x) * (kWarps / splits) + warp / splits, warp % splits,
          lane >> 2, lane & 3};
}

// Part `part` of `splits` of k blocks [0, blocks).
__device__ __forceinline__ void partRange(int64_t blocks, int splits, int part, int64_t& first,
                                          int64_t& end) {
  const int64_t per = (blocks + splits - 1) / splits;
  first = detail::minI64(blocks, part * per);
  end = detail::minI64(blocks, first + per);
}

// Gate/up and SwiGLU: tile w of a row group covers intermediate rows firstRow + 8w + [0, 8).
template <class T, int kTokenTiles>
__global__ void __launch_bounds__(kThreads, minBlocksFor(kTokenTiles))
    upMmaKernel(const T* x, const int32_t* ints, int64_t numExperts, int64_t hidden,
                int64_t intermediate, int64_t topK, int splits,
                const void* const* __restrict__ gateOrGateUp, const void* const* __restrict__ up,
                T* activations) {
  constexpr int kWeightTiles = weightTilesFor(kTokenTiles);
  constexpr int kPassTokens = 8 * kTokenTiles;
  extern __shared__ __align__(16) float splitScratch[];  // splitScratchBytes where splits > 1
  detail::allowDependentLaunch();
  detail::waitForPrerequisites();
  const detail::ExpertGroups groups(ints, numExperts);
  const int64_t slot = blockIdx.y;
  if (slot >= *groups.count) return;
  const int32_t expert = groups.active[slot];
  const int32_t* list = groups.order + groups.starts[expert];
  const int count = groups.starts[expert + 1] - groups.starts[expert];
  const WarpPlace place = warpPlace(splits);
  const int64_t firstRow = place.rowGroup * 8 * kWeightTiles;
  const auto* gateWeights = static_cast<const T*>(gateOrGateUp[expert]);
  // Separate up weights, or the second half of the fused gate-then-up matrix.
  const T* upWeights = up ? static_cast<const T*>(up[expert]) : gateWeights + intermediate * hidden;
  const uint4* rows[kWeightTiles][2];
#pragma unroll
  for (int w = 0; w < kWeightTiles; ++w) {
    // Rows past the end repeat the last; their sums are never stored.
    const int64_t i = detail::minI64(firstRow + 8 * w + place.g, intermediate - 1);
    rows[w][0] = reinterpret_cast<const uint4*>(gateWeights + i * hidden) + place.t;
    rows[w][1] = reinterpret_cast<const uint4*>(upWeights + i * hidden) + place.t;
  }
  const int64_t vectors = hidden * static_cast<int64_t>(sizeof(T)) / 16;
  int64_t first = 0, end = 0;
  partRange((vectors + kVectorsPerBlock - 1) / kVectorsPerBlock, splits, place.part, first, end);
  for (int pass = 0; pass < count; pass += kPassTokens) {
    const uint4* inputs[kTokenTiles];
    const int present = count - pass - place.g;  // token tile j holds this lane's token if 8j < it
#pragma unroll
    for (int j = 0; j < kTokenTiles; ++j) {
      const int64_t a = list[8 * j < present ? pass + 8 * j + place.g : pass];
      inputs[j] = reinterpret_cast<const uint4*>(x + (a / topK) * hidden) + place.t;
    }
    const int usedTiles = (min(count - pass, kPassTokens) + 7) / 8;
    float acc[kWeightTiles][kTokenTiles][4] = {};
    multiplyRange<T>(rows, inputs, present, usedTiles, first, end, vectors, place.t, acc);
    // Accumulator c of a tile: gate (c 0, 1) and up (c 2, 3) of row g, tokens 2t and 2t + 1.
    if (!addSplits(acc, splits, splitScratch)) continue;
#pragma unroll
    for (int w = 0; w < kWeightTiles; ++w) {
      const int64_t i = firstRow + 8 * w + place.g;
      if (i >= intermediate) continue;
#pragma unroll
      for (int j = 0; j < kTokenTiles; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int index = pass + 8 * j + 2 * place.t + c;
          if (index < count)
            activations[static_cast<int64_t>(list[index]) * intermediate + i] =
                fromFloat<T>(detail::silu(acc[w][j][c]) * acc[w][j][2 + c]);
        }
    }
  }
}

// Down: tile w of a row group covers hidden rows firstRow + 16w + [0, 16); f32 results per
// assignment.
template <class T, int kTokenTiles>
__global__ void __launch_bounds__(kThreads, minBlocksFor(kTokenTiles))
    downMmaKernel(const int32_t* ints, int64_t numExperts, int64_t hidden, int64_t intermediate,
                  int splits, const void* const* __restrict__ down, const T* activations,
                  float* downRows) {
  constexpr int kWeightTiles = weightTilesFor(kTokenTiles);
  constexpr int kPassTokens = 8 * kTokenTiles;
  extern __shared__ __align__(16) float splitScratch[];  // splitScratchBytes where splits > 1
  detail::allowDependentLaunch();
  detail::waitForPrerequisites();
  const detail::ExpertGroups groups(ints, numExperts);
  const int64_t slot = blockIdx.y;
  if (slot >= *groups.count) return;
  const int32_t expert = groups.active[slot];
  const int32_t* list = groups.order + groups.starts[expert];
  const int count = groups.starts[expert + 1] - groups.starts[expert];
  const WarpPlace place = warpPlace(splits);
  const int64_t firstRow = place.rowGroup * 16 * kWeightTiles;
  const auto* downWeights = static_cast<const T*>(down[expert]);
  const uint4* rows[kWeightTiles][2];
#pragma unroll
  for (int w = 0; w < kWeightTiles; ++w)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t j = detail::minI64(firstRow + 16 * w + 8 * h + place.g, hidden - 1);
      rows[w][h] = reinterpret_cast<const uint4*>(downWeights + j * intermediate) + place.t;
    }
  const int64_t vectors = intermediate * static_cast<int64_t>(sizeof(T)) / 16;
  int64_t first = 0, end = 0;
  partRange((vectors + kVectorsPerBlock - 1) / kVectorsPerBlock, splits, place.part, first, end);
  for (int pass = 0; pass < count; pass += kPassTokens) {
    const uint4* inputs[kTokenTiles];
    const int present = count - pass - place.g;  // token tile j holds this lane's token if 8j < it
#pragma unroll
    for (int j = 0; j < kTokenTiles; ++j) {
      const int64_t a = list[8 * j < present ? pass + 8 * j + place.g : pass];
      inputs[j] = reinterpret_cast<const uint4*>(activations + a * intermediate) + place.t;
    }
    const int usedTiles = (min(count - pass, kPassTokens) + 7) / 8;
    float acc[kWeightTiles][kTokenTiles][4] = {};
    multiplyRange<T>(rows, inputs, present, usedTiles, first, end, vectors, place.t, acc);
    // Accumulator 2h + c of a tile: row g + 8h, token 2t + c.
    if (!addSplits(acc, splits, splitScratch)) continue;
#pragma unroll
    for (int w = 0; w < kWeightTiles; ++w)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = firstRow + 16 * w + 8 * h + place.g;
        if (row >= hidden) continue;
#pragma unroll
        for (int j = 0; j < kTokenTiles; ++j)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int index = pass + 8 * j + 2 * place.t + c;
            if (index < count)
              downRows[static_cast<int64_t>(list[index]) * hidden + row] = acc[w][j][2 * h + c];
          }
      }
  }
}

// Calls f with a value of the 16-bit storage type `type` names.
template <class F>
cudaError_t withHalfType(ElementType type, F&& f) {
  switch (type) {
    case ElementType::BF16:
      return f(__nv_bfloat16{});
    case ElementType::F16:
      return f(__half{});
    case ElementType::F32:
      break;
  }
  return cudaErrorInvalidValue;
}

// Calls f with std::integral_constant<int, tiles>.
template <class F>
cudaError_t withTokenTiles(int tiles, F&& f) {
  switch (tiles) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 4:
      return f(std::integral_constant<int, 4>{});
    case kMaxTokenTiles:
      return f(std::integral_constant<int, kMaxTokenTiles>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace

MoeMmaTiling moeMmaTiling(int64_t tokens, int64_t topK, int64_t numExperts, int64_t hidden,
                          int64_t intermediate) {
  MoeMmaTiling tiling;
  const int64_t assignments = tokens * topK;
  const int64_t slots = std::max<int64_t>(1, std::min(numExperts, assignments));
  // Under uniform routing a touched expert's assignments stay below mean + 3 sd nearly always,
  // and a token chooses an expert once; an expert with more takes further passes.
  const double mean = static_cast<double>(assignments) / static_cast<double>(slots);
  const double likely =
      std::min(static_cast<double>(tokens), std::ceil(mean + 3.0 * std::sqrt(mean) + 1.0));
  while (tiling.tokenTiles < kMaxTokenTiles && 8.0 * tiling.tokenTiles < likely)
    tiling.tokenTiles *= 2;
  tiling.weightTiles = weightTilesFor(tiling.tokenTiles);
  tiling.upSplits = splitsFor(hidden);
  tiling.downSplits = splitsFor(intermediate);
  tiling.slots = static_cast<unsigned>(slots);
  tiling.upRowsPerBlock = 8 * tiling.weightTiles * (kWarps / tiling.upSplits);
  tiling.downRowsPerBlock = 16 * tiling.weightTiles * (kWarps / tiling.downSplits);
  tiling.upBlocks =
      static_cast<unsigned>((intermediate + tiling.upRowsPerBlock - 1) / tiling.upRowsPerBlock);
  tiling.downBlocks =
      static_cast<unsigned>((hidden + tiling.downRowsPerBlock - 1) / tiling.downRowsPerBlock);
  return tiling;
}

bool moeMmaSupports(ElementType type) {
  return type == ElementType::BF16 || type == ElementType::F16;
}

cudaError_t moeGroupedUpMma(ElementType type, const void* x, const int32_t* groups, int64_t tokens,
                            int64_t topK, int64_t numExperts, int64_t hidden, int64_t intermediate,
                            const void* const* gateOrGateUp, const void* const* up,
                            void* activations, cudaStream_t stream) {
  const MoeMmaTiling tiling = moeMmaTiling(tokens, topK, numExperts, hidden, intermediate);
  return withHalfType(type, [&](auto element) {
    using T = decltype(element);
    return withTokenTiles(tiling.tokenTiles, [&](auto tiles) {
      constexpr int kTokenTiles = decltype(tiles)::value;
      const size_t shared =
          tiling.upSplits > 1 ? splitScratchBytes<weightTilesFor(kTokenTiles), kTokenTiles>() : 0;
      return detail::launchDependentShared(
          upMmaKernel<T, kTokenTiles>, dim3(tiling.upBlocks, tiling.slots), dim3(kThreads), shared,
          stream, static_cast<const T*>(x), groups, numExperts, hidden, intermediate, topK,
          tiling.upSplits, gateOrGateUp, up, static_cast<T*>(activations));
    });
  });
}

cudaError_t moeGroupedDownMma(ElementType type, const int32_t* groups, int64_t tokens, int64_t topK,
                              int64_t numExperts, int64_t hidden, int64_t intermediate,
                              const void* const* down, const void* activations, float* downRows,
                              cudaStream_t stream) {
  const MoeMmaTiling tiling = moeMmaTiling(tokens, topK, numExperts, hidden, intermediate);
  return withHalfType(type, [&](auto element) {
    using T = decltype(element);
    return withTokenTiles(tiling.tokenTiles, [&](auto tiles) {
      constexpr int kTokenTiles = decltype(tiles)::value;
      const size_t shared =
          tiling.downSplits > 1 ? splitScratchBytes<weightTilesFor(kTokenTiles), kTokenTiles>() : 0;
      return detail::launchDependentShared(
          downMmaKernel<T, kTokenTiles>, dim3(tiling.downBlocks, tiling.slots), dim3(kThreads),
          shared, stream, groups, numExperts, hidden, intermediate, tiling.downSplits, down,
          static_cast<const T*>(activations), downRows);
    });
  });
}

}  // namespace tpc::cuda
