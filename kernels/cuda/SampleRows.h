// Per-row token choice for an iteration's logit rows, each row with its own request's
// parameters and draw: the device side of Backend::forwardSample. Host-compilable like
// CudaKernels.h.
#pragma once

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda {

// One row's parameters, as cpu::SamplingParams without min-p (a step with min-p samples on the
// host), and its draw in [0, 1).
struct SamplingRow {
  float temperature = 0.0f;  // <= 0: argmax
  int32_t topK = 0;          // 0: off
  float topP = 1.0f;         // 1: off
  double uniform = 0.0;
};

// out[r] = cpu::sampleWithDraw(logits row r, params[r], params[r].uniform) for every row;
// `params` is a device array of `rows` entries. Two launches: argmax of every row, then the
// sampler on the rows whose temperature is positive.
cudaError_t sampleRows(const float* logits, int64_t rows, int64_t vocab, const SamplingRow* params,
                       int32_t* out, cudaStream_t stream);

}  // namespace tpc::cuda
