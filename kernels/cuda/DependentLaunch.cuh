// Programmatic dependent launch (Hopper): a kernel launched with launchDependent() may start
// while the kernel before it in the stream is still running, and must call
// waitForPrerequisites() before it reads anything that kernel writes. Until then it can fetch
// what no earlier kernel writes (weights), hiding its launch and ramp-up behind the previous
// kernel's tail - at batch 1 a decode step is a few hundred short kernels, so this is time that
// would otherwise go unused. A kernel that calls allowDependentLaunch() lets its successor start
// early; the successor's wait still sees all of its writes.
//
// What the successor reads after the wait must go through coherent loads: __ldg and
// const __restrict__ (ld.global.nc) promise data that is read-only for the kernel's whole
// lifetime, and a dependent kernel is alive while its predecessor still writes. The compiler may
// then treat such loads as invariant (free to move above the wait) and the non-coherent cache
// may serve lines fetched before the predecessor's writes landed.
//
// TPC_NO_PDL=1 in the environment launches these kernels without the attribute (plain stream
// order; the wait is then a no-op), to tell a dependent-launch race from anything else.
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/CudaKernels.h"

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

// Whether TPC_NO_PDL asks for plain stream order (read once per process).
inline bool dependentLaunchDisabled() {
  static const bool disabled = environmentFlag("TPC_NO_PDL");
  return disabled;
}

// Launches `kernel` so that it may overlap the previous kernel in `stream` (see above), with
// `sharedBytes` of dynamic shared memory, its blocks in thread-block clusters of `clusterX`
// consecutive blocks along x (1: no clusters; more than 8 needs the kernel's
// cudaFuncAttributeNonPortableClusterSizeAllowed).
template <typename... Params, typename... Args>
cudaError_t launchDependentClusters(void (*kernel)(Params...), dim3 grid, dim3 block,
                                    size_t sharedBytes, unsigned clusterX, cudaStream_t stream,
                                    Args... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = sharedBytes;
  config.stream = stream;
  cudaLaunchAttribute attributes[2];
  unsigned count = 0;
  if (!dependentLaunchDisabled()) {
    attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[count++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (clusterX > 1) {
    attributes[count].id = cudaLaunchAttributeClusterDimension;
    attributes[count].val.clusterDim.x = clusterX;
    attributes[count].val.clusterDim.y = 1;
    attributes[count++].val.clusterDim.z = 1;
  }
  config.attrs = attributes;
  config.numAttrs = count;
  return cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
}

template <typename... Params, typename... Args>
cudaError_t launchDependentShared(void (*kernel)(Params...), dim3 grid, dim3 block,
                                  size_t sharedBytes, cudaStream_t stream, Args... args) {
  return launchDependentClusters(kernel, grid, block, sharedBytes, 1, stream, args...);
}

template <typename... Params, typename... Args>
cudaError_t launchDependent(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream,
                            Args... args) {
  return launchDependentShared(kernel, grid, block, 0, stream, args...);
}

}  // namespace tpc::cuda::detail
