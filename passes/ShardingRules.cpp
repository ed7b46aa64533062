#include "passes/ShardingRules.h"

#include <cstring>

#include "ir/Printer.h"

namespace tpc {
namespace {

constexpr ShardingRule kRules[] = {
    {OpKind::Embedding, "vocab-parallel", "Rr", "P", ""},
    {OpKind::Embedding, "replicated", "Rw", "R", ""},
    {OpKind::Linear, "column-parallel", "Rrr", "S", ""},
    {OpKind::Linear, "row-parallel", "Sc", "P", ""},
    {OpKind::Linear, "replicated", "Rww", "R", ""},
    {OpKind::RmsNorm, "replicated", "Rw", "R", ""},
    {OpKind::AddRmsNorm, "replicated", "RRw", "RR", ""},
    {OpKind::HeadRmsNorm, "head-parallel", "Sw", "S", ""},
    {OpKind::HeadRmsNorm, "replicated", "Rw", "R", ""},
    {OpKind::Rope, "head-parallel", "SR", "S", ""},
    {OpKind::Rope, "replicated", "RR", "R", ""},
    {OpKind::Attention, "head-parallel", "SSSR", "S", "heads:0,kv_heads:1"},
    {OpKind::Attention, "replicated", "RRRR", "R", ""},
    {OpKind::SwiGlu, "elementwise", "SS", "S", ""},
    {OpKind::SwiGlu, "replicated", "RR", "R", ""},
    {OpKind::Add, "replicated", "RR", "R", ""},
    {OpKind::Split, "follows-input", "S", "[S]", ""},
    {OpKind::Split, "replicated", "R", "[R]", ""},
    {OpKind::MoeRouter, "replicated", "Rw", "RR", ""},
    {OpKind::MoeExperts, "expert-intermediate-parallel", "RRR[rrc]", "P", ""},
    {OpKind::MoeExperts, "replicated", "RRR[w]", "R", ""},
    // Only when asked for (--expert-parallel): whole experts per rank, each rank's contribution
    // for every token summed by an all_reduce (the token exchange).
    {OpKind::MoeExperts, "expert-parallel", "RRR[e]", "P", ""},
    {OpKind::AllReduce, "all-reduce", "P", "R", ""},
    {OpKind::AllReduceAddRmsNorm, "all-reduce", "PRw", "RR", ""},
    {OpKind::AllGather, "all-gather", "S", "R", ""},
    {OpKind::Slice, "replicated", "R", "R", ""},
    {OpKind::SelectRows, "replicated", "R", "R", ""},
    // Pipeline boundaries: a whole value goes to the same tensor-parallel rank of the next
    // stage; a split one piece by piece, each rank sending its own.
    {OpKind::Send, "replicated", "R", "", ""},
    {OpKind::Send, "follows-input", "S", "", ""},
    {OpKind::Recv, "replicated", "", "R", ""},
    {OpKind::Send, "partial", "P", "", ""},
    {OpKind::Recv, "follows-input", "", "S", ""},
    {OpKind::Recv, "partial", "", "P", ""},
    {OpKind::LayerNorm, "replicated", "Rww", "R", ""},
    {OpKind::BiasAdd, "replicated", "Rw", "R", ""},
    {OpKind::Gelu, "elementwise", "S", "S", ""},
    {OpKind::Gelu, "replicated", "R", "R", ""},
    {OpKind::QuickGelu, "elementwise", "S", "S", ""},
    {OpKind::QuickGelu, "replicated", "R", "R", ""},
    {OpKind::VisionEmbed, "replicated", "Rww", "R", ""},
    {OpKind::EncoderAttention, "head-parallel", "SSS", "S", "heads:0"},
    {OpKind::EncoderAttention, "replicated", "RRR", "R", ""},
    {OpKind::ImageRows, "replicated", "RRR", "R", ""},
};

// Expands "RRR[rrc]" so index 5 reads 'c': letters past the bracket group cycle through it.
char letterAt(const char* pattern, size_t index) {
  const char* open = std::strchr(pattern, '[');
  size_t fixed = open ? static_cast<size_t>(open - pattern) : std::strlen(pattern);
  if (index < fixed) return pattern[index];
  if (!open) return '?';
  const char* close = std::strchr(open, ']');
  size_t group = static_cast<size_t>(close - open - 1);
  return group == 0 ? '?' : open[1 + (index - fixed) % group];
}

}  // namespace

std::vector<const ShardingRule*> rulesFor(OpKind op) {
  std::vector<const ShardingRule*> out;
  for (const ShardingRule& r : kRules)
    if (r.op == op) out.push_back(&r);
  return out;
}

const ShardingRule* findRule(OpKind op, const std::string& name) {
  for (const ShardingRule& r : kRules)
    if (r.op == op && name == r.name) return &r;
  return nullptr;
}

char operandLetter(const ShardingRule& rule, size_t index) {
  return letterAt(rule.operands, index);
}
char resultLetter(const ShardingRule& rule, size_t index) { return letterAt(rule.results, index); }
bool isWeightLetter(char c) { return c == 'r' || c == 'c' || c == 'w' || c == 'e'; }

bool isReplicatedRule(const ShardingRule& rule) {
  for (const char* c = rule.operands; *c; ++c)
    if (*c != 'R' && *c != 'w' && *c != '[' && *c != ']') return false;
  for (const char* c = rule.results; *c; ++c)
    if (*c != 'R' && *c != '[' && *c != ']') return false;
  return true;
}

char layoutLetter(const Value& v) {
  switch (v.sharding.kind) {
    case Sharding::Kind::Replicated:
      return 'R';
    case Sharding::Kind::Split:
      return 'S';
    case Sharding::Kind::Partial:
      return 'P';
  }
  return '?';
}

Error checkShardingConsistency(const Graph& g) {
  // Partial sums are over one stage's tensor-parallel ranks.
  int64_t world = g.attrs.getInt("world", 1) / g.attrs.getInt("pp", 1);
  for (const Node* n : g.nodes()) {
    std::string ruleName = n->attrs.getString("sharding");
    const ShardingRule* rule = findRule(n->op, ruleName);
    if (!rule)
      return makeError("node ", printNode(*n).substr(0, 100), ": no sharding rule \"", ruleName,
                       "\"");
    for (size_t i = 0; i < n->operands.size(); ++i) {
      char want = operandLetter(*rule, i);
      const Value* v = n->operands[i];
      if (isWeightLetter(want)) continue;
      if (layoutLetter(*v) != want)
        return makeError("node ", printNode(*n).substr(0, 100), ": operand %", v->name, " is ",
                         v->sharding.str(), " but ", rule->name, " needs ", want);
      // A partial sum is only correct when every rank contributes a distinct piece.
      if (want == 'S' && rule->results[0] == 'P' && v->sharding.parts != world)
        return makeError("node ", printNode(*n).substr(0, 100), ": operand %", v->name,
                         " must be split over all ", world, " ranks");
    }
  }
  for (const Value* v : g.outputs())
    if (!v->sharding.isReplicated()) return makeError("output %", v->name, " is not replicated");
  return Error::success();
}

}  // namespace tpc
