// Tensor-core causal attention for prefill: one sequence's chunk of tokens at consecutive,
// host-known positions of one KV-cache slot. The generic `attention` (CudaKernels.h) reads
// positions and slots on the device and runs on CUDA cores, which is right for decode and mixed
// steps but leaves a long prompt bound by scalar arithmetic; this one is flash-attention-2 shaped
// (Q tile per block, K/V tiles streamed through shared memory, online softmax) on mma.sync.
// Host-compilable like CudaKernels.h.
#pragma once

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda {

// Whether prefillAttention takes this element type and head size (bf16/f16, headDim 64 or 128).
bool prefillAttentionSupports(ElementType type, int64_t headDim);

// Chunked-prefill causal attention for `tokens` tokens of ONE sequence at consecutive positions
// [startPosition, startPosition + tokens) in KV-cache slot `slot` (both known on the host). First
// writes each token's k and v rows (k, v: [tokens, kvHeads * headDim]) into the cache at
// (slot, startPosition + i), then query token i (q: [tokens, heads * headDim]) attends over
// positions [0, startPosition + i] of that slot - positions before startPosition were written by
// earlier chunks (or are a cached prefix). With a block table in `cache`, `slot` is the
// sequence's row of the table and every row, written or read, goes through it. Query head h uses
// KV head h / (heads / kvHeads). out: [tokens, heads * headDim].
// Same numbers as cpu::attention up to bf16 rounding and summation order. Enqueue-only, no
// allocation, no sync (capturable); returns the launch status. Unsupported shapes, positions past
// the cache, or pointers that are not 16-byte aligned give cudaErrorInvalidValue before anything
// is enqueued.
cudaError_t prefillAttention(ElementType type, const void* q, const void* k, const void* v,
                             int64_t tokens, int64_t heads, int64_t startPosition, int32_t slot,
                             float scale, const KvCacheView& cache, void* out, cudaStream_t stream);

}  // namespace tpc::cuda
