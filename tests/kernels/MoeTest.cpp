#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels/KernelTestUtil.h"

namespace tpc::cpu {
namespace {

using test::allClose;
using test::randomFloats;

struct Routing {
  std::vector<float> weights;
  std::vector<int32_t> experts;
};

Routing route(const std::vector<float>& x, const std::vector<float>& gate, int64_t tokens,
              int64_t hidden, int64_t numExperts, int64_t topK, bool normTopkProb) {
  Routing r{std::vector<float>(tokens * topK), std::vector<int32_t>(tokens * topK)};
  moeRouter(x.data(), gate.data(), tokens, hidden, numExperts, topK, normTopkProb, r.weights.data(),
            r.experts.data());
  return r;
}

TEST(MoeRouter, MatchesReference) {
  const int64_t tokens = 7, hidden = 37, numExperts = 8, topK = 2;
  const auto x = randomFloats(tokens * hidden, 110);
  const auto gate = randomFloats(numExperts * hidden, 111);
  for (bool norm : {false, true}) {
    const Routing r = route(x, gate, tokens, hidden, numExperts, topK, norm);
    for (int64_t t = 0; t < tokens; ++t) {
      // Reference: softmax in double, experts ranked by probability.
      std::vector<double> probs(numExperts);
      for (int64_t e = 0; e < numExperts; ++e)
        for (int64_t i = 0; i < hidden; ++i)
          probs[e] += static_cast<double>(x[t * hidden + i]) * gate[e * hidden + i];
      const double top = *std::max_element(probs.begin(), probs.end());
      double total = 0.0;
      for (double& p : probs) total += (p = std::exp(p - top));
      for (double& p : probs) p /= total;
      std::vector<int> ranked(numExperts);
      std::iota(ranked.begin(), ranked.end(), 0);
      std::stable_sort(ranked.begin(), ranked.end(),
                       [&](int a, int b) { return probs[a] > probs[b]; });
      const double kept = probs[ranked[0]] + probs[ranked[1]];
      for (int64_t j = 0; j < topK; ++j) {
        EXPECT_EQ(r.experts[t * topK + j], ranked[j]) << t;
        const double expected = probs[ranked[j]] / (norm ? kept : 1.0);
        EXPECT_NEAR(r.weights[t * topK + j], expected, 1e-6) << t;
      }
    }
  }
}

// The logits x @ gate^T in double, the reference's starting point.
std::vector<double> routerLogits(const std::vector<float>& x, const std::vector<float>& gate,
                                 int64_t t, int64_t hidden, int64_t numExperts) {
  std::vector<double> logits(numExperts);
  for (int64_t e = 0; e < numExperts; ++e)
    for (int64_t i = 0; i < hidden; ++i)
      logits[e] += static_cast<double>(x[t * hidden + i]) * gate[e * hidden + i];
  return logits;
}

// Qwen3-MoE's router at its real ratio (top-8 of 128 experts), with norm_topk_prob false (the
// softmax probabilities of the kept experts, not summing to 1) and true (renormalised): the
// reference sorts the logits (softmax preserves their order) and divides by a sum of exps.
TEST(MoeRouter, SoftmaxTopKWithAndWithoutRenormalisationAtQwen3MoeRatio) {
  const int64_t tokens = 5, hidden = 24, numExperts = 128, topK = 8;
  const auto x = randomFloats(tokens * hidden, 120);
  const auto gate = randomFloats(numExperts * hidden, 121);
  for (bool norm : {false, true}) {
    SCOPED_TRACE(norm ? "renormalised" : "plain softmax");
    const Routing r = route(x, gate, tokens, hidden, numExperts, topK, norm);
    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<double> logits = routerLogits(x, gate, t, hidden, numExperts);
      std::vector<int> order(numExperts);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return logits[a] > logits[b]; });
      double all = 0, kept = 0;
      for (int64_t e = 0; e < numExperts; ++e) all += std::exp(logits[e] - logits[order[0]]);
      for (int64_t j = 0; j < topK; ++j) kept += std::exp(logits[order[j]] - logits[order[0]]);
      double sum = 0;
      for (int64_t j = 0; j < topK; ++j) {
        EXPECT_EQ(r.experts[t * topK + j], order[j]) << t;
        const double expected = std::exp(logits[order[j]] - logits[order[0]]) / (norm ? kept : all);
        EXPECT_NEAR(r.weights[t * topK + j], expected, 1e-6) << t;
        sum += r.weights[t * topK + j];
      }
      if (norm) {
        EXPECT_NEAR(sum, 1.0, 1e-6);
      } else {
        EXPECT_LT(sum, 1.0);
      }
    }
  }
}

