#include <cmath>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels/KernelTestUtil.h"

namespace tpc::cpu {
namespace {

using test::allClose;
using test::randomFloats;

// x / sqrt(mean(x^2) + eps) * w, row by row, in double.
std::vector<double> referenceRmsNorm(const std::vector<float>& x, const std::vector<float>& w,
                                     int64_t width, double eps) {
  std::vector<double> out(x.size());
  for (size_t row = 0; row < x.size() / width; ++row) {
    double meanSquare = 0.0;
    for (int64_t i = 0; i < width; ++i) meanSquare += std::pow(x[row * width + i], 2.0);
    meanSquare /= static_cast<double>(width);
    for (int64_t i = 0; i < width; ++i)
      out[row * width + i] = x[row * width + i] / std::sqrt(meanSquare + eps) * w[i];
  }
  return out;
}

TEST(RmsNorm, MatchesReferenceOnOddSizes) {
  const int64_t tokens = 7, width = 37;
  auto x = randomFloats(tokens * width, 1, -3.0f, 3.0f);
  auto w = randomFloats(width, 2, 0.5f, 1.5f);
  for (float eps : {1e-6f, 1e-5f, 0.5f}) {
    std::vector<float> out(x.size());
    rmsNorm(x.data(), w.data(), tokens, width, eps, out.data());
    EXPECT_TRUE(allClose(out, referenceRmsNorm(x, w, width, eps), 1e-5)) << "eps " << eps;
  }
}

TEST(RmsNorm, KnownAnswer) {
  // mean of squares of (3, 4) is 12.5.
  const std::vector<float> x{3.0f, 4.0f}, w{1.0f, 2.0f};
  std::vector<float> out(2);
  rmsNorm(x.data(), w.data(), 1, 2, 0.0f, out.data());
  EXPECT_NEAR(out[0], 3.0 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(out[1], 2 * 4.0 / std::sqrt(12.5), 1e-6);
}

TEST(RmsNorm, EpsilonKeepsZeroRowFinite) {
  const std::vector<float> x(8, 0.0f), w(8, 1.0f);
  std::vector<float> out(8, 7.0f);
  rmsNorm(x.data(), w.data(), 1, 8, 1e-6f, out.data());
  for (float v : out) EXPECT_EQ(v, 0.0f);
}

TEST(AddRmsNorm, SumAndNormMatchReferenceWithAnyAliasing) {
  const int64_t tokens = 7, width = 37;
  const auto x = randomFloats(tokens * width, 3);
  const auto residual = randomFloats(tokens * width, 4);
  const auto w = randomFloats(width, 5, 0.5f, 1.5f);
  std::vector<float> expectedSum(x.size());
  for (size_t i = 0; i < x.size(); ++i) expectedSum[i] = x[i] + residual[i];
  const auto expectedOut = referenceRmsNorm(expectedSum, w, width, 1e-6);

  std::vector<float> sum(x.size()), out(x.size());
  addRmsNorm(x.data(), residual.data(), w.data(), tokens, width, 1e-6f, sum.data(), out.data());
  EXPECT_EQ(sum, expectedSum);
  EXPECT_TRUE(allClose(out, expectedOut, 1e-5));

  // The executor updates the residual stream in place: sum aliasing either input.
  auto xInPlace = x;
  std::vector<float> outAliasX(x.size());
  addRmsNorm(xInPlace.data(), residual.data(), w.data(), tokens, width, 1e-6f, xInPlace.data(),
             outAliasX.data());
  EXPECT_EQ(xInPlace, expectedSum);
  EXPECT_EQ(outAliasX, out);

  auto residualInPlace = residual;
  std::vector<float> outAliasResidual(x.size());
  addRmsNorm(x.data(), residualInPlace.data(), w.data(), tokens, width, 1e-6f,
             residualInPlace.data(), outAliasResidual.data());
  EXPECT_EQ(residualInPlace, expectedSum);
  EXPECT_EQ(outAliasResidual, out);
}

TEST(HeadRmsNorm, NormalisesEachHeadWithTheSharedWeight) {
  const int64_t tokens = 7, heads = 6, headDim = 10;
  auto x = randomFloats(tokens * heads * headDim, 6, -2.0f, 2.0f);
  // Heads of very different scale: a whole-row norm would leave them different.
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < headDim; ++i) x[(t * heads + 1) * headDim + i] *= 50.0f;
  const auto w = randomFloats(headDim, 7, 0.5f, 1.5f);
  std::vector<float> out(x.size());
  headRmsNorm(x.data(), w.data(), tokens, heads, headDim, 1e-6f, out.data());
  EXPECT_TRUE(allClose(out, referenceRmsNorm(x, w, headDim, 1e-6), 1e-5));
}

TEST(Embedding, LooksUpRowsAndZeroesIdsOfOtherRanks) {
  // This rank holds vocab ids [10, 15).
  const int64_t rows = 5, firstRow = 10, hidden = 3;
  std::vector<float> table(rows * hidden);
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<float>(i + 1);
  const std::vector<int32_t> ids{10, 14, 9, 15, -1, 12};
  std::vector<float> out(ids.size() * hidden, -7.0f);
  embedding(ids.data(), static_cast<int64_t>(ids.size()), table.data(), rows, firstRow, hidden,
            out.data());
  const std::vector<float> expected{1, 2, 3, 13, 14, 15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 8, 9};
  EXPECT_EQ(out, expected);
}

TEST(Add, AddsElementwise) {
  const auto a = randomFloats(101, 8), b = randomFloats(101, 9);
  std::vector<float> out(101);
  add(a.data(), b.data(), 101, out.data());
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], a[i] + b[i]);
}

TEST(Swiglu, MatchesSiluTimesUp) {
  auto gate = randomFloats(101, 10, -8.0f, 8.0f);
  const auto up = randomFloats(101, 11, -2.0f, 2.0f);
  gate[0] = -100.0f;  // exp overflows to inf in fp32: must give 0, not NaN
  gate[1] = 100.0f;
  gate[2] = 0.0f;
  std::vector<float> out(101);
  swiglu(gate.data(), up.data(), 101, out.data());
  std::vector<double> expected(101);
  for (size_t i = 0; i < expected.size(); ++i)
    expected[i] = gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i];
  EXPECT_TRUE(allClose(out, expected, 1e-5));
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_FLOAT_EQ(out[1], 100.0f * up[1]);
  EXPECT_EQ(out[2], 0.0f);
}

}  // namespace
}  // namespace tpc::cpu
