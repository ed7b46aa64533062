// The grouped streaming MoE experts' gate/up and down kernels on tensor cores (bf16 and f16
// weights; MoeStreaming.h runs them for steps of more than directMaxTokens tokens). A warp
// multiplies 16-row weight tiles, streamed straight from global memory into registers with 16-byte
// loads, by 8-token tiles of its expert's inputs with mma.sync m16n8k16 (f32 accumulation), so one
// weight load serves every token of a pass and the step runs at weight bandwidth.
//
// Both kernels read the grouping (MoeExpertGroups.cuh) that a grouped moeExpertsStreaming call
// leaves at the start of its workspace; the bench times them alone on it. Host-compilable like
// CudaKernels.h.
#pragma once

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda {

// How a step's grouped kernels are cut: a function of the shape and the token count alone.
struct MoeMmaTiling {
  int tokenTiles = 1;   // 8-token tiles one pass over a weight tile serves (1, 2, 4 or 8)
  int weightTiles = 1;  // 16-row weight tiles a warp streams together (1 or 2)
  int upSplits = 1;     // warps that share one row group's k range in gate/up (1, 2 or 4)
  int downSplits = 1;   // the same in down
  unsigned slots = 0;   // grid y: the most experts a step can touch
  int64_t upRowsPerBlock = 0, downRowsPerBlock = 0;  // intermediate / hidden rows a block takes
  unsigned upBlocks = 0, downBlocks = 0;             // grid x
};
MoeMmaTiling moeMmaTiling(int64_t tokens, int64_t topK, int64_t numExperts, int64_t hidden,
                          int64_t intermediate);

// Whether these kernels take `type` (16-bit floats: the tensor cores' inputs).
bool moeMmaSupports(ElementType type);

// activations[a, i] = silu(gate_i . x[a / topK]) * (up_i . x[a / topK]) rounded to `type`, for
// every grouped assignment a of every touched expert and every intermediate row i (gate and up
// separate, or `up` null and gateOrGateUp the fused gate-then-up matrix [2 * intermediate,
// hidden]). `groups` is the grouping of `tokens * topK` assignments.
cudaError_t moeGroupedUpMma(ElementType type, const void* x, const int32_t* groups, int64_t tokens,
                            int64_t topK, int64_t numExperts, int64_t hidden, int64_t intermediate,
                            const void* const* gateOrGateUp, const void* const* up,
                            void* activations, cudaStream_t stream);

// downRows[a, j] = down_j . activations[a] (f32) for every grouped assignment a and hidden row j.
cudaError_t moeGroupedDownMma(ElementType type, const int32_t* groups, int64_t tokens, int64_t topK,
                              int64_t numExperts, int64_t hidden, int64_t intermediate,
                              const void* const* down, const void* activations, float* downRows,
                              cudaStream_t stream);

}  // namespace tpc::cuda
