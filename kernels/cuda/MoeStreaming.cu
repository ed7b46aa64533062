// The streaming MoE experts (MoeStreaming.h): direct kernels for a few tokens, kernels grouped by
// expert on the device for more. Grouped gate/up and down run on tensor cores for 16-bit weights
// (MoeStreamingMma.h); f32 weights take the CUDA-core kernels here.
//
// Workspace: ints (starts[E + 1], active[E], activeCount, order[A]) | activations [A, I] in the
// storage type | f32 rows [A, hidden] of each (token, choice)'s down projection (grouped only),
// where A = tokens * topK and E = numExperts. Activation and down rows are indexed by assignment
// (t * topK + k), so the order in which the grouping lists an expert's assignments changes no
// result: each assignment's sums run in the same order whichever tokens share its pass.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>

#include "kernels/cuda/DependentLaunch.cuh"
#include "kernels/cuda/MoeExpertGroups.cuh"
#include "kernels/cuda/MoeStreaming.h"
#include "kernels/cuda/MoeStreamingMma.h"
#include "kernels/cuda/StreamRows.cuh"

namespace tpc::cuda {
namespace {

using detail::fromFloat;
using detail::toFloat;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTokensPerPass = 8;  // grouped: tokens one pass over an expert's rows serves
constexpr int kDownRows = 4;       // rows of down one warp streams together
constexpr int kMaxExperts = 4096;  // the grouping's counts live in shared memory
constexpr int kGroupThreads = 1024;
constexpr int kDirectMaxAssignments = 64;
constexpr int kUpUnroll = 4;    // gate and up of long rows: 8 loads in flight per lane
constexpr int kDownUnroll = 2;  // four down rows: 8 loads in flight per lane

int64_t roundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

struct Layout {
  size_t activations = 0, downRows = 0, bytes = 0;
};

Layout layoutFor(size_t element, int64_t tokens, int64_t topK, int64_t hidden, int64_t intermediate,
                 int64_t numExperts) {
  const int64_t assignments = tokens * topK;
  Layout layout;
  layout.activations =
      static_cast<size_t>(roundUp(detail::expertGroupInts(assignments, numExperts) * 4, 256));
  layout.downRows =
      layout.activations +
      static_cast<size_t>(roundUp(assignments * intermediate * static_cast<int64_t>(element), 256));
  layout.bytes = layout.downRows + static_cast<size_t>(roundUp(assignments * hidden * 4, 256));
  return layout;
}

// Inclusive scan over the block of one int per thread (blockDim.x = kGroupThreads).
__device__ int blockInclusiveScan(int value, int* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int offset = 1; offset < 32; offset *= 2) {
    const int other = __shfl_up_sync(detail::kFullMask, value, offset);
    if (lane >= offset) value += other;
  }
  if (lane == 31) scratch[warp] = value;
  __syncthreads();
  if (warp == 0) {
    int total = lane < kGroupThreads / 32 ? scratch[lane] : 0;
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
      const int other = __shfl_up_sync(detail::kFullMask, total, offset);
      if (lane >= offset) total += other;
    }
    scratch[lane] = total;
  }
  __syncthreads();
  const int result = value + (warp > 0 ? scratch[warp - 1] : 0);
  __syncthreads();
  return result;
}

