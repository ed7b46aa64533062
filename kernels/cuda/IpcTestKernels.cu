// Test kernels for the IPC collectives; see IpcTestKernels.h.
#include "kernels/cuda/IpcTestKernels.h"

namespace tpc::cuda {
namespace {

__device__ __forceinline__ uint64_t nowNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void delayKernel(uint64_t ns) {
  const uint64_t start = nowNs();
  while (nowNs() - start < ns) {
  }
}

__global__ void wholeSmKernel(uint64_t ns, int* sink) {
  extern __shared__ int held[];
  held[threadIdx.x] = static_cast<int>(threadIdx.x);
  const uint64_t start = nowNs();
  while (nowNs() - start < ns) {
  }
  __syncthreads();
  if (held[blockDim.x - 1 - threadIdx.x] < 0) *sink = 1;  // never: keeps the memory in use
}

int wholeSmBytes() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess)
    return 0;
  return bytes;
}

}  // namespace

cudaError_t ipcTestDelay(uint64_t ns, cudaStream_t stream) {
  delayKernel<<<1, 32, 0, stream>>>(ns);
  return cudaGetLastError();
}

cudaError_t ipcTestWholeSmBlocks(int64_t blocks, uint64_t ns, cudaStream_t stream) {
  const int bytes = wholeSmBytes();
  if (bytes <= 0 || blocks <= 0) return cudaErrorInvalidValue;
  if (cudaError_t e =
          cudaFuncSetAttribute(wholeSmKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes))
    return e;
  wholeSmKernel<<<static_cast<unsigned>(blocks), 128, static_cast<size_t>(bytes), stream>>>(
      ns, nullptr);
  return cudaGetLastError();
}

cudaError_t ipcTestLoadKernels() {
  cudaFuncAttributes attributes;
  if (cudaError_t e = cudaFuncGetAttributes(&attributes, delayKernel)) return e;
  if (cudaError_t e = cudaFuncGetAttributes(&attributes, wholeSmKernel)) return e;
  const int bytes = wholeSmBytes();
  return bytes > 0 ? cudaFuncSetAttribute(wholeSmKernel,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)
                   : cudaErrorInvalidValue;
}

}  // namespace tpc::cuda
