// The read-bandwidth probe: every byte read once with 16-byte loads, nothing written but one word
// per block, so the figure is what a read-only pass (a decode step's weight stream) can reach,
// not a copy's read + write. Each thread keeps several loads in flight (unrolled grid stride);
// the blocks' partial sums meet in one atomicAdd each, whose order does not change a wrapping
// integer sum.
#include <cstdint>

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kUnroll = 8;

__global__ void __launch_bounds__(kThreads)
    readSumKernel(const uint4* data, int64_t vectors, uint32_t* sum) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  uint32_t acc = 0;
  int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < vectors; i += kUnroll * stride) {
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = __ldcs(data + i + u * stride);  // streamed, not kept
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) acc += v[u].x + v[u].y + v[u].z + v[u].w;
  }
  for (; i < vectors; i += stride) {
    const uint4 v = data[i];
    acc += v.x + v.y + v.z + v.w;
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  __shared__ uint32_t warpSums[kThreads / 32];
  if (threadIdx.x % 32 == 0) warpSums[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += warpSums[w];
    atomicAdd(sum, total);
  }
}

}  // namespace

cudaError_t readSum(const void* data, size_t bytes, uint32_t* sum, cudaStream_t stream) {
  if (bytes % 16 != 0 || reinterpret_cast<uintptr_t>(data) % 16 != 0) return cudaErrorInvalidValue;
  cudaError_t status = cudaMemsetAsync(sum, 0, sizeof(uint32_t), stream);
  if (status != cudaSuccess) return status;
  int device = 0, sms = 0;
  if ((status = cudaGetDevice(&device)) != cudaSuccess) return status;
  if ((status = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device)) !=
      cudaSuccess)
    return status;
  // Enough resident blocks to fill every SM (4 of 512 threads each), no more: the grid stride
  // then walks the buffer in order.
  const auto vectors = static_cast<int64_t>(bytes / 16);
  int64_t blocks = static_cast<int64_t>(sms) * 4;
  const int64_t needed = (vectors + kThreads - 1) / kThreads;
  if (blocks > needed) blocks = needed > 0 ? needed : 1;
  readSumKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const uint4*>(data), vectors, sum);
  return cudaGetLastError();
}

}  // namespace tpc::cuda
