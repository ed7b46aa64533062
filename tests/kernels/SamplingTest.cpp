#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels/KernelTestUtil.h"

namespace tpc::cpu {
namespace {

using test::randomFloats;

std::vector<double> frequencies(const std::vector<float>& logits, const SamplingParams& p,
                                uint64_t seed, int draws) {
  std::vector<double> counts(logits.size(), 0.0);
  for (int i = 0; i < draws; ++i)
    counts[sample(logits.data(), static_cast<int64_t>(logits.size()), p, seed)] += 1.0 / draws;
  return counts;
}

std::vector<float> logitsOf(const std::vector<double>& probs) {
  std::vector<float> logits(probs.size());
  for (size_t i = 0; i < probs.size(); ++i) logits[i] = static_cast<float>(std::log(probs[i]));
  return logits;
}

TEST(Argmax, TiesGoToTheLowestIndex) {
  const std::vector<float> logits{1, 5, 2, 5, -1};
  EXPECT_EQ(argmax(logits.data(), 5), 1);
}

TEST(Sample, NonPositiveTemperatureIsGreedy) {
  const auto logits = randomFloats(1001, 150, -5.0f, 5.0f);
  const int64_t best = argmax(logits.data(), 1001);
  for (float temperature : {0.0f, -1.0f}) {
    uint64_t state = 42;
    EXPECT_EQ(sample(logits.data(), 1001, {temperature, 0, 1.0f}, state), best);
    EXPECT_EQ(state, 42u) << "greedy draws no random number";
  }
}

TEST(Sample, TopKOfOneIsGreedy) {
  const auto logits = randomFloats(1001, 151, -5.0f, 5.0f);
  const int64_t best = argmax(logits.data(), 1001);
  uint64_t state = 7;
  for (int i = 0; i < 200; ++i)
    ASSERT_EQ(sample(logits.data(), 1001, {1.5f, 1, 1.0f}, state), best);
}

TEST(Sample, SameSeedSameDraws) {
  const auto logits = randomFloats(1001, 152, -1.0f, 1.0f);
  const SamplingParams p{1.0f, 50, 0.9f};
  uint64_t a = 123, b = 123, c = 124;
  std::vector<int64_t> first, second, other;
  for (int i = 0; i < 100; ++i) {
    first.push_back(sample(logits.data(), 1001, p, a));
    second.push_back(sample(logits.data(), 1001, p, b));
    other.push_back(sample(logits.data(), 1001, p, c));
  }
  EXPECT_EQ(first, second);
  EXPECT_EQ(a, b);
  EXPECT_NE(first, other);
}

TEST(Sample, DrawsFollowTheSoftmax) {
  const std::vector<double> probs{0.1, 0.2, 0.3, 0.4};
  const auto logits = logitsOf(probs);
  const auto seen = frequencies(logits, {1.0f, 0, 1.0f}, 1, 20000);
  for (size_t i = 0; i < probs.size(); ++i) EXPECT_NEAR(seen[i], probs[i], 0.02) << i;

  // Temperature 2 flattens to probabilities proportional to sqrt(p).
  double total = 0.0;
  for (double p : probs) total += std::sqrt(p);
  const auto flat = frequencies(logits, {2.0f, 0, 1.0f}, 2, 20000);
  for (size_t i = 0; i < probs.size(); ++i)
    EXPECT_NEAR(flat[i], std::sqrt(probs[i]) / total, 0.02) << i;
}

TEST(Sample, LargeLogitsDoNotOverflow) {
  // Shifted by 1000: exp() of the raw logits overflows even in double.
  auto logits = logitsOf({0.25, 0.75});
  for (float& l : logits) l += 1000.0f;
  const auto seen = frequencies(logits, {1.0f, 0, 1.0f}, 5, 20000);
  EXPECT_NEAR(seen[1], 0.75, 0.02);
}

TEST(Sample, TopKKeepsTheKLargest) {
  const auto logits = randomFloats(1001, 153, -1.0f, 1.0f);
  std::vector<int64_t> order(1001);
  for (int64_t i = 0; i < 1001; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  const std::set<int64_t> topFive(order.begin(), order.begin() + 5);
  std::set<int64_t> drawn;
  uint64_t state = 9;
  for (int i = 0; i < 2000; ++i) drawn.insert(sample(logits.data(), 1001, {1.0f, 5, 1.0f}, state));
  EXPECT_EQ(drawn, topFive);
}

TEST(Sample, TopKKeepsTokensTiedWithTheKth) {
  // Like transformers' TopKLogitsWarper: everything >= the k-th logit stays.
  const std::vector<float> logits{1, 1, 1, 0};
  std::set<int64_t> drawn;
  uint64_t state = 10;
  for (int i = 0; i < 300; ++i) drawn.insert(sample(logits.data(), 4, {1.0f, 2, 1.0f}, state));
  EXPECT_EQ(drawn, (std::set<int64_t>{0, 1, 2}));
}

TEST(Sample, TopPDrawsOnlyFromTheNucleus) {
  // Cumulative 0.5, 0.8, 0.95, 1: top-p 0.7 keeps the first two, renormalised to 5/8 and 3/8.
  const auto logits = logitsOf({0.15, 0.5, 0.05, 0.3});
  const auto seen = frequencies(logits, {1.0f, 0, 0.7f}, 3, 20000);
  EXPECT_EQ(seen[0], 0.0);
  EXPECT_EQ(seen[2], 0.0);
  EXPECT_NEAR(seen[1], 0.625, 0.02);
  EXPECT_NEAR(seen[3], 0.375, 0.02);
  // A nucleus smaller than the top token still keeps it.
  uint64_t state = 4;
  for (int i = 0; i < 500; ++i) ASSERT_EQ(sample(logits.data(), 4, {1.0f, 0, 0.01f}, state), 1);
}

TEST(Sample, TopPAfterTopKOnALargeVocabulary) {
  const auto logits = randomFloats(1001, 154, -3.0f, 3.0f);
  const SamplingParams p{0.8f, 40, 0.5f};
  // The nucleus, computed here from the top 40 by a plain sort.
  std::vector<int64_t> order(1001);
  for (int64_t i = 0; i < 1001; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  double total = 0.0;
  for (int i = 0; i < 40; ++i) total += std::exp(logits[order[i]] / 0.8);
  std::set<int64_t> nucleus;
  double cumulative = 0.0;
  for (int i = 0; i < 40 && cumulative < 0.5; ++i) {
    nucleus.insert(order[i]);
    cumulative += std::exp(logits[order[i]] / 0.8) / total;
  }
  uint64_t state = 11;
  std::set<int64_t> drawn;
  for (int i = 0; i < 3000; ++i) drawn.insert(sample(logits.data(), 1001, p, state));
  EXPECT_TRUE(std::includes(nucleus.begin(), nucleus.end(), drawn.begin(), drawn.end()));
  EXPECT_EQ(drawn, nucleus);
}

TEST(Sample, MinPDropsTokensLessThanMinPTimesTheMost) {
  // Probabilities 0.5, 0.3, 0.15, 0.05; min-p 0.4 keeps those >= 0.2: the first two, 5/8 and 3/8.
  const auto logits = logitsOf({0.15, 0.5, 0.05, 0.3});
  SamplingParams p{1.0f, 0, 1.0f};
  p.minP = 0.4f;
  const auto seen = frequencies(logits, p, 12, 20000);
  EXPECT_EQ(seen[0], 0.0);
  EXPECT_EQ(seen[2], 0.0);
  EXPECT_NEAR(seen[1], 0.625, 0.02);
  EXPECT_NEAR(seen[3], 0.375, 0.02);
}

TEST(SampleWithDraw, PicksWhatSamplePicksFromTheSameState) {
  const auto logits = randomFloats(1001, 155, -3.0f, 3.0f);
  for (SamplingParams p : {SamplingParams{1.0f, 0, 1.0f}, SamplingParams{0.7f, 50, 0.9f},
                           SamplingParams{1.3f, 0, 0.8f}, SamplingParams{0.0f, 0, 1.0f}}) {
    p.minP = p.topK == 50 ? 0.05f : 0.0f;
    uint64_t state = 99, copy = 99;
    for (int i = 0; i < 200; ++i) {
      const double draw = p.temperature > 0 ? drawUniform(copy) : 0.0;
      ASSERT_EQ(sampleWithDraw(logits.data(), 1001, p, draw),
                sample(logits.data(), 1001, p, state));
    }
  }
}

TEST(SampleWithDraw, TheDrawWalksTheCumulativeDistribution) {
  // Probabilities 0.1, 0.2, 0.3, 0.4 in token order (no sort without top-k or top-p): draws
  // just below and above each cumulative boundary land on either side of it.
  const auto logits = logitsOf({0.1, 0.2, 0.3, 0.4});
  const SamplingParams p{1.0f, 0, 1.0f};
  EXPECT_EQ(sampleWithDraw(logits.data(), 4, p, 0.05), 0);
  EXPECT_EQ(sampleWithDraw(logits.data(), 4, p, 0.15), 1);
  EXPECT_EQ(sampleWithDraw(logits.data(), 4, p, 0.55), 2);
  EXPECT_EQ(sampleWithDraw(logits.data(), 4, p, 0.65), 3);
  EXPECT_EQ(sampleWithDraw(logits.data(), 4, p, 0.999), 3);
}

}  // namespace
}  // namespace tpc::cpu
