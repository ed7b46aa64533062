// The streaming MoE kernels (kernels/cuda/MoeStreaming.h) against cpu::moeRouter and
// cpu::moeExperts at real layer shapes: Qwen3-30B-A3B (hidden 2048, 128 experts, top-8,
// moe_intermediate 768) and Mixtral-8x7B (hidden 4096, 8 experts, top-2, intermediate 14336), one
// layer of synthetic weights, 1 to 256 tokens, f32, bf16 and f16, the direct and the grouped
// kernels (tensor cores for 16-bit weights, MoeStreamingMma.h); a CUDA Graph replay must give the
// eager bits. Routings made by hand put one expert's assignments through several passes, give
// another exactly one, and hold ids out of range. The workspace is filled with NaN bytes before
// every run, so an activation or down row the kernels leave unwritten shows in the output. To
// keep the host work small, the 128 experts share 16 distinct weight sets (Mixtral's 8 share 2):
// the kernels see 128 pointers and cannot tell.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/MoeStreaming.h"
#include "kernels/cuda/MoeStreamingMma.h"
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

// f32: chained sums in another order; 16-bit: the activations and the output rounded.
double expertsTolerance(ElementType type) {
  return type == ElementType::F32 ? 1e-4 : storageTolerance(type);
}

// A routing made by hand, every token's choices distinct: expert kCrowded is the first choice of
// every token but token 0 (several passes, the last one partial), expert kSingle a choice of
// token 1 alone, token 2's last choice -1 and token 3's numExperts + 3 (out of range); the rest
// random among the other experts, with random weights that sum to 1 per token as a renormalizing
// router's do (the tolerance's scale: the experts' rounded activations weigh in with them).
constexpr int32_t kCrowded = 5, kSingle = 7;

Routing handRouting(const Layer& l, int64_t tokens) {
  Routing r{randomFloats(tokens * l.topK, 250, 0.1f, 1.0f), {}};
  std::mt19937 rng(251);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(l.numExperts) - 1);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<int32_t> chosen;
    if (t > 0) chosen.push_back(kCrowded);
    if (t == 1) chosen.push_back(kSingle);
    while (static_cast<int64_t>(chosen.size()) < l.topK) {
      const int32_t e = pick(rng);
      if (e != kCrowded && e != kSingle &&
          std::find(chosen.begin(), chosen.end(), e) == chosen.end())
        chosen.push_back(e);
    }
    if (t == 2) chosen.back() = -1;
    if (t == 3) chosen.back() = static_cast<int32_t>(l.numExperts + 3);
    r.experts.insert(r.experts.end(), chosen.begin(), chosen.end());
    float* weights = r.weights.data() + t * l.topK;
    const float sum = std::accumulate(weights, weights + l.topK, 0.0f);
    for (int64_t k = 0; k < l.topK; ++k) weights[k] /= sum;
  }
  return r;
}

