// insert-collectives: wherever an operand's layout differs from what its node's sharding rule
// needs, convert it: a Partial value gets an AllReduce, a Split value that must be whole (the
// logits) an AllGather, plus a Slice that drops vocab padding. Nothing else moves data.
#include <map>

#include "passes/Pass.h"
#include "passes/ShardingRules.h"

namespace tpc {
namespace {

class InsertCollectivesPass : public Pass {
 public:
  const char* name() const override { return "insert-collectives"; }

  Error run(Graph& g) override {
    for (const Node* n : g.nodes())
      if (n->op == OpKind::AllReduce || n->op == OpKind::AllGather ||
          n->op == OpKind::AllReduceAddRmsNorm)
        return makeError("insert-collectives: the graph already has collectives");
    std::vector<Node*> order(g.nodes().begin(), g.nodes().end());
    for (Node* n : order) {
      const ShardingRule* rule = findRule(n->op, n->attrs.getString("sharding"));
      if (!rule)
        return makeError("insert-collectives: run shard first (", opName(n->op),
                         " has no sharding)");
      for (size_t i = 0; i < n->operands.size(); ++i) {
        char want = operandLetter(*rule, i);
        if (isWeightLetter(want) || layoutLetter(*n->operands[i]) == want) continue;
        Expected<Value*> converted = convert(g, n->operands[i], want);
        if (!converted) return converted.takeError();
        n->operands[i] = *converted;
      }
    }
    for (Value* out : std::vector<Value*>(g.outputs().begin(), g.outputs().end())) {
      if (out->sharding.isReplicated()) continue;
      Expected<Value*> converted = convert(g, out, 'R');
      if (!converted) return converted.takeError();
      g.replaceOutput(out, *converted);
    }
    return Error::success();
  }

 private:
  Expected<Value*> convert(Graph& g, Value* v, char want) {
    auto cached = converted_.find(v);
    if (cached != converted_.end()) return cached->second;
    if (want != 'R' || v->sharding.isReplicated() || !v->producer)
      return makeError("insert-collectives: cannot turn %", v->name, " (", v->sharding.str(),
                       ") into ", want);
    Node* producer = v->producer;
    Value* result;
    if (v->sharding.isPartial()) {
      Attributes a;
      a.setString("sharding", "all-reduce");
      result = g.insertAfter(producer, OpKind::AllReduce, {v},
                             {ResultSpec{g.uniqueName(v->name + ".sum"), v->dtype, v->shape}}, a)
                   ->result();
    } else {
      int dim = v->sharding.dim;
      Shape gathered = v->shape;
      gathered[dim].size *= v->sharding.parts;
      Attributes a;
      a.setString("sharding", "all-gather");
      a.setInt("dim", dim);
      Node* gather =
          g.insertAfter(producer, OpKind::AllGather, {v},
                        {ResultSpec{g.uniqueName(v->name + ".gathered"), v->dtype, gathered}}, a);
      result = gather->result();
      int64_t width = producer->attrs.getInt("global_width", gathered[dim].size);
      if (width < gathered[dim].size) {
        Shape trimmed = gathered;
        trimmed[dim].size = width;
        Attributes s;
        s.setString("sharding", "replicated");
        s.setInt("dim", dim);
        s.setInt("start", 0);
        s.setInt("length", width);
        result =
            g.insertAfter(gather, OpKind::Slice, {result},
                          {ResultSpec{g.uniqueName(v->name + ".unpadded"), v->dtype, trimmed}}, s)
                ->result();
      }
    }
    converted_[v] = result;
    return result;
  }

  std::map<Value*, Value*> converted_;
};

}  // namespace

std::unique_ptr<Pass> createInsertCollectivesPass() {
  return std::make_unique<InsertCollectivesPass>();
}

}  // namespace tpc
