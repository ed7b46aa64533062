// Passes transform a Graph in place. Each lives in its own file, can run alone, and never
// prints: `tpc compile --print-after NAME` prints through the one IR printer.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ir/Error.h"
#include "ir/Graph.h"

namespace tpc {

struct PassOptions {
  int64_t world = 1;
  // Sharding rules the shard pass picks first wherever they apply ("expert-parallel" for
  // `tpc compile --expert-parallel`); the rest of the table keeps its own order.
  std::vector<std::string> preferredRules = {};
  // fuse: an all-reduce feeding add_rms_norm becomes one all_reduce_add_rms_norm step. Off
  // keeps the two steps, to compare the fused step against them.
  bool fuseAllReduce = true;
  // pipeline: `pp` stages of world / pp tensor-parallel ranks each. `stageLayers`, when given,
  // says how many layers each stage holds; otherwise the pass balances the stages' weight bytes.
  int64_t pp = 1;
  std::vector<int64_t> stageLayers = {};
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual const char* name() const = 0;
  virtual Error run(Graph& graph) = 0;
};

std::unique_ptr<Pass> createVerifyPass();
std::unique_ptr<Pass> createShardPass(int64_t world, std::vector<std::string> preferredRules = {});
std::unique_ptr<Pass> createPipelinePass(int64_t pp, std::vector<int64_t> stageLayers = {});
std::unique_ptr<Pass> createInsertCollectivesPass();
std::unique_ptr<Pass> createFusePass(bool fuseAllReduce = true);
std::unique_ptr<Pass> createPlanMemoryPass();

// The compile pipeline in order: verify, shard, insert-collectives, pipeline, fuse,
// plan-memory.
std::vector<std::string> pipelinePassNames();
// A pass by name; nullptr when there is none.
std::unique_ptr<Pass> createPass(const std::string& name, const PassOptions& options);

// Runs the pipeline, re-verifying the graph after every pass (a failure there is a compiler
// bug and says so). `after` sees the graph after each pass, for --print-after.
Error runPipeline(Graph& graph, const PassOptions& options,
                  const std::function<void(const std::string& pass, const Graph&)>& after = {});

// World rules shared by the passes and the tools: a power of 2 from 1 to 1024.
Error checkWorld(int64_t world);
// Pipeline rules: `pp` stages that divide the world, and --stage-layers (when given) one
// positive count per stage.
Error checkPipeline(int64_t world, int64_t pp, const std::vector<int64_t>& stageLayers);

}  // namespace tpc
