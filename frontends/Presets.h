// Built-in model shapes: `tiny` and `small` for every family (random-weight models for tests
// and demos), and the published shapes of a few real checkpoints, so plans for big models can
// be compiled and inspected without downloading them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "frontends/ModelSpec.h"

namespace tpc {

struct Preset {
  std::string name;
  std::string description;
};

// The presets of `family`, in a fixed order: tiny, small, then real shapes.
std::vector<Preset> presets(Family family);
std::vector<std::string> presetNames(Family family);

// The spec of `preset` for `family` with weights in `dtype` (bf16, f16 or f32). The error for
// an unknown name lists the family's presets, and says which family a known name belongs to.
Expected<ModelSpec> makePresetSpec(Family family, std::string_view preset, DType dtype);

}  // namespace tpc
