// The vision tower's kernels as their CPU twins in kernels/cpu/Vision.cpp compute them:
// LayerNorm with bias (mean, then the biased variance of x - mean, both in f32 over one block
// per row), the row-parallel linear's bias_add, exact GELU and quick_gelu, the class and
// position embeddings. Every result is computed in f32 and rounded once to the storage type.
#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DeviceMath.cuh"

namespace tpc::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

template <typename T>
__global__ void layerNormKernel(const T* x, const T* weight, const T* bias, int64_t width,
                                float eps, T* out) {
  __shared__ float scratch[detail::kWarpSize];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * width;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) sum += detail::toFloat(x[base + i]);
  const float mean = detail::blockSum(sum, scratch) / static_cast<float>(width);
  float squares = 0.0f;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    const float d = detail::toFloat(x[base + i]) - mean;
    squares += d * d;
  }
  const float variance = detail::blockSum(squares, scratch) / static_cast<float>(width);
  const float inverse = 1.0f / sqrtf(variance + eps);
  // Every element is read by the thread that writes it, after both reductions: out may alias x.
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x)
    out[base + i] = detail::fromFloat<T>((detail::toFloat(x[base + i]) - mean) * inverse *
                                             detail::toFloat(weight[i]) +
                                         detail::toFloat(bias[i]));
}

template <typename T>
__global__ void biasAddKernel(const T* x, const T* bias, int64_t rows, int64_t width, T* out) {
  const int64_t count = rows * width;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = detail::fromFloat<T>(detail::toFloat(x[i]) + detail::toFloat(bias[i % width]));
}

template <typename T, bool kQuick>
__global__ void geluKernel(const T* x, int64_t count, T* out) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = detail::toFloat(x[i]);
    const float y = kQuick ? v / (1.0f + expf(-1.702f * v))
                           : 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    out[i] = detail::fromFloat<T>(y);
  }
}

// out = x + position, with the class embedding added to row 0 (the class slot) as well.
template <typename T>
__global__ void visionEmbedKernel(const T* x, const T* classEmbedding, const T* position,
                                  int64_t rows, int64_t width, T* out) {
  const int64_t count = rows * width;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    // The CPU twin's order: (x + class) + position.
    float sum = detail::toFloat(x[i]);
    if (i < width) sum += detail::toFloat(classEmbedding[i]);
    out[i] = detail::fromFloat<T>(sum + detail::toFloat(position[i]));
  }
}

template <bool kQuick>
cudaError_t launchGelu(ElementType type, const void* x, int64_t count, void* out,
                       cudaStream_t stream) {
  if (count <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    geluKernel<Element, kQuick>
        <<<detail::gridFor(count, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
            static_cast<const Element*>(x), count, static_cast<Element*>(out));
    return cudaGetLastError();
  });
}

}  // namespace

cudaError_t layerNorm(ElementType type, const void* x, const void* weight, const void* bias,
                      int64_t rows, int64_t width, float eps, void* out, cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    layerNormKernel<Element><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        static_cast<const Element*>(x), static_cast<const Element*>(weight),
        static_cast<const Element*>(bias), width, eps, static_cast<Element*>(out));
    return cudaGetLastError();
  });
}

cudaError_t biasAdd(ElementType type, const void* x, const void* bias, int64_t rows, int64_t width,
                    void* out, cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    biasAddKernel<Element>
        <<<detail::gridFor(rows * width, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
            static_cast<const Element*>(x), static_cast<const Element*>(bias), rows, width,
            static_cast<Element*>(out));
    return cudaGetLastError();
  });
}

cudaError_t visionEmbed(ElementType type, const void* x, const void* classEmbedding,
                        const void* position, int64_t rows, int64_t width, void* out,
                        cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    visionEmbedKernel<Element>
        <<<detail::gridFor(rows * width, kThreads, kMaxBlocks), kThreads, 0, stream>>>(
            static_cast<const Element*>(x), static_cast<const Element*>(classEmbedding),
            static_cast<const Element*>(position), rows, width, static_cast<Element*>(out));
    return cudaGetLastError();
  });
}

cudaError_t gelu(ElementType type, const void* x, int64_t count, void* out, cudaStream_t stream) {
  return launchGelu<false>(type, x, count, out, stream);
}

cudaError_t quickGelu(ElementType type, const void* x, int64_t count, void* out,
                      cudaStream_t stream) {
  return launchGelu<true>(type, x, count, out, stream);
}

}  // namespace tpc::cuda
