// tpexec's image flags for llava plans: --pixel-values (a float32 .npy, as transformers' image
// processor returns pixel_values) or --image (a JPEG or PNG, preprocessed as
// preprocessor_config.json says), and the expansion of the prompt's image token.
#pragma once

#include <string>
#include <vector>

#include "codegen/PlanReader.h"
#include "executor/engine/Generation.h"

namespace tpc::tpexec {

// The image as the plan's vision tower takes it, from either file (exactly one is non-empty).
// `modelDir` is where preprocessor_config.json is looked for (empty: the plan's model_dir).
Expected<PromptImage> loadPromptImage(const plan::Plan& plan, const std::string& pixelValuesPath,
                                      const std::string& imagePath, const std::string& modelDir);

// As the llava processor does: a prompt holding the image token once gets image_seq_length
// copies of it there; a prompt that already holds that many is left alone.
void expandImageToken(const plan::Plan& plan, std::vector<int32_t>& promptIds);

}  // namespace tpc::tpexec
