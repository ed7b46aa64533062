#include "ir/Verifier.h"
#include "passes/Pass.h"

#include <algorithm>

namespace tpc {

std::vector<std::string> pipelinePassNames() {
  return {"verify", "shard", "insert-collectives", "pipeline", "fuse", "plan-memory"};
}

std::unique_ptr<Pass> createPass(const std::string& name, const PassOptions& options) {
  if (name == "verify") return createVerifyPass();
  // Stages split the world: each stage's ranks shard the model among themselves.
  if (name == "shard")
    return createShardPass(options.world / std::max<int64_t>(options.pp, 1),
                           options.preferredRules);
  if (name == "pipeline") return createPipelinePass(options.pp, options.stageLayers);
  if (name == "insert-collectives") return createInsertCollectivesPass();
  if (name == "fuse") return createFusePass(options.fuseAllReduce);
  if (name == "plan-memory") return createPlanMemoryPass();
  return nullptr;
}

Error checkWorld(int64_t world) {
  if (world < 1 || world > 1024) return makeError("world ", world, " is out of range (1 to 1024)");
  if ((world & (world - 1)) != 0) return makeError("world ", world, " is not a power of 2");
  return Error::success();
}

Error checkPipeline(int64_t world, int64_t pp, const std::vector<int64_t>& stageLayers) {
  if (pp < 1) return makeError("--pp ", pp, " must be at least 1");
  if (world % pp != 0)
    return makeError("--pp ", pp, " does not divide world ", world,
                     " (every stage needs the same number of tensor-parallel ranks)");
  if (stageLayers.empty()) return Error::success();
  if (static_cast<int64_t>(stageLayers.size()) != pp)
    return makeError("--stage-layers lists ", stageLayers.size(), " stages but --pp is ", pp);
  for (int64_t n : stageLayers)
    if (n < 1) return makeError("--stage-layers: every stage needs at least one layer, got ", n);
  return Error::success();
}

Error runPipeline(Graph& graph, const PassOptions& options,
                  const std::function<void(const std::string&, const Graph&)>& after) {
  // Stages (a device map's may be any number) each hold a power of 2 of tensor-parallel ranks.
  if (Error e = checkPipeline(options.world, options.pp, options.stageLayers)) return e;
  if (Error e = checkWorld(options.world / options.pp)) return e;
  if (options.world > 1024)
    return makeError("world ", options.world, " is out of range (1 to 1024)");
  for (const std::string& name : pipelinePassNames()) {
    std::unique_ptr<Pass> pass = createPass(name, options);
    if (Error e = pass->run(graph)) return e;
    if (Error e = verifyGraph(graph))
      return std::move(e).withContext("internal error after pass " + name + ": ");
    if (after) after(name, graph);
  }
  return Error::success();
}

}  // namespace tpc
