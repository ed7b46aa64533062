// The sharding rules: one table, one row per (op, layout of its first operand). The shard pass
// picks a row for each node and splits weights as the row says; insert-collectives converts
// operands whose layout differs from what the row requires; verify checks the result. No
// model-specific case lives in any pass: the builder marks what may be split (split_groups,
// replicable, pad_to_world) and these rows say how.
#pragma once

#include "ir/Error.h"
#include "ir/Graph.h"

namespace tpc {

struct ShardingRule {
  OpKind op;
  const char* name;  // shown in dumps: "column-parallel", "row-parallel", ...
  // One letter per operand; the trailing group in brackets repeats for variadic ops.
  //   activations: R replicated, S split along the last dim, P partial
  //   weights:     r split by rows (dim 0), c split by columns (dim 1), w whole,
  //                e one expert's weight, held whole by one rank: the group's weights are
  //                stacked over the world so that every rank holds experts / world of them
  const char* operands;
  // One letter per result: R, S or P.
  const char* results;
  // Attributes counted in units that the split divides: "heads:0" means heads /= the number
  // of pieces operand 0 is split into.
  const char* scaledAttrs;
};

// Every rule of `op`, in preference order.
std::vector<const ShardingRule*> rulesFor(OpKind op);
const ShardingRule* findRule(OpKind op, const std::string& name);

// The layout letter rule `rule` wants for operand `index` (brackets expanded).
char operandLetter(const ShardingRule& rule, size_t index);
char resultLetter(const ShardingRule& rule, size_t index);
bool isWeightLetter(char c);
// A rule that splits nothing: what every node runs at world 1.
bool isReplicatedRule(const ShardingRule& rule);

// The letter describing a value's current layout: R, S or P.
char layoutLetter(const Value& v);

// After insert-collectives every operand has the layout its node's rule requires; graph
// outputs are replicated. Errors name the node and the operand.
Error checkShardingConsistency(const Graph& graph);

}  // namespace tpc
