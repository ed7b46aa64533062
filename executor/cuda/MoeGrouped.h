// A moe_experts step with tokens grouped by expert, for steps with many tokens (prefill):
// instead of every (token, choice) re-reading its expert's weights, the assignments are sorted
// by expert on the device, each expert's token rows gathered into one contiguous block, and each
// expert with tokens runs its gate/up GEMM, SwiGLU and down GEMM over its whole block through
// cuBLASLt; a combine kernel adds the weighted rows back into each token's output in choice
// order. Same contract as cuda::moeExperts (accumulates into out); decode-sized steps and CUDA
// Graph steps run the streaming kernels (kernels/cuda/MoeStreaming.h) or cuda::moeExperts.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>

#include "executor/MoeGroups.h"
#include "executor/cuda/Gemm.h"
#include "ir/Error.h"
#include "kernels/cuda/CudaKernels.h"

namespace tpc {

// Host arrays of shape.numExperts device pointers each: gate weights [I, hidden] or fused
// gate-then-up weights [2I, hidden]; up weights [I, hidden] (null when fused); down [hidden, I].
struct MoeExpertPointers {
  const void* const* gateOrGateUp = nullptr;
  const void* const* up = nullptr;
  const void* const* down = nullptr;
};

// Runs the grouped step on `stream`. The GEMM launches depend on how many tokens each expert
// got, so the expert counts come back to hostCounts (pinned, numExperts int32) and
// waitForCounts must block until the stream has reached that copy: one small copy and one host
// wait per MoE step, acceptable in eager prefill but the reason CUDA Graph steps cannot take
// this path. The workspace must hold moeGroupedLayout(shape)->bytes.
Error moeExpertsGrouped(GemmRunner& gemm, cuda::ElementType type, const MoeShape& shape,
                        const void* x, const float* weights, const int32_t* experts,
                        const MoeExpertPointers& pointers, void* workspace, size_t workspaceBytes,
                        int32_t* hostCounts, void* out, cudaStream_t stream,
                        const std::function<Error()>& waitForCounts);

}  // namespace tpc
