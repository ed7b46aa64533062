// The streaming MoE router (MoeStreaming.h): logits by many warps, then one warp per token for
// the softmax and the top-k, with the selection rules of the first router (Moe.cu) and of
// cpu::moeRouter. Up to kFusedMaxExperts experts this is one launch: the blocks of a token block's
// logits form a thread-block cluster (Hopper), its first block gathers the logits from the
// others' shared memory and selects, where a second kernel would wait for the first to finish
// and read them back from global memory (a batch-1 Qwen3-30B-A3B step has 48 routers on its
// critical path). TPC_MOE_ROUTER_UNFUSED=1 keeps the two launches, to measure the fusion.
#include <cooperative_groups.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/DependentLaunch.cuh"
#include "kernels/cuda/MoeSelect.cuh"
#include "kernels/cuda/MoeStreaming.h"
#include "kernels/cuda/StreamRows.cuh"

namespace tpc::cuda {
namespace {

constexpr int kWarps = 8;  // logits: one expert row per warp
constexpr int kTokensPerPass = 8;
constexpr int kSelectWarps = 4;  // selection: one token per warp
constexpr int kMaxExperts = 1024;
constexpr int kMaxCluster = 16;  // Hopper's non-portable cluster size
constexpr int kFusedMaxExperts = kMaxCluster * kWarps;

namespace cg = cooperative_groups;

// A warp's expert row `row` against `count` tokens of x from token `first`: after the sum
// across the warp, lane t holds token t's logit (t < count).
template <class T>
__device__ __forceinline__ float expertLogit(const T* x, const uint4* row, int64_t first, int count,
                                             int64_t hidden, int64_t vectors) {
  const uint4* inputs[kTokensPerPass];
#pragma unroll
  for (int t = 0; t < kTokensPerPass; ++t)
    inputs[t] = reinterpret_cast<const uint4*>(x + (first + (t < count ? t : 0)) * hidden);
  const uint4* rows[1] = {row};
  float acc[1][kTokensPerPass] = {};
  detail::streamRows<T, 1, kTokensPerPass, 4>(rows, inputs, count, vectors, acc);
  detail::warpSums(acc, count);
  const int lane = static_cast<int>(threadIdx.x & 31);
  float mine = 0.0f;
#pragma unroll
  for (int t = 0; t < kTokensPerPass; ++t)
    if (lane == t) mine = acc[0][t];
  return mine;
}

// Grid (expert blocks, token blocks): warp w of block (b, c) computes expert b * kWarps + w's
// logits for tokens [c * 8, c * 8 + 8).
template <class T>
__global__ void __launch_bounds__(kWarps * 32)
    routerLogitsKernel(const T* x, const T* gate, int64_t tokens, int64_t hidden,
                       int64_t numExperts, float* logits) {
  detail::allowDependentLaunch();
  const int lane = threadIdx.x & 31;
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t vectors = hidden * static_cast<int64_t>(sizeof(T)) / 16;
  const uint4* row = reinterpret_cast<const uint4*>(gate + (e < numExperts ? e : 0) * hidden);
  // No earlier kernel writes the gate: its row heads for L2 while the previous kernel finishes.
  for (int64_t v = lane * 8; v < vectors; v += 32 * 8)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(row + v));
  detail::waitForPrerequisites();
  if (e >= numExperts) return;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * kTokensPerPass;
  const int count = static_cast<int>(detail::minI64(kTokensPerPass, tokens - first));
  const float logit = expertLogit(x, row, first, count, hidden, vectors);
  if (lane < count) logits[(first + lane) * numExperts + e] = logit;
}

// One warp per token: softmax over its logits, then top-k by repeated maximum (MoeSelect.cuh),
// as routerKernel in Moe.cu.
__global__ void __launch_bounds__(kSelectWarps * 32)
    routerSelectKernel(const float* logits, int64_t tokens, int64_t numExperts, int64_t topK,
                       bool normTopkProb, float* weights, int32_t* experts) {
  __shared__ float shared[kSelectWarps][kMaxExperts];
  detail::allowDependentLaunch();
  detail::waitForPrerequisites();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kSelectWarps + warp;
  if (t >= tokens) return;
  float* probs = shared[warp];
  for (int64_t e = lane; e < numExperts; e += 32) probs[e] = __ldca(logits + t * numExperts + e);
  __syncwarp();
  detail::warpSoftmaxTopK(probs, numExperts, topK, normTopkProb, weights + t * topK,
                          experts + t * topK);
}

// The two kernels above in one, for numExperts <= kFusedMaxExperts: grid and warps as the logits
// kernel, the gridDim.x blocks of a token block one cluster. Each block keeps its experts'
// logits in shared memory; the first block gathers the token block's logits into `probs`, then
// selects with a warp per token as routerSelectKernel does.
template <class T>
__global__ void __launch_bounds__(kWarps * 32)
    routerFusedKernel(const T* x, const T* gate, int64_t tokens, int64_t hidden, int64_t numExperts,
                      int64_t topK, bool normTopkProb, float* weights, int32_t* experts) {
  static_assert(kWarps >= kTokensPerPass, "a selecting warp per token of the pass");
  __shared__ float blockLogits[kTokensPerPass][kWarps];
  __shared__ float probs[kTokensPerPass][kFusedMaxExperts];
  detail::allowDependentLaunch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool hasExpert = e < numExperts;
  const int64_t vectors = hidden * static_cast<int64_t>(sizeof(T)) / 16;
  const uint4* row = reinterpret_cast<const uint4*>(gate + (hasExpert ? e : 0) * hidden);
  for (int64_t v = lane * 8; v < vectors; v += 32 * 8)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(row + v));
  detail::waitForPrerequisites();
  const int64_t first = static_cast<int64_t>(blockIdx.y) * kTokensPerPass;
  const int count = static_cast<int>(detail::minI64(kTokensPerPass, tokens - first));
  if (hasExpert) {
    const float logit = expertLogit(x, row, first, count, hidden, vectors);
    if (lane < count) blockLogits[lane][warp] = logit;
  }
  // One block (Mixtral's 8 experts) needs no cluster.
  const bool single = gridDim.x == 1;
  const cg::cluster_group cluster = cg::this_cluster();
  if (single)
    __syncthreads();
  else
    cluster.sync();  // every block's logits in its shared memory
  const bool selects = single || cluster.block_rank() == 0;
  if (selects && warp < count)
    for (int64_t expert = lane; expert < numExperts; expert += 32) {
      const auto owner = static_cast<unsigned>(expert / kWarps);
      const float* from = &blockLogits[warp][expert % kWarps];
      probs[warp][expert] = single ? *from : *cluster.map_shared_rank(from, owner);
    }
  if (!single) cluster.sync();  // no block leaves while the first may still read its logits
  if (!selects || warp >= count) return;
  __syncwarp();
  const int64_t t = first + warp;
  detail::warpSoftmaxTopK(probs[warp], numExperts, topK, normTopkProb, weights + t * topK,
                          experts + t * topK);
}

