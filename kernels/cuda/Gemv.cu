// Output rows go to warps (or to `split` warps each, for one token): each lane streams 16-byte
// vectors of its row, `unroll` per stage with the next stage's loads issued before the current
// one is summed, so a lane never drains its loads to zero between stages; the matching slice of
// every token's x comes from the L1/L2 caches (or from shared memory, where an RMSNorm is folded
// in). The warp reduces its tokens' sums at the end. All arithmetic is f32; with split 1 a row's
// sum is accumulated in the same order whatever the unroll.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "kernels/cuda/DependentLaunch.cuh"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/Gemv.h"

namespace tpc::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpsPerBlock * 32;
// At least this many blocks per SM stay resident (caps registers at 64 a thread): a 4096-row
// matrix then runs in one wave of 32 warps per SM on 132 SMs. Stages of 8 loads need more
// registers and keep 2 blocks.
constexpr int kMinBlocksPerSm = 4;
// The swiglu pair (and the legacy kernel) keep the first kernel's shape: kUnroll loads per row
// per stage and twice that fetched before the wait.
constexpr int kUnroll = 4;
constexpr int kPrefetch = 2 * kUnroll;
// Rows the folded norm handles: the norm kernel's one-block path (one thread per vector).
constexpr int64_t kNormMaxVectors = 1024;

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
// Still cached in L1, where every warp of the SM finds the same x. A folded norm's row is in
// shared memory instead.
template <bool kStaged>
__device__ __forceinline__ uint4 loadInput(const uint4* p) {
  if constexpr (kStaged)
    return *p;
  else
    return __ldca(p);
}

template <class T>
struct NormArgs {
  const T* x;
  const T* residual;
  const T* weight;
  float eps;
  T* sum;
};

template <class T>
NormArgs<T> normArgs(const GemvNorm* n) {
  if (!n) return {nullptr, nullptr, nullptr, 0.0f, nullptr};
  return {static_cast<const T*>(n->x), static_cast<const T*>(n->residual),
          static_cast<const T*>(n->weight), n->eps, static_cast<T*>(n->sum)};
}

// The normed row into shared memory `staged` (width elements of T), computed as
// rmsNormRegistersKernel (Norms.cu) does for one row: each vector's squares summed by the thread
// that would own it there, a warp butterfly per 32 vectors, the warps' sums added in order, then
// w * (x * (1 / sqrt(mean + eps))) rounded to T. Bit for bit the norm step's result. Block 0
// also stores add_rms_norm's sum. Every thread of the block must call it (it has barriers).
template <class T>
__device__ void stageNormedRow(const NormArgs<T>& n, int64_t width, T* staged) {
  constexpr int kWidth = detail::kVecWidth<T>;
  __shared__ float warpSquares[32];
  const int vectors = static_cast<int>(width / kWidth);
  const int normWarps = (vectors + 31) / 32;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int nw = warp; nw < normWarps; nw += kWarpsPerBlock) {
    const int v = nw * 32 + lane;
    float squares = 0.0f;
    if (v < vectors) {
      float values[kWidth];
      detail::loadVec(n.x + v * kWidth, values);
      if (n.residual) {
        float other[kWidth];
        detail::loadVec(n.residual + v * kWidth, other);
#pragma unroll
        for (int i = 0; i < kWidth; ++i) values[i] = toFloat(fromFloat<T>(values[i] + other[i]));
        if (n.sum && blockIdx.x == 0) detail::storeVec(n.sum + v * kWidth, values);
      }
#pragma unroll
      for (int i = 0; i < kWidth; ++i) squares += values[i] * values[i];
      detail::storeVec(staged + v * kWidth, values);  // exact: values are T already
    }
    squares = detail::warpSum(squares);
    if (lane == 0) warpSquares[nw] = squares;
  }
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < normWarps; ++w) total += warpSquares[w];
  const float inverseRms = 1.0f / sqrtf(total / static_cast<float>(width) + n.eps);
  for (int v = static_cast<int>(threadIdx.x); v < vectors; v += kThreads) {
    float values[kWidth], w[kWidth];
    detail::loadVec(staged + v * kWidth, values);
    detail::loadVec(n.weight + v * kWidth, w);
#pragma unroll
    for (int i = 0; i < kWidth; ++i) values[i] = w[i] * (values[i] * inverseRms);
    detail::storeVec(staged + v * kWidth, values);
  }
  __syncthreads();
}

