// Sparse mixture of experts, simple and correct first (decode touches few experts per token):
//   moeRouter: one block per token; warps take experts, dot x . gate_e, then softmax over the
//     experts and top-k by repeated maximum (ties: lower index), as cpu::moeRouter;
//   moeExperts phase 1: hidden[t, k, :] = silu(gate_e x_t) * (up_e x_t) in f32 in the workspace,
//     one warp per intermediate row; phase 2: out[t, :] += sum_k w[t, k] * (down_e hidden[t, k])
//     with one warp per output element, the k terms added in k order in f32 and rounded once.
// Each assignment reads its expert's rows itself (no grouping of tokens by expert), so many tokens
// re-read expert weights from L2. The backend runs the streaming kernels (MoeStreaming.h) in their
// place wherever the shapes allow, and these where not (rows of no whole 16-byte vectors, more
// than 4096 experts) or when TPC_MOE_KERNELS=old asks for them; steps with many tokens outside a
// graph group them by expert and run GEMMs (MoeGrouped.h).
#include <cmath>
#include <type_traits>

#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/MoeSelect.cuh"

namespace tpc::cuda {
namespace {

using detail::fromFloat;
using detail::kVecWidth;
using detail::kWarpSize;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;

// Partial dot product of this lane's share of a[0:n) . b[0:n) (a in storage type, b either the
// storage type or f32); the caller reduces over the warp. Vectorized when the caller allows it
// (n a whole number of vectors) and both rows turn out 16-byte aligned: expert weights are
// reached through device pointers, so their alignment is only known here.
template <typename T, typename U>
__device__ float laneDot(const T* a, const U* b, int64_t n, bool vector) {
  const int lane = threadIdx.x % kWarpSize;
  vector = vector && ((reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b)) % 16) == 0;
  float sum = 0.0f;
  int64_t tail = 0;
  if (vector) {
    constexpr int kWidth = kVecWidth<T>;
    const int64_t vectors = n / kWidth;
    for (int64_t v = lane; v < vectors; v += kWarpSize) {
      float x[kWidth];
      detail::loadVec(a + v * kWidth, x);
      if constexpr (std::is_same_v<U, float>) {
        const float4* y = reinterpret_cast<const float4*>(b + v * kWidth);
#pragma unroll
        for (int i = 0; i < kWidth / 4; ++i) {
          const float4 f = y[i];
          sum += x[4 * i] * f.x + x[4 * i + 1] * f.y + x[4 * i + 2] * f.z + x[4 * i + 3] * f.w;
        }
      } else {
        float y[kWidth];
        detail::loadVec(b + v * kWidth, y);
#pragma unroll
        for (int i = 0; i < kWidth; ++i) sum += x[i] * y[i];
      }
    }
    tail = vectors * kWidth;
  }
  for (int64_t i = tail + lane; i < n; i += kWarpSize)
    sum += detail::toFloat(a[i]) * detail::toFloat(b[i]);
  return sum;
}

template <typename T>
__global__ void routerKernel(const T* x, const T* gate, int64_t hidden, int64_t numExperts,
                             int64_t topK, bool normTopkProb, bool vector, float* weights,
                             int32_t* experts) {
  extern __shared__ float probs[];  // numExperts
  const int64_t t = blockIdx.x;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const T* row = x + t * hidden;
  for (int64_t e = warp; e < numExperts; e += kWarps) {
    const float dot = detail::warpSum(laneDot(gate + e * hidden, row, hidden, vector));
    if (lane == 0) probs[e] = dot;
  }
  __syncthreads();
  // Softmax and selection are tiny (numExperts ~ 8..512): warp 0 does them.
  if (warp != 0) return;
  detail::warpSoftmaxTopK(probs, numExperts, topK, normTopkProb, weights + t * topK,
                          experts + t * topK);
}

// Phase 1: grid (assignments, row blocks of the intermediate dimension).
template <typename T>
__global__ void expertUpKernel(const T* x, const int32_t* experts, int64_t hidden,
                               int64_t intermediate, int64_t topK, const void* const* gateOrGateUp,
                               const void* const* up, bool vector, float* activations) {
  const int64_t assignment = blockIdx.x;
  const int64_t t = assignment / topK;
  const int32_t expert = experts[assignment];
  if (expert < 0) return;  // another rank's expert (moeLocalExperts)
  const auto* gateWeights = static_cast<const T*>(gateOrGateUp[expert]);
  // Separate up weights, or the second half of the fused gate-then-up matrix.
  const T* upWeights = up ? static_cast<const T*>(up[expert]) : gateWeights + intermediate * hidden;
  const T* row = x + t * hidden;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int64_t i = static_cast<int64_t>(blockIdx.y) * kWarps + warp;
  if (i >= intermediate) return;
  const float g = detail::warpSum(laneDot(gateWeights + i * hidden, row, hidden, vector));
  const float u = detail::warpSum(laneDot(upWeights + i * hidden, row, hidden, vector));
  if (lane == 0) activations[assignment * intermediate + i] = detail::silu(g) * u;
}

// Phase 2: grid (tokens, row blocks of hidden).
template <typename T>
__global__ void expertDownKernel(const float* weights, const int32_t* experts, int64_t hidden,
                                 int64_t intermediate, int64_t topK, const void* const* down,
                                 const float* activations, bool vector, T* out) {
  const int64_t t = blockIdx.x;
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int64_t j = static_cast<int64_t>(blockIdx.y) * kWarps + warp;
  if (j >= hidden) return;
  float total = 0.0f;
  for (int64_t k = 0; k < topK; ++k) {
    const int64_t assignment = t * topK + k;
    if (experts[assignment] < 0) continue;
    const auto* downWeights = static_cast<const T*>(down[experts[assignment]]);
    const float dot =
        detail::warpSum(laneDot(downWeights + j * intermediate,
                                activations + assignment * intermediate, intermediate, vector));
    total += dot * weights[assignment];
  }
  if (lane == 0) out[t * hidden + j] = fromFloat<T>(detail::toFloat(out[t * hidden + j]) + total);
}

}  // namespace

