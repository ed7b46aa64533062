// Which pipeline stage runs each node: the `stage` the pipeline pass gave it, or, for a node a
// later pass inserted (fuse's splits), the stage of the node before it in program order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/Graph.h"

namespace tpc {

// One stage per node of g.nodes(), all 0 in a graph without stages.
std::vector<int64_t> nodeStages(const Graph& g);

// The layer a value belongs to: the graph builder names every value of layer i "l<i>.*";
// -1 for the others (embedding, final norm, logits).
int64_t layerOfName(const std::string& name);

}  // namespace tpc
