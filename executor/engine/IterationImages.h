// llava in the engine: the image rows of one iteration's step, made the same way on every rank.
// Each image the iteration carries runs through the rank's part of the vision tower (whose
// all-reduces every rank joins, so every rank calls this for every iteration, in order), and
// each image token gets its feature row.
#pragma once

#include <cstdint>
#include <vector>

#include "executor/Backend.h"
#include "executor/engine/Iteration.h"

namespace tpc {

struct StepImages {
  std::vector<float> embeds;    // [tokens, hidden]; empty when the iteration has no image
  std::vector<uint8_t> useRow;  // [tokens]

  // `in` with these rows (unchanged when there are none); valid while this lives.
  StepInput apply(StepInput in) const;
};

// `hidden` is the text model's width, the row width of the tower's features.
Expected<StepImages> encodeIterationImages(Backend& backend, const Iteration& it, int64_t hidden);

}  // namespace tpc
