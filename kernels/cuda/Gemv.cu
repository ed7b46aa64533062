// One warp per output row: each lane streams 16-byte vectors of the row (several in flight,
// unrolled), multiplies them with the matching slice of every token's x (small, served from the
// L1/L2 caches), and the warp reduces its tokens' sums at the end. All arithmetic is f32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/DependentLaunch.cuh"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/Gemv.h"

namespace tpc::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kUnroll = 4;
// Weight vectors per lane fetched before waiting on the previous kernel (dependent launch).
constexpr int kPrefetch = 2 * kUnroll;

using detail::fromFloat;
using detail::toFloat;

// Dot product of one 16-byte vector of w with the same vector of x, in f32.
template <class T>
__device__ __forceinline__ float dot16(const uint4& w, const uint4& x) {
  constexpr int kElems = 16 / sizeof(T);
  const T* wv = reinterpret_cast<const T*>(&w);
  const T* xv = reinterpret_cast<const T*>(&x);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kElems; ++i) sum = fmaf(toFloat(wv[i]), toFloat(xv[i]), sum);
  return sum;
}

// x is written by the kernel this one may overlap (dependent launch), so it is read with a
// coherent load after the wait, never through the read-only path (__ldg, const __restrict__):
// that path assumes data unchanged for the kernel's whole lifetime, which lets the compiler move
// the load above the wait and the non-coherent cache keep lines from before the writes landed.
// Still cached in L1, where every warp of the SM finds the same x.
__device__ __forceinline__ uint4 loadInput(const uint4* p) { return __ldca(p); }

template <class T, class Out, int kTokens>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemvKernel(const T* x, const T* __restrict__ w, const Out* __restrict__ bias, int64_t in,
               int64_t out, Out* __restrict__ y) {
  detail::allowDependentLaunch();
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= out) return;
  const int64_t vectors = in * static_cast<int64_t>(sizeof(T)) / 16;
  const uint4* wRow = reinterpret_cast<const uint4*>(w + row * in);
  const uint4* xRows = reinterpret_cast<const uint4*>(x);
  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;

  int64_t v = lane;
  // The first weights are fetched before waiting for the kernel that writes x.
  if (v + (kPrefetch - 1) * 32 < vectors) {
    uint4 wv[kPrefetch];
#pragma unroll
    for (int u = 0; u < kPrefetch; ++u) wv[u] = __ldcs(wRow + v + u * 32);
    detail::waitForPrerequisites();
#pragma unroll
    for (int u = 0; u < kPrefetch; ++u)
#pragma unroll
      for (int t = 0; t < kTokens; ++t)
        acc[t] += dot16<T>(wv[u], loadInput(xRows + t * vectors + v + u * 32));
    v += kPrefetch * 32;
  } else {
    detail::waitForPrerequisites();
  }
  // The main loop keeps kUnroll weight loads in flight per lane before using any of them.
  for (; v + (kUnroll - 1) * 32 < vectors; v += kUnroll * 32) {
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wv[u] = __ldcs(wRow + v + u * 32);  // streamed once
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int t = 0; t < kTokens; ++t)
        acc[t] += dot16<T>(wv[u], loadInput(xRows + t * vectors + v + u * 32));
  }
  for (; v < vectors; v += 32) {
    uint4 wv = __ldcs(wRow + v);
#pragma unroll
    for (int t = 0; t < kTokens; ++t) acc[t] += dot16<T>(wv, loadInput(xRows + t * vectors + v));
  }
#pragma unroll
  for (int t = 0; t < kTokens; ++t) {
    float s = acc[t];
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(0xffffffffu, s, offset);
    acc[t] = s;
  }
  if (lane == 0) {
    const float b = bias ? toFloat(bias[row]) : 0.0f;
#pragma unroll
    for (int t = 0; t < kTokens; ++t) y[t * out + row] = fromFloat<Out>(acc[t] + b);
  }
}

