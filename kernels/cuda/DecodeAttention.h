// Attention for decode steps, where every token is the only one of its sequence in the call: one
// launch writes each token's k/v into the cache and attends. Each (token, KV head) is split into
// up to kDecodeMaxSplits runs of kDecodeTile-row tiles, as many as keep a few blocks per SM busy
// for the call's size; a block streams its run through shared memory once for all the query
// heads of the KV head's group, and the last block of a (token, KV head) to finish merges the
// splits, so a step costs one launch where cuda::attention takes three. Host-compilable like
// CudaKernels.h.
#pragma once

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda {

constexpr int64_t kDecodeTile = 32;
constexpr int64_t kDecodeMaxSplits = 64;
constexpr int64_t kDecodeMaxTokens = 1024;

// bf16 or f16, headDim 64 or 128, at most 8 query heads per KV head.
bool decodeAttentionSupports(ElementType type, int64_t heads, int64_t kvHeads, int64_t headDim);

// Workspace for up to `tokens` (<= kDecodeMaxTokens) tokens: per-chunk partial results and one
// counter per (token, KV head). It must be zeroed once before first use; the kernel leaves the
// counters at zero again.
size_t decodeAttentionWorkspaceBytes(int64_t tokens, int64_t heads, int64_t kvHeads,
                                     int64_t headDim, int64_t maxContext);

// The plan's rope steps of q and k folded into the attention: each block rotates the queries it
// reads and the new key row it stores, with the rope kernel's arithmetic (RopeMath.cuh) and its
// rounding to the storage type, so the rope launch disappears and the results are the same bits.
// The layer's per-head RMSNorms of q and k (Qwen3's q_norm and k_norm), folded in before the
// rope the same way: weights of headDim elements in the storage type, the head norm kernel's
// arithmetic (HeadNorm.cuh), so their launches disappear too and the bits stay the same.
struct DecodeHeadNorms {
  const void* q = nullptr;  // null: q and k come normed
  const void* k = nullptr;
  float qEps = 1e-6f, kEps = 1e-6f;
};

struct DecodeRope {
  const float* inverseFrequencies = nullptr;  // device, headDim / 2
  float scaling = 1.0f;
  DecodeHeadNorms norms;
};

// cpu::attention's contract for calls whose tokens all have different slots (as in a batch of
// decode steps; tokens sharing a slot would race on the cache). With `rope`, q and k are taken
// before rotation. `qkvStride` > 0: q, k and v are column ranges of one buffer (a qkv linear's
// rows, its split skipped) whose rows are that many elements apart; 0: each is packed.
cudaError_t decodeAttention(ElementType type, const void* q, const void* k, const void* v,
                            const int32_t* positions, const int32_t* slots, int64_t tokens,
                            int64_t heads, float scale, const KvCacheView& cache, void* workspace,
                            void* out, cudaStream_t stream, const DecodeRope* rope = nullptr,
                            int64_t qkvStride = 0);

}  // namespace tpc::cuda