template <class T, class Out>
struct GemvArgs {
  const T* x;
  const T* w;
  const Out* bias;
  int64_t in, out;
  Out* y;
  NormArgs<T> norm;
};

// With kPair (one token, Out == T) the weight is a gate-and-up pair [2 * out, in], gate rows
// first: the warps of output row r stream gate row r and, beside them in the block, up row
// r + out, and the first of them writes silu(gate) * up, each rounded to T as the separate
// linear, split and swiglu steps would.
template <class T, class Out, int kTokens, int kStage, int kSplit, bool kNormed, bool kPair>
__global__ void __launch_bounds__(kThreads, kTokens == 1 ? (kStage == 8 ? 2 : kMinBlocksPerSm) : 1)
    gemvKernel(GemvArgs<T, Out> a) {
  static_assert(!kPair || (kTokens == 1 && std::is_same_v<T, Out>), "a pair is one token of T");
  detail::allowDependentLaunch();
  extern __shared__ uint4 staged[];              // the folded norm's row (kNormed)
  constexpr bool kShared = kSplit > 1 || kPair;  // partial sums meet in shared memory
  __shared__ float partial[kShared ? kWarpsPerBlock : 1][kTokens];
  constexpr int kRowsPerBlock = kWarpsPerBlock / kSplit;  // weight rows
  constexpr int kStride = 32 * kSplit;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int weightSlot = warp / kSplit;
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * (kPair ? kRowsPerBlock / 2 : kRowsPerBlock) +
      (kPair ? weightSlot / 2 : weightSlot);
  const bool active = row < a.out;
  // Warps past the last row stay for the barriers of the norm and the split's reduction.
  if (!active && !kNormed && !kShared) return;
  // 32-bit vector indices (a row has far fewer than 2^31 vectors) keep the loop's registers for
  // the loads in flight.
  const int vectors = static_cast<int>(a.in * static_cast<int64_t>(sizeof(T)) / 16);
  const int64_t weightRow = kPair && weightSlot % 2 == 1 ? row + a.out : row;
  const uint4* wRow = reinterpret_cast<const uint4*>(a.w + (active ? weightRow : 0) * a.in);
  float acc[kTokens];
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = 0.0f;

  int v = (warp % kSplit) * 32 + lane;
  // The first stage is fetched before waiting for the kernel that writes x.
  uint4 current[kStage];
  bool full = active && v + (kStage - 1) * kStride < vectors;
  if (full)
#pragma unroll
    for (int u = 0; u < kStage; ++u) current[u] = __ldcs(wRow + v + u * kStride);
  detail::waitForPrerequisites();
  if constexpr (kNormed) stageNormedRow<T>(a.norm, a.in, reinterpret_cast<T*>(staged));
  const uint4* xRows = kNormed ? staged : reinterpret_cast<const uint4*>(a.x);
  while (full) {
    const int next = v + kStage * kStride;
    const bool nextFull = next + (kStage - 1) * kStride < vectors;
    uint4 upcoming[kStage];
    if (nextFull)
#pragma unroll
      for (int u = 0; u < kStage; ++u) upcoming[u] = __ldcs(wRow + next + u * kStride);
#pragma unroll
    for (int u = 0; u < kStage; ++u)
#pragma unroll
      for (int t = 0; t < kTokens; ++t)
        acc[t] += dot16<T>(current[u], loadInput<kNormed>(xRows + t * vectors + v + u * kStride));
#pragma unroll
    for (int u = 0; u < kStage; ++u) current[u] = upcoming[u];
    v = next;
    full = nextFull;
  }
  if (active)
    for (; v < vectors; v += kStride) {
      const uint4 wv = __ldcs(wRow + v);
#pragma unroll
      for (int t = 0; t < kTokens; ++t)
        acc[t] += dot16<T>(wv, loadInput<kNormed>(xRows + t * vectors + v));
    }
#pragma unroll
  for (int t = 0; t < kTokens; ++t) acc[t] = detail::warpSum(acc[t]);
  if constexpr (kShared) {
    if (lane == 0)
#pragma unroll
      for (int t = 0; t < kTokens; ++t) partial[warp][t] = acc[t];
    __syncthreads();
    if (warp % (kPair ? 2 * kSplit : kSplit) != 0) return;
#pragma unroll
    for (int t = 0; t < kTokens; ++t) {
      float s = partial[warp][t];
#pragma unroll
      for (int p = 1; p < kSplit; ++p) s += partial[warp + p][t];
      acc[t] = s;
    }
    if constexpr (kPair) {
      float up = partial[warp + kSplit][0];
#pragma unroll
      for (int p = 1; p < kSplit; ++p) up += partial[warp + kSplit + p][0];
      if (active && lane == 0) {
        const float g = toFloat(fromFloat<T>(acc[0] + (a.bias ? toFloat(a.bias[row]) : 0.0f)));
        const float u = toFloat(fromFloat<T>(up + (a.bias ? toFloat(a.bias[row + a.out]) : 0.0f)));
        a.y[row] = fromFloat<T>(g / (1.0f + expf(-g)) * u);
      }
      return;
    }
  }
  if (active && lane == 0) {
    const float b = a.bias ? toFloat(a.bias[row]) : 0.0f;
#pragma unroll
    for (int t = 0; t < kTokens; ++t) a.y[t * a.out + row] = fromFloat<Out>(acc[t] + b);
  }
}

