#include "tools/tpexec/ImageInput.h"

#include <algorithm>

#include "codegen/PlanFormat.h"
#include "executor/Npy.h"
#include "executor/VisionInput.h"
#include "frontends/Image.h"

namespace tpc::tpexec {

Expected<PromptImage> loadPromptImage(const plan::Plan& plan, const std::string& pixelValuesPath,
                                      const std::string& imagePath, const std::string& modelDir) {
  Expected<VisionInput> vision =
      pixelValuesPath.empty() ? visionInputWithPreprocessing(plan, modelDir) : visionInputOf(plan);
  if (!vision) return vision.takeError();
  const int64_t size = vision->imageSize, channels = vision->channels;
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
    Expected<RgbImage> image = readImageFile(imagePath);
    if (!image) return image.takeError();
    pixels = preprocessImage(*image, vision->preprocessing);
  }
  PromptImage image;
  image.rows = vision->rows;
  image.firstRow = vision->firstRow;
  image.hidden = vision->hidden;
  image.tokenIndex = vision->tokenIndex;
  image.patches = patchesOfPixels(*vision, pixels);
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
