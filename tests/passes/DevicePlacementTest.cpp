// Device maps on the tiny llama: budgets that fit, that fit to the byte, that miss by a byte,
// and layer counts. Each stage's bytes are counted here from the model's shape (weights at
// their f32 checkpoint dtype, the KV cache at the bf16 compute dtype on a GPU, everything at 4
// bytes an element on the CPU), not read off the placement.
#include <gtest/gtest.h>

#include "passes/DevicePlacement.h"
#include "tests/support/Fixtures.h"

namespace tpc {
namespace {

struct TinyCosts {
  int64_t h, heads, kv, d, inter, vocab;
  int64_t context = 64, batch = 4;
  explicit TinyCosts(const ModelSpec& s)
      : h(s.hiddenSize),
        heads(s.numHeads),
        kv(s.numKvHeads),
        d(s.headDim),
        inter(s.intermediateSize),
        vocab(s.vocabSize) {}
  uint64_t layerWeights() const {
    int64_t qo = 2 * heads * d * h, kv2 = 2 * kv * d * h, mlp = 3 * inter * h, norms = 2 * h;
    return static_cast<uint64_t>(qo + kv2 + mlp + norms);
  }
  uint64_t layerKv() const { return static_cast<uint64_t>(2 * kv * d * context * batch); }
  // Bytes on a GPU (f32 weights, bf16 KV) or on the CPU (4 bytes each).
  uint64_t layer(bool cpu) const { return 4 * layerWeights() + (cpu ? 4 : 2) * layerKv(); }
  uint64_t head() const { return 4 * static_cast<uint64_t>(vocab * h); }
  uint64_t tail() const { return 4 * static_cast<uint64_t>(h + vocab * h); }
};

class DevicePlacementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = test::presetSpec(Family::Llama, "tiny", DType::F32);
    graph_ = test::buildSpecGraph(spec_);
    limits_.maxContext = 64;
    limits_.maxBatch = 4;
    limits_.activationBytesPerToken = 0;
  }
  ModelSpec spec_;
  Graph graph_;
  PlacementLimits limits_;
};

TEST_F(DevicePlacementTest, ABudgetThatHoldsLayerZeroExactlyPutsItOnTheGpu) {
  TinyCosts c(spec_);
  ASSERT_EQ(spec_.numLayers, 2);
  const uint64_t gpu = c.head() + c.layer(false);  // to the byte
  const uint64_t cpu = c.layer(true) + c.tail();
  Expected<std::vector<StagePlacement>> stages =
      placeByBudget(graph_, {{"cpu", cpu}, {"cuda:0", gpu}}, limits_);  // any order
  ASSERT_TRUE(stages) << stages.errorMessage();
  ASSERT_EQ(stages->size(), 2u);
  EXPECT_EQ((*stages)[0].device, "cuda:0");
  EXPECT_EQ((*stages)[0].layers, 1);
  EXPECT_EQ((*stages)[0].bytes, gpu);
  EXPECT_EQ((*stages)[1].device, "cpu");
  EXPECT_EQ((*stages)[1].firstLayer, 1);
  EXPECT_EQ((*stages)[1].bytes, cpu);
  EXPECT_EQ(stageDevicesText(*stages), "cuda:0,cpu");
}

TEST_F(DevicePlacementTest, OneByteShortOfLayerZeroLeavesTheGpuOut) {
  TinyCosts c(spec_);
  Expected<std::vector<StagePlacement>> stages = placeByBudget(
      graph_, {{"cuda:0", c.head() + c.layer(false) - 1}, {"cpu", uint64_t{1} << 30}}, limits_);
  ASSERT_TRUE(stages) << stages.errorMessage();
  ASSERT_EQ(stages->size(), 1u);
  EXPECT_EQ((*stages)[0].device, "cpu");
  EXPECT_EQ((*stages)[0].layers, 2);
  EXPECT_EQ((*stages)[0].bytes, c.head() + 2 * c.layer(true) + c.tail());
}

TEST_F(DevicePlacementTest, GpusFillInOrderBeforeTheCpu) {
  TinyCosts c(spec_);
  const uint64_t big = uint64_t{1} << 30;
  Expected<std::vector<StagePlacement>> stages = placeByBudget(
      graph_, {{"cpu", big}, {"cuda:1", big}, {"cuda:0", c.head() + c.layer(false)}}, limits_);
  ASSERT_TRUE(stages) << stages.errorMessage();
  EXPECT_EQ(stageDevicesText(*stages), "cuda:0,cuda:1");
}

TEST_F(DevicePlacementTest, WhatTheCpuCannotHoldIsNamedToTheByte) {
  TinyCosts c(spec_);
  const uint64_t all = c.head() + 2 * c.layer(true) + c.tail();
  Expected<std::vector<StagePlacement>> fits = placeByBudget(graph_, {{"cpu", all}}, limits_);
  ASSERT_TRUE(fits) << fits.errorMessage();
  Expected<std::vector<StagePlacement>> short1 =
      placeByBudget(graph_, {{"cuda:0", 1024}, {"cpu", all - 1}}, limits_);
  ASSERT_FALSE(short1);
  EXPECT_NE(short1.errorMessage().find("cpu would need"), std::string::npos)
      << short1.errorMessage();
  EXPECT_NE(short1.errorMessage().find(": 1 B missing"), std::string::npos)
      << short1.errorMessage();
}

TEST_F(DevicePlacementTest, LayerCountsAndTheirErrors) {
  Expected<std::vector<StagePlacement>> stages =
      placeByCounts(graph_, {{"cuda:0", 1}, {"cpu", -1}}, limits_);
  ASSERT_TRUE(stages) << stages.errorMessage();
  ASSERT_EQ(stages->size(), 2u);
  EXPECT_EQ((*stages)[1].firstLayer, 1);
  EXPECT_EQ((*stages)[1].layers, 1);
  auto failure = [&](const std::vector<DeviceLayers>& counts) {
    Expected<std::vector<StagePlacement>> s = placeByCounts(graph_, counts, limits_);
    return s ? std::string("(placed)") : s.errorMessage();
  };
  EXPECT_EQ(failure({{"cpu", 3}}), "--device-map places 3 layers but the model has 2");
  EXPECT_EQ(failure({{"cuda:0", -1}, {"cpu", -1}}),
            "--device-map: only one device may take the rest (*)");
  EXPECT_EQ(failure({{"tpu:0", 2}}), "device map: unknown device 'tpu:0' (cuda:N or cpu)");
  EXPECT_EQ(failure({{"cuda:0", 0}, {"cpu", -1}}),
            "--device-map: cuda:0 needs at least one layer, got 0");
}

}  // namespace
}  // namespace tpc
