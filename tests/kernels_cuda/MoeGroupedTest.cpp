// The grouped MoE path (executor/cuda/MoeGrouped.h: tokens sorted by expert, per-expert GEMMs
// through cuBLASLt) against cpu::moeExperts and against the per-assignment kernels
// (cuda::moeExperts), at Qwen3-MoE-like ratios (128 experts, top-8) and Mixtral-like ones (8
// experts, top-2, separate gate and up), with experts that get no token and one that gets every
// token, and with another rank's experts left out (expert parallelism); and the device grouping
// against a counting sort done here.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "executor/MoeGroups.h"
#include "executor/cuda/CudaCheck.h"
#include "executor/cuda/Gemm.h"
#include "executor/cuda/MoeGrouped.h"
#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/MoeGrouped.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

struct PinnedInts {
  explicit PinnedInts(int64_t count) {
    if (cudaMallocHost(reinterpret_cast<void**>(&data), static_cast<size_t>(count) * 4) !=
        cudaSuccess)
      data = nullptr;
  }
  ~PinnedInts() { cudaFreeHost(data); }
  PinnedInts(const PinnedInts&) = delete;
  PinnedInts& operator=(const PinnedInts&) = delete;
  int32_t* data = nullptr;
};

// topK distinct experts per token: `everyToken` always (at a choice that moves with the token,
// so the sort must reorder), the others drawn from [0, used) (experts >= used get none).
// Weights positive, summing to 1.
struct Routing {
  std::vector<float> weights;
  std::vector<int32_t> experts;
};
Routing makeRouting(int64_t tokens, int64_t topK, int64_t used, int32_t everyToken, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(used - 1));
  std::uniform_real_distribution<float> weight(0.1f, 1.0f);
  Routing r;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<int32_t> chosen(static_cast<size_t>(topK), -1);
    chosen[static_cast<size_t>(t % topK)] = everyToken;
    for (int32_t& e : chosen) {
      while (e < 0) {
        const int32_t candidate = pick(rng);
        if (std::find(chosen.begin(), chosen.end(), candidate) == chosen.end()) e = candidate;
      }
    }
    std::vector<float> w(static_cast<size_t>(topK));
    for (float& v : w) v = weight(rng);
    const float total = std::accumulate(w.begin(), w.end(), 0.0f);
    for (float& v : w) v /= total;
    r.experts.insert(r.experts.end(), chosen.begin(), chosen.end());
    r.weights.insert(r.weights.end(), w.begin(), w.end());
  }
  return r;
}

struct Case {
  ElementType type;
  int64_t tokens, hidden, intermediate, numExperts, topK;
  bool fused;
  int64_t used;  // experts that may get tokens; the others get none
  std::string name() const {
    return std::string(typeName(type)) + " tokens " + std::to_string(tokens) + " hidden " +
           std::to_string(hidden) + " I " + std::to_string(intermediate) + " experts " +
           std::to_string(numExperts) + " top " + std::to_string(topK) +
           (fused ? " fused" : " separate");
  }
};

// A case's data on the host (rounded to the storage type) and on the device.
struct Experts {
  std::vector<std::vector<float>> gateUp, up, down;
  std::vector<std::unique_ptr<DeviceBuffer>> owned;
  std::vector<const void*> dGateUp, dUp, dDown;  // device pointers, on the host
};

Experts makeExperts(const Case& c) {
  Experts x;
  const float upScale = 2.0f / std::sqrt(static_cast<float>(c.hidden));
  const float downScale = 2.0f / std::sqrt(static_cast<float>(c.intermediate));
  const int64_t h = c.hidden, inter = c.intermediate;
  for (int64_t e = 0; e < c.numExperts; ++e) {
    const auto seed = static_cast<uint32_t>(500 + 3 * e);
    x.gateUp.push_back(
        roundTo(c.type, randomFloats((c.fused ? 2 : 1) * inter * h, seed, -upScale, upScale)));
    if (!c.fused)
      x.up.push_back(roundTo(c.type, randomFloats(inter * h, seed + 1, -upScale, upScale)));
    x.down.push_back(roundTo(c.type, randomFloats(h * inter, seed + 2, -downScale, downScale)));
    x.owned.push_back(std::make_unique<DeviceBuffer>(upload(c.type, x.gateUp.back())));
    x.dGateUp.push_back(x.owned.back()->get());
    if (!c.fused) {
      x.owned.push_back(std::make_unique<DeviceBuffer>(upload(c.type, x.up.back())));
      x.dUp.push_back(x.owned.back()->get());
    }
    x.owned.push_back(std::make_unique<DeviceBuffer>(upload(c.type, x.down.back())));
    x.dDown.push_back(x.owned.back()->get());
  }
  return x;
}

