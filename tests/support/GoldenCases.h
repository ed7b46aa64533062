// The transformers golden cases (tests/data/hf, made by make_golden.py) and the comparisons the
// golden tests make on their logits, shared by the CPU, CUDA and multi-node suites.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "executor/Npy.h"

namespace tpc::test {

inline const char* const kGoldenCases[] = {"llama-gqa-llama3rope", "mistral-gqa", "qwen2-bias-tied",
                                           "qwen3-qknorm-headdim", "qwen3moe",    "mixtral"};

// ||ours - ref|| / ||ref|| over row r of [rows, vocab] logits.
inline double rowError(const NpyArray& ours, const NpyArray& ref, int64_t r) {
  double num = 0, den = 0;
  const int64_t vocab = ref.shape[1];
  for (int64_t c = 0; c < vocab; ++c) {
    const double d = ours.data[r * vocab + c] - ref.data[r * vocab + c];
    num += d * d;
    den += static_cast<double>(ref.data[r * vocab + c]) * ref.data[r * vocab + c];
  }
  return std::sqrt(num / den);
}

// The largest rowError over all rows.
inline double worstRowError(const NpyArray& ours, const NpyArray& ref) {
  double worst = 0;
  for (int64_t r = 0; r < ref.shape[0]; ++r) worst = std::max(worst, rowError(ours, ref, r));
  return worst;
}

// Token ids as a --prompt-ids value: "1,17,42".
inline std::string joinedIds(const std::vector<int64_t>& ids) {
  std::string s;
  for (int64_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

}  // namespace tpc::test
