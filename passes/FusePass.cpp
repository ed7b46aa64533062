// fuse: fewer, larger steps for the same arithmetic. Column-parallel linears that read the same
// input (q/k/v, gate/up) become one GEMM over a weight concatenated per rank, followed by a
// split; each expert's gate and up weights are concatenated the same way; a residual add that
// feeds an RMSNorm becomes one add_rms_norm; an all-reduce whose only use is that add_rms_norm
// joins it as one all_reduce_add_rms_norm, so a backend can reduce, add and normalise in one
// pass over the row (and, on one node, read its peers' partial sums directly).
#include <algorithm>
#include <map>

#include "passes/Pass.h"

namespace tpc {
namespace {

// "model.layers.0.self_attn.q_proj.weight", "...k_proj.weight" →
// "model.layers.0.self_attn.qk_proj.weight": the common prefix and suffix around the joined
// distinct middles ("_" joined when any is longer than one letter: gate_up_proj).
std::string fusedName(const std::vector<std::string>& names) {
  size_t prefix = names[0].size(), suffix = names[0].size();
  for (const std::string& n : names) {
    size_t p = 0;
    while (p < prefix && p < n.size() && n[p] == names[0][p]) ++p;
    prefix = p;
  }
  for (const std::string& n : names) {
    size_t s = 0;
    while (s < suffix && s < n.size() - prefix && s < names[0].size() - prefix &&
           n[n.size() - 1 - s] == names[0][names[0].size() - 1 - s])
      ++s;
    suffix = s;
  }
  bool longParts = false;
  for (const std::string& n : names) longParts |= n.size() - prefix - suffix > 1;
  std::string middle;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i && longParts) middle += "_";
    middle += names[i].substr(prefix, names[i].size() - prefix - suffix);
  }
  return names[0].substr(0, prefix) + middle + names[0].substr(names[0].size() - suffix);
}

class FusePass : public Pass {
 public:
  explicit FusePass(bool fuseAllReduce) : fuseAllReduce_(fuseAllReduce) {}
  const char* name() const override { return "fuse"; }

  Error run(Graph& g) override {
    fuseLinearGroups(g);
    fuseExpertGateUp(g);
    fuseAddRmsNorm(g);
    if (fuseAllReduce_) fuseAllReduceAddRmsNorm(g);
    return Error::success();
  }

 private:
  // One parameter holding `params`' pieces end to end along dim 0.
  static Value* concatParams(Graph& g, const std::vector<Value*>& params) {
    std::vector<std::string> names;
    llvm::SmallVector<WeightPiece, 1> pieces;
    Shape shape = params[0]->shape;
    shape[0].size = 0;
    for (Value* p : params) {
      names.push_back(p->name);
      pieces.append(p->pieces.begin(), p->pieces.end());
      shape[0].size += p->shape[0].size;
    }
    Value* fused = g.addParameter(g.uniqueName(fusedName(names)), params[0]->dtype, shape, pieces);
    fused->sharding = params[0]->sharding;
    return fused;
  }

  static bool fusable(const Node* a, const Node* b) {
    auto weightOf = [](const Node* n) { return n->operand(1); };
    return a->operands.size() == b->operands.size() && weightOf(a)->dtype == weightOf(b)->dtype &&
           a->result()->dtype == b->result()->dtype &&
           a->attrs.getString("sharding") == b->attrs.getString("sharding") &&
           weightOf(a)->pieces.size() == 1 && weightOf(b)->pieces.size() == 1;
  }

  void fuseLinearGroups(Graph& g) {
    std::map<Value*, std::vector<Node*>> byInput;
    std::vector<Value*> inputsInOrder;
    for (Node* n : g.nodes()) {
      if (n->op != OpKind::Linear) continue;
      std::string rule = n->attrs.getString("sharding");
      if (rule != "column-parallel" && rule != "replicated") continue;
      auto& group = byInput[n->operand(0)];
      if (group.empty()) inputsInOrder.push_back(n->operand(0));
      if (group.empty() || fusable(group.front(), n)) group.push_back(n);
    }
    for (Value* input : inputsInOrder)
      if (byInput[input].size() >= 2) fuseGroup(g, byInput[input]);
  }

  void fuseGroup(Graph& g, const std::vector<Node*>& group) {
    std::vector<Value*> weights, biases, results;
    std::vector<int64_t> sizes;
    std::vector<std::string> resultNames;
    for (Node* n : group) {
      weights.push_back(n->operand(1));
      if (n->operands.size() == 3) biases.push_back(n->operand(2));
      results.push_back(n->result());
      resultNames.push_back(n->result()->name);
      sizes.push_back(n->result()->shape.back().size);
    }
    llvm::SmallVector<Value*, 3> operands{group[0]->operand(0), concatParams(g, weights)};
    if (!biases.empty()) operands.push_back(concatParams(g, biases));
    Value* first = results[0];
    Shape fusedShape = first->shape;
    fusedShape.back().size = 0;
    for (int64_t s : sizes) fusedShape.back().size += s;
    Attributes attrs = group[0]->attrs;
    attrs.erase("split_groups");
    attrs.erase("split_name");
    attrs.erase("replicable");
    // The fused output is per-rank pieces of differently split values; the split that follows
    // gives each piece its own layout.
    Node* gemm = g.insertBefore(group[0], OpKind::Linear, operands,
                                {ResultSpec{g.uniqueName(fusedName(resultNames)), first->dtype,
                                            fusedShape, first->sharding}},
                                attrs);
    llvm::SmallVector<ResultSpec, 3> pieces;
    for (Value* r : results) {
      std::string original = r->name;
      g.rename(r, g.uniqueName(original + ".unfused"));
      pieces.push_back(ResultSpec{original, r->dtype, r->shape, r->sharding});
    }
    Attributes splitAttrs;
    splitAttrs.setString("sharding", first->sharding.isSplit() ? "follows-input" : "replicated");
    splitAttrs.setInts("sizes", sizes);
    Node* split = g.insertAfter(gemm, OpKind::Split, {gemm->result()}, pieces, splitAttrs);
    for (size_t i = 0; i < group.size(); ++i) {
      g.replaceAllUsesWith(results[i], split->results[i]);
      g.replaceOutput(results[i], split->results[i]);
      g.erase(group[i]);
    }
    for (Value* p : weights) g.eraseParameter(p);
    for (Value* p : biases) g.eraseParameter(p);
  }