// Mixtral's top-2 (MixtralSparseMoeBlock: softmax, top-2, divide by their sum) is a logistic
// of the two largest logits' difference: w0 = 1 / (1 + exp(l1 - l0)), w1 = 1 - w0.
TEST(MoeRouter, MixtralTopTwoIsALogisticOfTheTwoLargestLogits) {
  const int64_t tokens = 9, hidden = 32, numExperts = 8, topK = 2;
  const auto x = randomFloats(tokens * hidden, 130);
  const auto gate = randomFloats(numExperts * hidden, 131);
  const Routing r = route(x, gate, tokens, hidden, numExperts, topK, true);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<double> logits = routerLogits(x, gate, t, hidden, numExperts);
    int first = 0, second = -1;
    for (int e = 1; e < numExperts; ++e)
      if (logits[e] > logits[first]) first = e;
    for (int e = 0; e < numExperts; ++e)
      if (e != first && (second < 0 || logits[e] > logits[second])) second = e;
    EXPECT_EQ(r.experts[t * topK], first) << t;
    EXPECT_EQ(r.experts[t * topK + 1], second) << t;
    const double w0 = 1.0 / (1.0 + std::exp(logits[second] - logits[first]));
    EXPECT_NEAR(r.weights[t * topK], w0, 1e-6) << t;
    EXPECT_NEAR(r.weights[t * topK + 1], 1.0 - w0, 1e-6) << t;
  }
}

TEST(MoeRouter, PicksExpertsOfAHandBuiltGate) {
  // Gate rows are unit vectors, so the logits are x itself: (0, 3, 0, 1).
  const int64_t hidden = 4, numExperts = 4;
  std::vector<float> gate(numExperts * hidden, 0.0f);
  for (int64_t e = 0; e < numExperts; ++e) gate[e * hidden + e] = 1.0f;
  const std::vector<float> x{0, 3, 0, 1};
  const double denominator = std::exp(3.0) + std::exp(1.0) + 2.0;
  const Routing plain = route(x, gate, 1, hidden, numExperts, 2, false);
  EXPECT_EQ(plain.experts, (std::vector<int32_t>{1, 3}));
  EXPECT_NEAR(plain.weights[0], std::exp(3.0) / denominator, 1e-6);
  EXPECT_NEAR(plain.weights[1], std::exp(1.0) / denominator, 1e-6);
  // Renormalised over the two kept: e^3 / (e^3 + e^1) = 1 / (1 + e^-2).
  const Routing norm = route(x, gate, 1, hidden, numExperts, 2, true);
  EXPECT_EQ(norm.experts, (std::vector<int32_t>{1, 3}));
  EXPECT_NEAR(norm.weights[0], 0.8807971, 1e-6);
  EXPECT_NEAR(norm.weights[1], 1 - 0.8807971, 1e-6);
}

TEST(MoeRouter, LargeLogitsDoNotOverflow) {
  const std::vector<float> x{1.0f};
  const std::vector<float> gate{300.0f, 299.0f, -5.0f};
  const Routing r = route(x, gate, 1, 1, 3, 2, false);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 1}));
  EXPECT_NEAR(r.weights[0], 1 / (1 + std::exp(-1.0)), 1e-6);
}

TEST(MoeRouter, TiesGoToTheLowerExpert) {
  const std::vector<float> x(5, 0.0f), gate(6 * 5, 0.5f);
  const Routing r = route(x, gate, 1, 5, 6, 3, false);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 1, 2}));
  for (float w : r.weights) EXPECT_FLOAT_EQ(w, 1.0f / 6);
}

// A hidden state that overflowed (inf, then NaN) still routes to k distinct experts in range:
// their indices feed the expert kernels' weight lookups.
TEST(MoeRouter, ANonFiniteHiddenStateStillPicksDistinctExpertsInRange) {
  const std::vector<float> gate = randomFloats(8 * 4, 160);
  for (float bad : {NAN, INFINITY}) {
    const std::vector<float> x{1.0f, bad, 0.5f, -1.0f};
    const Routing r = route(x, gate, 1, 4, 8, 3, true);
    EXPECT_EQ(r.experts, (std::vector<int32_t>{0, 1, 2})) << bad;
  }
}