// One block: counts per expert, their exclusive sums (starts), the touched experts in ascending
// order (active), and every assignment's place in the expert-sorted order. Ids out of range are
// left out.
__global__ void __launch_bounds__(kGroupThreads)
    groupKernel(const int32_t* experts, int64_t assignments, int64_t numExperts, int32_t* ints) {
  __shared__ int counts[kMaxExperts];
  __shared__ int scratch[32];
  detail::allowDependentLaunch();
  detail::waitForPrerequisites();
  int32_t* starts = ints;
  int32_t* active = ints + numExperts + 1;
  int32_t* order = ints + 2 * numExperts + 2;
  for (int64_t e = threadIdx.x; e < numExperts; e += kGroupThreads) counts[e] = 0;
  __syncthreads();
  for (int64_t a = threadIdx.x; a < assignments; a += kGroupThreads) {
    const int32_t e = experts[a];
    if (e >= 0 && e < numExperts) atomicAdd(&counts[e], 1);
  }
  __syncthreads();
  // Each thread owns a contiguous run of experts.
  const int64_t per = (numExperts + kGroupThreads - 1) / kGroupThreads;
  const int64_t begin = detail::minI64(threadIdx.x * per, numExperts);
  const int64_t end = detail::minI64(begin + per, numExperts);
  int sum = 0, touched = 0;
  for (int64_t e = begin; e < end; ++e) {
    sum += counts[e];
    touched += counts[e] > 0;
  }
  int start = blockInclusiveScan(sum, scratch) - sum;
  int rank = blockInclusiveScan(touched, scratch) - touched;
  for (int64_t e = begin; e < end; ++e) {
    const int count = counts[e];
    starts[e] = start;
    if (count > 0) active[rank++] = static_cast<int32_t>(e);
    counts[e] = start;  // from here on: the next free place of expert e
    start += count;
  }
  if (threadIdx.x == kGroupThreads - 1) {
    starts[numExperts] = start;
    ints[2 * numExperts + 1] = rank;
  }
  __syncthreads();
  for (int64_t a = threadIdx.x; a < assignments; a += kGroupThreads) {
    const int32_t e = experts[a];
    if (e >= 0 && e < numExperts) order[atomicAdd(&counts[e], 1)] = static_cast<int32_t>(a);
  }
}

// Gate/up and SwiGLU. Grid (intermediate rows / kWarps, slots): warp w of block (b, s) takes
// intermediate row b * kWarps + w of slot s's expert. Direct: slot s is assignment s. Grouped
// (f32 weights): slot s is the s-th touched expert, and its assignments pass kTokens at a time.
// The direct kernels keep 4 blocks per SM resident (3 at the widest unrolls), the registers
// they had before their unroll became a parameter.
template <class T, bool kGrouped, int kUnroll = kUpUnroll>
__global__ void __launch_bounds__(kThreads, kGrouped ? 1 : (kUnroll >= 8 ? 3 : 4))
    upKernel(const T* x, const int32_t* experts, const int32_t* ints, int64_t numExperts,
             int64_t hidden, int64_t intermediate, int64_t topK,
             const void* const* __restrict__ gateOrGateUp, const void* const* __restrict__ up,
             T* activations) {
  constexpr int kTokens = kGrouped ? kTokensPerPass : 1;
  detail::allowDependentLaunch();
  detail::waitForPrerequisites();
  const int lane = threadIdx.x & 31;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (i >= intermediate) return;
  const int64_t slot = blockIdx.y;
  int32_t expert;
  int count;
  const int32_t* list = nullptr;
  if constexpr (kGrouped) {
    const detail::ExpertGroups groups(ints, numExperts);
    if (slot >= *groups.count) return;
    expert = groups.active[slot];
    list = groups.order + groups.starts[expert];
    count = groups.starts[expert + 1] - groups.starts[expert];
  } else {
    expert = experts[slot];
    if (expert < 0 || expert >= numExperts) return;
    count = 1;
  }
  const auto* gateWeights = static_cast<const T*>(gateOrGateUp[expert]);
  // Separate up weights, or the second half of the fused gate-then-up matrix.
  const T* upWeights = up ? static_cast<const T*>(up[expert]) : gateWeights + intermediate * hidden;
  const uint4* rows[2] = {reinterpret_cast<const uint4*>(gateWeights + i * hidden),
                          reinterpret_cast<const uint4*>(upWeights + i * hidden)};
  const int64_t vectors = hidden * static_cast<int64_t>(sizeof(T)) / 16;
  for (int first = 0; first < count; first += kTokens) {
    const int n = min(kTokens, count - first);
    int64_t assignment[kTokens];
    const uint4* inputs[kTokens];
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      assignment[t] = kGrouped ? list[first + (t < n ? t : 0)] : slot;
      inputs[t] = reinterpret_cast<const uint4*>(x + (assignment[t] / topK) * hidden);
    }
    float acc[2][kTokens] = {};
    detail::streamRows<T, 2, kTokens, kUnroll>(rows, inputs, n, vectors, acc);
    detail::warpSums(acc, n);
#pragma unroll
    for (int t = 0; t < kTokens; ++t)
      if (t < n && lane == t)
        activations[assignment[t] * intermediate + i] =
            fromFloat<T>(detail::silu(acc[0][t]) * acc[1][t]);
  }
}

