// llava's image input, shared by `tpexec PLAN --image` and `tpexec serve`: what the plan's vision
// tower takes (sizes from the plan, preprocessing from preprocessor_config.json) and the tower's
// patches made from a decoded image or from pixel values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codegen/PlanReader.h"
#include "frontends/Image.h"

namespace tpc {

struct VisionInput {
  int64_t imageSize = 0, patch = 0, channels = 0;
  int64_t rows = 0;                  // the tower's: class slot and patches
  int64_t firstRow = 0;              // 1 when the class row is dropped
  int64_t hidden = 0;                // the text model's width
  int32_t tokenIndex = -1;           // image_token_index
  int64_t seqLength = 0;             // image_seq_length: the image token's copies in a prompt
  ImagePreprocessing preprocessing;  // only when read with readPreprocessing
};

// The plan's tower sizes; an error when the plan has no vision tower.
Expected<VisionInput> visionInputOf(const plan::Plan& plan);
// Also preprocessor_config.json from `modelDir` (empty: the plan's model_dir), which must crop
// to the tower's image size.
Expected<VisionInput> visionInputWithPreprocessing(const plan::Plan& plan,
                                                   const std::string& modelDir);

// pixel_values [channels, imageSize, imageSize] as the tower's patch rows.
std::vector<float> patchesOfPixels(const VisionInput& input, const std::vector<float>& pixels);
// A decoded image preprocessed (resize, crop, rescale, normalise) and patchified.
std::vector<float> patchesOfImage(const VisionInput& input, const RgbImage& image);

}  // namespace tpc
