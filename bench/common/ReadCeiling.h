// The read bandwidth the kernel benchmarks (tpc_gemv_bench, tpc_linear_bench) state their
// figures against: a kernel that only reads (cuda::readSum over 2 GiB), as a streaming linear
// does; cudaMemcpy reads about 10% lower on the H200.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "bench/common/GraphTimer.h"
#include "kernels/cuda/CudaKernels.h"

namespace tpc::bench {

inline double readCeilingGBs(cudaStream_t stream) {
  const size_t bytes = 2ull << 30;
  void* data = deviceAlloc(bytes);
  BENCH_CHECK(cudaMemsetAsync(data, 1, bytes, stream));
  auto* sum = static_cast<uint32_t*>(deviceAlloc(sizeof(uint32_t)));
  const double us = timeGraph(
      [&](cudaStream_t s, int) { BENCH_CHECK(cuda::readSum(data, bytes, sum, s)); }, 5, 4, stream);
  cudaFree(data);
  cudaFree(sum);
  return static_cast<double>(bytes) / (us * 1e3);
}

}  // namespace tpc::bench