// Whether the fused kernel takes numExperts: within a cluster, on a device that launches
// clusters (any device for a single block), unless TPC_MOE_ROUTER_UNFUSED=1.
bool routerFuses(int64_t numExperts) {
  static const bool clusters = [] {
    int device = 0, supported = 0;
    return cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&supported, cudaDevAttrClusterLaunch, device) == cudaSuccess &&
           supported != 0;
  }();
  static const bool unfused = environmentFlag("TPC_MOE_ROUTER_UNFUSED");
  return !unfused && (numExperts <= kWarps || (clusters && numExperts <= kFusedMaxExperts));
}

template <class T>
cudaError_t launchFusedRouter(const void* x, const void* gate, int64_t tokens, int64_t hidden,
                              int64_t numExperts, int64_t topK, bool norm, float* weights,
                              int32_t* experts, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned>((numExperts + kWarps - 1) / kWarps);
  // Clusters of more than 8 blocks are Hopper's non-portable size: allowed per kernel.
  static const cudaError_t nonPortable =
      cudaFuncSetAttribute(routerFusedKernel<T>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  if (blocks > 8 && nonPortable != cudaSuccess) return nonPortable;
  const dim3 grid(blocks, static_cast<unsigned>((tokens + kTokensPerPass - 1) / kTokensPerPass));
  if (cudaError_t e = detail::launchDependentClusters(routerFusedKernel<T>, grid, dim3(kWarps * 32),
                                                      0, blocks, stream, static_cast<const T*>(x),
                                                      static_cast<const T*>(gate), tokens, hidden,
                                                      numExperts, topK, norm, weights, experts))
    return e;
  return cudaGetLastError();
}

template <class T>
cudaError_t launchRouter(const void* x, const void* gate, int64_t tokens, int64_t hidden,
                         int64_t numExperts, int64_t topK, bool norm, float* logits, float* weights,
                         int32_t* experts, cudaStream_t stream) {
  if (routerFuses(numExperts))
    return launchFusedRouter<T>(x, gate, tokens, hidden, numExperts, topK, norm, weights, experts,
                                stream);
  const dim3 grid(static_cast<unsigned>((numExperts + kWarps - 1) / kWarps),
                  static_cast<unsigned>((tokens + kTokensPerPass - 1) / kTokensPerPass));
  if (cudaError_t e = detail::launchDependent(
          routerLogitsKernel<T>, grid, dim3(kWarps * 32), stream, static_cast<const T*>(x),
          static_cast<const T*>(gate), tokens, hidden, numExperts, logits))
    return e;
  const dim3 selectGrid(static_cast<unsigned>((tokens + kSelectWarps - 1) / kSelectWarps));
  if (cudaError_t e =
          detail::launchDependent(routerSelectKernel, selectGrid, dim3(kSelectWarps * 32), stream,
                                  logits, tokens, numExperts, topK, norm, weights, experts))
    return e;
  return cudaGetLastError();
}

}  // namespace