// The first GEMV (before the pipelined stages): kPrefetch loads before the wait, then
// stages of kUnroll loads each summed before the next is issued. Kept as variant "legacy" so a
// benchmark can put the two side by side in one run.
template <class T, class Out, int kTokens>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemvLegacyKernel(const T* x, const T* __restrict__ w, const Out* __restrict__ bias, int64_t in,
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
        acc[t] += dot16<T>(wv[u], loadInput<false>(xRows + t * vectors + v + u * 32));
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
        acc[t] += dot16<T>(wv[u], loadInput<false>(xRows + t * vectors + v + u * 32));
  }
  for (; v < vectors; v += 32) {
    uint4 wv = __ldcs(wRow + v);
#pragma unroll
    for (int t = 0; t < kTokens; ++t)
      acc[t] += dot16<T>(wv, loadInput<false>(xRows + t * vectors + v));
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
      const uint4 xk = loadInput<false>(xv + v + k * 32);
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
      const uint4 xk = loadInput<false>(xv + v + k * 32);
      gate += dot16<T>(g[k], xk);
      up += dot16<T>(u[k], xk);
    }
  }
  for (; v < vectors; v += 32) {
    const uint4 xk = loadInput<false>(xv + v);
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

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class T, class Out, int kTokens, int kStage, int kSplit, bool kNormed, bool kPair = false>
cudaError_t launchOne(const GemvArgs<T, Out>& a, cudaStream_t stream) {
  constexpr int kOutputsPerBlock = kWarpsPerBlock / kSplit / (kPair ? 2 : 1);
  const dim3 grid(static_cast<unsigned>((a.out + kOutputsPerBlock - 1) / kOutputsPerBlock));
  const size_t shared = kNormed ? static_cast<size_t>(a.in) * sizeof(T) : 0;
  const cudaError_t e =
      detail::launchDependentShared(gemvKernel<T, Out, kTokens, kStage, kSplit, kNormed, kPair>,
                                    grid, dim3(kThreads), shared, stream, a);
  return e != cudaSuccess ? e : cudaGetLastError();
}

// The pipelined kernel for a variant's unroll and split (one token).
template <class T, class Out, bool kNormed, bool kPair>
cudaError_t launchStaged(GemvVariant variant, const GemvArgs<T, Out>& a, cudaStream_t stream) {
  switch (variant.unroll * 10 + variant.split) {
#define TPC_STAGED_CASE(stage, split) \
  case stage * 10 + split:            \
    return launchOne<T, Out, 1, stage, split, kNormed, kPair>(a, stream);
    TPC_STAGED_CASE(2, 1)
    TPC_STAGED_CASE(2, 2)
    TPC_STAGED_CASE(2, 4)
    TPC_STAGED_CASE(4, 1)
    TPC_STAGED_CASE(4, 2)
    TPC_STAGED_CASE(4, 4)
    TPC_STAGED_CASE(8, 1)
    TPC_STAGED_CASE(8, 2)
    TPC_STAGED_CASE(8, 4)
#undef TPC_STAGED_CASE
    default:
      return cudaErrorInvalidValue;
  }
}

template <class T, class Out, bool kNormed>
cudaError_t launchVariant(GemvVariant variant, const GemvArgs<T, Out>& a, cudaStream_t stream) {
  if (variant.unroll != 0) return launchStaged<T, Out, kNormed, false>(variant, a, stream);
  if constexpr (kNormed) {
    return cudaErrorInvalidValue;  // the legacy kernel reads x from global memory only
  } else {
    const dim3 grid(static_cast<unsigned>((a.out + kWarpsPerBlock - 1) / kWarpsPerBlock));
    const cudaError_t e = detail::launchDependent(gemvLegacyKernel<T, Out, 1>, grid, dim3(kThreads),
                                                  stream, a.x, a.w, a.bias, a.in, a.out, a.y);
    return e != cudaSuccess ? e : cudaGetLastError();
  }
}

template <class T, class Out>
cudaError_t launch(GemvVariant variant, const GemvArgs<T, Out>& a, int64_t tokens, bool normed,
                   cudaStream_t stream) {
  if (normed) {
    // The folded norm writes rows of T: only a T -> T GEMV reads them as the norm step would.
    if constexpr (std::is_same_v<T, Out>)
      return tokens == 1 ? launchVariant<T, Out, true>(variant, a, stream) : cudaErrorInvalidValue;
    else
      return cudaErrorInvalidValue;
  }
  switch (tokens) {
    case 1:
      return launchVariant<T, Out, false>(variant, a, stream);
#define TPC_GEMV_CASE(n) \
  case n:                \
    return launchOne<T, Out, n, 4, 1, false>(a, stream);
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
}

template <class T, class Out>
cudaError_t launchTyped(GemvVariant variant, const void* x, const void* w, const void* bias,
                        int64_t tokens, int64_t in, int64_t out, void* y, const GemvNorm* norm,
                        cudaStream_t stream) {
  const GemvArgs<T, Out> a{
      static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const Out*>(bias), in, out,
      static_cast<Out*>(y),     normArgs<T>(norm)};
  return launch<T, Out>(variant, a, tokens, norm != nullptr, stream);
}

cudaError_t dispatch(GemvVariant variant, ElementType input, ElementType output, const void* x,
                     const void* w, const void* bias, int64_t tokens, int64_t in, int64_t out,
                     void* y, cudaStream_t stream, const GemvNorm* norm) {
  // Output is the input's type or f32 (logits); f32 input has one combination.
  return TPC_DISPATCH_ELEMENT(input, [&] {
    return output == ElementType::F32
               ? launchTyped<Element, float>(variant, x, w, bias, tokens, in, out, y, norm, stream)
               : launchTyped<Element, Element>(variant, x, w, bias, tokens, in, out, y, norm,
                                               stream);
  });
}

template <class T>
cudaError_t launchSwiglu(GemvVariant variant, const void* x, const void* w, const void* bias,
                         int64_t in, int64_t half, void* y, cudaStream_t stream) {
  if (variant.unroll == 0) {
    const dim3 grid(static_cast<unsigned>((half + kWarpsPerBlock - 1) / kWarpsPerBlock));
    const cudaError_t launched = detail::launchDependent(
        gemvSwigluKernel<T>, grid, dim3(kWarpsPerBlock * 32), stream, static_cast<const T*>(x),
        static_cast<const T*>(w), static_cast<const T*>(bias), in, half, static_cast<T*>(y));
    return launched != cudaSuccess ? launched : cudaGetLastError();
  }
  const GemvArgs<T, T> a{
      static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias), in, half,
      static_cast<T*>(y),       normArgs<T>(nullptr)};
  return launchStaged<T, T, false, true>(variant, a, stream);
}

// (in, out, gate/up pair): a pair's out counts both halves, as its weight has 2 x half rows.
using VariantKey = std::tuple<int64_t, int64_t, bool>;

// Measured on the H200 (tpc_gemv_bench, bf16): the Llama-3 shapes' best variants.
const std::map<VariantKey, GemvVariant>& measuredVariants() {
  // Llama-3-8B qkv, o, down, lm_head; Llama-3.2-1B qkv, o, down, lm_head (in x out). Measured
  // 2026-12-02 against the read ceiling of the same run (4542 GB/s): 88.8, 83.2, 95.5, 100.5%;
  // 72.4, 62.7, 83.6, 99.4%. The Llama-3-8B gate/up pair: u2s4 97.5% against 95.5% for the
  // first pair kernel (4540 GB/s); the Llama-3.2-1B pair is fastest with the first kernel.
  // Qwen3-30B-A3B qkv and o stay at u4s1: alone, u2s2 measured 75.4% and 77.0% against 69.1%
  // and 69.9% (2026-12-03, 4533 GB/s), but batch-1 decode with both in this table was no faster
  // (3.109 and 3.116 ms/step against 3.095 and 3.094, same call): there the qkv GEMV takes the
  // folded norm, which runs one warp per row (u2s1, not measured folded).
  // The Llama-3.2-1B gate/up pair and down at u4s2 come from decode itself (2026-12-03, three
  // alternating runs of `tpexec bench` at batch 1, prompt 512): 0.821, 0.817, 0.816 ms/step
  // against 0.827, 0.829, 0.827 with the first pair kernel and down at u2s2. The same sweep at
  // Llama-3-8B (qkv u2 and u8; o u2s2, u4s2, u8s1; down u8s1, u4s2, u2s4; pair u4s2, u8s1) found
  // nothing beyond the run-to-run spread of this table's 3.909 and 3.921.
  // Shapes not listed run u4s1; pairs not listed run the first pair kernel.
  static const std::map<VariantKey, GemvVariant> table = {
      {{4096, 6144, false}, {4, 4}},  {{4096, 4096, false}, {4, 1}},
      {{14336, 4096, false}, {4, 1}}, {{4096, 128256, false}, {2, 4}},
      {{2048, 3072, false}, {4, 1}},  {{2048, 2048, false}, {2, 2}},
      {{8192, 2048, false}, {4, 2}},  {{2048, 128256, false}, {4, 1}},
      {{4096, 28672, true}, {2, 4}},  {{2048, 16384, true}, {4, 2}}};
  return table;
}

// TPC_GEMV_VARIANT, parsed once; a malformed entry is reported and ignored.
const std::map<VariantKey, GemvVariant>& environmentVariants() {
  static const std::map<VariantKey, GemvVariant> table = [] {
    std::map<VariantKey, GemvVariant> t;
    const char* text = std::getenv("TPC_GEMV_VARIANT");
    if (!text) return t;
    std::stringstream list(text);
    std::string entry;
    while (std::getline(list, entry, ',')) {
      const std::string pairPrefix = "swiglu:";
      const bool pair = entry.rfind(pairPrefix, 0) == 0;
      long long in = 0, out = 0;
      char name[16] = {};
      GemvVariant v;
      if (std::sscanf(entry.c_str() + (pair ? pairPrefix.size() : 0), "%lldx%lld=%15s", &in, &out,
                      name) != 3 ||
          !parseGemvVariant(name, &v) || (pair && v.unroll < 0)) {
        std::fprintf(stderr,
                     "warning: TPC_GEMV_VARIANT: ignoring '%s' (want INxOUT=u4s2 or "
                     "swiglu:INxOUT=u4s2)\n",
                     entry.c_str());
        continue;
      }
      t[{in, out, pair}] = v;
    }
    return t;
  }();
  return table;
}

GemvVariant variantFor(int64_t in, int64_t out, bool pair) {
  for (const auto* table : {&environmentVariants(), &measuredVariants()}) {
    const auto found = table->find({in, out, pair});
    if (found != table->end()) return found->second;
  }
  return pair ? GemvVariant{0, 1} : GemvVariant{};
}

}  // namespace

