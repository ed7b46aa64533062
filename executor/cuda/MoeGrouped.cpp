#include "executor/cuda/MoeGrouped.h"

#include <optional>
#include <vector>

#include "executor/cuda/CudaCheck.h"
#include "kernels/cuda/MoeGrouped.h"

namespace tpc {

Error moeExpertsGrouped(GemmRunner& gemm, cuda::ElementType type, const MoeShape& shape,
                        const void* x, const float* weights, const int32_t* experts,
                        const MoeExpertPointers& pointers, void* workspace, size_t workspaceBytes,
                        int32_t* hostCounts, void* out, cudaStream_t stream,
                        const std::function<Error()>& waitForCounts) {
  const std::optional<MoeGroupedLayout> layout = moeGroupedLayout(shape);
  if (!layout) return makeError("no grouped MoE layout for this shape");
  if (layout->bytes > workspaceBytes)
    return makeError("the grouped MoE step needs ", layout->bytes, " workspace bytes, has ",
                     workspaceBytes);
  const int64_t hidden = shape.hidden, inter = shape.intermediate, topK = shape.topK;
  const int64_t numExperts = shape.numExperts, assignments = shape.tokens * topK;
  const auto element = static_cast<int64_t>(cuda::elementBytes(type));
  char* base = static_cast<char*>(workspace);
  auto* counts = reinterpret_cast<int32_t*>(base + layout->counts);
  auto* firstRows = reinterpret_cast<int32_t*>(base + layout->firstRows);
  auto* slots = reinterpret_cast<int32_t*>(base + layout->slots);
  auto* rowSources = reinterpret_cast<int32_t*>(base + layout->rowSources);
  char* rows = base + layout->rows;  // gathered x, then the activations
  auto* projections = reinterpret_cast<float*>(base + layout->projections);

  TPC_CUDA_TRY(cuda::moeGroupByExpert(experts, assignments, numExperts, layout->rowAlign,
                                      layout->rowCapacity, counts, firstRows, slots, rowSources,
                                      stream));
  TPC_CUDA_TRY(cudaMemcpyAsync(hostCounts, counts,
                               static_cast<size_t>(numExperts) * sizeof(int32_t),
                               cudaMemcpyDeviceToHost, stream));
  if (Error e = waitForCounts()) return e;
  const std::vector<ExpertGroup> groups = expertGroups(hostCounts, numExperts, layout->rowAlign);
  const int64_t used = groupedRowsUsed(groups, layout->rowAlign);
  if (used > layout->rowCapacity)  // cannot happen: the counts add up to at most the assignments
    return makeError("the grouped MoE step's ", used, " rows pass its capacity of ",
                     layout->rowCapacity);

  TPC_CUDA_TRY(cuda::moeGatherRows(x, hidden * element, rowSources, used, topK, rows, stream));
  // Gate and up results in f32: fused weights give [rows, 2I] (gate then up in each row), separate
  // ones two [rowCapacity, I] blocks.
  const bool fused = pointers.up == nullptr;
  float* gate = projections;
  float* up = fused ? projections + inter : projections + layout->rowCapacity * inter;
  const int64_t stride = fused ? 2 * inter : inter;
  for (const ExpertGroup& g : groups) {
    const char* in = rows + g.firstRow * hidden * element;
    if (Error e = gemm.linear(type, cuda::ElementType::F32, in, pointers.gateOrGateUp[g.expert],
                              nullptr, g.rows, hidden, fused ? 2 * inter : inter,
                              gate + g.firstRow * stride, stream))
      return e;
    if (!fused)
      if (Error e = gemm.linear(type, cuda::ElementType::F32, in, pointers.up[g.expert], nullptr,
                                g.rows, hidden, inter, up + g.firstRow * stride, stream))
        return e;
  }
  // The activations overwrite the gathered rows, which every GEMM above has read (stream order).
  TPC_CUDA_TRY(cuda::moeSwigluRows(type, gate, up, stride, rowSources, used, inter, rows, stream));
  // The down results overwrite the gate and up results, which the SwiGLU has read.
  float* downRows = projections;
  for (const ExpertGroup& g : groups)
    if (Error e = gemm.linear(type, cuda::ElementType::F32, rows + g.firstRow * inter * element,
                              pointers.down[g.expert], nullptr, g.rows, inter, hidden,
                              downRows + g.firstRow * hidden, stream))
      return e;
  TPC_CUDA_TRY(
      cuda::moeCombine(type, weights, slots, downRows, shape.tokens, topK, hidden, out, stream));
  return Error::success();
}

}  // namespace tpc
