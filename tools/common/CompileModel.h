// A checkpoint folder to a plan in memory, exactly as `tpc compile` writes it: `tpc compile`
// saves the bytes, `tpexec serve MODEL_DIR` runs them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ir/Error.h"
#include "ir/Graph.h"

namespace tpc::cli {

struct CompileSettings {
  int64_t world = 1;
  std::string dtype;       // bf16, f16, f32; empty: the checkpoint's
  int64_t maxContext = 0;  // 0: min(the model's, 8192)
  int64_t maxBatch = 8;
  bool expertParallel = false;       // MoE: whole experts per rank
  bool fuseAllReduce = true;         // all_reduce + add_rms_norm as one step
  int64_t pp = 1;                    // pipeline stages of world / pp tensor-parallel ranks
  std::vector<int64_t> stageLayers;  // layers per stage; empty: balanced by weight bytes
  // --device-map ("auto" or counts such as "cuda:0=16,cpu=*") and, with auto, --device-memory:
  // one stage of one rank per device that holds layers, instead of world, pp and stageLayers.
  std::string deviceMap, deviceMemory;
  // Called after every pass (tpc compile --print-after).
  std::function<void(const std::string& pass, const Graph& graph)> afterPass;
};

struct CompiledModel {
  std::vector<uint8_t> bytes;  // the plan, verified by reading it back
  std::string family;
};

Expected<CompiledModel> compileModel(const std::string& model, const CompileSettings& settings);

}  // namespace tpc::cli
