// Where the ranks of one host run a plan: a device map's stages each on their own device (CPU
// and CUDA backends in one plan), the error when a stage names a GPU the host lacks, the host
// communicator every staged plan uses, and the no-NCCL decision for a checkpoint folder, all
// with the GPUs' count and memory given, so they run without a GPU.
#include "executor/process/StageDevices.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "codegen/Lowering.h"
#include "executor/process/LocalComm.h"
#include "executor/process/NoNcclDeviceMap.h"
#include "passes/Pass.h"
#include "tests/support/Fixtures.h"

namespace tpc {
namespace {

std::string placed(const StageLayout& layout, const std::string& kind, int gpus) {
  Expected<std::vector<RankDevice>> ranks = placeLocalRanks(layout, kind, -1, gpus);
  if (!ranks) return "error: " + ranks.errorMessage();
  std::string out;
  for (const RankDevice& r : *ranks)
    out += (out.empty() ? "" : " ") +
           (r.kind == "cpu" ? std::string("cpu") : "cuda" + std::to_string(r.device));
  return out;
}

// A two-stage device map of the tiny preset, compiled as tpc compile --device-map does.
Expected<LoadedPlan> deviceMapPlan(const std::string& devices) {
  Graph g = test::buildSpecGraph(test::presetSpec(Family::Llama));
  g.attrs.setString("stage_devices", devices);
  if (Error e = runPipeline(g, PassOptions{2, {}, true, 2, {}})) return e;
  return test::lowerPassedGraph(g, "mapped.fb");
}

TEST(StageDevices, TheDeviceMapPutsEachStageOnItsDeviceWhateverTheBackendAsked) {
  const StageLayout mixed{2, 2, {"cuda:0", "cpu"}};
  EXPECT_EQ(placed(mixed, "cpu", 1), "cuda0 cpu");
  EXPECT_EQ(placed(mixed, "cuda", 4), "cuda0 cpu");
  EXPECT_EQ(placed({3, 3, {"cuda:1", "cuda:0", "cpu"}}, "cuda", 2), "cuda1 cuda0 cpu");
  // Every stage on one GPU, or on several.
  EXPECT_EQ(placed({2, 2, {"cuda:0", "cuda:0"}}, "cuda", 1), "cuda0 cuda0");
  EXPECT_EQ(placed({2, 2, {"cpu", "cpu"}}, "cpu", 0), "cpu cpu");
  // Without a device map every rank runs the backend asked for.
  EXPECT_EQ(placed({4, 1, {}}, "cuda", 2), "cuda0 cuda1 cuda0 cuda1");
  EXPECT_EQ(placed({4, 2, {}}, "cpu", 0), "cpu cpu cpu cpu");
  EXPECT_EQ(placed({2, 2, {}}, "cuda", 1), "cuda0 cuda0");
}

TEST(StageDevices, AStageOnAMissingGpuIsOneLineNamingIt) {
  EXPECT_EQ(placed({2, 2, {"cuda:0", "cpu"}}, "cpu", 0),
            "error: the plan places stage 0 on cuda:0 but this host has no GPU the CUDA backend "
            "can use (recompile the device map for this host)");
  EXPECT_EQ(placed({2, 2, {"cuda:0", "cuda:1"}}, "cuda", 1),
            "error: the plan places stage 1 on cuda:1 but this host has 1 visible GPU(s) "
            "(recompile the device map for this host)");
  EXPECT_NE(placed({2, 2, {"tpu:0", "cpu"}}, "cpu", 1).find("unknown device 'tpu:0'"),
            std::string::npos);
  EXPECT_NE(placed({2, 2, {"cpu"}}, "cpu", 0).find("names 1 devices for its 2 stages"),
            std::string::npos);
  // Tensor parallelism inside a GPU stage is not run yet: one error, not a wrong run.
  EXPECT_NE(placed({4, 2, {}}, "cuda", 4).find("pipeline stages of one rank each"),
            std::string::npos);
}

TEST(StageDevices, StagedPlansTalkThroughHostMemory) {
  EXPECT_EQ(*chooseStagedCommunicator("auto"), "shm");
  EXPECT_EQ(*chooseStagedCommunicator("gloo"), "gloo");
  Expected<std::string> nccl = chooseStagedCommunicator("nccl");
  ASSERT_FALSE(nccl);
  EXPECT_NE(nccl.errorMessage().find("host memory (shm or gloo)"), std::string::npos);
  // Without NCCL a CUDA run takes the one-node communicator, one rank the local one.
  EXPECT_EQ(*chooseLocalCommunicator("cuda", "auto", 4, 4, true), "ipc");
  EXPECT_EQ(*chooseLocalCommunicator("cuda", "auto", 1, 1, true), "local");
  EXPECT_FALSE(chooseLocalCommunicator("cuda", "nccl", 2, 2, true));
  EXPECT_EQ(backendsLabel({{"cuda", 0}, {"cpu", -1}, {"cpu", -1}}), "cuda+cpu");
  EXPECT_EQ(backendsLabel({{"cpu", -1}, {"cpu", -1}}), "cpu");
}

TEST(StageDevices, ThePlanRecordsEveryStagesDevice) {
  Expected<LoadedPlan> plan = deviceMapPlan("cuda:0,cpu");
  ASSERT_TRUE(plan) << plan.errorMessage();
  StageLayout layout = stageLayoutOf(plan->plan());
  EXPECT_EQ(layout.world, 2);
  EXPECT_EQ(layout.pp, 2);
  EXPECT_EQ(layout.stageDevices, (std::vector<std::string>{"cuda:0", "cpu"}));
  EXPECT_TRUE(mayUseGpus(layout, "cpu"));
  EXPECT_FALSE(mayUseGpus({2, 2, {"cpu", "cpu"}}, "cpu"));
  const std::string line = deviceMapLine(plan->plan());
  EXPECT_EQ(line.rfind("no NCCL: a device map instead of tensor parallelism: cuda:0 layers 0..", 0),
            0u)
      << line;
  EXPECT_NE(line.find(", cpu layers "), std::string::npos) << line;
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 0);
}

TEST(NoNcclDeviceMap, AFolderGetsADeviceMapOverTheGpusOnlyWithoutNccl) {
  const uint64_t GiB = uint64_t{1} << 30;
  // NCCL on: tensor parallelism as always.
  EXPECT_FALSE(placeFolder(false, {80 * GiB, 80 * GiB}, 200 * GiB, 0.9).deviceMap);
  // No GPU: CPU ranks never use NCCL, nothing changes.
  EXPECT_FALSE(placeFolder(true, {}, 200 * GiB, 0.9).deviceMap);
  // Several GPUs: each at its free memory times the utilization, then 90% of the host's.
  FolderPlacement two = placeFolder(true, {10 * GiB, 20 * GiB}, 100 * GiB, 0.5);
  EXPECT_TRUE(two.deviceMap);
  EXPECT_EQ(two.deviceMemory, "cuda:0=5120MiB,cuda:1=10240MiB,cpu=92160MiB");
  FolderPlacement one = placeFolder(true, {8 * GiB}, 0, 1.0);
  EXPECT_EQ(one.deviceMemory, "cuda:0=8192MiB,cpu=1MiB");
}

}  // namespace
}  // namespace tpc
