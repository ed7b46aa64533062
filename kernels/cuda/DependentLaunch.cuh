// Programmatic dependent launch (Hopper): a kernel launched with launchDependent() may start
// while the kernel before it in the stream is still running, and must call
// waitForPrerequisites() before it reads anything that kernel writes. Until then it can fetch
// what no earlier kernel writes (weights), hiding its launch and ramp-up behind the previous
// kernel's tail - at batch 1 a decode step is a few hundred short kernels, so this is time that
// would otherwise go unused. A kernel that calls allowDependentLaunch() lets its successor start
// early; the successor's wait still sees all of its writes.
#pragma once

#include <cuda_runtime.h>

namespace tpc::cuda::detail {

__device__ __forceinline__ void allowDependentLaunch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

__device__ __forceinline__ void waitForPrerequisites() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Launches `kernel` so that it may overlap the previous kernel in `stream` (see above).
template <typename... Params, typename... Args>
cudaError_t launchDependent(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream,
                            Args... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = 0;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = 1;
  return cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
}

}  // namespace tpc::cuda::detail