// Down for few tokens, the routing weights and the choice sum in one launch. Block b covers
// rows [b * R, b * R + R) of hidden, R = kDownRows * spread: its warps take (assignment, four
// rows) units, write the dot products to shared memory, then the block adds each token's choices
// in choice order.
template <class T, int kUnroll = kDownUnroll>
__global__ void __launch_bounds__(kThreads, kUnroll >= 3 ? 3 : 4)
    downDirectKernel(const float* weights, const int32_t* experts, int64_t tokens, int64_t topK,
                     int64_t numExperts, int64_t hidden, int64_t intermediate, int spread,
                     const void* const* __restrict__ down, const T* activations, bool accumulate,
                     T* out) {
  // At most 64 assignments of four rows, or fewer than eight assignments of up to 32 rows.
  __shared__ float partial[kDirectMaxAssignments * kDownRows];
  detail::allowDependentLaunch();
  detail::waitForPrerequisites();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int rowsPerBlock = kDownRows * spread;
  const int64_t firstRow = static_cast<int64_t>(blockIdx.x) * rowsPerBlock;
  const int64_t assignments = tokens * topK;
  const int64_t vectors = intermediate * static_cast<int64_t>(sizeof(T)) / 16;
  for (int64_t unit = warp; unit < assignments * spread; unit += kWarps) {
    const int64_t a = unit / spread;
    const int group = static_cast<int>(unit % spread);
    const int32_t expert = experts[a];
    if (expert < 0 || expert >= numExperts) continue;
    const auto* downWeights = static_cast<const T*>(down[expert]);
    const int64_t row0 = firstRow + group * kDownRows;
    const uint4* rows[kDownRows];
#pragma unroll
    for (int r = 0; r < kDownRows; ++r)
      rows[r] = reinterpret_cast<const uint4*>(downWeights +
                                               detail::minI64(row0 + r, hidden - 1) * intermediate);
    const uint4* inputs[1] = {reinterpret_cast<const uint4*>(activations + a * intermediate)};
    float acc[kDownRows][1] = {};
    detail::streamRows<T, kDownRows, 1, kUnroll>(rows, inputs, 1, vectors, acc);
    detail::warpSums(acc, 1);
    if (lane == 0)
#pragma unroll
      for (int r = 0; r < kDownRows; ++r)
        partial[a * rowsPerBlock + group * kDownRows + r] = acc[r][0];
  }
  __syncthreads();
  for (int64_t item = threadIdx.x; item < tokens * rowsPerBlock; item += kThreads) {
    const int64_t t = item / rowsPerBlock;
    const int r = static_cast<int>(item % rowsPerBlock);
    const int64_t j = firstRow + r;
    if (j >= hidden) continue;
    float total = 0.0f;
    for (int64_t k = 0; k < topK; ++k) {
      const int64_t a = t * topK + k;
      const int32_t expert = experts[a];
      if (expert < 0 || expert >= numExperts) continue;
      total += partial[a * rowsPerBlock + r] * weights[a];
    }
    out[t * hidden + j] = fromFloat<T>((accumulate ? toFloat(out[t * hidden + j]) : 0.0f) + total);
  }
}

