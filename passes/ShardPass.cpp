// shard: gives every node a row of the sharding table and rewrites the graph into what one
// rank computes: weights become per-rank slices, activations per-rank widths, head counts
// per-rank counts. Operands left in the wrong layout are insert-collectives' job.
#include "ir/Printer.h"
#include "passes/Pass.h"
#include "passes/ShardingRules.h"

namespace tpc {
namespace {

class ShardPass : public Pass {
 public:
  ShardPass(int64_t world, std::vector<std::string> preferredRules)
      : world_(world), preferred_(std::move(preferredRules)) {}
  const char* name() const override { return "shard"; }

  Error run(Graph& g) override {
    if (Error e = checkWorld(world_)) return e;
    if (g.attrs.getInt("world", 1) != 1) return makeError("shard: the graph is already sharded");
    for (const Node* n : g.nodes())
      if (n->op == OpKind::Split || n->op == OpKind::AllReduce || n->op == OpKind::AllGather ||
          n->op == OpKind::AllReduceAddRmsNorm)
        return makeError("shard: must run before fuse and insert-collectives (found ",
                         opName(n->op), ")");
    g.attrs.setInt("world", world_);
    for (Node* n : g.nodes())
      if (Error e = shardNode(g, *n)) return e;
    return Error::success();
  }

 private:
  const ShardingRule* chooseRule(const Node& n) const {
    std::vector<const ShardingRule*> rules = rulesFor(n.op);
    // The builder keeps some small steps whole on every rank (`replicate`), where splitting
    // them would only add a collective (the vision tower's patch embedding).
    if (world_ == 1 || n.attrs.getInt("replicate")) {
      for (const ShardingRule* r : rules)
        if (isReplicatedRule(*r)) return r;
    }
    char have = layoutLetter(*n.operand(0));
    for (const std::string& name : preferred_)
      for (const ShardingRule* r : rules)
        if (name == r->name && operandLetter(*r, 0) == have) return r;
    for (const ShardingRule* r : rules)
      if (operandLetter(*r, 0) == have) return r;
    return rules.empty() ? nullptr : rules.front();
  }

  Error splitError(const Node& n, int64_t groups) const {
    std::string what = n.attrs.getString("split_name", "output width of " + n.result()->name);
    return makeError(what, " ", groups, " is not divisible by world ", world_);
  }

  // How many pieces a row-split weight of this node is cut into.
  Expected<int64_t> rowParts(const Node& n, int64_t rows) const {
    int64_t groups = n.attrs.getInt("split_groups", rows);
    if (n.attrs.getInt("pad_to_world")) return world_;
    if (groups % world_ == 0) return world_;
    // KV replication: fewer heads than ranks, each head held by world / heads ranks.
    if (n.attrs.getInt("replicable") && world_ % groups == 0) return groups;
    return splitError(n, groups);
  }

  Error shardParam(const Node& n, Value* p, int dim, int64_t parts) {
    Sharding want = Sharding::split(dim, parts);
    if (p->pieces.size() != 1) return makeError("shard: parameter %", p->name, " is already fused");
    WeightPiece& piece = p->pieces[0];
    if (piece.sharding.isSplit()) {
      if (piece.sharding == want) return Error::success();  // shared, e.g. tied embeddings
      return makeError("shard: parameter %", p->name, " would be split both as ",
                       piece.sharding.str(), " and as ", want.str());
    }
    if (dim >= static_cast<int>(piece.shape.size()))
      return makeError("shard: %", p->name, " has no dim ", dim);
    int64_t size = piece.shape[dim].size;
    if (size % parts != 0 && !n.attrs.getInt("pad_to_world")) return splitError(n, size);
    piece.sharding = want;
    p->sharding = want;
    p->shape[dim].size = (size + parts - 1) / parts;
    return Error::success();
  }