// out (starting from `initial`) after cpu::moeExperts over experts [first, first + count) of w,
// the choices numbered in that run (count -1: every expert).
std::vector<float> runCpu(const Case& c, const Experts& w, const std::vector<float>& x,
                          const Routing& routing, std::vector<float> out, int64_t first = 0,
                          int64_t count = -1) {
  if (count < 0) count = c.numExperts;
  std::vector<const float*> gateUp, up, down;
  for (int64_t e = first; e < first + count; ++e) {
    gateUp.push_back(w.gateUp[e].data());
    if (!c.fused) up.push_back(w.up[e].data());
    down.push_back(w.down[e].data());
  }
  cpu::moeExperts(x.data(), routing.weights.data(), routing.experts.data(), c.tokens, c.hidden,
                  c.intermediate, c.topK, gateUp.data(), c.fused ? nullptr : up.data(), down.data(),
                  out.data());
  return out;
}

// out (starting from `initial`) after the grouped path.
std::vector<float> runGrouped(const Case& c, const Experts& w, const DeviceBuffer& x,
                              const Routing& routing, const std::vector<float>& initial) {
  Expected<std::unique_ptr<GemmRunner>> gemm = GemmRunner::create(size_t{32} << 20);
  EXPECT_TRUE(gemm) << (gemm ? "" : gemm.errorMessage());
  if (!gemm) return {};
  const MoeShape shape{c.tokens, c.hidden,     c.intermediate,
                       c.topK,   c.numExperts, elementBytes(c.type)};
  const std::optional<MoeGroupedLayout> layout = moeGroupedLayout(shape);
  EXPECT_TRUE(layout);
  if (!layout) return {};
  DeviceBuffer workspace(layout->bytes), out = upload(c.type, initial);
  DeviceBuffer dWeights = uploadRaw(routing.weights), dExperts = uploadRaw(routing.experts);
  PinnedInts counts(c.numExperts);
  EXPECT_NE(counts.data, nullptr);
  const MoeExpertPointers pointers{w.dGateUp.data(), c.fused ? nullptr : w.dUp.data(),
                                   w.dDown.data()};
  Error e = moeExpertsGrouped(
      **gemm, c.type, shape, x.get(), dWeights.as<float>(), dExperts.as<int32_t>(), pointers,
      workspace.get(), workspace.bytes(), counts.data, out.get(), nullptr,
      [] { return cudacheck::check(cudaStreamSynchronize(nullptr), "waiting for the counts"); });
  EXPECT_FALSE(e) << (e ? e.message() : "");
  return download(c.type, out, static_cast<size_t>(c.tokens * c.hidden));
}

// out (starting from `initial`) after the per-assignment kernels.
std::vector<float> runPerAssignment(const Case& c, const Experts& w, const DeviceBuffer& x,
                                    const Routing& routing, const std::vector<float>& initial) {
  DeviceBuffer dGateUp = uploadRaw(w.dGateUp), dDown = uploadRaw(w.dDown);
  std::unique_ptr<DeviceBuffer> dUp;
  if (!c.fused) dUp = std::make_unique<DeviceBuffer>(uploadRaw(w.dUp));
  DeviceBuffer out = upload(c.type, initial);
  DeviceBuffer dWeights = uploadRaw(routing.weights), dExperts = uploadRaw(routing.experts);
  DeviceBuffer workspace(moeWorkspaceBytes(c.tokens, c.topK, c.intermediate));
  EXPECT_EQ(
      moeExperts(c.type, x.get(), dWeights.as<float>(), dExperts.as<int32_t>(), c.tokens, c.hidden,
                 c.intermediate, c.topK, static_cast<const void* const*>(dGateUp.get()),
                 dUp ? static_cast<const void* const*>(dUp->get()) : nullptr,
                 static_cast<const void* const*>(dDown.get()), workspace.get(), out.get(), nullptr),
      cudaSuccess);
  return download(c.type, out, static_cast<size_t>(c.tokens * c.hidden));
}

