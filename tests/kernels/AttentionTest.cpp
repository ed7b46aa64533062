#include <cmath>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels/KernelTestUtil.h"

namespace tpc::cpu {
namespace {

using test::allClose;
using test::randomFloats;

struct Shape {
  int64_t heads, kvHeads, headDim;
};

// Inputs of one attention call: each token's q, k, v, position and slot.
struct Step {
  std::vector<float> q, k, v;
  std::vector<int32_t> positions, slots;
  int64_t tokens() const { return static_cast<int64_t>(positions.size()); }
};

Step randomStep(const Shape& s, std::vector<int32_t> positions, std::vector<int32_t> slots,
                uint32_t seed) {
  const auto tokens = positions.size();
  return {randomFloats(tokens * s.heads * s.headDim, seed),
          randomFloats(tokens * s.kvHeads * s.headDim, seed + 1),
          randomFloats(tokens * s.kvHeads * s.headDim, seed + 2), std::move(positions),
          std::move(slots)};
}

// A cache that owns its storage.
struct Cache {
  std::vector<float> k, v;
  KvCache view;
  Cache(const Shape& s, int64_t slots, int64_t maxContext)
      : k(slots * maxContext * s.kvHeads * s.headDim, NAN), v(k.size(), NAN) {
    view = {k.data(), v.data(), slots, maxContext, s.kvHeads, s.headDim};
  }
};

std::vector<float> run(const Shape& s, const Step& step, Cache& cache, float scale) {
  std::vector<float> out(step.q.size());
  attention(step.q.data(), step.k.data(), step.v.data(), step.positions.data(), step.slots.data(),
            step.tokens(), s.heads, scale, cache.view, out.data());
  return out;
}

// Attention of every token over all tokens of all steps with the same slot and a position not
// after its own, in double, straight from the definition. `history` holds every step so far.
std::vector<double> reference(const Shape& s, const std::vector<Step>& history, const Step& step,
                              double scale) {
  std::vector<double> out(step.q.size());
  const int64_t group = s.heads / s.kvHeads;
  for (int64_t t = 0; t < step.tokens(); ++t)
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t kvHead = h / group;
      const float* q = &step.q[(t * s.heads + h) * s.headDim];
      std::vector<double> scores;
      std::vector<const float*> values;
      for (const Step& other : history)
        for (int64_t j = 0; j < other.tokens(); ++j) {
          if (other.slots[j] != step.slots[t] || other.positions[j] > step.positions[t]) continue;
          const float* k = &other.k[(j * s.kvHeads + kvHead) * s.headDim];
          double dot = 0.0;
          for (int64_t d = 0; d < s.headDim; ++d) dot += static_cast<double>(q[d]) * k[d];
          scores.push_back(dot * scale);
          values.push_back(&other.v[(j * s.kvHeads + kvHead) * s.headDim]);
        }
      double maximum = -INFINITY, total = 0.0;
      for (double x : scores) maximum = std::max(maximum, x);
      for (double& x : scores) total += (x = std::exp(x - maximum));
      for (size_t j = 0; j < scores.size(); ++j)
        for (int64_t d = 0; d < s.headDim; ++d)
          out[(t * s.heads + h) * s.headDim + d] += scores[j] / total * values[j][d];
    }
  return out;
}

const Shape kShapes[] = {{6, 2, 10}, {8, 1, 16}, {4, 4, 16}};

TEST(Attention, PrefillOfTwoSequencesMatchesReference) {
  for (const Shape& s : kShapes) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(s.headDim));
    // Two prompts in one step: slot 1 has 3 tokens, slot 0 has 4, interleaved.
    const Step step = randomStep(s, {0, 0, 1, 1, 2, 2, 3}, {1, 0, 0, 1, 0, 1, 0}, 40);
    Cache cache(s, 2, 9);
    EXPECT_TRUE(allClose(run(s, step, cache, scale), reference(s, {step}, step, scale), 1e-5))
        << s.heads << "/" << s.kvHeads << "x" << s.headDim;
  }
}

TEST(Attention, LargeScoresDoNotOverflow) {
  // Scores in the hundreds: exp() overflows fp32 unless the maximum is subtracted first.
  const Shape s{4, 2, 16};
  Step step = randomStep(s, {0, 1, 2, 3}, {0, 0, 0, 0}, 45);
  for (float& x : step.q) x *= 40.0f;
  for (float& x : step.k) x *= 40.0f;
  Cache cache(s, 1, 4);
  EXPECT_TRUE(allClose(run(s, step, cache, 0.25f), reference(s, {step}, step, 0.25), 1e-5));
}

