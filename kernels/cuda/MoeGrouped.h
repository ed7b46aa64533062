// The device kernels of a moe_experts step run with tokens grouped by expert (prefill): a
// counting sort of the (token, choice) assignments by expert, a gather of the token rows into
// expert-contiguous rows, SwiGLU over the GEMMs' f32 gate and up results, and the weighted
// combine back into each token's output row. The GEMMs between them are cuBLASLt's (the caller's,
// executor/cuda/MoeGrouped.h); executor/MoeGroups.h lays out the buffers. Everything here is
// deterministic: no result depends on the order in which threads run. Host-compilable like
// CudaKernels.h.
#pragma once

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda {

// Stable counting sort of experts[0, assignments) (values in [0, numExperts)): counts[e] the
// assignments of expert e; firstRows[e] where its rows start, each expert's rows padded to a
// multiple of rowAlign (executor's expertGroups); slots[a] the row of assignment a, and
// rowSources[row] its assignment (-1 for padding and unused rows, rowCapacity of them). Equal
// experts keep assignment order, so token order. An expert id outside the range is dropped
// (slot -1). assignments and rowCapacity at most INT32_MAX.
cudaError_t moeGroupByExpert(const int32_t* experts, int64_t assignments, int64_t numExperts,
                             int64_t rowAlign, int64_t rowCapacity, int32_t* counts,
                             int32_t* firstRows, int32_t* slots, int32_t* rowSources,
                             cudaStream_t stream);

// gathered[row] = x[rowSources[row] / topK] for rows [0, rows), rows of rowBytes bytes; padding
// rows (rowSources -1) are zeroed.
cudaError_t moeGatherRows(const void* x, int64_t rowBytes, const int32_t* rowSources, int64_t rows,
                          int64_t topK, void* gathered, cudaStream_t stream);

// activations[row, i] = silu(gate[row * stride + i]) * up[row * stride + i] rounded to `type`,
// for i < intermediate and rows [0, rows) (padding rows zeroed, their gate and up unread).
cudaError_t moeSwigluRows(ElementType type, const float* gate, const float* up, int64_t stride,
                          const int32_t* rowSources, int64_t rows, int64_t intermediate,
                          void* activations, cudaStream_t stream);

// out[t, j] += sum over k in order of weights[t * topK + k] * expertRows[slots[t * topK + k], j]
// in f32, rounded once, as moeExperts accumulates. expertRows is [rows, hidden] in f32.
cudaError_t moeCombine(ElementType type, const float* weights, const int32_t* slots,
                       const float* expertRows, int64_t tokens, int64_t topK, int64_t hidden,
                       void* out, cudaStream_t stream);

}  // namespace tpc::cuda
