// A model as users name it on the command line: a folder with config.json and safetensors, or
// one .safetensors file with config.json beside it. Opening reads headers only.
#pragma once

#include <string>

#include "frontends/Checkpoint.h"
#include "frontends/GraphBuilder.h"
#include "frontends/ModelSpec.h"

namespace tpc {

struct ModelSource {
  std::string directory;
  ModelSpec spec;
  Checkpoint checkpoint;

  // Tensor metadata straight from the checkpoint headers, for buildGraph.
  TensorLookup lookup() const;
};

Expected<ModelSource> openModel(const std::string& path);

}  // namespace tpc
