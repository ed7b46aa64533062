// The vision tower's CPU kernels against references written the plain way in double: LayerNorm
// from its definition, GELU from std::erf at published values, the patch GEMM against a direct
// convolution, attention with an explicit softmax.
#include <cmath>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cpu/Vision.h"
#include "tests/kernels/KernelTestUtil.h"

namespace tpc::cpu {
namespace {

using test::allClose;
using test::randomFloats;

TEST(LayerNorm, MatchesDefinitionWithBias) {
  const int64_t rows = 5, width = 33;
  auto x = randomFloats(rows * width, 1, -4.0f, 6.0f);  // a non-zero mean
  auto w = randomFloats(width, 2, 0.5f, 1.5f), b = randomFloats(width, 3);
  std::vector<double> want(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < width; ++i) mean += x[r * width + i] / static_cast<double>(width);
    for (int64_t i = 0; i < width; ++i)
      var += std::pow(x[r * width + i] - mean, 2.0) / static_cast<double>(width);
    for (int64_t i = 0; i < width; ++i)
      want[r * width + i] = (x[r * width + i] - mean) / std::sqrt(var + 1e-5) * w[i] + b[i];
  }
  std::vector<float> out(x.size());
  layerNorm(x.data(), w.data(), b.data(), rows, width, 1e-5f, out.data());
  EXPECT_TRUE(allClose(out, want, 1e-5));
  // In place, as the backend may run it.
  layerNorm(x.data(), w.data(), b.data(), rows, width, 1e-5f, x.data());
  EXPECT_TRUE(allClose(x, want, 1e-5));
}

TEST(LayerNorm, KnownAnswer) {
  // (1, 3): mean 2, variance 1, so (-1, 1) before the weight and bias.
  const std::vector<float> x{1.0f, 3.0f}, w{2.0f, 3.0f}, b{0.5f, -0.5f};
  std::vector<float> out(2);
  layerNorm(x.data(), w.data(), b.data(), 1, 2, 0.0f, out.data());
  EXPECT_FLOAT_EQ(out[0], -1.5f);
  EXPECT_FLOAT_EQ(out[1], 2.5f);
}

TEST(Gelu, PublishedValues) {
  // GELU(x) = x * Phi(x): Phi(1) = 0.8413447461, Phi(-2) = 0.0227501319, Phi(0.5) = 0.6914624613.
  const std::vector<float> x{1.0f, -2.0f, 0.5f, 0.0f, -30.0f};
  std::vector<float> out(x.size());
  gelu(x.data(), static_cast<int64_t>(x.size()), out.data());
  EXPECT_NEAR(out[0], 0.8413447461, 1e-6);
  EXPECT_NEAR(out[1], -2.0 * 0.0227501319, 1e-6);
  EXPECT_NEAR(out[2], 0.5 * 0.6914624613, 1e-6);
  EXPECT_EQ(out[3], 0.0f);
  EXPECT_NEAR(out[4], 0.0, 1e-6);
}

TEST(QuickGelu, SigmoidOf1702) {
  auto x = randomFloats(101, 4, -8.0f, 8.0f);
  x.push_back(-200.0f);  // exp overflows to inf: the result is -0, not NaN
  std::vector<double> want;
  want.reserve(x.size());
  for (float v : x) want.push_back(v / (1.0 + std::exp(-1.702 * v)));
  std::vector<float> out(x.size());
  quickGelu(x.data(), static_cast<int64_t>(x.size()), out.data());
  EXPECT_TRUE(allClose(out, want, 1e-5));
  EXPECT_FALSE(std::isnan(out.back()));
}

TEST(Patchify, GemmEqualsDirectConvolution) {
  const int64_t channels = 3, size = 12, patch = 4, grid = 3, hidden = 5;
  const int64_t k = channels * patch * patch, rows = grid * grid + 1;
  auto pixels = randomFloats(channels * size * size, 5);
  auto kernel = randomFloats(hidden * k, 6);  // [hidden, channels, patch, patch]
  std::vector<float> patches(rows * k, 7.0f), out(rows * hidden);
  patchify(pixels.data(), channels, size, patch, patches.data());
  linear(patches.data(), kernel.data(), nullptr, rows, k, hidden, out.data());
  std::vector<double> want(rows * hidden, 0.0);  // row 0: the class slot, zero
  for (int64_t py = 0; py < grid; ++py)
    for (int64_t px = 0; px < grid; ++px)
      for (int64_t o = 0; o < hidden; ++o) {
        double sum = 0;
        for (int64_t c = 0; c < channels; ++c)
          for (int64_t y = 0; y < patch; ++y)
            for (int64_t x = 0; x < patch; ++x)
              sum += kernel[((o * channels + c) * patch + y) * patch + x] *
                     pixels[(c * size + py * patch + y) * size + px * patch + x];
        want[(1 + py * grid + px) * hidden + o] = sum;
      }
  EXPECT_TRUE(allClose(out, want, 1e-5));
}

TEST(VisionEmbed, ClassRowAndPositions) {
  const std::vector<float> x{0, 0, 1, 2}, cls{10, 20}, pos{1, 1, 2, 2};
  std::vector<float> out(4);
  visionEmbed(x.data(), cls.data(), pos.data(), 2, 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{11, 21, 3, 4}));
}

TEST(EncoderAttention, EveryRowSeesEveryRow) {
  const int64_t rows = 6, heads = 3, d = 4, w = heads * d;
  auto q = randomFloats(rows * w, 7), k = randomFloats(rows * w, 8), v = randomFloats(rows * w, 9);
  const double scale = 0.5;
  std::vector<double> want(rows * w, 0.0);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < rows; ++i) {
      std::vector<double> p(rows);
      double total = 0;
      for (int64_t j = 0; j < rows; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < d; ++e) dot += q[i * w + h * d + e] * k[j * w + h * d + e];
        p[j] = std::exp(dot * scale);
        total += p[j];
      }
      for (int64_t j = 0; j < rows; ++j)
        for (int64_t e = 0; e < d; ++e)
          want[i * w + h * d + e] += p[j] / total * v[j * w + h * d + e];
    }
  std::vector<float> out(rows * w);
  encoderAttention(q.data(), k.data(), v.data(), rows, heads, d, static_cast<float>(scale),
                   out.data());
  EXPECT_TRUE(allClose(out, want, 1e-5));
}

TEST(BiasAdd, AddsPerColumn) {
  const std::vector<float> x{1, 2, 3, 4}, b{10, 20};
  std::vector<float> out(4);
  biasAdd(x.data(), b.data(), 2, 2, out.data());
  EXPECT_EQ(out, (std::vector<float>{11, 22, 13, 24}));
}

}  // namespace
}  // namespace tpc::cpu
