// Shared by the kernel tests: seeded random inputs and a comparison of fp32 kernel output with
// a double-precision reference.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <vector>

namespace tpc::test {

inline std::vector<float> randomFloats(size_t count, uint32_t seed, float low = -1.0f,
                                       float high = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(low, high);
  std::vector<float> values(count);
  for (float& v : values) v = dist(rng);
  return values;
}

// Every element within `tolerance` of the reference, relative to its own magnitude plus a tenth
// of the largest one (so entries that cancel to near zero are judged on the tensor's scale).
inline ::testing::AssertionResult allClose(const float* actual, const std::vector<double>& expected,
                                           double tolerance) {
  double largest = 0.0;
  for (double e : expected) largest = std::max(largest, std::abs(e));
  for (size_t i = 0; i < expected.size(); ++i) {
    const double error = std::abs(static_cast<double>(actual[i]) - expected[i]);
    if (!(error <= tolerance * (std::abs(expected[i]) + 0.1 * largest))) {
      std::ostringstream message;
      message << "element " << i << ": got " << actual[i] << ", expected " << expected[i]
              << " (error " << error << ", largest reference magnitude " << largest << ")";
      return ::testing::AssertionFailure() << message.str();
    }
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult allClose(const std::vector<float>& actual,
                                           const std::vector<double>& expected, double tolerance) {
  if (actual.size() != expected.size())
    return ::testing::AssertionFailure()
           << "size " << actual.size() << " vs reference " << expected.size();
  return allClose(actual.data(), expected, tolerance);
}

inline std::vector<double> toDouble(const std::vector<float>& values) {
  return {values.begin(), values.end()};
}

}  // namespace tpc::test
