// MoE kernels for decode-sized steps and CUDA Graphs that stream only the chosen experts'
// weights, with many 16-byte loads in flight per lane (as the dense GEMV, Gemv.h):
//   router: the logits [tokens, experts] by a GEMV-style kernel (one warp per expert row, eight
//     tokens per pass), then softmax and top-k per token (one warp each) with moeRouter's rules
//     (ties: lower index; NaN below every probability; optional renormalisation); up to 128
//     experts in one launch, a token block's logit blocks one thread-block cluster whose first
//     block selects from the others' shared memory;
//   experts, direct (few tokens): gate/up and SwiGLU in one launch over every (token, choice),
//     then down in one launch whose blocks take a few rows of hidden for every (token, choice),
//     apply the routing weights and add the choices in choice order in shared memory;
//   experts, grouped (more tokens): a one-block counting sort groups the (token, choice) pairs by
//     expert on the device (no host round trip, so a graph can hold it), then each block streams
//     one touched expert's rows once for all of its tokens (the grid is sized for the worst case;
//     blocks past the touched experts exit at once), on tensor cores for bf16 and f16
//     (MoeStreamingMma.h); down writes one f32 row per (token, choice) and a last kernel adds them
//     in choice order with the routing weights.
// Every result is computed in a fixed order, so replaying a graph gives the eager bits. The
// SwiGLU activations are rounded to the storage type (as the grouped GEMM path does); all sums
// are f32. Host-compilable like CudaKernels.h.
#pragma once

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda {

// TPC_MOE_KERNELS=old in the environment selects the first MoE kernels (cuda::moeRouter and
// cuda::moeExperts) instead of these, for comparisons; read once per process.
bool moeStreamingDisabled();
// The largest step that runs the direct expert kernels (more tokens run grouped):
// TPC_MOE_DIRECT_TOKENS, default 1 (a single token's choices are distinct experts, so grouping
// saves nothing there).
int64_t moeDirectMaxTokens();

size_t moeRouterStreamingWorkspaceBytes(int64_t tokens, int64_t numExperts);
// Shapes the streaming router takes: rows of whole 16-byte vectors, x, gate and the workspace
// 16-byte aligned, at most 1024 experts.
bool moeRouterStreamingSupports(ElementType type, int64_t hidden, int64_t numExperts, const void* x,
                                const void* gate, const void* workspace);
// cpu::moeRouter's contract; the workspace holds the logits where they go through global memory
// (more than 128 experts, or TPC_MOE_ROUTER_UNFUSED=1).
cudaError_t moeRouterStreaming(ElementType type, const void* x, const void* gate, int64_t tokens,
                               int64_t hidden, int64_t numExperts, int64_t topK, bool normTopkProb,
                               void* workspace, float* weights, int32_t* experts,
                               cudaStream_t stream);

size_t moeExpertsStreamingWorkspaceBytes(ElementType type, int64_t tokens, int64_t topK,
                                         int64_t hidden, int64_t intermediate, int64_t numExperts);
// Shapes the streaming experts take: hidden and intermediate whole 16-byte vectors, x and the
// workspace 16-byte aligned, at most 4096 experts. Every expert pointer must be 16-byte aligned
// too (the caller checks: they are device arrays here).
bool moeExpertsStreamingSupports(ElementType type, int64_t hidden, int64_t intermediate,
                                 int64_t numExperts, const void* x, const void* workspace);
// cuda::moeExperts's contract, with numExperts the length of the pointer arrays: out += the
// experts' sum when `accumulate`, else out = the sum (out's old contents unread, so the caller
// need not zero it: one graph node less per layer). Expert ids outside [0, numExperts)
// contribute nothing. Steps of at most directMaxTokens tokens (and 64 assignments) run the
// direct kernels, others grouped.
cudaError_t moeExpertsStreaming(ElementType type, const void* x, const float* weights,
                                const int32_t* experts, int64_t tokens, int64_t hidden,
                                int64_t intermediate, int64_t topK, int64_t numExperts,
                                const void* const* gateOrGateUp, const void* const* up,
                                const void* const* down, int64_t directMaxTokens, bool accumulate,
                                void* workspace, void* out, cudaStream_t stream);

}  // namespace tpc::cuda