// Down, grouped (f32 weights): grid (hidden rows / (kWarps * kDownRows), slots); each warp streams
// four rows of its slot's expert once per kTokensPerPass of the expert's assignments and writes
// their f32 results to the down rows.
template <class T>
__global__ void __launch_bounds__(kThreads)
    downGroupedKernel(const int32_t* ints, int64_t numExperts, int64_t hidden, int64_t intermediate,
                      const void* const* __restrict__ down, const T* activations, float* downRows) {
  detail::allowDependentLaunch();
  detail::waitForPrerequisites();
  const int lane = threadIdx.x & 31;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5)) * kDownRows;
  if (row0 >= hidden) return;
  const detail::ExpertGroups groups(ints, numExperts);
  const int64_t slot = blockIdx.y;
  if (slot >= *groups.count) return;
  const int32_t expert = groups.active[slot];
  const int32_t* list = groups.order + groups.starts[expert];
  const int count = groups.starts[expert + 1] - groups.starts[expert];
  const auto* downWeights = static_cast<const T*>(down[expert]);
  const uint4* rows[kDownRows];
#pragma unroll
  for (int r = 0; r < kDownRows; ++r)
    rows[r] = reinterpret_cast<const uint4*>(downWeights +
                                             detail::minI64(row0 + r, hidden - 1) * intermediate);
  const int64_t vectors = intermediate * static_cast<int64_t>(sizeof(T)) / 16;
  for (int first = 0; first < count; first += kTokensPerPass) {
    const int n = min(kTokensPerPass, count - first);
    int64_t assignment[kTokensPerPass];
    const uint4* inputs[kTokensPerPass];
#pragma unroll
    for (int t = 0; t < kTokensPerPass; ++t) {
      assignment[t] = list[first + (t < n ? t : 0)];
      inputs[t] = reinterpret_cast<const uint4*>(activations + assignment[t] * intermediate);
    }
    float acc[kDownRows][kTokensPerPass] = {};
    detail::streamRows<T, kDownRows, kTokensPerPass, kDownUnroll>(rows, inputs, n, vectors, acc);
    detail::warpSums(acc, n);
#pragma unroll
    for (int t = 0; t < kTokensPerPass; ++t)
      if (t < n && lane == t)
#pragma unroll
        for (int r = 0; r < kDownRows; ++r)
          if (row0 + r < hidden) downRows[assignment[t] * hidden + row0 + r] = acc[r][t];
  }
}

// out[t, j] += sum over k in order of weights[t, k] * downRows[t * topK + k, j] (choices with
// an expert out of range add nothing).
template <class T>
__global__ void __launch_bounds__(kThreads)
    combineKernel(const float* weights, const int32_t* experts, int64_t tokens, int64_t topK,
                  int64_t numExperts, int64_t hidden, const float* downRows, bool accumulate,
                  T* out) {
  detail::allowDependentLaunch();
  detail::waitForPrerequisites();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
       item < tokens * hidden; item += stride) {
    const int64_t t = item / hidden;
    float total = 0.0f;
    for (int64_t k = 0; k < topK; ++k) {
      const int64_t a = t * topK + k;
      const int32_t expert = experts[a];
      if (expert < 0 || expert >= numExperts) continue;
      total += __ldca(downRows + a * hidden + item % hidden) * weights[a];
    }
    out[item] = fromFloat<T>((accumulate ? toFloat(out[item]) : 0.0f) + total);
  }
}

