// The transformers golden cases (tests/data/hf, made by make_golden.py) and the comparisons the
// golden tests make on their logits, shared by the CPU, CUDA and multi-node suites.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

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

// bf16 keeps 8 bits of mantissa: every activation is rounded to a relative 2^-9 and the errors
// of a few layers accumulate, so a logits row lands within a few percent of the fp32 reference.
constexpr double kBf16RowError = 3e-2;

inline double maxAbsError(const NpyArray& ours, const NpyArray& ref, int64_t r) {
  double worst = 0;
  const int64_t vocab = ref.shape[1];
  for (int64_t c = 0; c < vocab; ++c)
    worst = std::max(
        worst, std::fabs(static_cast<double>(ours.data[r * vocab + c]) - ref.data[r * vocab + c]));
  return worst;
}

// Gap between the best and second-best logit of reference row r.
inline double margin(const NpyArray& ref, int64_t r) {
  const int64_t vocab = ref.shape[1];
  double best = -1e30, second = -1e30;
  for (int64_t c = 0; c < vocab; ++c) {
    double v = ref.data[r * vocab + c];
    if (v > best) {
      second = best;
      best = v;
    } else if (v > second) {
      second = v;
    }
  }
  return best - second;
}

// Generated ids must agree as long as, on every row so far, our largest logit error is under
// half the reference's top-2 margin: then no error could have changed the argmax. Past the
// first row where it isn't, the sequences may legitimately part.
inline int64_t idsMustAgreeUpTo(const NpyArray& ours, const NpyArray& ref) {
  int64_t rows = 0;
  while (rows < ref.shape[0] && 2 * maxAbsError(ours, ref, rows) < margin(ref, rows)) ++rows;
  return rows;
}

// The last line of `output` that starts with '{': tpexec --json's result, past any note a run
// prints to stderr first (ranks sharing a GPU without the MPS daemon get one).
inline std::string jsonLine(const std::string& output) {
  size_t start = output.rfind("\n{");
  start = start == std::string::npos ? 0 : start + 1;
  return output.substr(start, output.find('\n', start) - start);
}

// Token ids as a --prompt-ids value: "1,17,42".
inline std::string joinedIds(const std::vector<int64_t>& ids) {
  std::string s;
  for (int64_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

// Writes a --requests file of `count` greedy requests with prompts of 3, 7, 11, ... ids (below
// 250, inside every golden vocab), 5 new tokens each, ids "r0", "r1", ...; returns the prompts.
inline std::vector<std::vector<int64_t>> writeStaggeredRequests(const std::string& path,
                                                                int count = 4) {
  std::vector<std::vector<int64_t>> prompts;
  std::ofstream out(path);
  for (int i = 0; i < count; ++i) {
    std::vector<int64_t> prompt;
    for (int k = 0; k < 3 + 4 * i; ++k) prompt.push_back((i * 31 + k * 7 + 1) % 250);
    nlohmann::json j;
    j["id"] = "r" + std::to_string(i);
    j["prompt_ids"] = prompt;
    j["max_new_tokens"] = 5;
    j["ignore_eos"] = true;
    out << j.dump() << "\n";
    prompts.push_back(std::move(prompt));
  }
  return prompts;
}

}  // namespace tpc::test