// One token, gate and up rows paired: the warp for row r also streams row r + half, and writes
// silu(gate) * up, each rounded to T as the separate linear, split and swiglu steps would.
template <class T>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemvSwigluKernel(const T* x, const T* __restrict__ w, const T* __restrict__ bias, int64_t in,
                     int64_t half, T* __restrict__ y) {
  detail::allowDependentLaunch();
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (row >= half) return;
  const int64_t vectors = in * static_cast<int64_t>(sizeof(T)) / 16;
  const uint4* gateRow = reinterpret_cast<const uint4*>(w + row * in);
  const uint4* upRow = reinterpret_cast<const uint4*>(w + (row + half) * in);
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  float gate = 0.0f, up = 0.0f;
  int64_t v = lane;
  // The first weights are fetched before waiting for the kernel that writes x.
  if (v + (kPrefetch - 1) * 32 < vectors) {
    uint4 g[kPrefetch], u[kPrefetch];
#pragma unroll
    for (int k = 0; k < kPrefetch; ++k) {
      g[k] = __ldcs(gateRow + v + k * 32);
      u[k] = __ldcs(upRow + v + k * 32);
    }
    detail::waitForPrerequisites();
#pragma unroll
    for (int k = 0; k < kPrefetch; ++k) {
      const uint4 xk = loadInput(xv + v + k * 32);
      gate += dot16<T>(g[k], xk);
      up += dot16<T>(u[k], xk);
    }
    v += kPrefetch * 32;
  } else {
    detail::waitForPrerequisites();
  }
  for (; v + (kUnroll - 1) * 32 < vectors; v += kUnroll * 32) {
    uint4 g[kUnroll], u[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      g[k] = __ldcs(gateRow + v + k * 32);
      u[k] = __ldcs(upRow + v + k * 32);
    }
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const uint4 xk = loadInput(xv + v + k * 32);
      gate += dot16<T>(g[k], xk);
      up += dot16<T>(u[k], xk);
    }
  }
  for (; v < vectors; v += 32) {
    const uint4 xk = loadInput(xv + v);
    gate += dot16<T>(__ldcs(gateRow + v), xk);
    up += dot16<T>(__ldcs(upRow + v), xk);
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    gate += __shfl_xor_sync(0xffffffffu, gate, offset);
    up += __shfl_xor_sync(0xffffffffu, up, offset);
  }
  if (lane == 0) {
    const float g = toFloat(fromFloat<T>(gate + (bias ? toFloat(bias[row]) : 0.0f)));
    const float u = toFloat(fromFloat<T>(up + (bias ? toFloat(bias[row + half]) : 0.0f)));
    y[row] = fromFloat<T>(g / (1.0f + expf(-g)) * u);
  }
}

template <class T, class Out>
cudaError_t launch(const void* x, const void* w, const void* bias, int64_t tokens, int64_t in,
                   int64_t out, void* y, cudaStream_t stream) {
  dim3 grid(static_cast<unsigned>((out + kWarpsPerBlock - 1) / kWarpsPerBlock));
  dim3 block(kWarpsPerBlock * 32);
  auto* xp = static_cast<const T*>(x);
  auto* wp = static_cast<const T*>(w);
  auto* bp = static_cast<const Out*>(bias);
  auto* yp = static_cast<Out*>(y);
  switch (tokens) {
#define TPC_GEMV_CASE(n)                                                                        \
  case n:                                                                                       \
    if (cudaError_t e = detail::launchDependent(gemvKernel<T, Out, n>, grid, block, stream, xp, \
                                                wp, bp, in, out, yp))                           \
      return e;                                                                                 \
    break;
    TPC_GEMV_CASE(1)
    TPC_GEMV_CASE(2)
    TPC_GEMV_CASE(3)
    TPC_GEMV_CASE(4)
    TPC_GEMV_CASE(5)
    TPC_GEMV_CASE(6)
    TPC_GEMV_CASE(7)
    TPC_GEMV_CASE(8)
#undef TPC_GEMV_CASE
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class T>
cudaError_t launchSwiglu(const void* x, const void* w, const void* bias, int64_t in, int64_t half,
                         void* y, cudaStream_t stream) {
  dim3 grid(static_cast<unsigned>((half + kWarpsPerBlock - 1) / kWarpsPerBlock));
  const cudaError_t launched = detail::launchDependent(
      gemvSwigluKernel<T>, grid, dim3(kWarpsPerBlock * 32), stream, static_cast<const T*>(x),
      static_cast<const T*>(w), static_cast<const T*>(bias), in, half, static_cast<T*>(y));
  return launched != cudaSuccess ? launched : cudaGetLastError();
}

}  // namespace

bool gemvSupports(ElementType input, int64_t tokens, int64_t in, const void* x, const void* w) {
  const int64_t bytes = in * static_cast<int64_t>(elementBytes(input));
  return tokens >= 1 && tokens <= kMaxGemvTokens && bytes % 16 == 0 && aligned16(x) && aligned16(w);
}

cudaError_t gemv(ElementType input, ElementType output, const void* x, const void* w,
                 const void* bias, int64_t tokens, int64_t in, int64_t out, void* y,
                 cudaStream_t stream) {
  const bool f32Out = output == ElementType::F32;
  switch (input) {
    case ElementType::BF16:
      return f32Out ? launch<__nv_bfloat16, float>(x, w, bias, tokens, in, out, y, stream)
                    : launch<__nv_bfloat16, __nv_bfloat16>(x, w, bias, tokens, in, out, y, stream);
    case ElementType::F16:
      return f32Out ? launch<__half, float>(x, w, bias, tokens, in, out, y, stream)
                    : launch<__half, __half>(x, w, bias, tokens, in, out, y, stream);
    default:
      return launch<float, float>(x, w, bias, tokens, in, out, y, stream);
  }
}

cudaError_t gemvSwiglu(ElementType type, const void* x, const void* w, const void* bias, int64_t in,
                       int64_t half, void* y, cudaStream_t stream) {
  switch (type) {
    case ElementType::BF16:
      return launchSwiglu<__nv_bfloat16>(x, w, bias, in, half, y, stream);
    case ElementType::F16:
      return launchSwiglu<__half>(x, w, bias, in, half, y, stream);
    default:
      return launchSwiglu<float>(x, w, bias, in, half, y, stream);
  }
}

}  // namespace tpc::cuda
