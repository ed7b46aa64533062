// The CUDA backend: runs a rank's program on one GPU. Weights are uploaded once in the plan's
// compute dtype; activations live in one arena laid out by the plan's memory plan; each
// attention step owns a KV cache of max_batch + 1 slots (the extra one absorbs the padding rows
// of a batch bucket). Steps of up to `graphTokens` tokens run from a CUDA Graph captured once per
// power-of-2 bucket; longer steps (prefill) run eagerly in chunks.
#pragma once

#include <memory>

#include "executor/Backend.h"

namespace tpc {

Expected<std::unique_ptr<Backend>> createCudaBackend(const LoadedPlan& plan, uint32_t rank,
                                                     Communicator& comm,
                                                     const BackendOptions& options);

// Device-to-device copy bandwidth of `device` in bytes per second (bytes read + written), the
// roofline a memory-bound decode step is measured against.
Expected<double> measureCopyBandwidth(int device);
// FLOP/s of an 8192^3 bf16 GEMM through cuBLASLt (f32 accumulation): the prefill ceiling.
Expected<double> measureGemmFlops(int device);

}  // namespace tpc
