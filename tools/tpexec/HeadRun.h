// The head of a multi-node run, whatever it runs: listens for `tpexec --join` workers, serves
// them the plan, communicator id and weights, starts ranks 0..K-1 here, and carries what the
// ranks need to every node (requests one at a time, or the engine's iterations) until they
// are done. Used by `tpexec PLAN --listen` and `tpexec serve --listen`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codegen/PlanReader.h"
#include "executor/process/NodeRun.h"
#include "tools/tpexec/MultiNode.h"

namespace tpc::tpexec {

struct HeadRunOptions {
  std::string listen, backend = "cpu", modelDir, curveKeys;
  int64_t workers = 1, localWorld = 1, rankTimeoutMs = 3000, nodeTimeoutMs = 2000;
  double joinTimeoutS = 300;
};

// The head's share of `world` with `workers` worker nodes: `localWorld`, or when 0 an even
// split; an error when the ranks do not fit.
Expected<int64_t> headLocalWorld(int64_t world, int64_t workers, int64_t localWorld);

// `ranks` says what the ranks do: its driver and engine (the engine), or its report (one
// request at a time, with `requests` sent to every rank); the head fills in where they run.
// Returns once every node is done, or the first failure, naming the node at fault; every
// process of the run has been told to stop by then.
Error runHead(const LoadedPlan& plan, const HeadRunOptions& options, NodeRunOptions ranks,
              const std::vector<NamedRequest>& requests);

}  // namespace tpc::tpexec
