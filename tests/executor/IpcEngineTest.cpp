// The engine's CUDA local run with more ranks than GPUs: the ranks share a GPU (on one GPU, all
// of them; run under the MPS daemon), so the run must pick the one-node IPC communicator, which
// NCCL's refusal of two ranks on one GPU leaves as the only way. Greedy outputs and logits must
// match the same requests on the CPU backend at world 1 (the reference: this process must not
// touch CUDA before the ranks are forked). Skipped without a GPU.
#include <gtest/gtest.h>

#include "executor/engine/EngineRun.h"
#include "tests/executor/EngineTestUtil.h"
#include "tests/support/Fixtures.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

std::vector<EngineRequest> greedyRequests(int64_t vocab) {
  std::vector<EngineRequest> out;
  for (int i = 0; i < 6; ++i) {
    EngineRequest r;
    for (int j = 0; j < 2 + 3 * i; ++j)
      r.promptIds.push_back(static_cast<int32_t>((i * 37 + j * 11 + 5) % vocab));
    r.maxTokens = 4;
    r.ignoreEos = true;
    r.returnLogits = true;
    out.push_back(std::move(r));
  }
  return out;
}

TEST(IpcEngine, RanksSharingAGpuMatchWorldOne) {
  if (!haveCudaBackend() || cudaDeviceCount() == 0) GTEST_SKIP() << "skipped: no GPU";
  const std::string model = test::dataDir() + "/hf/llama-gqa-llama3rope";
  std::vector<test::Outcome> reference;
  for (const char* backend : {"cpu", "cuda"}) {
    const int world = std::string(backend) == "cpu" ? 1 : 2 * cudaDeviceCount();
    SCOPED_TRACE(std::string(backend) + " world " + std::to_string(world));
    Expected<LoadedPlan> plan = test::compileModelDir(model, world, DType::F32);
    ASSERT_TRUE(plan) << plan.errorMessage();
    EngineRunOptions o;
    o.backend.kind = backend;
    o.engine.gpuMemoryUtilization = 0.05;  // a small pool: the test needs a few blocks
    Error e = runEngineLocally(*plan, o, [&](Engine& engine) -> Error {
      Expected<std::vector<test::Outcome>> got =
          test::runTogether(engine, greedyRequests(engine.vocabSize()));
      if (!got) return got.takeError();
      if (reference.empty()) {
        reference = std::move(*got);
        return Error::success();
      }
      // f32 on the GPU, sharded and summed in another order: within 1e-4, as the golden tests.
      return test::sameOutcomes(*got, reference, 1e-4, "cuda ranks sharing a GPU vs cpu world 1");
    });
    ASSERT_FALSE(e) << e.message();
  }
}

// NCCL cannot put two ranks on one GPU: asking for it says so instead of failing inside NCCL.
TEST(IpcEngine, NcclForRanksSharingAGpuIsRefusedByName) {
  if (!haveCudaBackend() || cudaDeviceCount() == 0) GTEST_SKIP() << "skipped: no GPU";
  Expected<LoadedPlan> plan = test::compileModelDir(test::dataDir() + "/hf/llama-gqa-llama3rope",
                                                    2 * cudaDeviceCount(), DType::F32);
  ASSERT_TRUE(plan) << plan.errorMessage();
  EngineRunOptions o;
  o.backend.kind = "cuda";
  o.comm = "nccl";
  Error e = runEngineLocally(*plan, o, [](Engine&) -> Error { return Error::success(); });
  ASSERT_TRUE(e);
  EXPECT_NE(e.message().find("NCCL refuses"), std::string::npos) << e.message();
}

}  // namespace
}  // namespace tpc
