#include "ir/Verifier.h"
#include "passes/Pass.h"

namespace tpc {

std::vector<std::string> pipelinePassNames() {
  return {"verify", "shard", "insert-collectives", "fuse", "plan-memory"};
}

std::unique_ptr<Pass> createPass(const std::string& name, const PassOptions& options) {
  if (name == "verify") return createVerifyPass();
  if (name == "shard") return createShardPass(options.world, options.preferredRules);
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

Error runPipeline(Graph& graph, const PassOptions& options,
                  const std::function<void(const std::string&, const Graph&)>& after) {
  if (Error e = checkWorld(options.world)) return e;
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
