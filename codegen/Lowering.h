// Lowers a sharded, fused, memory-planned graph to the FlatBuffers plan: one program per rank,
// each with its steps, its activation buffers and the exact checkpoint slices of its weights.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ir/Error.h"
#include "ir/Graph.h"

namespace tpc {

struct CheckpointFileInfo {
  std::string name;  // relative to the model directory
  uint64_t size = 0;
  uint64_t headerHash = 0;
};

struct PlanSource {
  std::string modelDir;
  std::vector<CheckpointFileInfo> files;
  // Index into `files` of the file holding a tensor.
  std::function<std::optional<size_t>(const std::string& tensor)> fileOf;
};

struct PlanLimits {
  int64_t maxContext = 4096;
  int64_t maxBatch = 8;
};

// `visionTower`, when given, is the llava vision graph, sharded and planned for the same world.
Expected<std::vector<uint8_t>> lowerToPlan(const Graph& graph, const PlanSource& source,
                                           const PlanLimits& limits,
                                           const Graph* visionTower = nullptr);

}  // namespace tpc
