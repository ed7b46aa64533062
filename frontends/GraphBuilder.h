// Builds the IR of one forward step (embedding → layers → final norm → lm_head → logits) for a
// model, checking every tensor it needs against the checkpoint's headers.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "frontends/ModelSpec.h"
#include "ir/Error.h"
#include "ir/Graph.h"

namespace tpc {

struct TensorMeta {
  DType dtype;
  std::vector<int64_t> shape;
};
// What the checkpoint holds under a tensor name; nullopt when absent.
using TensorLookup = std::function<std::optional<TensorMeta>(const std::string& name)>;

struct BuildOptions {
  // Activation dtype; weights keep their checkpoint dtype and are converted at load.
  DType computeDType = DType::BF16;
};

Expected<Graph> buildGraph(const ModelSpec& spec, const TensorLookup& lookup,
                           const BuildOptions& options);

// llava: the vision tower (CLIP up to the selected hidden layer) and the projector, one row per
// class slot and patch of one image: input pixel_patches [rows, channels * patch^2] (see
// cpu::patchify), output image_features [rows, text hidden].
Expected<Graph> buildVisionGraph(const ModelSpec& spec, const TensorLookup& lookup,
                                 const BuildOptions& options);

// Every tensor name and shape the builder expects for `spec`, in build order: what
// `tpc make-model` writes, and what a checkpoint must hold.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<ExpectedTensor> expectedTensors(const ModelSpec& spec);

}  // namespace tpc
