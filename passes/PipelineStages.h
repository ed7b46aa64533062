// Which pipeline stage runs each node: the `stage` the pipeline pass gave it, or, for a node a
// later pass inserted (fuse's splits), the stage of the node before it in program order.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/Graph.h"

namespace tpc {

// One stage per node of g.nodes(), all 0 in a graph without stages.
std::vector<int64_t> nodeStages(const Graph& g);

}  // namespace tpc
