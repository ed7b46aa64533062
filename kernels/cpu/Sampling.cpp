// Greedy and stochastic token choice. The filters follow transformers' logits warpers in their
// order (temperature, top-k, top-p, min-p); the draw uses splitmix64 so a request's state, a single
// uint64, makes its tokens reproducible on every backend.
#include <algorithm>
#include <cassert>
#include <cmath>

#include "kernels/cpu/Kernels.h"
#include "kernels/cpu/Scratch.h"

namespace tpc::cpu {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct Candidate {
  float logit;
  int64_t token;
};

// Highest logit first; equal logits by token id, so the order never depends on the sort.
bool before(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
}

}  // namespace

double drawUniform(uint64_t& state) {
  return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
}

int64_t argmax(const float* logits, int64_t vocab) {
  assert(vocab > 0);
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

int64_t sample(const float* logits, int64_t vocab, const SamplingParams& p, uint64_t& rngState) {
  if (p.temperature <= 0.0f) return argmax(logits, vocab);
  return sampleWithDraw(logits, vocab, p, drawUniform(rngState));
}

int64_t sampleWithDraw(const float* logits, int64_t vocab, const SamplingParams& p,
                       double uniform) {
  if (p.temperature <= 0.0f) return argmax(logits, vocab);
  auto* candidates = detail::scratch<Candidate>(vocab);
  for (int64_t i = 0; i < vocab; ++i) candidates[i] = {logits[i] / p.temperature, i};

  int64_t kept = vocab;
  if (p.topK > 0 && p.topK < vocab) {
    std::partial_sort(candidates, candidates + p.topK, candidates + vocab, before);
    kept = p.topK;
    // Like HF's TopKLogitsWarper, tokens tied with the k-th logit stay in.
    const float threshold = candidates[p.topK - 1].logit;
    for (int64_t i = p.topK; i < vocab; ++i)
      if (candidates[i].logit == threshold) std::swap(candidates[kept++], candidates[i]);
    std::sort(candidates + p.topK, candidates + kept, before);
  } else if (p.topP < 1.0f) {
    std::sort(candidates, candidates + vocab, before);
  }
  // Without top-p the survivors need no order (the draw is over all of them, in any order), so
  // the common plain-temperature case skips sorting the whole vocabulary.

  float maximum = candidates[0].logit;
  for (int64_t i = 1; i < kept; ++i) maximum = std::max(maximum, candidates[i].logit);
  auto* probs = detail::scratch<double>(kept);
  double total = 0.0;
  for (int64_t i = 0; i < kept; ++i) {
    probs[i] = std::exp(static_cast<double>(candidates[i].logit - maximum));
    total += probs[i];
  }
  if (p.topP < 1.0f) {
    // The smallest prefix whose probability reaches topP; at least one token.
    double cumulative = 0.0;
    int64_t nucleus = 0;
    while (nucleus < kept) {
      cumulative += probs[nucleus++] / total;
      if (cumulative >= p.topP) break;
    }
    kept = std::max<int64_t>(nucleus, 1);
    total = 0.0;
    for (int64_t i = 0; i < kept; ++i) total += probs[i];
  }
  if (p.minP > 0.0f) {
    // Like HF's MinPLogitsWarper: keep tokens at least minP times as likely as the most likely
    // survivor (probs are relative to the maximum, which is 1), in their current order.
    int64_t survivors = 0;
    total = 0.0;
    for (int64_t i = 0; i < kept; ++i)
      if (probs[i] >= static_cast<double>(p.minP)) {
        candidates[survivors] = candidates[i];
        probs[survivors++] = probs[i];
        total += probs[i];
      }
    kept = survivors;  // the maximum itself always survives (minP <= 1)
  }

  double target = uniform * total;
  for (int64_t i = 0; i < kept - 1; ++i) {
    target -= probs[i];
    if (target < 0.0) return candidates[i].token;
  }
  return candidates[kept - 1].token;
}

}  // namespace tpc::cpu
