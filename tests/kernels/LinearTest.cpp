#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels/KernelTestUtil.h"

namespace tpc::cpu {
namespace {

using test::allClose;
using test::randomFloats;

// y[t][o] = sum_i x[t][i] * w[o][i] + bias[o], in double.
std::vector<double> referenceLinear(const std::vector<float>& x, const std::vector<float>& w,
                                    const float* bias, int64_t tokens, int64_t in, int64_t out) {
  std::vector<double> y(tokens * out);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double acc = bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += static_cast<double>(x[t * in + i]) * w[o * in + i];
      y[t * out + o] = acc;
    }
  return y;
}

TEST(Linear, MatchesReferenceWithAndWithoutBias) {
  for (int64_t tokens : {1, 7}) {
    const int64_t in = 37, out = 23;
    const auto x = randomFloats(tokens * in, 20);
    const auto w = randomFloats(out * in, 21);
    const auto bias = randomFloats(out, 22, -5.0f, 5.0f);
    std::vector<float> y(tokens * out, 99.0f), yBias(tokens * out, 99.0f);
    linear(x.data(), w.data(), nullptr, tokens, in, out, y.data());
    linear(x.data(), w.data(), bias.data(), tokens, in, out, yBias.data());
    EXPECT_TRUE(allClose(y, referenceLinear(x, w, nullptr, tokens, in, out), 1e-5));
    EXPECT_TRUE(allClose(yBias, referenceLinear(x, w, bias.data(), tokens, in, out), 1e-5));
  }
}

TEST(Linear, UsesHuggingFaceWeightLayout) {
  // w is [out=2, in=3]: row o holds the weights of output o.
  const std::vector<float> x{1, 2, 3};
  const std::vector<float> w{1, 0, 0, 0, 0, 1};
  const std::vector<float> bias{10, 20};
  std::vector<float> y(2);
  linear(x.data(), w.data(), bias.data(), 1, 3, 2, y.data());
  EXPECT_EQ(y, (std::vector<float>{11, 23}));
}

}  // namespace
}  // namespace tpc::cpu