// Expert weights: gate and up [I, hidden], down [hidden, I], for each expert.
struct Experts {
  int64_t count, hidden, intermediate;
  std::vector<std::vector<float>> gate, up, down;
  Experts(int64_t count, int64_t hidden, int64_t intermediate, uint32_t seed)
      : count(count), hidden(hidden), intermediate(intermediate) {
    for (int64_t e = 0; e < count; ++e) {
      gate.push_back(randomFloats(intermediate * hidden, seed + 3 * e));
      up.push_back(randomFloats(intermediate * hidden, seed + 3 * e + 1));
      down.push_back(randomFloats(hidden * intermediate, seed + 3 * e + 2));
    }
  }
  static std::vector<const float*> pointers(const std::vector<std::vector<float>>& w) {
    std::vector<const float*> p(w.size());
    for (size_t e = 0; e < w.size(); ++e) p[e] = w[e].data();
    return p;
  }
};

std::vector<float> runSeparate(const Experts& ex, const std::vector<float>& x, const Routing& r,
                               int64_t tokens, int64_t topK, std::vector<float> out) {
  const auto gate = Experts::pointers(ex.gate), up = Experts::pointers(ex.up),
             down = Experts::pointers(ex.down);
  moeExperts(x.data(), r.weights.data(), r.experts.data(), tokens, ex.hidden, ex.intermediate, topK,
             gate.data(), up.data(), down.data(), out.data());
  return out;
}

std::vector<double> referenceExperts(const Experts& ex, const std::vector<float>& x,
                                     const Routing& r, int64_t tokens, int64_t topK) {
  const int64_t hidden = ex.hidden, inter = ex.intermediate;
  std::vector<double> out(tokens * hidden);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < topK; ++j) {
      const int e = r.experts[t * topK + j];
      std::vector<double> act(inter);
      for (int64_t n = 0; n < inter; ++n) {
        double g = 0.0, u = 0.0;
        for (int64_t i = 0; i < hidden; ++i) {
          g += static_cast<double>(ex.gate[e][n * hidden + i]) * x[t * hidden + i];
          u += static_cast<double>(ex.up[e][n * hidden + i]) * x[t * hidden + i];
        }
        act[n] = g / (1.0 + std::exp(-g)) * u;
      }
      for (int64_t i = 0; i < hidden; ++i) {
        double y = 0.0;
        for (int64_t n = 0; n < inter; ++n) y += ex.down[e][i * inter + n] * act[n];
        out[t * hidden + i] += r.weights[t * topK + j] * y;
      }
    }
  return out;
}

struct MoeCase {
  int64_t tokens = 7, hidden = 37, intermediate = 12, numExperts = 5, topK = 2;
  Experts experts{numExperts, hidden, intermediate, 120};
  std::vector<float> x = randomFloats(tokens * hidden, 130, -2.0f, 2.0f);
  Routing routing =
      route(x, randomFloats(numExperts* hidden, 131), tokens, hidden, numExperts, topK, true);
};

TEST(MoeExperts, MatchReference) {
  const MoeCase c;
  const auto out = runSeparate(c.experts, c.x, c.routing, c.tokens, c.topK,
                               std::vector<float>(c.tokens * c.hidden, 0.0f));
  EXPECT_TRUE(allClose(out, referenceExperts(c.experts, c.x, c.routing, c.tokens, c.topK), 1e-5));
  // Several experts are in use, so the grouping by expert is exercised.
  std::vector<int32_t> used = c.routing.experts;
  std::sort(used.begin(), used.end());
  EXPECT_GE(std::unique(used.begin(), used.end()) - used.begin(), 3);
}

TEST(MoeExperts, AccumulateIntoOut) {
  const MoeCase c;
  const auto zero = runSeparate(c.experts, c.x, c.routing, c.tokens, c.topK,
                                std::vector<float>(c.tokens * c.hidden, 0.0f));
  const auto start = randomFloats(c.tokens * c.hidden, 140);
  const auto out = runSeparate(c.experts, c.x, c.routing, c.tokens, c.topK, start);
  std::vector<double> expected(out.size());
  for (size_t i = 0; i < out.size(); ++i) expected[i] = static_cast<double>(start[i]) + zero[i];
  EXPECT_TRUE(allClose(out, expected, 1e-6));
}

