#include "kernels/cpu/Vision.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <vector>

namespace tpc::cpu {

void layerNorm(const float* x, const float* w, const float* b, int64_t rows, int64_t width,
               float eps, float* out) {
  assert(width > 0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * width;
    double sum = 0.0;
    for (int64_t i = 0; i < width; ++i) sum += xr[i];
    const double mean = sum / static_cast<double>(width);
    double squares = 0.0;
    for (int64_t i = 0; i < width; ++i) squares += (xr[i] - mean) * (xr[i] - mean);
    const auto inverse =
        static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(width) + eps));
    const auto m = static_cast<float>(mean);
    float* o = out + r * width;
    for (int64_t i = 0; i < width; ++i) o[i] = (xr[i] - m) * inverse * w[i] + b[i];
  }
}

void biasAdd(const float* x, const float* bias, int64_t rows, int64_t width, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < width; ++i) out[r * width + i] = x[r * width + i] + bias[i];
}

void gelu(const float* x, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i)
    out[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * static_cast<float>(M_SQRT1_2)));
}

void quickGelu(const float* x, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = x[i] / (1.0f + std::exp(-1.702f * x[i]));
}

void patchify(const float* pixels, int64_t channels, int64_t size, int64_t patch, float* out) {
  const int64_t grid = size / patch, width = channels * patch * patch;
  std::fill(out, out + width, 0.0f);
  for (int64_t py = 0; py < grid; ++py)
    for (int64_t px = 0; px < grid; ++px) {
      float* row = out + (1 + py * grid + px) * width;
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t y = 0; y < patch; ++y)
          std::memcpy(row + (c * patch + y) * patch,
                      pixels + (c * size + py * patch + y) * size + px * patch,
                      static_cast<size_t>(patch) * sizeof(float));
    }
}

void visionEmbed(const float* x, const float* classEmbedding, const float* position, int64_t rows,
                 int64_t width, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < width; ++i)
      out[r * width + i] =
          x[r * width + i] + (r == 0 ? classEmbedding[i] : 0.0f) + position[r * width + i];
}

void encoderAttention(const float* q, const float* k, const float* v, int64_t rows, int64_t heads,
                      int64_t headDim, float scale, float* out) {
  const int64_t width = heads * headDim;
  std::vector<float> scores(static_cast<size_t>(rows));
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < rows; ++i) {
      const float* qi = q + i * width + h * headDim;
      float top = -INFINITY;
      for (int64_t j = 0; j < rows; ++j) {
        const float* kj = k + j * width + h * headDim;
        float dot = 0.0f;
        for (int64_t d = 0; d < headDim; ++d) dot += qi[d] * kj[d];
        scores[j] = dot * scale;
        top = std::max(top, scores[j]);
      }
      double total = 0.0;
      for (int64_t j = 0; j < rows; ++j) {
        scores[j] = std::exp(scores[j] - top);
        total += scores[j];
      }
      float* o = out + i * width + h * headDim;
      std::fill(o, o + headDim, 0.0f);
      for (int64_t j = 0; j < rows; ++j) {
        const auto p = static_cast<float>(scores[j] / total);
        const float* vj = v + j * width + h * headDim;
        for (int64_t d = 0; d < headDim; ++d) o[d] += p * vj[d];
      }
    }
}

}  // namespace tpc::cpu