cudaError_t moeRouter(ElementType type, const void* x, const void* gate, int64_t tokens,
                      int64_t hidden, int64_t numExperts, int64_t topK, bool normTopkProb,
                      float* weights, int32_t* experts, cudaStream_t stream) {
  if (topK <= 0 || topK > numExperts || numExperts > 8192) return cudaErrorInvalidValue;
  if (tokens <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    const bool vector = detail::rowsVectorizable<Element>(hidden, {x, gate});
    const size_t shared = sizeof(float) * static_cast<size_t>(numExperts);
    routerKernel<Element><<<static_cast<unsigned>(tokens), kThreads, shared, stream>>>(
        static_cast<const Element*>(x), static_cast<const Element*>(gate), hidden, numExperts, topK,
        normTopkProb, vector, weights, experts);
    return cudaGetLastError();
  });
}

size_t moeWorkspaceBytes(int64_t tokens, int64_t topK, int64_t intermediate) {
  return static_cast<size_t>(tokens * topK * intermediate) * sizeof(float);
}

cudaError_t moeExperts(ElementType type, const void* x, const float* weights,
                       const int32_t* experts, int64_t tokens, int64_t hidden, int64_t intermediate,
                       int64_t topK, const void* const* gateOrGateUp, const void* const* up,
                       const void* const* down, void* workspace, void* out, cudaStream_t stream) {
  if (tokens <= 0 || topK <= 0 || intermediate <= 0 || hidden <= 0) return cudaGetLastError();
  // grid y holds the row blocks: intermediate and hidden up to 65535 * 8.
  if (intermediate > 65535 * kWarps || hidden > 65535 * kWarps) return cudaErrorInvalidValue;
  return TPC_DISPATCH_ELEMENT(type, [&] {
    auto* activations = static_cast<float*>(workspace);
    // Whole vectors per row; laneDot checks each row's alignment on the device.
    const bool upVector = detail::rowsVectorizable<Element>(hidden, {});
    const bool downVector = detail::rowsVectorizable<Element>(intermediate, {});
    const dim3 upGrid(static_cast<unsigned>(tokens * topK),
                      detail::gridFor(intermediate, kWarps, 65535));
    expertUpKernel<Element><<<upGrid, kThreads, 0, stream>>>(
        static_cast<const Element*>(x), experts, hidden, intermediate, topK, gateOrGateUp, up,
        upVector, activations);
    const dim3 downGrid(static_cast<unsigned>(tokens), detail::gridFor(hidden, kWarps, 65535));
    expertDownKernel<Element>
        <<<downGrid, kThreads, 0, stream>>>(weights, experts, hidden, intermediate, topK, down,
                                            activations, downVector, static_cast<Element*>(out));
    return cudaGetLastError();
  });
}

namespace {

__global__ void localExpertsKernel(const int32_t* experts, int64_t assignments, int64_t first,
                                   int64_t count, int32_t* local) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t a = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; a < assignments;
       a += stride) {
    const int64_t e = static_cast<int64_t>(experts[a]) - first;
    local[a] = e >= 0 && e < count ? static_cast<int32_t>(e) : -1;
  }
}

}  // namespace

cudaError_t moeLocalExperts(const int32_t* experts, int64_t assignments, int64_t first,
                            int64_t count, int32_t* local, cudaStream_t stream) {
  if (assignments <= 0) return cudaGetLastError();
  localExpertsKernel<<<detail::gridFor(assignments, kThreads, 1024), kThreads, 0, stream>>>(
      experts, assignments, first, count, local);
  return cudaGetLastError();
}

}  // namespace tpc::cuda
