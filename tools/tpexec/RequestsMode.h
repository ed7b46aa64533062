#pragma once

#include <vector>

#include "executor/engine/EngineRun.h"
#include "tools/tpexec/MultiNode.h"

namespace tpc::tpexec {

// Submits every request to `engine` at once and prints one JSON line per request in input
// order: {"id", "prompt_ids", "generated_ids", "finish_reason", "cached_prompt_tokens",
// ["logprobs"]} or {"id", "prompt_ids", "error"}. An Error when any request failed; when the
// engine itself failed (a rank or node died), its failure and no lines.
Error driveRequests(Engine& engine, const std::vector<NamedRequest>& requests);

// driveRequests on the engine of this node's ranks.
Error runRequests(const LoadedPlan& plan, const std::vector<NamedRequest>& requests,
                  const EngineRunOptions& options);

}  // namespace tpc::tpexec