// The grouped kernels on the first `tokens` tokens of x and the routing, accumulating into
// `initial` (or overwriting out when `initial` is null: out's NaN bytes must all be replaced).
// The workspace starts as NaN bytes. Returns out; with `replay`, checks that a graph of the same
// step gives the same bits.
std::vector<float> runGrouped(const Layer& l, ElementType type, const LayerWeights& w,
                              const std::vector<float>& x, const Routing& routing, int64_t tokens,
                              const std::vector<float>* initial, bool replay) {
  const int64_t h = l.hidden;
  DeviceBuffer dX = upload(type, std::vector<float>(x.begin(), x.begin() + tokens * h));
  DeviceBuffer dWeights = uploadRaw(
      std::vector<float>(routing.weights.begin(), routing.weights.begin() + tokens * l.topK));
  DeviceBuffer dExperts = uploadRaw(
      std::vector<int32_t>(routing.experts.begin(), routing.experts.begin() + tokens * l.topK));
  DeviceBuffer workspace(
      moeExpertsStreamingWorkspaceBytes(type, tokens, l.topK, h, l.intermediate, l.numExperts));
  DeviceBuffer out(tokens * h * elementBytes(type));
  if (initial) {
    out.upload(encode(type, *initial).data(), out.bytes());
  } else {
    out.fill(0xff);
  }
  workspace.fill(0xff);
  const auto enqueueOn = [&](cudaStream_t stream) {
    return moeExpertsStreaming(
        type, dX.get(), dWeights.as<float>(), dExperts.as<int32_t>(), tokens, h, l.intermediate,
        l.topK, l.numExperts, static_cast<const void* const*>(w.dGateUp->get()),
        w.dUp ? static_cast<const void* const*>(w.dUp->get()) : nullptr,
        static_cast<const void* const*>(w.dDown->get()), kNeverDirect,
        /*accumulate=*/initial != nullptr, workspace.get(), out.get(), stream);
  };
  EXPECT_EQ(enqueueOn(nullptr), cudaSuccess);
  std::vector<float> result = download(type, out, tokens * h);
  if (!replay) return result;
  // The same step from a graph, replayed twice onto the same start: the eager bits each time.
  cudaStream_t stream = nullptr;
  EXPECT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(enqueueOn(stream), cudaSuccess);
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  EXPECT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int run = 0; run < 2; ++run) {
    if (initial) {
      out.upload(encode(type, *initial).data(), out.bytes());
    } else {
      out.fill(0xff);
    }
    workspace.fill(0xff);
    // The fills ran on the default stream, which the graph's stream does not wait for.
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const std::vector<float> replayed = download(type, out, tokens * h);
    EXPECT_EQ(0, std::memcmp(replayed.data(), result.data(), result.size() * sizeof(float)))
        << "replay " << run << " differs from the eager run";
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  return result;
}

// The hand routing of `tokens` tokens: against the CPU twin accumulating, and overwriting.
void checkHandRouting(const Layer& l, ElementType type, const LayerWeights& w, int64_t tokens) {
  SCOPED_TRACE(std::string(l.name) + " " + typeName(type) + " hand routing, tokens " +
               std::to_string(tokens));
  const int64_t h = l.hidden;
  const Routing routing = handRouting(l, tokens);
  // The CPU twin takes no ids out of range: there they become expert 0 with weight 0.
  Routing cpuRouting = routing;
  for (size_t i = 0; i < cpuRouting.experts.size(); ++i) {
    if (cpuRouting.experts[i] < 0 || cpuRouting.experts[i] >= l.numExperts) {
      cpuRouting.experts[i] = 0;
      cpuRouting.weights[i] = 0.0f;
    }
  }
  const std::vector<float> x = roundTo(type, randomFloats(tokens * h, 252));
  const std::vector<float> initial = roundTo(type, randomFloats(tokens * h, 253));
  const std::vector<float> accumulated = runGrouped(l, type, w, x, routing, tokens, &initial, true);
  std::vector<float> expected = initial;
  cpu::moeExperts(x.data(), cpuRouting.weights.data(), cpuRouting.experts.data(), tokens, h,
                  l.intermediate, l.topK, w.hGateUp.data(), l.fused ? nullptr : w.hUp.data(),
                  w.hDown.data(), expected.data());
  EXPECT_TRUE(allClose(accumulated, toDouble(expected), expertsTolerance(type)));

  // Overwriting NaN gives the bits of accumulating into zeros: every element written, none
  // read. The first 8 tokens alone (another tiling, other pass partners) give their same bits.
  const std::vector<float> zeros(tokens * h, 0.0f);
  const std::vector<float> fromZero = runGrouped(l, type, w, x, routing, tokens, &zeros, false);
  const std::vector<float> overwritten = runGrouped(l, type, w, x, routing, tokens, nullptr, true);
  EXPECT_EQ(0, std::memcmp(overwritten.data(), fromZero.data(), fromZero.size() * sizeof(float)))
      << "overwriting differs from accumulating into zeros";
  const std::vector<float> few = runGrouped(l, type, w, x, routing, 8, nullptr, false);
  EXPECT_EQ(0, std::memcmp(few.data(), overwritten.data(), few.size() * sizeof(float)))
      << "the first 8 tokens alone differ from the same tokens in the full step";
}

