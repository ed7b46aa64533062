// Argmax over a wide vocabulary for a few rows: one block per row leaves most of the GPU idle
// while it scans 128K logits, so the row is cut into slices scanned in parallel, then merged.
// Private to kernels/cuda (cuda::argmax takes this path when argmaxWideSupports says so).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace tpc::cuda {

bool argmaxWideSupports(int64_t rows, int64_t vocab);
cudaError_t argmaxWide(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                       cudaStream_t stream);

}  // namespace tpc::cuda