TEST(CudaMoeGrouped, MatchesCpuAndThePerAssignmentKernels) {
  TPC_REQUIRE_GPU();
  constexpr int32_t kEveryToken = 3;  // the expert every token of every case chooses
  const Case cases[] = {
      // Qwen3-MoE-like: 128 experts top-8, experts 100.. get no token.
      {ElementType::F32, 300, 256, 64, 128, 8, true, 100},
      {ElementType::BF16, 300, 256, 64, 128, 8, true, 100},
      {ElementType::BF16, 300, 256, 64, 128, 8, false, 100},
      // Mixtral-like: 8 experts top-2, separate gate and up; expert 7 gets none.
      {ElementType::F32, 300, 256, 512, 8, 2, false, 7},
      {ElementType::BF16, 300, 256, 512, 8, 2, false, 7},
      {ElementType::F16, 64, 128, 96, 8, 2, false, 6},
      // Rows of 800 and 288 bytes: every expert's rows padded to 8 (executor/MoeGroups.h).
      {ElementType::F32, 40, 200, 72, 16, 4, true, 12},
      // One token: single-row GEMMs.
      {ElementType::F32, 1, 64, 32, 8, 2, false, 8},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name());
    const Routing routing = makeRouting(c.tokens, c.topK, c.used, kEveryToken,
                                        static_cast<uint32_t>(c.tokens + c.numExperts));
    const std::vector<float> x = roundTo(c.type, randomFloats(c.tokens * c.hidden, 600));
    const std::vector<float> initial = roundTo(c.type, randomFloats(c.tokens * c.hidden, 601));
    const Experts w = makeExperts(c);
    const std::vector<float> expected = runCpu(c, w, x, routing, initial);
    const DeviceBuffer dX = upload(c.type, x);
    const std::vector<float> grouped = runGrouped(c, w, dX, routing, initial);
    const std::vector<float> perAssignment = runPerAssignment(c, w, dX, routing, initial);
    // f32: the same dot products summed in other orders. bf16/f16: the SwiGLU activations are
    // rounded to the storage type for the down GEMM (the per-assignment kernels keep them in f32)
    // and the output once.
    const double tolerance = c.type == ElementType::F32 ? 1e-4 : storageTolerance(c.type);
    EXPECT_TRUE(allClose(grouped, toDouble(expected), tolerance)) << "against the CPU";
    EXPECT_TRUE(allClose(grouped, toDouble(perAssignment), tolerance))
        << "against the per-assignment kernels";
    // Deterministic: a second run gives the same bits.
    EXPECT_EQ(runGrouped(c, w, dX, routing, initial), grouped) << "a second run differs";
  }
}

// Expert parallelism: a rank holds a run of whole experts and sees the choices renumbered to its
// own (cpu::moeLocalExperts: -1 for another rank's), so its grouped step leaves those choices out.
// Each rank's result matches cpu::moeExperts on the same renumbered choices, and the ranks'
// results summed (the all-reduce) match every expert computed at once. f32, runs of uneven length.
TEST(CudaMoeGrouped, AnotherRanksChoicesAddNothing) {
  TPC_REQUIRE_GPU();
  struct Split {
    Case c;
    std::vector<int64_t> runs;  // experts per rank, in rank order
  };
  const Split splits[] = {
      {{ElementType::F32, 300, 256, 512, 8, 2, false, 8}, {4, 4}},
      {{ElementType::F32, 300, 256, 512, 8, 2, false, 8}, {2, 3, 3}},
      {{ElementType::F32, 200, 256, 64, 128, 8, true, 128}, {32, 32, 32, 32}},
  };
  for (const Split& split : splits) {
    const Case& c = split.c;
    SCOPED_TRACE(c.name() + " over " + std::to_string(split.runs.size()) + " ranks");
    const Routing routing = makeRouting(c.tokens, c.topK, c.used, 3, 700);
    const std::vector<float> x = randomFloats(c.tokens * c.hidden, 701);
    const std::vector<float> zeros(static_cast<size_t>(c.tokens * c.hidden), 0.0f);
    const Experts w = makeExperts(c);
    const std::vector<float> whole = runCpu(c, w, x, routing, zeros);
    const DeviceBuffer dX = upload(c.type, x);
    std::vector<float> sum = zeros;
    int64_t first = 0;
    for (int64_t held : split.runs) {
      SCOPED_TRACE("experts " + std::to_string(first) + ".." + std::to_string(first + held - 1));
      Case mine = c;
      mine.numExperts = held;
      Experts local;  // this rank's experts: views of w's
      const auto view = [&](const std::vector<const void*>& all) {
        return all.empty()
                   ? all
                   : std::vector<const void*>(all.begin() + first, all.begin() + first + held);
      };
      local.dGateUp = view(w.dGateUp);
      local.dUp = view(w.dUp);
      local.dDown = view(w.dDown);
      Routing renumbered = routing;
      cpu::moeLocalExperts(routing.experts.data(), c.tokens * c.topK, first, held,
                           renumbered.experts.data());
      const std::vector<float> expected = runCpu(c, w, x, renumbered, zeros, first, held);
      const std::vector<float> grouped = runGrouped(mine, local, dX, renumbered, zeros);
      EXPECT_TRUE(allClose(grouped, toDouble(expected), 1e-4)) << "against the CPU";
      for (size_t i = 0; i < grouped.size() && i < sum.size(); ++i) sum[i] += grouped[i];
      first += held;
    }
    EXPECT_TRUE(allClose(sum, toDouble(whole), 1e-4)) << "the ranks' sum";
  }
}

