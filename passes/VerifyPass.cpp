// verify: the structural checks of ir/Verifier, and once collectives are in place, that every
// operand has the layout its sharding rule needs.
#include "ir/Verifier.h"
#include "passes/Pass.h"
#include "passes/ShardingRules.h"

namespace tpc {
namespace {

class VerifyPass : public Pass {
 public:
  const char* name() const override { return "verify"; }
  Error run(Graph& g) override {
    if (Error e = verifyGraph(g)) return e;
    bool sharded = !g.nodes().empty() && g.nodes().front()->attrs.has("sharding");
    bool hasCollectives = false;
    for (const Node* n : g.nodes())
      hasCollectives |= n->op == OpKind::AllReduce || n->op == OpKind::AllGather ||
                        n->op == OpKind::AllReduceAddRmsNorm;
    if (sharded && (hasCollectives || g.attrs.getInt("world", 1) == 1))
      return checkShardingConsistency(g);
    return Error::success();
  }
};

}  // namespace

std::unique_ptr<Pass> createVerifyPass() { return std::make_unique<VerifyPass>(); }

}  // namespace tpc
