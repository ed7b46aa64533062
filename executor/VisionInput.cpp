#include "executor/VisionInput.h"

#include <filesystem>
#include <fstream>
#include <iterator>

#include "codegen/PlanFormat.h"
#include "kernels/cpu/Vision.h"

namespace tpc {

Expected<VisionInput> visionInputOf(const plan::Plan& plan) {
  if (!plan.vision_tower()) return makeError("the plan has no vision tower (not a llava model)");
  VisionInput v;
  v.imageSize = planIntAttr(plan.model(), "vision_image_size");
  v.patch = planIntAttr(plan.model(), "vision_patch_size");
  v.channels = planIntAttr(plan.model(), "vision_num_channels");
  v.rows = planIntAttr(plan.model(), "vision_rows");
  v.firstRow = planIntAttr(plan.model(), "vision_first_feature_row");
  v.hidden = planIntAttr(plan.model(), "hidden_size");
  v.tokenIndex = static_cast<int32_t>(planIntAttr(plan.model(), "image_token_index", -1));
  v.seqLength = planIntAttr(plan.model(), "image_seq_length", 0);
  return v;
}

Expected<VisionInput> visionInputWithPreprocessing(const plan::Plan& plan,
                                                   const std::string& modelDir) {
  Expected<VisionInput> v = visionInputOf(plan);
  if (!v) return v;
  if (v->channels != 3) return makeError("the tower takes ", v->channels, " channels, not RGB");
  std::string dir = modelDir.empty() && plan.model_dir() ? plan.model_dir()->str() : modelDir;
  std::string configPath = (std::filesystem::path(dir) / "preprocessor_config.json").string();
  std::ifstream in(configPath);
  if (!in) return makeError(configPath, ": cannot open (the model's image preprocessing settings)");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Expected<ImagePreprocessing> settings = parsePreprocessorConfig(text, configPath);
  if (!settings) return settings.takeError();
  if (!settings->doCenterCrop || settings->cropHeight != v->imageSize ||
      settings->cropWidth != v->imageSize)
    return makeError(configPath, ": the preprocessed image must be ", v->imageSize, "x",
                     v->imageSize, " for this tower (set do_center_crop and crop_size)");
  v->preprocessing = *settings;
  return v;
}

std::vector<float> patchesOfPixels(const VisionInput& v, const std::vector<float>& pixels) {
  std::vector<float> patches(static_cast<size_t>(v.rows * v.channels * v.patch * v.patch));
  cpu::patchify(pixels.data(), v.channels, v.imageSize, v.patch, patches.data());
  return patches;
}

std::vector<float> patchesOfImage(const VisionInput& v, const RgbImage& image) {
  return patchesOfPixels(v, preprocessImage(image, v.preprocessing));
}

}  // namespace tpc