  void fuseExpertGateUp(Graph& g) {
    for (Node* n : g.nodes()) {
      if (n->op != OpKind::MoeExperts || n->attrs.getInt("params_per_expert") != 3) continue;
      // Stacked expert weights (expert parallelism) hold one rank's rows each: concatenating
      // two stacks would interleave the ranks.
      if (n->operands.size() > 3 && n->operand(3)->pieces.size() != 1) continue;
      llvm::SmallVector<Value*, 64> operands(n->operands.begin(), n->operands.begin() + 3);
      std::vector<Value*> replaced;
      for (size_t e = 3; e + 2 < n->operands.size(); e += 3) {
        Value* gate = n->operands[e];
        Value* up = n->operands[e + 1];
        operands.push_back(concatParams(g, {gate, up}));
        operands.push_back(n->operands[e + 2]);
        replaced.push_back(gate);
        replaced.push_back(up);
      }
      n->operands.assign(operands.begin(), operands.end());
      n->attrs.setInt("params_per_expert", 2);
      for (Value* p : replaced) g.eraseParameter(p);
    }
  }

  void fuseAddRmsNorm(Graph& g) {
    std::vector<Node*> norms;
    for (Node* n : g.nodes())
      if (n->op == OpKind::RmsNorm && n->operand(0)->producer &&
          n->operand(0)->producer->op == OpKind::Add)
        norms.push_back(n);
    std::vector<Node*> fusedAdds;
    for (Node* norm : norms) {
      Node* add = norm->operand(0)->producer;
      // An add feeding two norms stays unfused after the first.
      if (std::find(fusedAdds.begin(), fusedAdds.end(), add) != fusedAdds.end()) continue;
      fusedAdds.push_back(add);
      Value* sum = add->result();
      Value* normed = norm->result();
      std::string sumName = sum->name, normedName = normed->name;
      Attributes attrs = norm->attrs;
      Node* fused = g.insertBefore(
          add, OpKind::AddRmsNorm, {add->operand(0), add->operand(1), norm->operand(1)},
          {ResultSpec{g.uniqueName(sumName + ".fused"), sum->dtype, sum->shape, sum->sharding},
           ResultSpec{g.uniqueName(normedName + ".fused"), normed->dtype, normed->shape,
                      normed->sharding}},
          attrs);
      g.replaceAllUsesWith(normed, fused->result(1));
      g.replaceOutput(normed, fused->result(1));
      g.erase(norm);
      g.replaceAllUsesWith(sum, fused->result(0));
      g.replaceOutput(sum, fused->result(0));
      g.erase(add);
      g.rename(fused->result(0), sumName);
      g.rename(fused->result(1), normedName);
    }
  }

  // add_rms_norm(residual, all_reduce(partial), w) -> all_reduce_add_rms_norm(partial,
  // residual, w), when nothing else reads the all-reduced value. Addition commutes bit for bit,
  // so which add operand was reduced does not matter.
  void fuseAllReduceAddRmsNorm(Graph& g) {
    std::vector<Node*> norms;
    for (Node* n : g.nodes())
      if (n->op == OpKind::AddRmsNorm) norms.push_back(n);
    for (Node* norm : norms) {
      int reduced = -1;
      for (int i : {1, 0}) {
        Node* producer = norm->operand(i)->producer;
        if (producer && producer->op == OpKind::AllReduce &&
            g.users(norm->operand(i)).size() == 1 && !isOutput(g, norm->operand(i))) {
          reduced = i;
          break;
        }
      }
      if (reduced < 0) continue;
      Node* reduce = norm->operand(static_cast<unsigned>(reduced))->producer;
      Value* residual = norm->operand(static_cast<unsigned>(1 - reduced));
      Value* sum = norm->result(0);
      Value* normed = norm->result(1);
      std::string sumName = sum->name, normedName = normed->name;
      Attributes attrs = norm->attrs;
      attrs.setString("sharding", "all-reduce");
      Node* fused = g.insertBefore(
          norm, OpKind::AllReduceAddRmsNorm, {reduce->operand(0), residual, norm->operand(2)},
          {ResultSpec{g.uniqueName(sumName + ".fused"), sum->dtype, sum->shape, sum->sharding},
           ResultSpec{g.uniqueName(normedName + ".fused"), normed->dtype, normed->shape,
                      normed->sharding}},
          attrs);
      for (unsigned r = 0; r < 2; ++r) {
        g.replaceAllUsesWith(norm->result(r), fused->result(r));
        g.replaceOutput(norm->result(r), fused->result(r));
      }
      g.erase(norm);
      g.erase(reduce);
      g.rename(fused->result(0), sumName);
      g.rename(fused->result(1), normedName);
    }
  }

  static bool isOutput(const Graph& g, const Value* v) {
    return std::find(g.outputs().begin(), g.outputs().end(), v) != g.outputs().end();
  }

  bool fuseAllReduce_;
};

}  // namespace

std::unique_ptr<Pass> createFusePass(bool fuseAllReduce) {
  return std::make_unique<FusePass>(fuseAllReduce);
}

}  // namespace tpc
