#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <numbers>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels/KernelTestUtil.h"
#include "tests/support/TestSupport.h"

namespace tpc::cpu {
namespace {

using test::allClose;
using test::randomFloats;

RopeParams defaultRope(double theta, int64_t headDim) {
  RopeParams p;
  p.theta = theta;
  p.headDim = headDim;
  return p;
}

RopeParams llama31Rope() {
  RopeParams p;
  p.type = "llama3";
  p.theta = 500000.0;
  p.headDim = 128;
  p.factor = 8.0;
  p.lowFreqFactor = 1.0;
  p.highFreqFactor = 4.0;
  p.originalMaxPosition = 8192;
  return p;
}

RopeParams yarnRope(bool truncate) {
  RopeParams p;
  p.type = "yarn";
  p.theta = 10000.0;
  p.headDim = 64;
  p.factor = 4.0;
  p.originalMaxPosition = 4096;
  p.truncate = truncate;
  return p;
}

// 1 / theta^(2i / d) in double.
std::vector<double> referenceDefaultFrequencies(double theta, int64_t headDim) {
  std::vector<double> inv(headDim / 2);
  for (size_t i = 0; i < inv.size(); ++i)
    inv[i] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(headDim));
  return inv;
}

// YaRN from the paper's definitions in double: dimensions whose wavelength fits the original
// context fewer than betaSlow times are interpolated, more than betaFast times extrapolated,
// with a linear ramp over the (optionally rounded) dimension range in between.
std::vector<double> referenceYarnFrequencies(const RopeParams& p) {
  const double d = static_cast<double>(p.headDim);
  auto dimensionFor = [&](double turns) {
    return d * std::log(p.originalMaxPosition / (turns * 2 * std::numbers::pi)) /
           (2 * std::log(p.theta));
  };
  double low = dimensionFor(p.betaFast), high = dimensionFor(p.betaSlow);
  if (p.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, d - 1);
  std::vector<double> inv = referenceDefaultFrequencies(p.theta, p.headDim);
  for (size_t i = 0; i < inv.size(); ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    inv[i] = inv[i] / p.factor * ramp + inv[i] * (1 - ramp);
  }
  return inv;
}

// out[i] = x[i] cos - x[i + d/2] sin, out[i + d/2] = x[i + d/2] cos + x[i] sin, in double.
std::vector<double> referenceRope(const std::vector<float>& x,
                                  const std::vector<int32_t>& positions, int64_t heads,
                                  int64_t headDim, const std::vector<double>& inv, double scaling) {
  std::vector<double> out(x.size());
  const int64_t half = headDim / 2;
  for (size_t t = 0; t < positions.size(); ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const size_t a = (t * heads + h) * headDim + i, b = a + half;
        const double angle = positions[t] * inv[i];
        const double c = std::cos(angle) * scaling, s = std::sin(angle) * scaling;
        out[a] = x[a] * c - x[b] * s;
        out[b] = x[b] * c + x[a] * s;
      }
  return out;
}

TEST(RopeFrequencies, DefaultAndLinearMatchFormula) {
  for (auto [theta, headDim] : {std::pair{10000.0, 10}, {1000000.0, 128}, {500000.0, 16}}) {
    float scaling = 0.0f;
    const auto inv = ropeInverseFrequencies(defaultRope(theta, headDim), &scaling);
    EXPECT_EQ(scaling, 1.0f);
    EXPECT_TRUE(allClose(inv, referenceDefaultFrequencies(theta, headDim), 1e-6));

    RopeParams linear = defaultRope(theta, headDim);
    linear.type = "linear";
    linear.factor = 4.0;
    const auto scaled = ropeInverseFrequencies(linear, nullptr);
    for (size_t i = 0; i < inv.size(); ++i) EXPECT_EQ(scaled[i], inv[i] / 4.0f);
  }
}

TEST(RopeFrequencies, Llama31KnownValues) {
  float scaling = 0.0f;
  const auto inv = ropeInverseFrequencies(llama31Rope(), &scaling);
  const auto plain = ropeInverseFrequencies(defaultRope(500000.0, 128), nullptr);
  ASSERT_EQ(inv.size(), 64u);
  EXPECT_EQ(scaling, 1.0f);
  // Wavelength 2*pi*500000^(i/64): below 8192/4 = 2048 up to i = 28 (1956.5), so unchanged;
  // above 8192/1 from i = 35 (8218.7), so divided by the factor 8.
  for (int i = 0; i <= 28; ++i) EXPECT_EQ(inv[i], plain[i]) << i;
  for (int i = 35; i < 64; ++i) EXPECT_FLOAT_EQ(inv[i], plain[i] / 8.0f) << i;
  // i = 32: inv = 500000^-0.5 = 1.41421356e-3, wavelength 4442.883, smooth = (8192 / 4442.883 -
  // 1) / 3 = 0.2812826, so inv * ((1 - 0.2812826) / 8 + 0.2812826) = 5.2484616e-4.
  EXPECT_NEAR(inv[32], 5.2484616e-4, 5.2484616e-4 * 1e-5);
  // The blend is monotonic between the two regimes.
  for (int i = 29; i <= 34; ++i) {
    EXPECT_LT(inv[i], plain[i]) << i;
    EXPECT_GT(inv[i], plain[i] / 8.0f) << i;
  }
}

TEST(RopeFrequencies, YarnAttentionFactor) {
  float scaling = 0.0f;
  ropeInverseFrequencies(yarnRope(true), &scaling);
  EXPECT_NEAR(scaling, 0.1 * std::log(4.0) + 1.0, 1e-7);
  EXPECT_NEAR(scaling, 1.1386294, 1e-6);

  RopeParams explicitFactor = yarnRope(true);
  explicitFactor.attentionFactor = 1.5;
  ropeInverseFrequencies(explicitFactor, &scaling);
  EXPECT_EQ(scaling, 1.5f);

  RopeParams noScaling = yarnRope(true);
  noScaling.factor = 1.0;
  ropeInverseFrequencies(noScaling, &scaling);
  EXPECT_EQ(scaling, 1.0f);
}

TEST(RopeFrequencies, YarnMatchesReference) {
  for (bool truncate : {true, false}) {
    const RopeParams p = yarnRope(truncate);
    const auto inv = ropeInverseFrequencies(p, nullptr);
    EXPECT_TRUE(allClose(inv, referenceYarnFrequencies(p), 1e-6)) << "truncate " << truncate;
    // The fastest-turning dimension is kept, the slowest interpolated by the factor.
    EXPECT_EQ(inv.front(), 1.0f);
    EXPECT_NEAR(inv.back(), std::pow(10000.0, -62.0 / 64) / 4, 1e-6 * inv.back());
  }
  // Rounding the correction range outwards changes the blend in the ramp.
  EXPECT_NE(ropeInverseFrequencies(yarnRope(true), nullptr),
            ropeInverseFrequencies(yarnRope(false), nullptr));
}

TEST(Rope, MatchesReferenceOnOddShapes) {
  for (auto [heads, headDim] : {std::pair<int64_t, int64_t>{6, 10}, {8, 16}}) {
    const std::vector<int32_t> positions{0, 1, 2, 5, 17, 40, 63};
    const auto tokens = static_cast<int64_t>(positions.size());
    const auto x = randomFloats(tokens * heads * headDim, 30);
    const RopeParams p = defaultRope(10000.0, headDim);
    std::vector<float> out(x.size());
    rope(x.data(), positions.data(), tokens, heads, p, out.data());
    const auto expected =
        referenceRope(x, positions, heads, headDim, referenceDefaultFrequencies(1e4, headDim), 1);
    EXPECT_TRUE(allClose(out, expected, 1e-5)) << heads << "x" << headDim;

    // In place gives the same result.
    auto inPlace = x;
    rope(inPlace.data(), positions.data(), tokens, heads, p, inPlace.data());
    EXPECT_EQ(inPlace, out);
  }
}

TEST(Rope, YarnScalesCosAndSin) {
  const RopeParams p = yarnRope(true);
  const std::vector<int32_t> positions{0, 3, 9, 30};
  const auto x = randomFloats(positions.size() * 2 * p.headDim, 31);
  std::vector<float> out(x.size());
  rope(x.data(), positions.data(), 4, 2, p, out.data());
  EXPECT_TRUE(allClose(out,
                       referenceRope(x, positions, 2, p.headDim, referenceYarnFrequencies(p),
                                     0.1 * std::log(4.0) + 1),
                       1e-5));
}

TEST(Rope, PositionZeroIsIdentity) {
  const std::vector<int32_t> positions(3, 0);
  for (const RopeParams& p : {defaultRope(10000.0, 16), llama31Rope()}) {
    const auto x = randomFloats(3 * 4 * p.headDim, 32);
    std::vector<float> out(x.size());
    rope(x.data(), positions.data(), 3, 4, p, out.data());
    EXPECT_EQ(out, x) << p.type;
  }
}

TEST(Rope, PreservesEachPairsNorm) {
  const RopeParams p = llama31Rope();
  const std::vector<int32_t> positions{1, 100, 4097, 70000};
  const int64_t heads = 3, half = p.headDim / 2;
  const auto x = randomFloats(positions.size() * heads * p.headDim, 33);
  std::vector<float> out(x.size());
  rope(x.data(), positions.data(), 4, heads, p, out.data());
  for (size_t row = 0; row < positions.size() * heads; ++row)
    for (int64_t i = 0; i < half; ++i) {
      const size_t a = row * p.headDim + i, b = a + half;
      const double before = std::hypot(x[a], x[b]), after = std::hypot(out[a], out[b]);
      EXPECT_NEAR(after, before, 1e-6 * (before + 1e-3)) << row << " " << i;
    }
}

TEST(Rope, RotatesFirstHalfAgainstSecondHalf) {
  // headDim 4, theta 100: inv_freq = {1, 0.1}. rotate_half pairs (0, 2) and (1, 3); an
  // interleaved RoPE would pair (0, 1) and (2, 3) instead.
  const RopeParams p = defaultRope(100.0, 4);
  const std::vector<float> x{1, 0, 0, 0, 0, 1, 0, 0};
  const std::vector<int32_t> positions{1, 1};
  std::vector<float> out(8);
  rope(x.data(), positions.data(), 2, 1, p, out.data());
  EXPECT_FLOAT_EQ(out[0], std::cos(1.0f));
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_FLOAT_EQ(out[2], std::sin(1.0f));
  EXPECT_EQ(out[3], 0.0f);
  EXPECT_EQ(out[4], 0.0f);
  EXPECT_FLOAT_EQ(out[5], std::cos(0.1f));
  EXPECT_EQ(out[6], 0.0f);
  EXPECT_FLOAT_EQ(out[7], std::sin(0.1f));
}

// Distance in units in the last place between two finite floats of the same sign.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(static_cast<int64_t>(ia) - ib);
}

