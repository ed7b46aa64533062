// The streaming MoE experts' grouping of (token, choice) assignments by expert, as the one-block
// counting sort in MoeStreaming.cu leaves it at the start of the workspace, read by the grouped
// kernels of MoeStreaming.cu and MoeStreamingMma.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tpc::cuda::detail {

// The grouping's ints: starts (E + 1: where each expert's assignments begin in order), active (E:
// the touched experts in ascending order), the touched-expert count, order (A: assignments
// sorted by expert). E = numExperts, A = tokens * topK.
struct ExpertGroups {
  const int32_t* starts;
  const int32_t* active;
  const int32_t* count;
  const int32_t* order;
  __device__ explicit ExpertGroups(const int32_t* ints, int64_t numExperts)
      : starts(ints),
        active(ints + numExperts + 1),
        count(ints + 2 * numExperts + 1),
        order(ints + 2 * numExperts + 2) {}
};

// The ints the grouping takes, before the workspace's next part.
inline int64_t expertGroupInts(int64_t assignments, int64_t numExperts) {
  return 2 * numExperts + 2 + assignments;
}

}  // namespace tpc::cuda::detail