bool parseGemvVariant(const std::string& text, GemvVariant* variant) {
  if (text == "legacy" || text == "cublas") {
    *variant = {text == "legacy" ? 0 : -1, 1};
    return true;
  }
  int unroll = 0, split = 0;
  char rest = 0;
  if (std::sscanf(text.c_str(), "u%ds%d%c", &unroll, &split, &rest) != 2) return false;
  if ((unroll != 2 && unroll != 4 && unroll != 8) || (split != 1 && split != 2 && split != 4))
    return false;
  *variant = {unroll, split};
  return true;
}

std::string gemvVariantName(const GemvVariant& variant) {
  if (variant.unroll == 0) return "legacy";
  if (variant.unroll < 0) return "cublas";
  return "u" + std::to_string(variant.unroll) + "s" + std::to_string(variant.split);
}

GemvVariant gemvVariantFor(int64_t in, int64_t out) { return variantFor(in, out, false); }

GemvVariant gemvSwigluVariantFor(int64_t in, int64_t half) {
  return variantFor(in, 2 * half, true);
}

bool gemvSupports(ElementType input, int64_t tokens, int64_t in, const void* x, const void* w) {
  const int64_t bytes = in * static_cast<int64_t>(elementBytes(input));
  return tokens >= 1 && tokens <= kMaxGemvTokens && bytes % 16 == 0 && aligned16(x) && aligned16(w);
}

