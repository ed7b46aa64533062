// The one textual form of a graph. Deterministic: the same graph always prints the same bytes,
// so golden tests can diff it, and parseGraph(printGraph(g)) prints identically again.
#pragma once

#include <string>

#include "ir/Graph.h"

namespace tpc {

std::string printGraph(const Graph& graph);
// One node as it appears in printGraph, without indentation or newline.
std::string printNode(const Node& node);
// "%name : bf16[tokens, 64] split(1,8)".
std::string printValueDecl(const Value& value);

}  // namespace tpc
