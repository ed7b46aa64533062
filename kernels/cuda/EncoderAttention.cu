// The vision tower's attention, as cpu::encoderAttention computes it: every row attends over all
// rows of the image (no mask, no KV cache). One block per (query row, head): the row's scores go
// to shared memory (one warp per key, its lanes over the head's dims), then the softmax and the
// weighted sum of the values (threads over dims, keys split between thread groups). An image has
// a few hundred to a few thousand rows, so the scores of one row fit shared memory, and the keys
// and values of a layer (rows x width) stay in L2 for all of its blocks.
#include <cmath>

#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DeviceMath.cuh"

namespace tpc::cuda {
namespace {

constexpr int kThreads = 128;
// Scores of one query row in shared memory, with the partial sums of the values beside them.
constexpr int64_t kMaxSharedBytes = 48 * 1024;

template <typename T>
__global__ void encoderAttentionKernel(const T* q, const T* k, const T* v, int64_t rows,
                                       int64_t heads, int64_t headDim, float scale, T* out) {
  extern __shared__ float shared[];
  float* scores = shared;          // [rows]
  float* partial = shared + rows;  // [kThreads]: the groups' sums of the values
  __shared__ float scratch[detail::kWarpSize];
  const int64_t row = blockIdx.x / heads, head = blockIdx.x % heads;
  const int64_t width = heads * headDim, offset = head * headDim;
  const T* qi = q + row * width + offset;
  const int lane = threadIdx.x % detail::kWarpSize, warp = threadIdx.x / detail::kWarpSize;
  const int warps = blockDim.x / detail::kWarpSize;

  for (int64_t j = warp; j < rows; j += warps) {
    const T* kj = k + j * width + offset;
    float dot = 0.0f;
    for (int64_t d = lane; d < headDim; d += detail::kWarpSize)
      dot += detail::toFloat(qi[d]) * detail::toFloat(kj[d]);
    dot = detail::warpSum(dot);
    if (lane == 0) scores[j] = dot * scale;
  }
  __syncthreads();
  float top = -INFINITY;
  for (int64_t j = threadIdx.x; j < rows; j += blockDim.x) top = fmaxf(top, scores[j]);
  top = detail::blockMax(top, scratch);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < rows; j += blockDim.x) {
    const float e = expf(scores[j] - top);
    scores[j] = e;
    sum += e;
  }
  const float inverse = 1.0f / detail::blockSum(sum, scratch);  // its barrier publishes scores

  T* o = out + row * width + offset;
  if (headDim > blockDim.x) {
    for (int64_t d = threadIdx.x; d < headDim; d += blockDim.x) {
      float acc = 0.0f;
      for (int64_t j = 0; j < rows; ++j)
        acc += scores[j] * detail::toFloat(v[j * width + offset + d]);
      o[d] = detail::fromFloat<T>(acc * inverse);
    }
    return;
  }
  // Groups of headDim threads, each over every groups-th key; group 0 adds them up in order.
  const int64_t groups = blockDim.x / headDim, group = threadIdx.x / headDim,
                d = threadIdx.x % headDim;
  float acc = 0.0f;
  if (group < groups)
    for (int64_t j = group; j < rows; j += groups)
      acc += scores[j] * detail::toFloat(v[j * width + offset + d]);
  partial[threadIdx.x] = acc;
  __syncthreads();
  if (group == 0) {
    float total = 0.0f;
    for (int64_t g = 0; g < groups; ++g) total += partial[g * headDim + d];
    o[d] = detail::fromFloat<T>(total * inverse);
  }
}

}  // namespace

cudaError_t encoderAttention(ElementType type, const void* q, const void* k, const void* v,
                             int64_t rows, int64_t heads, int64_t headDim, float scale, void* out,
                             cudaStream_t stream) {
  if (rows <= 0 || heads <= 0 || headDim <= 0) return cudaGetLastError();
  const int64_t shared = (rows + kThreads) * static_cast<int64_t>(sizeof(float));
  if (shared > kMaxSharedBytes || rows * heads > INT32_MAX) return cudaErrorInvalidValue;
  return TPC_DISPATCH_ELEMENT(type, [&] {
    encoderAttentionKernel<Element>
        <<<static_cast<unsigned>(rows * heads), kThreads, static_cast<size_t>(shared), stream>>>(
            static_cast<const Element*>(q), static_cast<const Element*>(k),
            static_cast<const Element*>(v), rows, heads, headDim, scale,
            static_cast<Element*>(out));
    return cudaGetLastError();
  });
}

}  // namespace tpc::cuda
