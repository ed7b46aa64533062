// Which experts of a moe_experts step one rank holds, read alike by both backends. Without
// expert parallelism a rank holds every expert (a slice of each); with it, a run of whole experts
// (rank r of a stage's N tensor-parallel ranks: experts r * E / N to (r + 1) * E / N - 1). The
// backends renumber each step's chosen expert ids to this rank's (moeLocalExperts: -1 for an
// expert held elsewhere), so the expert kernels never learn about the other ranks' experts.
#pragma once

#include <cstdint>

#include "codegen/PlanFormat.h"
#include "ir/Error.h"

namespace tpc {

struct LocalExperts {
  int64_t first = 0;   // the global id of this rank's expert 0
  int64_t count = 0;   // experts this rank holds (the step's `experts`)
  int64_t global = 0;  // experts of the model (the step's `global_experts`)
  bool sharded() const { return count != global; }
};

// `tp` and `tpRank`: the tensor-parallel ranks of this rank's stage and its place among them.
Expected<LocalExperts> localExperts(const plan::Step& s, const plan::RankProgram& program,
                                    int64_t tp, int64_t tpRank);

}  // namespace tpc
