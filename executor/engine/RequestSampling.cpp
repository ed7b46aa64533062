#include "executor/engine/RequestSampling.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>
#include <vector>

#include "kernels/cpu/Kernels.h"

namespace tpc {

double drawFor(uint64_t seed, int64_t n) {
  // splitmix64 advances its state by a constant per draw: the n-th draw starts n steps on.
  uint64_t state = seed + static_cast<uint64_t>(n) * 0x9e3779b97f4a7c15ULL;
  return cpu::drawUniform(state);
}

RowSampling rowSamplingOf(const Sequence& seq) {
  const EngineRequest& r = seq.request;
  RowSampling s;
  s.temperature = r.temperature;
  s.topK = static_cast<int32_t>(r.topK);
  s.topP = r.topP;
  s.minP = r.minP;
  s.uniform = r.temperature > 0.0f ? drawFor(seq.seed, seq.generated) : 0.0;
  return s;
}

bool needsHostSampling(const EngineRequest& r) {
  return r.presencePenalty != 0.0f || r.frequencyPenalty != 0.0f || r.repetitionPenalty != 1.0f ||
         r.topLogprobs >= 0 || r.returnLogits;
}

void applyPenalties(const Sequence& seq, float* logits, int64_t vocab) {
  const EngineRequest& r = seq.request;
  if (r.repetitionPenalty != 1.0f) {
    std::unordered_set<int32_t> seen(seq.tokens.begin(), seq.tokens.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= vocab) continue;
      float& l = logits[id];
      l = l > 0.0f ? l / r.repetitionPenalty : l * r.repetitionPenalty;
    }
  }
  if (r.presencePenalty != 0.0f || r.frequencyPenalty != 0.0f)
    for (const auto& [id, count] : seq.generatedCounts)
      if (id >= 0 && id < vocab)
        logits[id] -= r.presencePenalty + r.frequencyPenalty * static_cast<float>(count);
}

int32_t pickToken(const Sequence& seq, const float* logits, int64_t vocab) {
  const RowSampling s = rowSamplingOf(seq);
  cpu::SamplingParams p{s.temperature, s.topK, s.topP};
  p.minP = s.minP;
  return static_cast<int32_t>(cpu::sampleWithDraw(logits, vocab, p, s.uniform));
}

void fillLogprobs(const float* logits, int64_t vocab, int32_t token, int top, EngineEvent& event) {
  const float maximum = *std::max_element(logits, logits + vocab);
  double total = 0.0;
  for (int64_t i = 0; i < vocab; ++i) total += std::exp(static_cast<double>(logits[i] - maximum));
  const double logTotal = std::log(total) + maximum;
  auto logprob = [&](int64_t i) { return static_cast<float>(logits[i] - logTotal); };
  event.logprob = logprob(token);
  if (top <= 0) return;
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) order[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  const auto k = std::min<int64_t>(top, vocab);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int64_t i = 0; i < k; ++i) event.top.push_back({order[i], logprob(order[i])});
}

}  // namespace tpc
