// What a plan's steps read and compute per token, for the benchmarks' rooflines.
#pragma once

#include <cstdint>

#include "codegen/PlanFormat.h"

namespace tpc {

struct StepTraffic {
  uint64_t weightBytes = 0;         // every weight but the embedding table (a step reads few rows)
  uint64_t kvBytesPerPosition = 0;  // per sequence, summed over layers, keys and values
  // Multiply-adds per token of every linear, the MoE routers' gates and the experts a token
  // runs (top_k of them, k * e / global on a rank holding e of the global experts).
  uint64_t linearMacsPerToken = 0;
  double expertsReadPerLayer = 0;  // MoE: the experts a step of `batch` tokens reads per layer
};

// Rank 0's program, in the plan's compute dtype, for a step of `batch` tokens: a MoE layer
// reads only the experts its tokens chose, the expected distinct experts of `batch` tokens
// routed uniformly, each picking top_k of E (top_k exactly at batch 1); with expert parallelism,
// the expected distinct ones of this rank's.
StepTraffic trafficOf(const plan::Plan& p, int64_t batch = 1);

}  // namespace tpc
