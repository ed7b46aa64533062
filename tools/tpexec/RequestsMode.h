#pragma once

#include <vector>

#include "executor/engine/EngineRun.h"
#include "tools/tpexec/MultiNode.h"

namespace tpc::tpexec {

// Runs every request through the engine on this node and prints one JSON line per request in
// input order: {"id", "prompt_ids", "generated_ids", "finish_reason", "cached_prompt_tokens",
// ["logprobs"]} or {"id", "prompt_ids", "error"}. An Error when any request failed.
Error runRequests(const LoadedPlan& plan, const std::vector<NamedRequest>& requests,
                  const EngineRunOptions& options);

}  // namespace tpc::tpexec