bool moeStreamingDisabled() {
  static const bool disabled = [] {
    const char* v = std::getenv("TPC_MOE_KERNELS");
    return v && std::strcmp(v, "old") == 0;
  }();
  return disabled;
}

int64_t moeDirectMaxTokens() {
  static const int64_t tokens = [] {
    const char* v = std::getenv("TPC_MOE_DIRECT_TOKENS");
    return v && *v ? std::atoll(v) : int64_t{1};
  }();
  return tokens;
}

size_t moeRouterStreamingWorkspaceBytes(int64_t tokens, int64_t numExperts) {
  return static_cast<size_t>(tokens * numExperts) * sizeof(float);
}

bool moeRouterStreamingSupports(ElementType type, int64_t hidden, int64_t numExperts, const void* x,
                                const void* gate, const void* workspace) {
  return hidden > 0 && (hidden * static_cast<int64_t>(elementBytes(type))) % 16 == 0 &&
         numExperts > 0 && numExperts <= kMaxExperts && workspace && detail::aligned16(x) &&
         detail::aligned16(gate) && detail::aligned16(workspace);
}

cudaError_t moeRouterStreaming(ElementType type, const void* x, const void* gate, int64_t tokens,
                               int64_t hidden, int64_t numExperts, int64_t topK, bool normTopkProb,
                               void* workspace, float* weights, int32_t* experts,
                               cudaStream_t stream) {
  if (topK <= 0 || topK > numExperts || numExperts > kMaxExperts) return cudaErrorInvalidValue;
  if (tokens <= 0) return cudaGetLastError();
  if ((tokens + kTokensPerPass - 1) / kTokensPerPass > 65535) return cudaErrorInvalidValue;
  auto* logits = static_cast<float*>(workspace);
  return TPC_DISPATCH_ELEMENT(type, [&] {
    return launchRouter<Element>(x, gate, tokens, hidden, numExperts, topK, normTopkProb, logits,
                                 weights, experts, stream);
  });
}

}  // namespace tpc::cuda