TEST(MoeExperts, FusedGateUpEqualsSeparate) {
  const MoeCase c;
  const auto separate = runSeparate(c.experts, c.x, c.routing, c.tokens, c.topK,
                                    std::vector<float>(c.tokens * c.hidden, 0.0f));
  // [2I, hidden]: the gate rows, then the up rows.
  std::vector<std::vector<float>> fused;
  for (int64_t e = 0; e < c.numExperts; ++e) {
    fused.push_back(c.experts.gate[e]);
    fused.back().insert(fused.back().end(), c.experts.up[e].begin(), c.experts.up[e].end());
  }
  const auto gateUp = Experts::pointers(fused), down = Experts::pointers(c.experts.down);
  std::vector<float> out(c.tokens * c.hidden, 0.0f);
  moeExperts(c.x.data(), c.routing.weights.data(), c.routing.experts.data(), c.tokens, c.hidden,
             c.intermediate, c.topK, gateUp.data(), nullptr, down.data(), out.data());
  EXPECT_TRUE(allClose(out, test::toDouble(separate), 1e-6));
}

TEST(MoeExperts, SlicesOfTheIntermediateSumToTheWhole) {
  // Two ranks each hold half of I: gate/up rows [lo, hi) and down columns [lo, hi).
  const MoeCase c;
  const auto whole = runSeparate(c.experts, c.x, c.routing, c.tokens, c.topK,
                                 std::vector<float>(c.tokens * c.hidden, 0.0f));
  const int64_t half = c.intermediate / 2;
  std::vector<float> partial(c.tokens * c.hidden, 0.0f);
  for (int64_t lo : {int64_t{0}, half}) {
    Experts slice(0, c.hidden, half, 0);
    slice.count = c.numExperts;
    for (int64_t e = 0; e < c.numExperts; ++e) {
      const auto rows = [&](const std::vector<float>& w) {
        return std::vector<float>(w.begin() + lo * c.hidden, w.begin() + (lo + half) * c.hidden);
      };
      slice.gate.push_back(rows(c.experts.gate[e]));
      slice.up.push_back(rows(c.experts.up[e]));
      std::vector<float> down(c.hidden * half);
      for (int64_t i = 0; i < c.hidden; ++i)
        for (int64_t n = 0; n < half; ++n)
          down[i * half + n] = c.experts.down[e][i * c.intermediate + lo + n];
      slice.down.push_back(down);
    }
    partial = runSeparate(slice, c.x, c.routing, c.tokens, c.topK, partial);
  }
  EXPECT_TRUE(allClose(partial, test::toDouble(whole), 1e-5));
}

TEST(MoeExperts, WholeExpertsOnEachRankSumToTheDoubleReference) {
  // Expert parallelism: each rank holds a run of whole experts and sees the router's choices
  // renumbered to its own (moeLocalExperts); the ranks' outputs summed (the all_reduce) equal
  // every expert computed at once. Runs of uneven length too: 5 experts as 3 + 2 and 2 + 1 + 1 + 1.
  const MoeCase c;
  const auto gate = Experts::pointers(c.experts.gate), up = Experts::pointers(c.experts.up),
             down = Experts::pointers(c.experts.down);
  for (const std::vector<int64_t>& runs :
       {std::vector<int64_t>{3, 2}, std::vector<int64_t>{2, 1, 1, 1}}) {
    std::vector<float> sum(c.tokens * c.hidden, 0.0f);
    int64_t first = 0;
    for (int64_t count : runs) {
      std::vector<int32_t> local(c.routing.experts.size());
      moeLocalExperts(c.routing.experts.data(), c.tokens * c.topK, first, count, local.data());
      std::vector<float> mine(c.tokens * c.hidden, 0.0f);
      moeExperts(c.x.data(), c.routing.weights.data(), local.data(), c.tokens, c.hidden,
                 c.intermediate, c.topK, gate.data() + first, up.data() + first,
                 down.data() + first, mine.data());
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += mine[i];
      first += count;
    }
    EXPECT_TRUE(allClose(sum, referenceExperts(c.experts, c.x, c.routing, c.tokens, c.topK), 1e-5));
  }
}

TEST(MoeLocalExperts, RenumbersThisRanksExpertsAndMarksTheOthers) {
  const std::vector<int32_t> chosen{0, 5, 3, 4, 7, 2, 6, 1};
  std::vector<int32_t> local(chosen.size());
  moeLocalExperts(chosen.data(), 8, 2, 3, local.data());  // experts 2, 3, 4
  EXPECT_EQ(local, (std::vector<int32_t>{-1, -1, 1, 2, -1, 0, -1, -1}));
  moeLocalExperts(chosen.data(), 8, 0, 8, local.data());  // every expert: the ids unchanged
  EXPECT_EQ(local, chosen);
}

}  // namespace
}  // namespace tpc::cpu
