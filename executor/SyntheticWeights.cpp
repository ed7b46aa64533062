#include "executor/SyntheticWeights.h"

#include <algorithm>
#include <cmath>
#include <string_view>
#include <thread>

#include "codegen/PlanFormat.h"
#include "kernels/cuda/FillHash.h"

namespace tpc {
namespace {

uint64_t nameSeed(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h;
}

// Element i of the weight is the hash of (seed, i): any split of the work gives the same values.
void fill(std::vector<float>& out, uint64_t seed, float scale) {
  const size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 64);
  const size_t per = (out.size() + threads - 1) / threads;
  auto part = [&](size_t t) {
    for (size_t i = t * per; i < std::min(out.size(), (t + 1) * per); ++i)
      out[i] = cuda::fillUniformValue(seed, i, scale);
  };
  if (out.size() < (size_t{1} << 20)) {
    for (size_t t = 0; t < threads; ++t) part(t);
    return;
  }
  std::vector<std::thread> workers;
  for (size_t t = 1; t < threads; ++t) workers.emplace_back(part, t);
  part(0);
  for (std::thread& w : workers) w.join();
}

}  // namespace

std::vector<std::vector<float>> syntheticWeightsF32(const plan::Plan& p, uint32_t rank,
                                                    const std::function<void()>& onWeight) {
  std::vector<std::vector<float>> weights;
  for (const plan::Weight* w : *p.ranks()->Get(rank)->weights()) {
    const auto& shape = *w->shape();
    int64_t count = 1, fanIn = 1;
    for (uint32_t d = 0; d < shape.size(); ++d) {
      count *= shape.Get(d);
      if (d > 0) fanIn *= shape.Get(d);
    }
    const float scale = shape.size() > 1 ? 1.0f / std::sqrt(static_cast<float>(fanIn)) : 1.0f;
    weights.emplace_back(static_cast<size_t>(count));
    fill(weights.back(), nameSeed(w->name()->string_view()), scale);
    if (onWeight) onWeight();
  }
  return weights;
}

}  // namespace tpc
