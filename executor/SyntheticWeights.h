// Random weights for benchmarks of shapes without a checkpoint, on the CPU backend (the CUDA
// backend makes its own on the device). Each weight is uniform in [-scale, scale), scaled like an
// initialiser (1 / sqrt(fan-in)) so activations stay finite through every layer, and seeded by
// its name: ranks that hold a whole weight (pipeline stages of one rank each, world 1) hold the
// same values, so their runs agree.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "codegen/PlanReader.h"

namespace tpc {

// Every weight of `rank`'s program, as loadWeightsF32 lays them out (the local shape);
// `onWeight` after each (a large model must not look like a hang).
std::vector<std::vector<float>> syntheticWeightsF32(const plan::Plan& p, uint32_t rank,
                                                    const std::function<void()>& onWeight);

}  // namespace tpc
