#include "executor/LocalExperts.h"

#include "executor/StepAttrs.h"

namespace tpc {

Expected<LocalExperts> localExperts(const plan::Step& s, const plan::RankProgram& program,
                                    int64_t tp, int64_t tpRank) {
  LocalExperts local;
  local.count = stepInt(s, "experts");
  local.global = stepInt(s, "global_experts", local.count);
  if (local.count < 1 || local.global < local.count)
    return makeError("moe_experts: ", local.count, " experts on this rank of ", local.global);
  if (local.sharded()) {
    // The expert weights are split `parts` ways across the stage's ranks; a group of tp / parts
    // ranks shares each part.
    if (s.operands()->size() < 4) return makeError("moe_experts: no expert weights");
    const plan::Weight& w = *program.weights()->Get(s.operands()->Get(3)->index());
    const int64_t parts = w.sharding() ? w.sharding()->parts() : 1;
    if (parts < 1 || tp % parts != 0)
      return makeError("moe_experts: experts split ", parts, " ways over ", tp, " ranks");
    local.first = (tpRank / (tp / parts)) * local.count;
  }
  if (local.first + local.count > local.global)
    return makeError("moe_experts: experts ", local.first, "..", local.first + local.count - 1,
                     " of this rank are outside global_experts ", local.global);
  return local;
}

}  // namespace tpc
