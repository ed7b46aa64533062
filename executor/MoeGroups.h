// The host side of running a moe_experts step with tokens grouped by expert (the CUDA backend's
// prefill path, executor/cuda/MoeGrouped.h): when a step takes it, where each expert's rows sit
// in the expert-contiguous buffers, and how those buffers share one workspace. Plain C++, so the
// arithmetic is tested without a GPU; the device grouping (kernels/cuda/MoeGrouped.h) lays the
// rows out by the same rules.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace tpc {

// Below this many (token, choice) assignments a step runs the per-assignment kernels: a decode
// step reads each chosen expert about once either way, and the grouped path's host round trip
// and per-expert GEMM launches would cost more than the re-reads they save. A CUDA Graph decode
// step never takes the grouped path (it syncs with the host), whatever its size. (The CUDA
// backend runs steps of up to 64 tokens, and graph steps, on its streaming kernels before it
// asks this: kernels/cuda/MoeStreaming.h.)
constexpr int64_t kMoeGroupedMinAssignments = 16;

struct MoeShape {
  int64_t tokens = 0, hidden = 0, intermediate = 0, topK = 0, numExperts = 0;
  size_t elementBytes = 0;  // the storage type of x, the weights and out
};

// Where the grouped path's buffers sit in its workspace, for at most `shape.tokens` tokens.
// Every expert's rows start at a multiple of rowAlign rows, so each GEMM operand and result
// starts on a 256-byte boundary (cuBLASLt's default alignment assumption). Regions:
//   counts[numExperts], firstRows[numExperts] (int32): rows per expert and where they start;
//   slots[tokens * topK] (int32): the row of each assignment (-1: none);
//   rowSources[rowCapacity] (int32): the assignment of each row (-1: padding);
//   rows: the gathered token rows [rowCapacity, hidden] in the storage type, later reused for
//     the SwiGLU activations [rowCapacity, intermediate];
//   projections (f32): gate and up results ([rowCapacity, 2 * intermediate], gate then up, or
//     two [rowCapacity, intermediate] blocks), later reused for the down results
//     [rowCapacity, hidden].
struct MoeGroupedLayout {
  int64_t rowAlign = 1, rowCapacity = 0;
  size_t counts = 0, firstRows = 0, slots = 0, rowSources = 0, rows = 0, projections = 0;
  size_t bytes = 0;
};

// The layout for `shape`, or none when a row of some buffer is not a whole number of 16 bytes
// (then the padding to 256-byte boundaries could take up to 256 rows per expert; such shapes run
// the per-assignment kernels).
std::optional<MoeGroupedLayout> moeGroupedLayout(const MoeShape& shape);

// Whether a moe_experts step of `tokens` rows runs grouped by expert.
bool moeRunsGrouped(int64_t tokens, int64_t topK, bool capturingGraph);

struct ExpertGroup {
  int32_t expert = 0;
  int64_t firstRow = 0, rows = 0;
};

// The experts that got tokens, in expert order, each with its first row (every expert's rows
// padded to a multiple of rowAlign, empty experts taking none) and its row count. Also what the
// device computes as firstRows.
std::vector<ExpertGroup> expertGroups(const int32_t* counts, int64_t numExperts, int64_t rowAlign);

// The rows the groups use, padding included: the swiglu launch covers them.
int64_t groupedRowsUsed(const std::vector<ExpertGroup>& groups, int64_t rowAlign);

}  // namespace tpc
