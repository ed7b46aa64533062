#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/cpu/Kernels.h"

namespace tpc::cpu {

void embedding(const int32_t* ids, int64_t tokens, const float* table, int64_t rows,
               int64_t firstRow, int64_t hidden, float* out) {
  for (int64_t t = 0; t < tokens; ++t) {
    float* dst = out + t * hidden;
    const int64_t row = static_cast<int64_t>(ids[t]) - firstRow;
    if (row < 0 || row >= rows) {
      std::memset(dst, 0, sizeof(float) * hidden);
      continue;
    }
    std::memcpy(dst, table + row * hidden, sizeof(float) * hidden);
  }
}

void add(const float* a, const float* b, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = a[i] + b[i];
}

void swiglu(const float* gate, const float* up, int64_t count, float* out) {
  // torch's silu is x / (1 + exp(-x)) in fp32; a very negative x gives x / inf = -0, not NaN.
  for (int64_t i = 0; i < count; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace tpc::cpu