TEST(Attention, DecodeAfterPrefillReadsTheCache) {
  const Shape s{6, 2, 10};
  const float scale = 0.3f;
  Cache cache(s, 3, 12);
  std::vector<Step> history{randomStep(s, {0, 1, 2, 3, 4}, {2, 2, 2, 2, 2}, 50)};
  run(s, history[0], cache, scale);
  for (int32_t position = 5; position < 9; ++position) {
    const Step step = randomStep(s, {position}, {2}, 60 + position);
    history.push_back(step);
    EXPECT_TRUE(allClose(run(s, step, cache, scale), reference(s, history, step, scale), 1e-5))
        << "position " << position;
  }
  // The cache holds each token's k and v at its slot and position.
  const int64_t width = s.kvHeads * s.headDim;
  for (int64_t j = 0; j < 5; ++j)
    for (int64_t i = 0; i < width; ++i) {
      EXPECT_EQ(cache.k[(2 * 12 + j) * width + i], history[0].k[j * width + i]);
      EXPECT_EQ(cache.v[(2 * 12 + j) * width + i], history[0].v[j * width + i]);
    }
}

TEST(Attention, SinglePositionReturnsItsValue) {
  const Shape s{6, 2, 16};
  const Step step = randomStep(s, {0}, {0}, 70);
  Cache cache(s, 1, 4);
  const auto out = run(s, step, cache, 0.25f);
  for (int64_t h = 0; h < s.heads; ++h)
    for (int64_t d = 0; d < s.headDim; ++d)
      EXPECT_FLOAT_EQ(out[h * s.headDim + d], step.v[(h / 3) * s.headDim + d]);
}

TEST(Attention, QueryHeadsShareTheirGroupsKvHead) {
  // 6 query heads over 2 KV heads: heads 0-2 read KV head 0, heads 3-5 KV head 1 (not h % 2).
  const Shape s{6, 2, 4};
  Step step = randomStep(s, {0, 1}, {0, 0}, 80);
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t d = 0; d < s.headDim; ++d) {
      step.v[(t * 2 + 0) * s.headDim + d] = 1.0f;
      step.v[(t * 2 + 1) * s.headDim + d] = 2.0f;
    }
  Cache cache(s, 1, 2);
  const auto out = run(s, step, cache, 1.0f);
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t h = 0; h < s.heads; ++h)
      EXPECT_FLOAT_EQ(out[(t * s.heads + h) * s.headDim], h < 3 ? 1.0f : 2.0f) << t << " " << h;
}

TEST(Attention, TokensNeverSeeLaterPositions) {
  const Shape s{8, 1, 16};
  const Step step = randomStep(s, {0, 1, 2, 3, 4, 5, 6}, {0, 0, 0, 0, 0, 0, 0}, 90);
  Cache cache(s, 1, 7);
  const auto out = run(s, step, cache, 0.25f);
  // Changing the k and v of token 4 leaves tokens 0-3 bit-identical and changes token 4 on.
  Step perturbed = step;
  const int64_t width = s.kvHeads * s.headDim;
  for (int64_t i = 0; i < width; ++i) {
    perturbed.k[4 * width + i] += 1.0f;
    perturbed.v[4 * width + i] -= 1.0f;
  }
  Cache fresh(s, 1, 7);
  const auto changed = run(s, perturbed, fresh, 0.25f);
  const int64_t row = s.heads * s.headDim;
  for (int64_t i = 0; i < 4 * row; ++i) EXPECT_EQ(changed[i], out[i]) << i;
  for (int64_t t = 4; t < 7; ++t) {
    bool differs = false;
    for (int64_t i = 0; i < row; ++i) differs |= changed[t * row + i] != out[t * row + i];
    EXPECT_TRUE(differs) << "token " << t;
  }
}

TEST(Attention, SlotsDoNotSeeEachOther) {
  const Shape s{6, 2, 10};
  const Step step = randomStep(s, {0, 0, 1, 1}, {0, 1, 0, 1}, 100);
  Cache cache(s, 2, 4);
  const auto out = run(s, step, cache, 0.3f);
  Step perturbed = step;
  const int64_t width = s.kvHeads * s.headDim;
  for (int64_t t : {1, 3})  // every token of slot 1
    for (int64_t i = 0; i < width; ++i) {
      perturbed.k[t * width + i] *= -2.0f;
      perturbed.v[t * width + i] += 3.0f;
    }
  Cache fresh(s, 2, 4);
  const auto changed = run(s, perturbed, fresh, 0.3f);
  const int64_t row = s.heads * s.headDim;
  for (int64_t t : {0, 2})
    for (int64_t i = 0; i < row; ++i) EXPECT_EQ(changed[t * row + i], out[t * row + i]);
}

}  // namespace
}  // namespace tpc::cpu
