// When every row of a step samples, a backend may skip the plan's select_rows and read its
// operand in place of its result. That is safe only if no step from the select up to the last
// reader of its result writes over the operand's bytes: the memory plan treats the operand as
// dead after the select and may give those bytes to a later result (the lm_head's logits), whose
// kernel would then overwrite rows it is still reading. Plain host code, tested on any machine.
#pragma once

#include <cstdint>

#include "codegen/PlanReader.h"

namespace tpc {

// `selectStep`: the index of a select_rows step of `prog`.
bool selectRowsMayAlias(const plan::RankProgram& prog, uint32_t selectStep);

}  // namespace tpc