bool gemvNormSupports(ElementType input, int64_t in, const GemvNorm& norm) {
  const int64_t bytes = in * static_cast<int64_t>(elementBytes(input));
  const int64_t vectors = bytes / 16;
  return bytes % 16 == 0 && in > 1024 && vectors <= kNormMaxVectors && aligned16(norm.x) &&
         aligned16(norm.weight) && (!norm.residual || aligned16(norm.residual)) &&
         (!norm.sum || aligned16(norm.sum)) && (norm.sum == nullptr) == (norm.residual == nullptr);
}

cudaError_t gemv(ElementType input, ElementType output, const void* x, const void* w,
                 const void* bias, int64_t tokens, int64_t in, int64_t out, void* y,
                 cudaStream_t stream, const GemvNorm* norm) {
  GemvVariant variant = tokens == 1 ? gemvVariantFor(in, out) : GemvVariant{};
  // With a folded norm every block first computes the norm: one warp per row keeps the grid to
  // the fewest blocks (most of the Llama-3-8B qkv in one wave), where split rows multiply them
  // (measured in decode, 2026-12-04: u4s2, u4s4, u2s2 3-10% slower at Llama-3-8B). A variant
  // named in TPC_GEMV_VARIANT runs as named, to measure that choice.
  if (norm && !environmentVariants().count({in, out, false})) variant.split = 1;
  if (variant.unroll < 0 || (norm && variant.unroll == 0)) variant = GemvVariant{};
  return dispatch(variant, input, output, x, w, bias, tokens, in, out, y, stream, norm);
}

cudaError_t gemvWithVariant(GemvVariant variant, ElementType input, ElementType output,
                            const void* x, const void* w, const void* bias, int64_t in, int64_t out,
                            void* y, cudaStream_t stream, const GemvNorm* norm) {
  return dispatch(variant, input, output, x, w, bias, 1, in, out, y, stream, norm);
}

cudaError_t gemvSwiglu(ElementType type, const void* x, const void* w, const void* bias, int64_t in,
                       int64_t half, void* y, cudaStream_t stream) {
  return gemvSwigluWithVariant(gemvSwigluVariantFor(in, half), type, x, w, bias, in, half, y,
                               stream);
}

cudaError_t gemvSwigluWithVariant(GemvVariant variant, ElementType type, const void* x,
                                  const void* w, const void* bias, int64_t in, int64_t half,
                                  void* y, cudaStream_t stream) {
  return TPC_DISPATCH_ELEMENT(
      type, [&] { return launchSwiglu<Element>(variant, x, w, bias, in, half, y, stream); });
}

}  // namespace tpc::cuda
