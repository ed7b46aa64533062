// Each (slice, row) block finds its best logit as one 64-bit key - the float's bits made
// order-preserving, then the inverted index, so the largest key is the largest logit at the
// lowest index, as cpu::argmax picks - and a second launch takes the largest key of each row.
// The partial keys live in a fixed device array, so no workspace is needed.
#include <cstdint>

#include "kernels/cuda/ArgmaxWide.h"

namespace tpc::cuda {
namespace {

constexpr int kSlices = 128;
constexpr int kMaxRows = 64;
constexpr int kThreads = 256;
constexpr int64_t kMinVocab = 16384;

__device__ unsigned long long partialKeys[kMaxRows * kSlices];

__device__ __forceinline__ unsigned long long keyOf(float value, int64_t index) {
  // +0.0f folds -0 into +0: the CPU treats them as equal, so the lower index must win.
  uint32_t bits = __float_as_uint(value + 0.0f);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<unsigned long long>(bits) << 32) |
         (0xffffffffu - static_cast<uint32_t>(index));
}

__device__ __forceinline__ unsigned long long warpMaxKey(unsigned long long key) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long other = __shfl_xor_sync(0xffffffffu, key, o);
    key = other > key ? other : key;
  }
  return key;
}

__global__ void __launch_bounds__(kThreads) sliceKernel(const float* logits, int64_t vocab) {
  __shared__ unsigned long long warpBest[kThreads / 32];
  const int64_t row = blockIdx.y;
  const int64_t per = (vocab + kSlices - 1) / kSlices;
  const int64_t begin = blockIdx.x * per, end = begin + per < vocab ? begin + per : vocab;
  const float* x = logits + row * vocab;
  unsigned long long best = 0;  // below every key of a real logit
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    const float v = x[i];
    if (v == v) {  // NaN never wins, as with the CPU's `>`
      const unsigned long long key = keyOf(v, i);
      best = key > best ? key : best;
    }
  }
  best = warpMaxKey(best);
  if (threadIdx.x % 32 == 0) warpBest[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x < 32) {
    best = threadIdx.x < kThreads / 32 ? warpBest[threadIdx.x] : 0;
    best = warpMaxKey(best);
    if (threadIdx.x == 0) partialKeys[row * kSlices + blockIdx.x] = best;
  }
}

__global__ void mergeKernel(int32_t* out) {
  const int64_t row = blockIdx.x;
  unsigned long long best = 0;
  for (int s = threadIdx.x; s < kSlices; s += 32) {
    const unsigned long long key = partialKeys[row * kSlices + s];
    best = key > best ? key : best;
  }
  best = warpMaxKey(best);
  if (threadIdx.x == 0)
    out[row] = best == 0 ? 0 : static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(best));
}

}  // namespace

bool argmaxWideSupports(int64_t rows, int64_t vocab) {
  return rows >= 1 && rows <= kMaxRows && vocab >= kMinVocab && vocab < (int64_t{1} << 31);
}

cudaError_t argmaxWide(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                       cudaStream_t stream) {
  if (!argmaxWideSupports(rows, vocab)) return cudaErrorInvalidValue;
  sliceKernel<<<dim3(kSlices, static_cast<unsigned>(rows)), kThreads, 0, stream>>>(logits, vocab);
  mergeKernel<<<static_cast<unsigned>(rows), 32, 0, stream>>>(out);
  return cudaGetLastError();
}

}  // namespace tpc::cuda