// The layer's experts behind the GPU router at each of `tokenCounts`, then with the hand routing
// at each of `handTokens`, for every storage type.
void checkLayer(const Layer& l, std::initializer_list<int64_t> tokenCounts,
                std::initializer_list<int64_t> handTokens) {
  for (ElementType type : kAllTypes) {
    const LayerWeights w = makeLayer(l, type);
    for (int64_t tokens : tokenCounts) {
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
        s.workspace.fill(0xff);
        enqueue(l, type, w, s, tokens, mode, nullptr);
        const std::vector<float> eager = download(type, s.out, tokens * h);
        const Routing routing{downloadRaw<float>(s.weights, tokens * l.topK),
                              downloadRaw<int32_t>(s.experts, tokens * l.topK)};
        std::vector<float> expected = initial;
        cpu::moeExperts(x.data(), routing.weights.data(), routing.experts.data(), tokens, h,
                        l.intermediate, l.topK, w.hGateUp.data(), l.fused ? nullptr : w.hUp.data(),
                        w.hDown.data(), expected.data());
        EXPECT_TRUE(allClose(eager, toDouble(expected), expertsTolerance(type)));

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
          s.workspace.fill(0xff);
          // The fill ran on the default stream, which the graph's stream does not wait for.
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
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
    for (int64_t tokens : handTokens) checkHandRouting(l, type, w, tokens);
  }
}

TEST(CudaMoeStreaming, ExpertsMatchCpuAtQwen3MoeShape) {
  TPC_REQUIRE_GPU();
  checkLayer({"qwen3-30b-a3b", 2048, 768, 128, 8, 16, false}, {1, 8, 64, 256}, {64, 256});
}

TEST(CudaMoeStreaming, ExpertsMatchCpuAtMixtralShape) {
  TPC_REQUIRE_GPU();
  // 256 tokens: about 64 assignments per expert, more than one pass of the largest tiling.
  checkLayer({"mixtral-8x7b", 4096, 14336, 8, 2, 2, false}, {1, 8, 64, 256}, {64});
}

TEST(CudaMoeStreaming, ExpertsMatchCpuWithFusedGateUp) {
  TPC_REQUIRE_GPU();
  checkLayer({"fused gate-up", 256, 96, 16, 4, 16, true}, {1, 8, 64}, {64});
}

// Rows that end inside a 32-wide k block and row counts no tile divides.
TEST(CudaMoeStreaming, ExpertsMatchCpuWithRaggedShapes) {
  TPC_REQUIRE_GPU();
  checkLayer({"ragged", 72, 40, 8, 2, 8, false}, {8, 64}, {64});
}

// The tiling: a pass holds at least the mean assignments of a touched expert (up to 64), so most
// experts take one; each grid covers every row with no block to spare.
TEST(CudaMoeStreaming, MmaTilingFitsTheShapes) {
  struct Case {
    int64_t tokens, hidden, intermediate, numExperts, topK;
  };
  const Case cases[] = {{8, 2048, 768, 128, 8}, {64, 2048, 768, 128, 8}, {256, 2048, 768, 128, 8},
                        {8, 4096, 14336, 8, 2}, {64, 4096, 14336, 8, 2}, {256, 4096, 14336, 8, 2}};
  for (const Case& c : cases) {
    SCOPED_TRACE("tokens " + std::to_string(c.tokens) + " hidden " + std::to_string(c.hidden));
    const MoeMmaTiling t = moeMmaTiling(c.tokens, c.topK, c.numExperts, c.hidden, c.intermediate);
    const int64_t assignments = c.tokens * c.topK;
    const int64_t slots = std::min(c.numExperts, assignments);
    EXPECT_EQ(t.slots, static_cast<unsigned>(slots));
    EXPECT_GE(8 * t.tokenTiles, std::min<int64_t>(64, (assignments + slots - 1) / slots));
    EXPECT_GE(t.upBlocks * t.upRowsPerBlock, c.intermediate);
    EXPECT_LT((t.upBlocks - 1) * t.upRowsPerBlock, c.intermediate);
    EXPECT_GE(t.downBlocks * t.downRowsPerBlock, c.hidden);
    EXPECT_LT((t.downBlocks - 1) * t.downRowsPerBlock, c.hidden);
  }
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