RopeParams fromGolden(const nlohmann::json& c) {
  RopeParams p;
  p.type = c.at("rope_type");
  p.theta = c.at("rope_theta");
  p.headDim = c.at("head_dim");
  p.factor = c.value("factor", 1.0);
  p.lowFreqFactor = c.value("low_freq_factor", 1.0);
  p.highFreqFactor = c.value("high_freq_factor", 4.0);
  p.originalMaxPosition = c.value("original_max_position_embeddings", int64_t{0});
  p.betaFast = c.value("beta_fast", 32.0);
  p.betaSlow = c.value("beta_slow", 1.0);
  p.attentionFactor = c.value("attention_factor", 0.0);
  p.truncate = c.value("truncate", true);
  return p;
}

// Made by tests/data/hf/make_rope_golden.py from transformers' own rotary embedding module.
TEST(Rope, AgreesWithTransformers) {
  std::ifstream file(test::dataDir() + "/kernels/rope_golden.json");
  ASSERT_TRUE(file) << "missing rope_golden.json";
  const auto golden = nlohmann::json::parse(file);
  const auto positions = golden.at("positions").get<std::vector<int32_t>>();
  const int64_t heads = golden.at("heads");
  ASSERT_GE(golden.at("cases").size(), 8u);
  for (const auto& [name, c] : golden.at("cases").items()) {
    SCOPED_TRACE(name);
    const RopeParams p = fromGolden(c.at("params"));
    float scaling = 0.0f;
    const auto inv = ropeInverseFrequencies(p, &scaling);
    const auto expectedInv = c.at("inv_freq").get<std::vector<float>>();
    ASSERT_EQ(inv.size(), expectedInv.size());
    int64_t worst = 0;
    for (size_t i = 0; i < inv.size(); ++i) worst = std::max(worst, ulps(inv[i], expectedInv[i]));
    // torch's vectorised pow is within 1 ulp, ours correctly rounded: they may differ by one.
    EXPECT_LE(worst, 1) << "inverse frequencies off by " << worst << " ulp";
    EXPECT_FLOAT_EQ(scaling, c.at("attention_scaling").get<float>());

    const auto x = c.at("x").get<std::vector<float>>();
    const auto expected = c.at("rotated").get<std::vector<double>>();
    std::vector<float> out(x.size());
    rope(x.data(), positions.data(), static_cast<int64_t>(positions.size()), heads, p, out.data());
    // A few ulp: both form the same fp32 angle, even at position 5000.
    EXPECT_TRUE(allClose(out, expected, 1e-6));
  }
}

}  // namespace
}  // namespace tpc::cpu
