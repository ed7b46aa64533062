// Rotary position embedding as transformers computes it. The inverse frequencies follow
// modeling_rope_utils.py step by step in fp32 (torch builds them as float32 tensors, with the
// Python scalars cast to float32), so they agree with transformers' to within one ulp (checked
// against tests/data/kernels/rope_golden.json); only yarn's correction range is in double, as in
// Python.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <numbers>

#include "kernels/cpu/Kernels.h"
#include "kernels/cpu/Scratch.h"

namespace tpc::cpu {
namespace {

// float32 pow of float32 inputs, rounded once from double. torch's vectorised pow is only within
// 1 ulp and differs between CPU and GPU; a correctly rounded one is the same on every libm.
float powF32(float base, float exponent) {
  return static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
}

// base ** (arange(0, dim, 2).float() / dim), the common start of every rope type.
float basePower(const RopeParams& p, int64_t i) {
  const float exponent = static_cast<float>(2 * i) / static_cast<float>(p.headDim);
  return powF32(static_cast<float>(p.theta), exponent);
}

void llama3(const RopeParams& p, int64_t half, float* invFreq) {
  assert(p.originalMaxPosition > 0 && p.highFreqFactor != p.lowFreqFactor);
  const auto context = static_cast<double>(p.originalMaxPosition);
  const auto lowFreqWavelen = static_cast<float>(context / p.lowFreqFactor);
  const auto highFreqWavelen = static_cast<float>(context / p.highFreqFactor);
  const auto factor = static_cast<float>(p.factor);
  const auto twoPi = static_cast<float>(2.0 * std::numbers::pi);
  for (int64_t i = 0; i < half; ++i) {
    const float inv = 1.0f / basePower(p, i);
    const float wavelen = twoPi / inv;
    // Long wavelengths (low frequencies) are interpolated, short ones kept, and the band in
    // between blends the two.
    const float scaled = wavelen > lowFreqWavelen ? inv / factor : inv;
    const float smooth =
        (static_cast<float>(context) / wavelen - static_cast<float>(p.lowFreqFactor)) /
        static_cast<float>(p.highFreqFactor - p.lowFreqFactor);
    const float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
    const bool medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    invFreq[i] = medium ? smoothed : scaled;
  }
}

// The dimension at which a frequency makes `rotations` turns over the original context.
double correctionDim(double rotations, double dim, double base, double context) {
  return (dim * std::log(context / (rotations * 2 * std::numbers::pi))) / (2 * std::log(base));
}

void yarn(const RopeParams& p, int64_t half, float* invFreq) {
  assert(p.originalMaxPosition > 0);
  const auto dim = static_cast<double>(p.headDim);
  const auto context = static_cast<double>(p.originalMaxPosition);
  double low = correctionDim(p.betaFast, dim, p.theta, context);
  double high = correctionDim(p.betaSlow, dim, p.theta, context);
  if (p.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, dim - 1);
  if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp
  const auto factor = static_cast<float>(p.factor);
  for (int64_t i = 0; i < half; ++i) {
    const float posFreq = basePower(p, i);
    const float extrapolation = 1.0f / posFreq;
    const float interpolation = 1.0f / (factor * posFreq);
    const float linear =
        (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low);
    const float ramp = std::clamp(linear, 0.0f, 1.0f);
    const float extrapolationFactor = 1.0f - ramp;
    invFreq[i] = interpolation * (1.0f - extrapolationFactor) + extrapolation * extrapolationFactor;
  }
}

// Fills invFreq[headDim / 2]; returns the factor cos and sin are scaled by.
float fillInverseFrequencies(const RopeParams& p, float* invFreq) {
  assert(p.headDim > 0 && p.headDim % 2 == 0);
  const int64_t half = p.headDim / 2;
  if (p.type == "llama3") {
    llama3(p, half, invFreq);
    return 1.0f;
  }
  if (p.type == "yarn") {
    yarn(p, half, invFreq);
    if (p.attentionFactor > 0) return static_cast<float>(p.attentionFactor);
    return static_cast<float>(p.factor <= 1 ? 1.0 : 0.1 * std::log(p.factor) + 1.0);
  }
  assert((p.type == "default" || p.type == "linear") && "unknown rope type");
  const auto factor = static_cast<float>(p.type == "linear" ? p.factor : 1.0);
  for (int64_t i = 0; i < half; ++i) invFreq[i] = 1.0f / basePower(p, i) / factor;
  return 1.0f;
}

}  // namespace

std::vector<float> ropeInverseFrequencies(const RopeParams& p, float* attentionScaling) {
  std::vector<float> invFreq(p.headDim / 2);
  const float scaling = fillInverseFrequencies(p, invFreq.data());
  if (attentionScaling) *attentionScaling = scaling;
  return invFreq;
}

void rope(const float* x, const int32_t* positions, int64_t tokens, int64_t heads,
          const RopeParams& p, float* out) {
  const int64_t half = p.headDim / 2;
  float* invFreq = detail::scratch<float, 0>(half);
  float* cosines = detail::scratch<float, 1>(half);
  float* sines = detail::scratch<float, 2>(half);
  const float scaling = fillInverseFrequencies(p, invFreq);
  for (int64_t t = 0; t < tokens; ++t) {
    // fp32 angle as torch forms it (inv_freq @ position), then cos/sin rounded once to fp32.
    const auto position = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = invFreq[i] * position;
      cosines[i] = static_cast<float>(std::cos(static_cast<double>(angle))) * scaling;
      sines[i] = static_cast<float>(std::sin(static_cast<double>(angle))) * scaling;
    }
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t base = (t * heads + h) * p.headDim;
      const float* src = x + base;
      float* dst = out + base;
      for (int64_t i = 0; i < half; ++i) {
        // rotate_half pairs element i with element i + half; both read before either is written.
        const float first = src[i], second = src[i + half];
        dst[i] = first * cosines[i] - second * sines[i];
        dst[i + half] = second * cosines[i] + first * sines[i];
      }
    }
  }
}

}  // namespace tpc::cpu
