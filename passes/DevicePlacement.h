// Device maps: which device holds which layers when a model is spread over GPUs and the CPU
// as pipeline stages of one rank each (the fallback without tensor parallelism). Either every
// device gets a layer count, or devices are filled in order (GPU 0, GPU 1, ..., the CPU) up to
// their memory budgets. The result feeds the pipeline pass as its stage layers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/Error.h"
#include "ir/Graph.h"

namespace tpc {

struct DeviceBudget {
  std::string device;  // "cuda:0", "cpu"
  uint64_t bytes = 0;
};

struct DeviceLayers {
  std::string device;
  int64_t layers = -1;  // -1: every layer the devices before and after it leave ("*")
};

struct StagePlacement {
  std::string device;
  int64_t firstLayer = 0, layers = 0;
  uint64_t bytes = 0;  // what the stage needs on its device: weights, KV cache, activations
};

// What a stage holds beyond its weights: a KV cache of maxBatch sequences of maxContext
// tokens, and the activations of one step of maxContext tokens at `activationBytesPerToken`
// (the memory plan's arena, in the graph's dtypes). The CPU holds weights, KV and activations in
// f32 whatever the plan's dtypes.
struct PlacementLimits {
  int64_t maxContext = 4096;
  int64_t maxBatch = 8;
  int64_t activationBytesPerToken = 0;
};

// Fills the devices in order GPU 0, GPU 1, ..., CPU on the whole (unsharded) graph: each takes
// layers while its budget holds them, the first stage also the embedding, the last the final
// norm and lm_head; a device that can hold no layer gets no stage. If even the last device
// cannot hold what is left, the error says how many bytes are missing.
Expected<std::vector<StagePlacement>> placeByBudget(const Graph& whole,
                                                    std::vector<DeviceBudget> budgets,
                                                    const PlacementLimits& limits);
// The counts as given, in the given order; one "*" takes the rest.
Expected<std::vector<StagePlacement>> placeByCounts(const Graph& whole,
                                                    const std::vector<DeviceLayers>& counts,
                                                    const PlacementLimits& limits);

// "cuda:0,cpu": the stages' devices as the plan records them (model attr stage_devices).
std::string stageDevicesText(const std::vector<StagePlacement>& stages);

}  // namespace tpc
