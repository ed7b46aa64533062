// MoE router and experts against cpu::moeRouter / cpu::moeExperts. The router's outputs are f32
// whatever the storage type and differ from the CPU only in the order of the hidden-size dot
// products (~1e-6 relative), so 1e-4; its expert choice must agree except between experts whose
// probabilities agree to that tolerance (a near tie may fall either way). Ties that are exact
// (identical gate rows) must go to the lower index, as on the CPU.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

constexpr double kRouterTolerance = 1e-4;

struct Routing {
  std::vector<float> weights;
  std::vector<int32_t> experts;
};

Routing cpuRouter(const std::vector<float>& x, const std::vector<float>& gate, int64_t tokens,
                  int64_t hidden, int64_t numExperts, int64_t topK, bool norm) {
  Routing r{std::vector<float>(tokens * topK), std::vector<int32_t>(tokens * topK)};
  cpu::moeRouter(x.data(), gate.data(), tokens, hidden, numExperts, topK, norm, r.weights.data(),
                 r.experts.data());
  return r;
}

Routing gpuRouter(ElementType type, const std::vector<float>& x, const std::vector<float>& gate,
                  int64_t tokens, int64_t hidden, int64_t numExperts, int64_t topK, bool norm) {
  DeviceBuffer dX = upload(type, x), dGate = upload(type, gate);
  DeviceBuffer dWeights(tokens * topK * sizeof(float)), dExperts(tokens * topK * sizeof(int32_t));
  EXPECT_EQ(moeRouter(type, dX.get(), dGate.get(), tokens, hidden, numExperts, topK, norm,
                      dWeights.as<float>(), dExperts.as<int32_t>(), nullptr),
            cudaSuccess);
  return {downloadRaw<float>(dWeights, tokens * topK),
          downloadRaw<int32_t>(dExperts, tokens * topK)};
}

TEST(CudaMoe, RouterMatchesCpu) {
  TPC_REQUIRE_GPU();
  struct Case {
    ElementType type;
    int64_t tokens, hidden, numExperts, topK;
    bool norm;
  };
  const Case cases[] = {
      {ElementType::F32, 1, 16, 8, 2, true},       {ElementType::F32, 3, 129, 64, 8, false},
      {ElementType::BF16, 37, 4096, 128, 8, true}, {ElementType::BF16, 257, 2048, 60, 4, false},
      {ElementType::F16, 5, 4099, 256, 8, true},   {ElementType::BF16, 2, 64, 8, 8, true},
      {ElementType::F32, 4, 1024, 512, 1, false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(typeName(c.type)) + " tokens " + std::to_string(c.tokens) +
                 " hidden " + std::to_string(c.hidden) + " experts " +
                 std::to_string(c.numExperts) + " topK " + std::to_string(c.topK));
    const std::vector<float> x = roundTo(c.type, randomFloats(c.tokens * c.hidden, 200));
    const float gateScale = 3.0f / std::sqrt(static_cast<float>(c.hidden));
    const std::vector<float> gate =
        roundTo(c.type, randomFloats(c.numExperts * c.hidden, 201, -gateScale, gateScale));
    const Routing expected = cpuRouter(x, gate, c.tokens, c.hidden, c.numExperts, c.topK, c.norm);
    // Every expert's probability, to judge near ties.
    const Routing all = cpuRouter(x, gate, c.tokens, c.hidden, c.numExperts, c.numExperts, false);
    const Routing got =
        gpuRouter(c.type, x, gate, c.tokens, c.hidden, c.numExperts, c.topK, c.norm);
    for (int64_t t = 0; t < c.tokens; ++t) {
      std::map<int32_t, float> probability;
      for (int64_t e = 0; e < c.numExperts; ++e)
        probability[all.experts[t * c.numExperts + e]] = all.weights[t * c.numExperts + e];
      for (int64_t j = 0; j < c.topK; ++j) {
        const int64_t i = t * c.topK + j;
        EXPECT_NEAR(got.weights[i], expected.weights[i],
                    kRouterTolerance * std::abs(expected.weights[i]) + 1e-7)
            << "token " << t << " choice " << j;
        ASSERT_GE(got.experts[i], 0);
        ASSERT_LT(got.experts[i], c.numExperts);
        if (got.experts[i] != expected.experts[i]) {
          EXPECT_NEAR(probability[got.experts[i]], probability[expected.experts[i]],
                      kRouterTolerance * probability[expected.experts[i]])
              << "token " << t << " choice " << j << ": expert " << got.experts[i] << " vs "
              << expected.experts[i];
        }
        for (int64_t other = 0; other < j; ++other)
          EXPECT_NE(got.experts[i], got.experts[t * c.topK + other]) << "expert chosen twice";
      }
    }
  }
}