// The one-token kernels' unrolls: loads per lane of each row per stage, the compiler free to
// schedule the rest. Up takes 1 for rows of up to 256 vectors (hidden 2048 in 16-bit types):
// Qwen3-30B-A3B batch 1 on the H200 (2026-12-04, same calls) ran 2.834-2.857 ms/step with it,
// 2.904-2.924 with 2 and 2.970-2.988 with 4, the kernel before. Longer rows (Mixtral-8x7B's
// 4096) keep 4, not measured against 1 yet. Down keeps 2 (1: 2.838 beside up 1's 2.834-2.844;
// 3 and 4: 3.07-3.12 against 2.98-3.02). TPC_MOE_UP_UNROLL (1, 2, 4 or 8) and
// TPC_MOE_DOWN_UNROLL (1, 2 or 3) choose others, to measure the choice; every unroll gives the
// same bits (a lane's sums run in one order).
constexpr int64_t kShortUpRowVectors = 256;
// The unroll a variable names, 0 when it is unset or names none that is built.
int unrollFromEnvironment(const char* name, std::initializer_list<int> allowed) {
  const char* text = std::getenv(name);
  if (!text) return 0;
  const int n = std::atoi(text);
  for (int a : allowed)
    if (a == n) return n;
  std::fprintf(stderr, "warning: %s=%s is not one of the unrolls built; ignored\n", name, text);
  return 0;
}

template <class T>
auto directUpKernel(int64_t vectors) {
  static const int chosen = unrollFromEnvironment("TPC_MOE_UP_UNROLL", {1, 2, 4, 8});
  const int unroll = chosen != 0 ? chosen : (vectors <= kShortUpRowVectors ? 1 : kUpUnroll);
  switch (unroll) {
    case 2:
      return upKernel<T, false, 2>;
    case 4:
      return upKernel<T, false, 4>;
    case 8:
      return upKernel<T, false, 8>;
    default:
      return upKernel<T, false, 1>;
  }
}

template <class T>
auto directDownKernel() {
  static const int chosen = unrollFromEnvironment("TPC_MOE_DOWN_UNROLL", {1, 2, 3});
  switch (chosen) {
    case 1:
      return downDirectKernel<T, 1>;
    case 3:
      return downDirectKernel<T, 3>;
    default:
      return downDirectKernel<T, 2>;
  }
}

template <class T>
cudaError_t launchExperts(ElementType type, const T* x, const float* weights,
                          const int32_t* experts, int64_t tokens, int64_t hidden,
                          int64_t intermediate, int64_t topK, int64_t numExperts,
                          const void* const* gateOrGateUp, const void* const* up,
                          const void* const* down, bool direct, bool accumulate, char* workspace,
                          T* out, cudaStream_t stream) {
  const Layout layout = layoutFor(sizeof(T), tokens, topK, hidden, intermediate, numExperts);
  auto* ints = reinterpret_cast<int32_t*>(workspace);
  auto* activations = reinterpret_cast<T*>(workspace + layout.activations);
  const int64_t assignments = tokens * topK;
  const auto upBlocks = static_cast<unsigned>((intermediate + kWarps - 1) / kWarps);
  const dim3 block(kThreads);
  if (direct) {
    auto* upDirect = directUpKernel<T>(hidden * static_cast<int64_t>(sizeof(T)) / 16);
    auto* downDirect = directDownKernel<T>();
    if (cudaError_t e = detail::launchDependent(
            upDirect, dim3(upBlocks, static_cast<unsigned>(assignments)), block, stream, x, experts,
            ints, numExperts, hidden, intermediate, topK, gateOrGateUp, up, activations))
      return e;
    // Enough (assignment, four rows) units per block for every warp.
    const int spread = static_cast<int>(std::max<int64_t>(1, kWarps / assignments));
    const int64_t rowsPerBlock = kDownRows * spread;
    const auto downBlocks = static_cast<unsigned>((hidden + rowsPerBlock - 1) / rowsPerBlock);
    if (cudaError_t e = detail::launchDependent(
            downDirect, dim3(downBlocks), block, stream, weights, experts, tokens, topK, numExperts,
            hidden, intermediate, spread, down, activations, accumulate, out))
      return e;
    return cudaGetLastError();
  }
  auto* downRows = reinterpret_cast<float*>(workspace + layout.downRows);
  if (cudaError_t e = detail::launchDependent(groupKernel, dim3(1), dim3(kGroupThreads), stream,
                                              experts, assignments, numExperts, ints))
    return e;
  if constexpr (sizeof(T) == 2) {
    if (cudaError_t e = moeGroupedUpMma(type, x, ints, tokens, topK, numExperts, hidden,
                                        intermediate, gateOrGateUp, up, activations, stream))
      return e;
    if (cudaError_t e = moeGroupedDownMma(type, ints, tokens, topK, numExperts, hidden,
                                          intermediate, down, activations, downRows, stream))
      return e;
  } else {
    // Worst case: every assignment a different expert.
    const auto slots = static_cast<unsigned>(std::min(numExperts, assignments));
    if (cudaError_t e = detail::launchDependent(upKernel<T, true>, dim3(upBlocks, slots), block,
                                                stream, x, experts, ints, numExperts, hidden,
                                                intermediate, topK, gateOrGateUp, up, activations))
      return e;
    const auto downBlocks =
        static_cast<unsigned>((hidden + kWarps * kDownRows - 1) / (kWarps * kDownRows));
    if (cudaError_t e = detail::launchDependent(downGroupedKernel<T>, dim3(downBlocks, slots),
                                                block, stream, ints, numExperts, hidden,
                                                intermediate, down, activations, downRows))
      return e;
  }
  if (cudaError_t e = detail::launchDependent(
          combineKernel<T>, dim3(detail::gridFor(tokens * hidden, kThreads, 4096)), block, stream,
          weights, experts, tokens, topK, numExperts, hidden, downRows, accumulate, out))
    return e;
  return cudaGetLastError();
}

}  // namespace

