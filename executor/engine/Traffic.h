// What a plan's steps read and compute per token, for the benchmarks' rooflines.
#pragma once

#include <cstdint>

#include "codegen/PlanFormat.h"

namespace tpc {

struct StepTraffic {
  uint64_t weightBytes = 0;         // every weight but the embedding table (a step reads few rows)
  uint64_t kvBytesPerPosition = 0;  // per sequence, summed over layers, keys and values
  uint64_t linearMacsPerToken = 0;
};

// Rank 0's program, in the plan's compute dtype.
StepTraffic trafficOf(const plan::Plan& p);

}  // namespace tpc
