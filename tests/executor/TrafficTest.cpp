// trafficOf (executor/engine/Traffic.h), the bench's rooflines: the multiply-adds a token costs,
// against figures worked out by hand from the golden models' config.json.
#include <gtest/gtest.h>

#include <stdexcept>

#include "codegen/PlanReader.h"
#include "executor/engine/Traffic.h"
#include "tests/support/Fixtures.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

LoadedPlan compiled(const std::string& goldenCase, int64_t world, const std::string& flags,
                    const test::TempDir& tmp) {
  const std::string path = tmp.file(goldenCase + ".fb");
  test::CommandResult c = test::runCommand(
      test::binPath("tpc") + " compile " + test::dataDir() + "/hf/" + goldenCase + " --world " +
      std::to_string(world) + " --dtype f32 --quiet " + flags + " -o " + path);
  EXPECT_EQ(c.exitCode, 0) << c.output;
  Expected<LoadedPlan> plan = LoadedPlan::readFile(path);
  if (!plan) throw std::runtime_error(plan.errorMessage());
  return std::move(*plan);
}

// Dense: every linear's weight once. llama-gqa-llama3rope: hidden 64, 8 heads and 2 KV heads of
// 8 (q 64, k and v 16 each, o 64 x 64), intermediate 128 (gate, up, down), 2 layers, vocab 251.
TEST(StepTraffic, ADenseTokenCostsEveryLinearOnce) {
  test::TempDir tmp;
  const LoadedPlan plan = compiled("llama-gqa-llama3rope", 1, "", tmp);
  const uint64_t layer = (64 + 16 + 16) * 64 + 64 * 64 + 3 * 128 * 64;
  EXPECT_EQ(trafficOf(plan.plan()).linearMacsPerToken, 2 * layer + 251 * 64);
}

// MoE: the attention linears, the router's gate and the token's top-k experts (not all of them).
// qwen3moe: hidden 64, 8 heads and 2 KV heads of 16 (q 128, k and v 32 each, o 64 x 128), a router
// over 8 experts, top-2 experts of moe_intermediate 32 (gate, up, down), 2 layers, vocab 256.
TEST(StepTraffic, AMoeTokenCostsItsChosenExpertsOnly) {
  test::TempDir tmp;
  const LoadedPlan plan = compiled("qwen3moe", 1, "", tmp);
  const uint64_t attention = (128 + 32 + 32) * 64 + 64 * 128;
  const uint64_t router = 8 * 64, experts = 2 * 3 * 32 * 64;
  EXPECT_EQ(trafficOf(plan.plan()).linearMacsPerToken,
            2 * (attention + router + experts) + 256 * 64);
}

// At world 2 a tensor-parallel rank runs half of each chosen expert, an expert-parallel rank
// whole experts for half the choices on average: the same work per token either way. And the
// same expected bytes: half of every touched expert, or the touched ones of half the experts
// whole (a rank's expert is touched as often as any of the model's: by k of E choices).
TEST(StepTraffic, ExpertAndTensorParallelRanksCostTheSamePerToken) {
  test::TempDir tmp;
  const LoadedPlan tensorPlan = compiled("qwen3moe", 2, "", tmp);
  const LoadedPlan expertPlan = compiled("qwen3moe", 2, "--expert-parallel", tmp);
  for (int64_t batch : {1, 8}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    const StepTraffic tensor = trafficOf(tensorPlan.plan(), batch);
    const StepTraffic experts = trafficOf(expertPlan.plan(), batch);
    EXPECT_EQ(experts.linearMacsPerToken, tensor.linearMacsPerToken);
    EXPECT_NEAR(static_cast<double>(experts.weightBytes), static_cast<double>(tensor.weightBytes),
                4.0);  // each layer's expected bytes rounded down apart
    // Batch 1: a tensor-parallel rank touches the token's 2 experts, an expert-parallel one on
    // average 4 x 2 / 8 of its 4.
    if (batch == 1) {
      EXPECT_DOUBLE_EQ(tensor.expertsReadPerLayer, 2.0);
      EXPECT_DOUBLE_EQ(experts.expertsReadPerLayer, 1.0);
    }
  }
}

}  // namespace
}  // namespace tpc