size_t moeExpertsStreamingWorkspaceBytes(ElementType type, int64_t tokens, int64_t topK,
                                         int64_t hidden, int64_t intermediate, int64_t numExperts) {
  return layoutFor(elementBytes(type), tokens, topK, hidden, intermediate, numExperts).bytes;
}

bool moeExpertsStreamingSupports(ElementType type, int64_t hidden, int64_t intermediate,
                                 int64_t numExperts, const void* x, const void* workspace) {
  const auto element = static_cast<int64_t>(elementBytes(type));
  return hidden > 0 && intermediate > 0 && (hidden * element) % 16 == 0 &&
         (intermediate * element) % 16 == 0 && numExperts > 0 && numExperts <= kMaxExperts &&
         workspace && detail::aligned16(x) && detail::aligned16(workspace);
}

cudaError_t moeExpertsStreaming(ElementType type, const void* x, const float* weights,
                                const int32_t* experts, int64_t tokens, int64_t hidden,
                                int64_t intermediate, int64_t topK, int64_t numExperts,
                                const void* const* gateOrGateUp, const void* const* up,
                                const void* const* down, int64_t directMaxTokens, bool accumulate,
                                void* workspace, void* out, cudaStream_t stream) {
  if (tokens <= 0 || topK <= 0 || intermediate <= 0 || hidden <= 0) return cudaGetLastError();
  if (numExperts <= 0 || numExperts > kMaxExperts) return cudaErrorInvalidValue;
  const int64_t assignments = tokens * topK;
  const bool direct = tokens <= directMaxTokens && assignments <= kDirectMaxAssignments;
  if (assignments > INT32_MAX || (direct && assignments > 65535)) return cudaErrorInvalidValue;
  return TPC_DISPATCH_ELEMENT(type, [&] {
    return launchExperts<Element>(type, static_cast<const Element*>(x), weights, experts, tokens,
                                  hidden, intermediate, topK, numExperts, gateOrGateUp, up, down,
                                  direct, accumulate, static_cast<char*>(workspace),
                                  static_cast<Element*>(out), stream);
  });
}

}  // namespace tpc::cuda