TEST(CudaMoe, RouterTiesGoToTheLowerExpert) {
  TPC_REQUIRE_GPU();
  for (ElementType type : {ElementType::F32, ElementType::BF16}) {
    const int64_t tokens = 3, hidden = 64, numExperts = 8;
    const std::vector<float> x = roundTo(type, randomFloats(tokens * hidden, 210));
    std::vector<float> gate = roundTo(type, randomFloats(numExperts * hidden, 211));
    // Experts 2, 5 and 7 share one row, 0 and 6 another: exact ties in every token.
    for (int64_t i = 0; i < hidden; ++i) {
      gate[2 * hidden + i] = gate[5 * hidden + i] = gate[7 * hidden + i];
      gate[0 * hidden + i] = gate[6 * hidden + i];
    }
    // The expected order from the CPU's probabilities, with each tie group given one value (the
    // CPU's GEMM may round identical rows differently in the last bit; the kernel computes every
    // expert's dot product the same way, so its ties are exact), then by index among equals.
    const Routing all = cpuRouter(x, gate, tokens, hidden, numExperts, numExperts, false);
    std::vector<int32_t> order;
    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<float> probability(numExperts);
      for (int64_t e = 0; e < numExperts; ++e)
        probability[all.experts[t * numExperts + e]] = all.weights[t * numExperts + e];
      probability[5] = probability[7] = probability[2];
      probability[6] = probability[0];
      std::vector<int32_t> experts(numExperts);
      std::iota(experts.begin(), experts.end(), 0);
      std::stable_sort(experts.begin(), experts.end(),
                       [&](int32_t a, int32_t b) { return probability[a] > probability[b]; });
      order.insert(order.end(), experts.begin(), experts.end());
    }
    for (int64_t topK : {1, 3, 8}) {
      std::vector<int32_t> expected;
      for (int64_t t = 0; t < tokens; ++t)
        expected.insert(expected.end(), order.begin() + t * numExperts,
                        order.begin() + t * numExperts + topK);
      const Routing got = gpuRouter(type, x, gate, tokens, hidden, numExperts, topK, false);
      EXPECT_EQ(got.experts, expected) << typeName(type) << " topK " << topK;
    }
  }
}

// A NaN hidden state (an overflowed residual) routes as on the CPU: k distinct experts in range,
// never the out-of-range index that made the expert kernels read outside their weights.
TEST(CudaMoe, ANonFiniteHiddenStatePicksTheCpusExperts) {
  TPC_REQUIRE_GPU();
  const int64_t tokens = 2, hidden = 64, numExperts = 8, topK = 2;
  std::vector<float> x = randomFloats(tokens * hidden, 220);
  x[3] = NAN;
  x[hidden + 5] = INFINITY;
  const std::vector<float> gate = randomFloats(numExperts * hidden, 221);
  const Routing want = cpuRouter(x, gate, tokens, hidden, numExperts, topK, true);
  for (ElementType type : {ElementType::F32, ElementType::BF16}) {
    const Routing got = gpuRouter(type, x, gate, tokens, hidden, numExperts, topK, true);
    EXPECT_EQ(got.experts, want.experts) << typeName(type);
  }
}

