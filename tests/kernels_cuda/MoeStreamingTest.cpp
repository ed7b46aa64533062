// The streaming MoE kernels (kernels/cuda/MoeStreaming.h) against cpu::moeRouter and
// cpu::moeExperts at real layer shapes: Qwen3-30B-A3B (hidden 2048, 128 experts, top-8,
// moe_intermediate 768) and Mixtral-8x7B (hidden 4096, 8 experts, top-2, intermediate 14336), one
// layer of synthetic weights, 1, 8 and 64 tokens, f32 and bf16, the direct and the grouped
// kernels; a CUDA Graph replay must give the eager bits. To keep the host work small, the 128
// experts share 16 distinct weight sets (Mixtral's 8 share 2): the kernels see 128 pointers and
// cannot tell.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/MoeStreaming.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

constexpr double kRouterTolerance = 1e-4;
constexpr int64_t kAlwaysDirect = 1 << 20, kNeverDirect = 0;

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
  DeviceBuffer workspace(moeRouterStreamingWorkspaceBytes(tokens, numExperts));
  EXPECT_TRUE(
      moeRouterStreamingSupports(type, hidden, numExperts, dX.get(), dGate.get(), workspace.get()));
  EXPECT_EQ(
      moeRouterStreaming(type, dX.get(), dGate.get(), tokens, hidden, numExperts, topK, norm,
                         workspace.get(), dWeights.as<float>(), dExperts.as<int32_t>(), nullptr),
      cudaSuccess);
  return {downloadRaw<float>(dWeights, tokens * topK),
          downloadRaw<int32_t>(dExperts, tokens * topK)};
}

// The GPU's choices agree with the CPU's except between experts whose probabilities agree to the
// tolerance (a near tie may fall either way); weights within the tolerance; k distinct experts.
void expectRoutingMatches(const Routing& got, const Routing& expected, const Routing& all,
                          int64_t tokens, int64_t numExperts, int64_t topK) {
  for (int64_t t = 0; t < tokens; ++t) {
    std::map<int32_t, float> probability;
    for (int64_t e = 0; e < numExperts; ++e)
      probability[all.experts[t * numExperts + e]] = all.weights[t * numExperts + e];
    for (int64_t j = 0; j < topK; ++j) {
      const int64_t i = t * topK + j;
      EXPECT_NEAR(got.weights[i], expected.weights[i],
                  kRouterTolerance * std::abs(expected.weights[i]) + 1e-7)
          << "token " << t << " choice " << j;
      ASSERT_GE(got.experts[i], 0);
      ASSERT_LT(got.experts[i], numExperts);
      if (got.experts[i] != expected.experts[i]) {
        EXPECT_NEAR(probability[got.experts[i]], probability[expected.experts[i]],
                    kRouterTolerance * probability[expected.experts[i]])
            << "token " << t << " choice " << j;
      }
      for (int64_t other = 0; other < j; ++other)
        EXPECT_NE(got.experts[i], got.experts[t * topK + other]) << "expert chosen twice";
    }
  }
}

TEST(CudaMoeStreaming, RouterMatchesCpuAtModelShapes) {
  TPC_REQUIRE_GPU();
  struct Shape {
    const char* name;
    int64_t hidden, numExperts, topK;
    bool norm;
  };
  const Shape shapes[] = {{"qwen3-30b-a3b", 2048, 128, 8, true},
                          {"qwen3-moe unnormalised", 2048, 128, 8, false},
                          {"mixtral-8x7b", 4096, 8, 2, true},
                          {"small", 64, 8, 8, true},
                          {"1024 experts", 1024, 1024, 1, false}};
  for (const Shape& s : shapes) {
    for (ElementType type : {ElementType::F32, ElementType::BF16}) {
      for (int64_t tokens : {1, 8, 64, 67}) {
        SCOPED_TRACE(std::string(s.name) + " " + typeName(type) + " tokens " +
                     std::to_string(tokens));
        const std::vector<float> x = roundTo(type, randomFloats(tokens * s.hidden, 200));
        const float gateScale = 3.0f / std::sqrt(static_cast<float>(s.hidden));
        const std::vector<float> gate =
            roundTo(type, randomFloats(s.numExperts * s.hidden, 201, -gateScale, gateScale));
        const Routing expected = cpuRouter(x, gate, tokens, s.hidden, s.numExperts, s.topK, s.norm);
        const Routing all = cpuRouter(x, gate, tokens, s.hidden, s.numExperts, s.numExperts, false);
        const Routing got =
            gpuRouter(type, x, gate, tokens, s.hidden, s.numExperts, s.topK, s.norm);
        expectRoutingMatches(got, expected, all, tokens, s.numExperts, s.topK);
      }
    }
  }
}

