// Models for compiler tests without touching disk: a preset's graph built against the tensor
// list the builder expects, and the plan compiled from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codegen/PlanReader.h"
#include "frontends/ModelSpec.h"
#include "ir/Graph.h"

namespace tpc::test {

constexpr Family kAllFamilies[] = {Family::Llama, Family::Mistral,  Family::Qwen2,
                                   Family::Qwen3, Family::Qwen3Moe, Family::Mixtral};

ModelSpec presetSpec(Family family, const std::string& preset = "tiny", DType dtype = DType::BF16);
// The whole-model graph of `spec`, as if read from a checkpoint holding exactly its tensors.
Graph buildSpecGraph(const ModelSpec& spec);
// Pipeline at `world`, then lowering; every tensor is said to live in checkpoint file 0.
// `preferredRules` as PassOptions has them ({"expert-parallel"} for --expert-parallel).
Expected<LoadedPlan> compileSpec(const ModelSpec& spec, int64_t world,
                                 const std::vector<std::string>& preferredRules = {});
// A graph the passes have run on, lowered to a plan over one fake checkpoint file (max context
// 256, max batch 4), as compileSpec does after its passes.
Expected<LoadedPlan> lowerPassedGraph(const Graph& g, const std::string& planName);
// A checkpoint folder compiled as `tpc compile` does, in memory.
Expected<LoadedPlan> compileModelDir(const std::string& dir, int64_t world,
                                     DType dtype = DType::F32, int64_t maxContext = 256,
                                     int64_t maxBatch = 16, int64_t pp = 1);
// The graph after the whole pipeline.
Graph compiledGraph(const ModelSpec& spec, int64_t world);

}  // namespace tpc::test