  // Expert parallelism: rank r holds experts [r * local, (r + 1) * local) whole. Every rank runs
  // the same graph, so local slot j's weight stacks expert j of every rank's group (expert
  // r * local + j) and is split by rows over the world: the rows rank r holds are its own.
  Error stackExperts(Graph& g, Node& n, const ShardingRule& rule) {
    const size_t fixed = 3;
    const int64_t per = n.attrs.getInt("params_per_expert"), experts = n.attrs.getInt("experts");
    if (experts % world_ != 0)
      return makeError("experts ", experts, " are not divisible by world ", world_,
                       ": expert parallelism places whole experts on ranks");
    const int64_t local = experts / world_;
    llvm::SmallVector<Value*, 4> operands(n.operands.begin(), n.operands.begin() + fixed);
    for (int64_t j = 0; j < local; ++j)
      for (int64_t k = 0; k < per; ++k) {
        llvm::SmallVector<WeightPiece, 1> pieces;
        for (int64_t r = 0; r < world_; ++r) {
          const Value* p = n.operand(static_cast<unsigned>(fixed + (r * local + j) * per + k));
          if (!p->isParameter() || p->pieces.size() != 1 || !p->pieces[0].sharding.isReplicated())
            return makeError("shard: operand %", p->name, " of ", opName(n.op),
                             " must be one whole weight for ", rule.name);
          pieces.push_back(p->pieces[0]);
        }
        // "l0.moe.local_expert1.w2.weight": the slot, and the projection's own name.
        const Value* mine = n.operand(static_cast<unsigned>(fixed + j * per + k));
        size_t cut = mine->name.rfind('.', mine->name.rfind('.') - 1);
        std::string projection = cut == std::string::npos ? mine->name : mine->name.substr(cut + 1);
        Value* stacked = g.addParameter(
            g.uniqueName(n.result()->name + ".local_expert" + std::to_string(j) + "." + projection),
            mine->dtype, mine->shape, pieces);
        stacked->sharding = Sharding::split(0, world_);
        operands.push_back(stacked);
      }
    std::vector<Value*> unstacked(n.operands.begin() + fixed, n.operands.end());
    n.operands.assign(operands.begin(), operands.end());
    for (Value* p : unstacked) g.eraseParameter(p);
    n.attrs.setInt("experts", local);
    n.attrs.setInt("global_experts", experts);
    return Error::success();
  }

  Error shardNode(Graph& g, Node& n) {
    const ShardingRule* rule = chooseRule(n);
    if (!rule) return makeError("shard: no sharding rule for ", opName(n.op));
    n.attrs.setString("sharding", rule->name);
    if (world_ == 1) return Error::success();
    if (n.operands.size() > 3 && operandLetter(*rule, 3) == 'e')
      if (Error e = stackExperts(g, n, *rule)) return e;

    // Weights, and the piece count a column split gives the result.
    int64_t resultParts = n.operand(0)->sharding.isSplit() ? n.operand(0)->sharding.parts : world_;
    for (size_t i = 0; i < n.operands.size(); ++i) {
      char letter = operandLetter(*rule, i);
      Value* v = n.operands[i];
      if (!isWeightLetter(letter) || letter == 'w' || letter == 'e') continue;
      if (!v->isParameter())
        return makeError("shard: operand %", v->name, " of ", opName(n.op), " must be a weight");
      if (letter == 'r') {
        int64_t rows = v->pieces[0].shape[0].size;
        int64_t parts = world_;
        if (n.op == OpKind::Linear) {
          Expected<int64_t> p = rowParts(n, rows);
          if (!p) return p.takeError();
          parts = *p;
          resultParts = parts;
        } else if (n.op == OpKind::MoeExperts &&
                   n.attrs.getInt("split_groups", rows) % world_ != 0) {
          return splitError(n, n.attrs.getInt("split_groups", rows));
        }
        if (Error e = shardParam(n, v, 0, parts)) return e;
      } else {
        int64_t cols = v->pieces[0].shape[1].size;
        if (cols % world_ != 0) return splitError(n, n.attrs.getInt("split_groups", cols));
        if (Error e = shardParam(n, v, 1, world_)) return e;
      }
    }

    for (size_t i = 0; i < n.results.size(); ++i) {
      Value* r = n.results[i];
      switch (resultLetter(*rule, i)) {
        case 'S': {
          int64_t width = r->shape.back().size;
          r->sharding = Sharding::split(static_cast<int>(r->shape.size()) - 1, resultParts);
          r->shape.back().size = (width + resultParts - 1) / resultParts;
          // The gathered width exceeds the real one when the split padded it (vocab).
          if (width % resultParts != 0) n.attrs.setInt("global_width", width);
          break;
        }
        case 'P':
          r->sharding = Sharding::partial();
          break;
        default:
          r->sharding = Sharding::replicated();
      }
    }
    return scaleAttrs(n, *rule);
  }

  // "heads:0,kv_heads:1": divide each named attribute by the piece count of that operand.
  Error scaleAttrs(Node& n, const ShardingRule& rule) {
    std::string spec = rule.scaledAttrs;
    size_t start = 0;
    while (start < spec.size()) {
      size_t comma = spec.find(',', start);
      std::string item =
          spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      size_t colon = item.find(':');
      std::string key = item.substr(0, colon);
      size_t operand = std::stoul(item.substr(colon + 1));
      const Sharding& s = n.operand(static_cast<unsigned>(operand))->sharding;
      int64_t parts = s.isSplit() ? s.parts : 1;
      int64_t value = n.attrs.getInt(key);
      if (value % parts != 0)
        return makeError("shard: ", key, " ", value, " of ", printNode(n).substr(0, 60),
                         " is not divisible by ", parts);
      n.attrs.setInt(key, value / parts);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return Error::success();
  }

  int64_t world_;
  std::vector<std::string> preferred_;
};

}  // namespace

std::unique_ptr<Pass> createShardPass(int64_t world, std::vector<std::string> preferredRules) {
  return std::make_unique<ShardPass>(world, std::move(preferredRules));
}

}  // namespace tpc