TEST(CudaMoe, ExpertsMatchCpu) {
  TPC_REQUIRE_GPU();
  struct Case {
    ElementType type;
    int64_t tokens, hidden, intermediate, numExperts, topK;
    bool fused;
    // Expert parallelism: this rank holds experts [first, first + held) (held 0: all of them);
    // the choices are renumbered on the device (moeLocalExperts) and must match the CPU twin's.
    int64_t first = 0, held = 0;
  };
  const Case cases[] = {
      {ElementType::F32, 1, 64, 32, 8, 2, false},
      {ElementType::F32, 3, 129, 100, 8, 2, true},
      {ElementType::BF16, 37, 512, 96, 16, 4, true},
      {ElementType::BF16, 1, 1024, 384, 16, 8, false},
      {ElementType::F16, 5, 256, 128, 8, 2, false},
      {ElementType::BF16, 257, 128, 64, 4, 2, false},
      {ElementType::F32, 9, 64, 32, 8, 2, true, 2, 3},
      {ElementType::BF16, 33, 512, 96, 16, 4, false, 12, 4},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(
        std::string(typeName(c.type)) + " tokens " + std::to_string(c.tokens) + " hidden " +
        std::to_string(c.hidden) + " I " + std::to_string(c.intermediate) +
        (c.fused ? " fused" : " separate") +
        (c.held ? " experts " + std::to_string(c.first) + "+" + std::to_string(c.held) : ""));
    const int64_t h = c.hidden, inter = c.intermediate;
    const std::vector<float> x = roundTo(c.type, randomFloats(c.tokens * h, 220));
    // Routing from the CPU router, uploaded as is: this test judges the experts alone.
    const std::vector<float> gate = roundTo(c.type, randomFloats(c.numExperts * h, 221));
    const Routing routing = cpuRouter(x, gate, c.tokens, h, c.numExperts, c.topK, true);
    const int64_t first = c.first, held = c.held ? c.held : c.numExperts;
    std::vector<int32_t> local(routing.experts.size());
    cpu::moeLocalExperts(routing.experts.data(), c.tokens * c.topK, first, held, local.data());
    if (c.held) {  // some choices are this rank's, some another's
      const auto elsewhere = std::count(local.begin(), local.end(), -1);
      ASSERT_GT(elsewhere, 0);
      ASSERT_LT(elsewhere, static_cast<std::ptrdiff_t>(local.size()));
    }
    const float upScale = 2.0f / std::sqrt(static_cast<float>(h));
    const float downScale = 2.0f / std::sqrt(static_cast<float>(inter));
    std::vector<std::vector<float>> gateUp, up, down;
    for (int64_t e = 0; e < c.numExperts; ++e) {
      const auto seed = static_cast<uint32_t>(300 + 3 * e);
      if (c.fused) {
        gateUp.push_back(roundTo(c.type, randomFloats(2 * inter * h, seed, -upScale, upScale)));
      } else {
        gateUp.push_back(roundTo(c.type, randomFloats(inter * h, seed, -upScale, upScale)));
        up.push_back(roundTo(c.type, randomFloats(inter * h, seed + 1, -upScale, upScale)));
      }
      down.push_back(roundTo(c.type, randomFloats(h * inter, seed + 2, -downScale, downScale)));
    }
    // out accumulates: start from a nonzero value.
    const std::vector<float> initial = roundTo(c.type, randomFloats(c.tokens * h, 222));
    std::vector<float> expected = initial;
    std::vector<const float*> gateUpPtrs, upPtrs, downPtrs;
    for (int64_t e = first; e < first + held; ++e) {
      gateUpPtrs.push_back(gateUp[e].data());
      if (!c.fused) upPtrs.push_back(up[e].data());
      downPtrs.push_back(down[e].data());
    }
    cpu::moeExperts(x.data(), routing.weights.data(), local.data(), c.tokens, h, inter, c.topK,
                    gateUpPtrs.data(), c.fused ? nullptr : upPtrs.data(), downPtrs.data(),
                    expected.data());

    std::vector<std::unique_ptr<DeviceBuffer>> owned;
    std::vector<const void*> dGateUp, dUp, dDown;
    for (int64_t e = first; e < first + held; ++e) {
      owned.push_back(std::make_unique<DeviceBuffer>(upload(c.type, gateUp[e])));
      dGateUp.push_back(owned.back()->get());
      if (!c.fused) {
        owned.push_back(std::make_unique<DeviceBuffer>(upload(c.type, up[e])));
        dUp.push_back(owned.back()->get());
      }
      owned.push_back(std::make_unique<DeviceBuffer>(upload(c.type, down[e])));
      dDown.push_back(owned.back()->get());
    }
    DeviceBuffer dGateUpPtrs = uploadRaw(dGateUp), dDownPtrs = uploadRaw(dDown);
    std::unique_ptr<DeviceBuffer> dUpPtrs;
    if (!c.fused) dUpPtrs = std::make_unique<DeviceBuffer>(uploadRaw(dUp));
    DeviceBuffer dX = upload(c.type, x), dOut = upload(c.type, initial);
    DeviceBuffer dWeights = uploadRaw(routing.weights), dChosen = uploadRaw(routing.experts);
    DeviceBuffer dExperts(local.size() * sizeof(int32_t));
    TPC_CUDA_OK(moeLocalExperts(dChosen.as<int32_t>(), c.tokens * c.topK, first, held,
                                dExperts.as<int32_t>(), nullptr));
    EXPECT_EQ(downloadRaw<int32_t>(dExperts, c.tokens * c.topK), local);
    DeviceBuffer workspace(moeWorkspaceBytes(c.tokens, c.topK, inter));
    TPC_CUDA_OK(moeExperts(c.type, dX.get(), dWeights.as<float>(), dExperts.as<int32_t>(), c.tokens,
                           h, inter, c.topK, static_cast<const void* const*>(dGateUpPtrs.get()),
                           dUpPtrs ? static_cast<const void* const*>(dUpPtrs->get()) : nullptr,
                           static_cast<const void* const*>(dDownPtrs.get()), workspace.get(),
                           dOut.get(), nullptr));
    // f32: two chained dot products (hidden, then I terms) in another order, ~1e-6; 1e-4 leaves
    // room for cancellation. bf16/f16: one rounding of the accumulated output.
    const double tolerance = c.type == ElementType::F32 ? 1e-4 : storageTolerance(c.type);
    EXPECT_TRUE(allClose(download(c.type, dOut, c.tokens * h), toDouble(expected), tolerance));
  }
}

}  // namespace
}  // namespace tpc::cuda::test
