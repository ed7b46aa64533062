// The CUDA backend: runs a rank's program on one GPU. Weights are uploaded once in the plan's
// compute dtype; activations live in one arena laid out by the plan's memory plan; the KV cache
// is one paged pool per attention step, sized from the memory left under
// --gpu-memory-utilization once weights and activations are placed (the slot form maps each
// slot to its own run of blocks). Decode steps of up to max_batch sequences replay a CUDA Graph
// captured once per power-of-2 bucket, reading block tables from a fixed device buffer; other
// steps run eagerly in chunks.
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
// Read bandwidth of `device` in bytes per second: a kernel that only reads 4 GiB, as decode reads
// its weights.
Expected<double> measureReadBandwidth(int device);
// FLOP/s of an 8192^3 bf16 GEMM through cuBLASLt (f32 accumulation): the prefill ceiling.
Expected<double> measureGemmFlops(int device);

}  // namespace tpc
