// Synthetic weights for benchmarks: a stateless hash per element, so any slice of a tensor can be
// generated independently and every rank agrees on shared values.
#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/FillHash.h"

namespace tpc::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void fillUniformKernel(T* out, int64_t count, float scale, uint64_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride)
    out[i] = detail::fromFloat<T>(fillUniformValue(seed, static_cast<uint64_t>(i), scale));
}

}  // namespace

cudaError_t fillUniform(ElementType type, void* out, int64_t count, float scale, uint64_t seed,
                        cudaStream_t stream) {
  if (count <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    const unsigned blocks = detail::gridFor(count, kThreads, 132 * 32);
    fillUniformKernel<Element>
        <<<blocks, kThreads, 0, stream>>>(static_cast<Element*>(out), count, scale, seed);
    return cudaGetLastError();
  });
}

}  // namespace tpc::cuda
