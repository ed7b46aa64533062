// RMSNorm as cpu::rmsNorm computes it: the mean of squares in f32, x * rsqrt(mean + eps) rounded
// like the CPU twin (1 / sqrt, then w * (x * inverse)). Wide rows (hidden states) get one block
// each; narrow rows (per-head q/k norms of headDim elements) get one warp each, so a decode step's
// few rows still spread over many SMs and a block is not wasted on 128 elements.
#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DependentLaunch.cuh"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/HeadNorm.cuh"

namespace tpc::cuda {
namespace {

using detail::fromFloat;
using detail::kVecWidth;

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / detail::kWarpSize;
// Rows up to this width use one warp each.
constexpr int64_t kWarpRowLimit = 1024;

// Lanes of one row group: a warp or the whole block.
template <bool kWarpPerRow>
struct RowGroup {
  __device__ static int lane() {
    return kWarpPerRow ? threadIdx.x % detail::kWarpSize : threadIdx.x;
  }
  __device__ static int size() { return kWarpPerRow ? detail::kWarpSize : blockDim.x; }
  __device__ static float sum(float v, float* scratch) {
    if constexpr (kWarpPerRow)
      return detail::warpSum(v);
    else
      return detail::blockSum(v, scratch);
  }
};

// Optionally adds `residual` into x first, storing the rounded sum (which is what gets normalized,
// so `out` is exactly rmsNorm of the stored `sum`). `sum` may alias x or residual: every element is
// read and written by the same thread, before and after the reduction.
template <typename T, bool kWarpPerRow, bool kVector, bool kAddResidual>
__global__ void rmsNormKernel(const T* x, const T* residual, const T* weight, int64_t rows,
                              int64_t width, float eps, T* sum, T* out) {
  using Group = RowGroup<kWarpPerRow>;
  __shared__ float scratch[detail::kWarpSize];
  const int64_t row = kWarpPerRow ? static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock +
                                        threadIdx.x / detail::kWarpSize
                                  : blockIdx.x;
  // Warps past the last row still must not return before a block-wide barrier; warp-per-row
  // kernels have none, so they may leave.
  if (kWarpPerRow && row >= rows) return;
  const int64_t base = row * width;
  const T* src = kAddResidual ? sum + base : x + base;
  constexpr int kWidth = kVecWidth<T>;
  const int64_t vectors = kVector ? width / kWidth : 0;
  const int64_t tailStart = vectors * kWidth;

  float squares = 0.0f;
  for (int64_t v = Group::lane(); v < vectors; v += Group::size()) {
    float values[kWidth];
    detail::loadVec(x + base + v * kWidth, values);
    if constexpr (kAddResidual) {
      float other[kWidth];
      detail::loadVec(residual + base + v * kWidth, other);
#pragma unroll
      for (int i = 0; i < kWidth; ++i)
        values[i] = detail::toFloat(fromFloat<T>(values[i] + other[i]));
      detail::storeVec(sum + base + v * kWidth, values);
    }
#pragma unroll
    for (int i = 0; i < kWidth; ++i) squares += values[i] * values[i];
  }
  for (int64_t i = tailStart + Group::lane(); i < width; i += Group::size()) {
    float value = detail::toFloat(x[base + i]);
    if constexpr (kAddResidual) {
      const T rounded = fromFloat<T>(value + detail::toFloat(residual[base + i]));
      sum[base + i] = rounded;
      value = detail::toFloat(rounded);
    }
    squares += value * value;
  }
  const float variance = Group::sum(squares, scratch) / static_cast<float>(width);
  const float inverseRms = 1.0f / sqrtf(variance + eps);

  // Second pass over the same elements by the same threads (their own writes are visible).
  for (int64_t v = Group::lane(); v < vectors; v += Group::size()) {
    float values[kWidth], w[kWidth];
    detail::loadVec(src + v * kWidth, values);
    detail::loadVec(weight + v * kWidth, w);
#pragma unroll
    for (int i = 0; i < kWidth; ++i) values[i] = w[i] * (values[i] * inverseRms);
    detail::storeVec(out + base + v * kWidth, values);
  }
  for (int64_t i = tailStart + Group::lane(); i < width; i += Group::size())
    out[base + i] =
        fromFloat<T>(detail::toFloat(weight[i]) * (detail::toFloat(src[i]) * inverseRms));
}

// Rows of at most 1024 vectors (hidden states up to 8192 bf16): one thread per vector keeps it
// and the weight's in registers, so the row is read once and every load is in flight before the
// reduction - a decode step's norm is otherwise bound by the latency of two passes.
// kDependent: launched to overlap the kernel ahead (several rows, see launchRmsNorm). The weight
// (which no kernel writes) is loaded before the wait, x and the residual (which that kernel may
// write) after it, through coherent loads; only then may the kernel after this one start.
// Otherwise (one row, plain stream order) the kernel after it may start at once and fetch its
// weights while this one runs.
template <typename T, bool kAddResidual, bool kDependent>
__global__ void rmsNormRegistersKernel(const T* x, const T* residual, const T* weight,
                                       int64_t width, float eps, T* sum, T* out) {
  if constexpr (!kDependent) detail::allowDependentLaunch();
  __shared__ float scratch[detail::kWarpSize];
  constexpr int kWidth = kVecWidth<T>;
  const int64_t base = static_cast<int64_t>(blockIdx.x) * width;
  const int64_t v = threadIdx.x;
  const bool active = v < width / kWidth;
  float values[kWidth] = {}, w[kWidth] = {};
  float squares = 0.0f;
  if (active) detail::loadVec(weight + v * kWidth, w);
  if constexpr (kDependent) {
    detail::waitForPrerequisites();
    detail::allowDependentLaunch();
  }
  if (active) {
    detail::loadVec(x + base + v * kWidth, values);
    if constexpr (kAddResidual) {
      float other[kWidth];
      detail::loadVec(residual + base + v * kWidth, other);
#pragma unroll
      for (int i = 0; i < kWidth; ++i)
        values[i] = detail::toFloat(fromFloat<T>(values[i] + other[i]));
      detail::storeVec(sum + base + v * kWidth, values);
    }
#pragma unroll
    for (int i = 0; i < kWidth; ++i) squares += values[i] * values[i];
  }
  const float variance = detail::blockSum(squares, scratch) / static_cast<float>(width);
  const float inverseRms = 1.0f / sqrtf(variance + eps);
  if (active) {
#pragma unroll
    for (int i = 0; i < kWidth; ++i) values[i] = w[i] * (values[i] * inverseRms);
    detail::storeVec(out + base + v * kWidth, values);
  }
}

template <typename T, bool kAddResidual>
cudaError_t launchRmsNorm(const void* x, const void* residual, const void* weight, int64_t rows,
                          int64_t width, float eps, void* sum, void* out, cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return cudaGetLastError();
  const auto* xs = static_cast<const T*>(x);
  const auto* rs = static_cast<const T*>(residual);
  const auto* ws = static_cast<const T*>(weight);
  auto* ss = static_cast<T*>(sum);
  auto* os = static_cast<T*>(out);
  const bool vector = detail::rowsVectorizable<T>(width, {x, residual, weight, sum, out});
  const bool warpPerRow = width <= kWarpRowLimit;
  const unsigned blocks =
      warpPerRow ? detail::gridFor(rows, kWarpsPerBlock, INT32_MAX) : static_cast<unsigned>(rows);
  const int64_t vectors = width / kVecWidth<T>;
  if (!warpPerRow && vector && vectors <= 1024) {
    const auto threads = static_cast<unsigned>((vectors + detail::kWarpSize - 1) /
                                               detail::kWarpSize * detail::kWarpSize);
    // Several rows as a dependent launch, one row in stream order. Measured on the H200 (bf16,
    // tpexec bench, side by side): Qwen3-30B-A3B batch 8 5.86 ms/step against 6.10 in stream
    // order, Llama-3-8B batch 8 4.78 against 4.81; at one row the dependent form slowed
    // Llama-3-8B batch 1 to 4.12 against 4.03 (the gate/up GEMV after it starts later), and to
    // 4.24 when it also let that GEMV go before its wait (its 14,336 blocks then started beside
    // the o projection two kernels ahead).
    if (rows == 1) {
      rmsNormRegistersKernel<T, kAddResidual, false>
          <<<1, threads, 0, stream>>>(xs, rs, ws, width, eps, ss, os);
      return cudaGetLastError();
    }
    if (cudaError_t e = detail::launchDependent(rmsNormRegistersKernel<T, kAddResidual, true>,
                                                dim3(static_cast<unsigned>(rows)), dim3(threads),
                                                stream, xs, rs, ws, width, eps, ss, os))
      return e;
    return cudaGetLastError();
  }
  // Four instantiations per (type, residual): warp or block per row, vector or scalar.
  if (warpPerRow && vector)
    rmsNormKernel<T, true, true, kAddResidual>
        <<<blocks, kThreads, 0, stream>>>(xs, rs, ws, rows, width, eps, ss, os);
  else if (warpPerRow)
    rmsNormKernel<T, true, false, kAddResidual>
        <<<blocks, kThreads, 0, stream>>>(xs, rs, ws, rows, width, eps, ss, os);
  else if (vector)
    rmsNormKernel<T, false, true, kAddResidual>
        <<<blocks, kThreads, 0, stream>>>(xs, rs, ws, rows, width, eps, ss, os);
  else
    rmsNormKernel<T, false, false, kAddResidual>
        <<<blocks, kThreads, 0, stream>>>(xs, rs, ws, rows, width, eps, ss, os);
  return cudaGetLastError();
}

// Per-head norms of the common head sizes: a warp per row through headRmsNormRow, which the
// decode attention's folded norm shares.
template <typename T, int kWidth>
__global__ void headRmsNormKernel(const T* x, const T* weight, int64_t rows, float eps, T* out) {
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / detail::kWarpSize;
  if (row >= rows) return;  // no barrier follows
  detail::headRmsNormRow<T, kWidth>(x + row * kWidth, weight, eps, out + row * kWidth);
}

template <typename T>
bool launchHeadRmsNorm(const void* x, const void* weight, int64_t rows, int64_t width, float eps,
                       void* out, cudaStream_t stream) {
  if (rows <= 0 || !detail::rowsVectorizable<T>(width, {x, weight, out})) return false;
  const unsigned blocks = detail::gridFor(rows, kWarpsPerBlock, INT32_MAX);
  const auto* xs = static_cast<const T*>(x);
  const auto* ws = static_cast<const T*>(weight);
  auto* os = static_cast<T*>(out);
  if (width == 64)
    headRmsNormKernel<T, 64><<<blocks, kThreads, 0, stream>>>(xs, ws, rows, eps, os);
  else if (width == 128)
    headRmsNormKernel<T, 128><<<blocks, kThreads, 0, stream>>>(xs, ws, rows, eps, os);
  else
    return false;
  return true;
}

}  // namespace

cudaError_t rmsNorm(ElementType type, const void* x, const void* weight, int64_t tokens,
                    int64_t width, float eps, void* out, cudaStream_t stream) {
  return TPC_DISPATCH_ELEMENT(type, [&] {
    return launchRmsNorm<Element, false>(x, nullptr, weight, tokens, width, eps, nullptr, out,
                                         stream);
  });
}

cudaError_t addRmsNorm(ElementType type, const void* x, const void* residual, const void* weight,
                       int64_t tokens, int64_t width, float eps, void* sum, void* out,
                       cudaStream_t stream) {
  return TPC_DISPATCH_ELEMENT(type, [&] {
    return launchRmsNorm<Element, true>(x, residual, weight, tokens, width, eps, sum, out, stream);
  });
}

cudaError_t headRmsNorm(ElementType type, const void* x, const void* weight, int64_t tokens,
                        int64_t heads, int64_t headDim, float eps, void* out, cudaStream_t stream) {
  // cudaErrorNotSupported: a shape the head kernel does not take, which the generic norm runs.
  const cudaError_t e = TPC_DISPATCH_ELEMENT(type, [&] {
    return launchHeadRmsNorm<Element>(x, weight, tokens * heads, headDim, eps, out, stream)
               ? cudaGetLastError()
               : cudaErrorNotSupported;
  });
  if (e != cudaErrorNotSupported) return e;
  return rmsNorm(type, x, weight, tokens * heads, headDim, eps, out, stream);
}

}  // namespace tpc::cuda