TEST(CudaMoeStreaming, RouterTiesGoToTheLowerExpert) {
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
    // The expected order from the CPU's probabilities with each tie group given one value, then
    // by index among equals (the kernel computes every expert's logit the same way).
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

TEST(CudaMoeStreaming, ANonFiniteHiddenStatePicksTheCpusExperts) {
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

struct Layer {
  const char* name;
  int64_t hidden, intermediate, numExperts, topK, distinct;
  bool fused;
};

// One layer's experts: `distinct` weight sets, expert e using set e % distinct.
struct LayerWeights {
  std::vector<std::vector<float>> gateUp, up, down;  // per set, rounded to the storage type
  std::vector<std::unique_ptr<DeviceBuffer>> owned;
  std::vector<const float*> hGateUp, hUp, hDown;  // per expert
  std::unique_ptr<DeviceBuffer> dGateUp, dUp, dDown;
};

LayerWeights makeLayer(const Layer& l, ElementType type) {
  LayerWeights w;
  const float upScale = 2.0f / std::sqrt(static_cast<float>(l.hidden));
  const float downScale = 2.0f / std::sqrt(static_cast<float>(l.intermediate));
  const int64_t h = l.hidden, inter = l.intermediate;
  std::vector<const void*> gateUpSets, upSets, downSets;
  for (int64_t d = 0; d < l.distinct; ++d) {
    const auto seed = static_cast<uint32_t>(300 + 3 * d);
    w.gateUp.push_back(
        roundTo(type, randomFloats((l.fused ? 2 : 1) * inter * h, seed, -upScale, upScale)));
    w.owned.push_back(std::make_unique<DeviceBuffer>(upload(type, w.gateUp.back())));
    gateUpSets.push_back(w.owned.back()->get());
    if (!l.fused) {
      w.up.push_back(roundTo(type, randomFloats(inter * h, seed + 1, -upScale, upScale)));
      w.owned.push_back(std::make_unique<DeviceBuffer>(upload(type, w.up.back())));
      upSets.push_back(w.owned.back()->get());
    }
    w.down.push_back(roundTo(type, randomFloats(h * inter, seed + 2, -downScale, downScale)));
    w.owned.push_back(std::make_unique<DeviceBuffer>(upload(type, w.down.back())));
    downSets.push_back(w.owned.back()->get());
  }
  std::vector<const void*> dGateUp, dUp, dDown;
  for (int64_t e = 0; e < l.numExperts; ++e) {
    const size_t d = static_cast<size_t>(e % l.distinct);
    w.hGateUp.push_back(w.gateUp[d].data());
    dGateUp.push_back(gateUpSets[d]);
    if (!l.fused) {
      w.hUp.push_back(w.up[d].data());
      dUp.push_back(upSets[d]);
    }
    w.hDown.push_back(w.down[d].data());
    dDown.push_back(downSets[d]);
  }
  w.dGateUp = std::make_unique<DeviceBuffer>(uploadRaw(dGateUp));
  if (!l.fused) w.dUp = std::make_unique<DeviceBuffer>(uploadRaw(dUp));
  w.dDown = std::make_unique<DeviceBuffer>(uploadRaw(dDown));
  return w;
}

// Everything one step needs on the device.
struct Step {
  DeviceBuffer x, gate, weights, experts, routerWorkspace, workspace, out;
};

// Enqueues router and experts on `stream`: out (already holding its start) += the layer.
void enqueue(const Layer& l, ElementType type, const LayerWeights& w, Step& s, int64_t tokens,
             int64_t directMaxTokens, cudaStream_t stream) {
  EXPECT_EQ(moeRouterStreaming(type, s.x.get(), s.gate.get(), tokens, l.hidden, l.numExperts,
                               l.topK, true, s.routerWorkspace.get(), s.weights.as<float>(),
                               s.experts.as<int32_t>(), stream),
            cudaSuccess);
  EXPECT_EQ(moeExpertsStreaming(type, s.x.get(), s.weights.as<float>(), s.experts.as<int32_t>(),
                                tokens, l.hidden, l.intermediate, l.topK, l.numExperts,
                                static_cast<const void* const*>(w.dGateUp->get()),
                                w.dUp ? static_cast<const void* const*>(w.dUp->get()) : nullptr,
                                static_cast<const void* const*>(w.dDown->get()), directMaxTokens,
                                /*accumulate=*/true, s.workspace.get(), s.out.get(), stream),
            cudaSuccess);
}

void checkLayer(const Layer& l) {
  for (ElementType type : {ElementType::F32, ElementType::BF16}) {
    const LayerWeights w = makeLayer(l, type);
    for (int64_t tokens : {1, 8, 64}) {
      const int64_t h = l.hidden;
      const std::vector<float> x = roundTo(type, randomFloats(tokens * h, 230));
      const float gateScale = 3.0f / std::sqrt(static_cast<float>(h));
      const std::vector<float> gate =
          roundTo(type, randomFloats(l.numExperts * h, 231, -gateScale, gateScale));
      // The experts judged alone: the GPU's own routing (checked above) fed to the CPU twin.
      const std::vector<float> initial = roundTo(type, randomFloats(tokens * h, 232));
      Step s{upload(type, x),
             upload(type, gate),
             DeviceBuffer(tokens * l.topK * sizeof(float)),
             DeviceBuffer(tokens * l.topK * sizeof(int32_t)),
             DeviceBuffer(moeRouterStreamingWorkspaceBytes(tokens, l.numExperts)),
             DeviceBuffer(moeExpertsStreamingWorkspaceBytes(type, tokens, l.topK, h, l.intermediate,
                                                            l.numExperts)),
             upload(type, initial)};
      ASSERT_TRUE(moeExpertsStreamingSupports(type, h, l.intermediate, l.numExperts, s.x.get(),
                                              s.workspace.get()));
      std::vector<int64_t> modes = {kNeverDirect};
      if (tokens * l.topK <= 64) modes.push_back(kAlwaysDirect);
      for (int64_t mode : modes) {
        SCOPED_TRACE(std::string(l.name) + " " + typeName(type) + " tokens " +
                     std::to_string(tokens) + (mode == kNeverDirect ? " grouped" : " direct"));
        s.out.upload(encode(type, initial).data(), initial.size() * elementBytes(type));
        enqueue(l, type, w, s, tokens, mode, nullptr);
        const std::vector<float> eager = download(type, s.out, tokens * h);
        const Routing routing{downloadRaw<float>(s.weights, tokens * l.topK),
                              downloadRaw<int32_t>(s.experts, tokens * l.topK)};
        std::vector<float> expected = initial;
        cpu::moeExperts(x.data(), routing.weights.data(), routing.experts.data(), tokens, h,
                        l.intermediate, l.topK, w.hGateUp.data(), l.fused ? nullptr : w.hUp.data(),
                        w.hDown.data(), expected.data());
        // f32: chained sums in another order; bf16: the activations and the output rounded.
        const double tolerance = type == ElementType::F32 ? 1e-4 : storageTolerance(type);
        EXPECT_TRUE(allClose(eager, toDouble(expected), tolerance));

        // The same step captured in a graph and replayed twice: the eager bits each time.
        cudaStream_t stream = nullptr;
        ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
        cudaGraph_t graph = nullptr;
        ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
        enqueue(l, type, w, s, tokens, mode, stream);
        ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
        cudaGraphExec_t exec = nullptr;
        ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
        for (int replay = 0; replay < 2; ++replay) {
          s.out.upload(encode(type, initial).data(), initial.size() * elementBytes(type));
          ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
          ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
          const std::vector<float> replayed = download(type, s.out, tokens * h);
          EXPECT_EQ(0, std::memcmp(replayed.data(), eager.data(), eager.size() * sizeof(float)))
              << "replay " << replay << " differs from the eager run";
        }
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        cudaStreamDestroy(stream);
      }
    }
  }
}

TEST(CudaMoeStreaming, ExpertsMatchCpuAtQwen3MoeShape) {
  TPC_REQUIRE_GPU();
  checkLayer({"qwen3-30b-a3b", 2048, 768, 128, 8, 16, false});
}

TEST(CudaMoeStreaming, ExpertsMatchCpuAtMixtralShape) {
  TPC_REQUIRE_GPU();
  checkLayer({"mixtral-8x7b", 4096, 14336, 8, 2, 2, false});
}

TEST(CudaMoeStreaming, ExpertsMatchCpuWithFusedGateUp) {
  TPC_REQUIRE_GPU();
  checkLayer({"fused gate-up", 256, 96, 16, 4, 16, true});
}

// Expert ids out of range (corrupt routing) add nothing and read nothing outside the arrays;
// out is overwritten, not accumulated into.
TEST(CudaMoeStreaming, ExpertIdsOutOfRangeAddNothing) {
  TPC_REQUIRE_GPU();
  const Layer l{"small", 64, 32, 8, 2, 8, false};
  const ElementType type = ElementType::F32;
  const LayerWeights w = makeLayer(l, type);
  const int64_t tokens = 3;
  const std::vector<float> x = randomFloats(tokens * l.hidden, 240);
  const std::vector<float> weights(tokens * l.topK, 0.5f);
  const std::vector<int32_t> experts = {1, -1, 8, 3, 2, 1000};
  const std::vector<int32_t> kept = {1, 3, 2};
  for (int64_t mode : {kNeverDirect, kAlwaysDirect}) {
    DeviceBuffer dX = upload(type, x), dWeights = uploadRaw(weights), dExperts = uploadRaw(experts);
    DeviceBuffer workspace(moeExpertsStreamingWorkspaceBytes(type, tokens, l.topK, l.hidden,
                                                             l.intermediate, l.numExperts));
    // Without accumulating, out's old contents (NaN bytes here) are never read.
    DeviceBuffer out(tokens * l.hidden * sizeof(float));
    out.fill(0xff);
    TPC_CUDA_OK(moeExpertsStreaming(type, dX.get(), dWeights.as<float>(), dExperts.as<int32_t>(),
                                    tokens, l.hidden, l.intermediate, l.topK, l.numExperts,
                                    static_cast<const void* const*>(w.dGateUp->get()),
                                    static_cast<const void* const*>(w.dUp->get()),
                                    static_cast<const void* const*>(w.dDown->get()), mode,
                                    /*accumulate=*/false, workspace.get(), out.get(), nullptr));
    // The CPU twin with the valid choice alone (topK 1, weight 0.5) per token.
    std::vector<float> expected(tokens * l.hidden, 0.0f);
    const std::vector<float> half(tokens, 0.5f);
    cpu::moeExperts(x.data(), half.data(), kept.data(), tokens, l.hidden, l.intermediate, 1,
                    w.hGateUp.data(), w.hUp.data(), w.hDown.data(), expected.data());
    EXPECT_TRUE(allClose(download(type, out, tokens * l.hidden), toDouble(expected), 1e-4))
        << (mode == kNeverDirect ? "grouped" : "direct");
  }
}

}  // namespace
}  // namespace tpc::cuda::test
