// Writes a model folder with random weights for a ModelSpec: config.json plus safetensors
// under Hugging Face tensor names (sharded with an index above a size limit). The folder
// appears complete or not at all: everything is written beside it and renamed into place.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "frontends/ModelSpec.h"
#include "ir/Error.h"

namespace tpc {

struct RandomModelOptions {
  uint64_t seed = 0;
  uint64_t shardBytes = uint64_t{5} << 30;  // start a new file past this size
  bool replaceExisting = false;
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct RandomModelResult {
  uint64_t bytes = 0;
  size_t files = 0;
};

Expected<RandomModelResult> writeRandomModel(const ModelSpec& spec, const std::string& dir,
                                             const RandomModelOptions& options);

}  // namespace tpc
