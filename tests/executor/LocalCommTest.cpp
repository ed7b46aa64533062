// Which communicator the ranks of one host use, shared by the plain and the engine's local runs:
// checked against what NCCL allows (one rank per GPU) and the CUDA backend's GPU of a rank.
#include "executor/process/LocalComm.h"

#include <gtest/gtest.h>

namespace tpc {
namespace {

std::string chosen(const std::string& backend, const std::string& requested, int world, int gpus) {
  Expected<std::string> c = chooseLocalCommunicator(backend, requested, world, gpus);
  return c ? *c : "error: " + c.errorMessage();
}

TEST(LocalComm, RanksSharingAGpuGetIpcAndNcclOnlyWithAGpuEach) {
  EXPECT_EQ(chosen("cuda", "auto", 2, 1), "ipc");
  EXPECT_EQ(chosen("cuda", "auto", 8, 4), "ipc");
  EXPECT_EQ(chosen("cuda", "auto", 4, 4), "nccl");
  EXPECT_EQ(chosen("cuda", "ipc", 2, 8), "ipc");
  EXPECT_EQ(chosen("cuda", "auto", 1, 1), "nccl");
  EXPECT_NE(chosen("cuda", "nccl", 2, 1).find("which NCCL refuses; use --comm ipc"),
            std::string::npos);
  EXPECT_NE(chosen("cuda", "shm", 2, 2).find("nccl or ipc"), std::string::npos);
  EXPECT_EQ(chosen("cpu", "auto", 2, 0), "shm");
  EXPECT_EQ(chosen("cpu", "auto", 1, 0), "local");
  EXPECT_NE(chosen("cpu", "ipc", 2, 0).find("shm or gloo"), std::string::npos);
}

TEST(LocalComm, RankDeviceIsTheRequestedOneOrRankModGpus) {
  EXPECT_EQ(localRankDevice(-1, 5, 4), 1);
  EXPECT_EQ(localRankDevice(-1, 3, 1), 0);
  EXPECT_EQ(localRankDevice(2, 5, 4), 2);
}

}  // namespace
}  // namespace tpc
