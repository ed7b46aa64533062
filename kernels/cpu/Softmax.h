// Softmax in place, as PyTorch computes it in fp32: the maximum subtracted first so large
// scores cannot overflow, the sum accumulated in double. Shared by attention and the router.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace tpc::cpu {

inline void softmaxInPlace(float* values, int64_t n) {
  const float maximum = *std::max_element(values, values + n);
  double total = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    values[j] = std::exp(values[j] - maximum);
    total += values[j];
  }
  const auto inverse = static_cast<float>(1.0 / total);
  for (int64_t j = 0; j < n; ++j) values[j] *= inverse;
}

}  // namespace tpc::cpu