TEST(CudaMoeGrouped, GroupingIsAStableCountingSort) {
  TPC_REQUIRE_GPU();
  for (int64_t rowAlign : {1, 4}) {
    const int64_t numExperts = 37, assignments = 3000;
    std::mt19937 rng(static_cast<uint32_t>(rowAlign));
    // Skewed towards low experts, some experts empty, and two ids out of range (dropped).
    std::uniform_int_distribution<int32_t> pick(0, 29);
    std::vector<int32_t> experts(static_cast<size_t>(assignments));
    for (int32_t& e : experts) e = std::min(pick(rng), pick(rng));
    experts[17] = -1;
    experts[2500] = static_cast<int32_t>(numExperts);
    // Expected, one expert at a time in assignment order.
    std::vector<int32_t> counts(numExperts, 0), firstRows(numExperts, 0);
    for (int32_t e : experts)
      if (e >= 0 && e < numExperts) ++counts[static_cast<size_t>(e)];
    int64_t next = 0;
    for (int64_t e = 0; e < numExperts; ++e) {
      firstRows[static_cast<size_t>(e)] = static_cast<int32_t>(next);
      next += (counts[static_cast<size_t>(e)] + rowAlign - 1) / rowAlign * rowAlign;
    }
    const int64_t rowCapacity = next + 5;
    std::vector<int32_t> slots(static_cast<size_t>(assignments), -1);
    std::vector<int32_t> sources(static_cast<size_t>(rowCapacity), -1);
    for (int64_t e = 0; e < numExperts; ++e) {
      int64_t row = firstRows[static_cast<size_t>(e)];
      for (int64_t a = 0; a < assignments; ++a)
        if (experts[static_cast<size_t>(a)] == e) {
          slots[static_cast<size_t>(a)] = static_cast<int32_t>(row);
          sources[static_cast<size_t>(row++)] = static_cast<int32_t>(a);
        }
    }
    DeviceBuffer dExperts = uploadRaw(experts), dCounts(numExperts * 4), dFirst(numExperts * 4);
    DeviceBuffer dSlots(assignments * 4), dSources(rowCapacity * 4);
    TPC_CUDA_OK(moeGroupByExpert(dExperts.as<int32_t>(), assignments, numExperts, rowAlign,
                                 rowCapacity, dCounts.as<int32_t>(), dFirst.as<int32_t>(),
                                 dSlots.as<int32_t>(), dSources.as<int32_t>(), nullptr));
    EXPECT_EQ(downloadRaw<int32_t>(dCounts, numExperts), counts) << "rowAlign " << rowAlign;
    EXPECT_EQ(downloadRaw<int32_t>(dFirst, numExperts), firstRows) << "rowAlign " << rowAlign;
    EXPECT_EQ(downloadRaw<int32_t>(dSlots, assignments), slots) << "rowAlign " << rowAlign;
    EXPECT_EQ(downloadRaw<int32_t>(dSources, rowCapacity), sources) << "rowAlign " << rowAlign;
    // The host's groups agree with the device's first rows.
    for (const ExpertGroup& g : expertGroups(counts.data(), numExperts, rowAlign))
      EXPECT_EQ(g.firstRow, firstRows[static_cast<size_t>(g.expert)]);
  }
}

}  // namespace
}  // namespace tpc::cuda::test
