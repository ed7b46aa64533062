// Loads one rank's weights from the checkpoint the plan was compiled from: first checks the
// plan's fingerprint (file sizes and header hashes), so a changed checkpoint is an error and
// never garbage output; then reads exactly the rank's slices from the memory-mapped files.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "codegen/PlanReader.h"
#include "frontends/Checkpoint.h"

namespace tpc {

// Opens `modelDir` and checks it is the checkpoint the plan was compiled from.
Expected<Checkpoint> openPlanCheckpoint(const plan::Plan& plan, const std::string& modelDir);

// Weight `weight` of `rank`'s program converted to fp32 (rows of the local shape, zero padding
// included): backends that keep another dtype convert one weight at a time.
Expected<std::vector<float>> loadWeightF32(const plan::Plan& plan, uint32_t rank,
                                           const Checkpoint& checkpoint, uint32_t weight);

// The same for a weight of any program of the plan (the vision tower's).
Expected<std::vector<float>> loadProgramWeightF32(const plan::RankProgram& program,
                                                  const Checkpoint& checkpoint, uint32_t weight);

// Every weight of `rank` converted to fp32, in plan order (rows of the local shape, zero
// padding included).
Expected<std::vector<std::vector<float>>> loadWeightsF32(
    const plan::Plan& plan, uint32_t rank, const Checkpoint& checkpoint,
    const std::function<void()>& onWeight = {});

}  // namespace tpc
