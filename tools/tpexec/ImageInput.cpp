#include "tools/tpexec/ImageInput.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "codegen/PlanFormat.h"
#include "executor/Npy.h"
#include "frontends/Image.h"
#include "kernels/cpu/Vision.h"

namespace tpc::tpexec {

Expected<PromptImage> loadPromptImage(const plan::Plan& plan, const std::string& pixelValuesPath,
                                      const std::string& imagePath, const std::string& modelDir) {
  if (!plan.vision_tower()) return makeError("the plan has no vision tower (not a llava model)");
  const int64_t size = planIntAttr(plan.model(), "vision_image_size"),
                patch = planIntAttr(plan.model(), "vision_patch_size"),
                channels = planIntAttr(plan.model(), "vision_num_channels");
  std::vector<float> pixels;
  if (!pixelValuesPath.empty()) {
    Expected<NpyArray> array = readNpyF32(pixelValuesPath);
    if (!array) return array.takeError();
    std::vector<int64_t> shape = array->shape;
    if (shape.size() == 4 && shape[0] == 1) shape.erase(shape.begin());
    if (shape != std::vector<int64_t>{channels, size, size})
      return makeError(pixelValuesPath, ": pixel values must be [1, ", channels, ", ", size, ", ",
                       size, "] for this tower");
    pixels = std::move(array->data);
  } else {
    if (channels != 3)
      return makeError("--image: the tower takes ", channels, " channels, not RGB");
    std::string dir = modelDir.empty() && plan.model_dir() ? plan.model_dir()->str() : modelDir;
    std::string configPath = (std::filesystem::path(dir) / "preprocessor_config.json").string();
    std::ifstream in(configPath);
    if (!in)
      return makeError(configPath, ": cannot open (the model's image preprocessing settings)");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Expected<ImagePreprocessing> settings = parsePreprocessorConfig(text, configPath);
    if (!settings) return settings.takeError();
    if (!settings->doCenterCrop || settings->cropHeight != size || settings->cropWidth != size)
      return makeError(configPath, ": the preprocessed image must be ", size, "x", size,
                       " for this tower (set do_center_crop and crop_size)");
    Expected<RgbImage> image = readImageFile(imagePath);
    if (!image) return image.takeError();
    pixels = preprocessImage(*image, *settings);
  }
  PromptImage image;
  image.rows = planIntAttr(plan.model(), "vision_rows");
  image.firstRow = planIntAttr(plan.model(), "vision_first_feature_row");
  image.hidden = planIntAttr(plan.model(), "hidden_size");
  image.tokenIndex = static_cast<int32_t>(planIntAttr(plan.model(), "image_token_index", -1));
  image.patches.resize(static_cast<size_t>(image.rows * channels * patch * patch));
  cpu::patchify(pixels.data(), channels, size, patch, image.patches.data());
  return image;
}

void expandImageToken(const plan::Plan& plan, std::vector<int32_t>& promptIds) {
  const auto token = static_cast<int32_t>(planIntAttr(plan.model(), "image_token_index", -1));
  const int64_t copies = planIntAttr(plan.model(), "image_seq_length", 0);
  auto at = std::find(promptIds.begin(), promptIds.end(), token);
  if (at == promptIds.end() || copies < 2 || std::count(at, promptIds.end(), token) != 1) return;
  promptIds.insert(at, static_cast<size_t>(copies - 1), token);
}

}  // namespace tpc::tpexec
