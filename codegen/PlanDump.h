// The three views of a verified plan that `tpc dump` prints. All are deterministic: the same
// plan always prints the same bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "codegen/plan_generated.h"

namespace tpc {

// Per rank (or only `rank`): each step with its sharding and attributes, each weight with the
// checkpoint slices it is made of, each collective with its payload bytes per token, and the
// arena and KV-cache bytes.
std::string dumpPlanText(const plan::Plan& plan, std::optional<uint32_t> rank);
// The same facts as one JSON document; its layout is documented in docs/plan-json.md and
// stable ("format_version" changes when it is not).
std::string dumpPlanJson(const plan::Plan& plan, std::optional<uint32_t> rank);
// Graphviz dataflow of the rank's steps (rank 0 when none is given).
std::string dumpPlanDot(const plan::Plan& plan, std::optional<uint32_t> rank);

}  // namespace tpc
