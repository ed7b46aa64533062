#include "executor/engine/IterationImages.h"

#include <algorithm>
#include <numeric>

namespace tpc {

StepInput StepImages::apply(StepInput in) const {
  if (embeds.empty()) return in;
  in.imageEmbeds = embeds.data();
  in.useImageRow = useRow.data();
  return in;
}

Expected<StepImages> encodeIterationImages(Backend& backend, const Iteration& it, int64_t hidden) {
  StepImages out;
  if (it.imageRowCounts.empty()) return out;
  const int64_t rows = std::accumulate(it.imageRowCounts.begin(), it.imageRowCounts.end(),
                                       int64_t{0}, [](int64_t a, int32_t b) { return a + b; });
  const auto patchFloats = static_cast<int64_t>(it.imagePatches.size());
  if (rows <= 0 || patchFloats % rows != 0)
    return makeError("iteration message: ", patchFloats, " patch values for ", rows, " image rows");
  const int64_t width = patchFloats / rows;
  std::vector<float> features(static_cast<size_t>(rows * hidden));
  int64_t row = 0;
  for (int32_t count : it.imageRowCounts) {
    Expected<const float*> f = backend.encodeImage(it.imagePatches.data() + row * width, count);
    if (!f) return f.takeError();
    std::copy_n(*f, count * hidden, features.begin() + row * hidden);
    row += count;
  }
  const auto tokens = static_cast<int64_t>(it.tokenIds.size());
  out.embeds.assign(static_cast<size_t>(tokens * hidden), 0.0f);
  out.useRow.assign(static_cast<size_t>(tokens), 0);
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t r = it.imageFeatureRows[static_cast<size_t>(t)];
    if (r < 0) continue;
    if (r >= rows) return makeError("iteration message: image row ", r, " of ", rows);
    std::copy_n(features.begin() + r * hidden, hidden, out.embeds.begin() + t * hidden);
    out.useRow[static_cast<size_t>(t)] = 1;
  }
  return out;
}

}  // namespace tpc
