// The one-node CUDA communicator across real processes: two ranks forked on GPU 0 (ranks sharing
// a GPU, which NCCL refuses), handles exchanged over shared memory, one device all-reduce and one
// fused all-reduce + add + RMSNorm, checked bit for bit against the rank-order sum computed on the
// host. The ranks probe the GPU themselves (the parent must not touch CUDA before forking), so
// without one the test skips. Built only with the CUDA backend.
#ifdef TPC_HAVE_CUDA
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "executor/comm/ShmCommunicator.h"
#include "executor/cuda/IpcCommunicator.h"
#include "tests/executor/CommTestUtil.h"

namespace tpc {
namespace {

using std::chrono::milliseconds;
constexpr char kNoGpu[] = "no GPU visible";

float partial(int rank, int64_t i) { return std::sin(0.37f * i + rank) * (rank + 1); }

int allReduceRank(int rank, RankContext& ctx, std::shared_ptr<ShmSegment> segment, bool peerDies) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return ctx.fail(kNoGpu);
  auto host = createShmCommunicator(rank, segment);
  if (!host) return ctx.fail(host.errorMessage());
  auto comm = IpcCommunicator::create(std::move(*host), 0, milliseconds(1000));
  if (!comm) return ctx.fail(comm.errorMessage());
  if (peerDies && rank == 1) _exit(0);
  constexpr int64_t kWidth = 1024;
  std::vector<float> in(kWidth), want(kWidth, 0.0f), out(kWidth);
  for (int64_t i = 0; i < kWidth; ++i) in[i] = partial(rank, i);
  for (int r = 0; r < 2; ++r)
    for (int64_t i = 0; i < kWidth; ++i) want[i] += partial(r, i);
  void *dIn = nullptr, *dOut = nullptr;
  cudaStream_t stream = nullptr;
  if (cudaMalloc(&dIn, kWidth * 4) != cudaSuccess || cudaMalloc(&dOut, kWidth * 4) != cudaSuccess ||
      cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess ||
      cudaMemcpy(dIn, in.data(), kWidth * 4, cudaMemcpyHostToDevice) != cudaSuccess)
    return ctx.fail("device set-up failed");
  for (int call = 0; call < 3; ++call) {
    ctx.heartbeat();
    if (Error e = (*comm)->allReduceDevice(cuda::ElementType::F32, dIn, 1, kWidth, dOut, stream))
      return ctx.fail(e.message());
    if (Error e = (*comm)->waitFor(stream, "all-reduce")) return ctx.fail(e.message());
    if (cudaMemcpy(out.data(), dOut, kWidth * 4, cudaMemcpyDeviceToHost) != cudaSuccess)
      return ctx.fail("download failed");
    for (int64_t i = 0; i < kWidth; ++i)
      if (out[i] != want[i])
        return ctx.fail("element " + std::to_string(i) + " is " + std::to_string(out[i]) +
                        ", expected " + std::to_string(want[i]));
  }
  return 0;
}

std::optional<RankFailure> runWorldOfTwo(bool peerDies, double* took) {
  auto segment = ShmSegment::create(2);
  EXPECT_TRUE(segment);
  auto start = std::chrono::steady_clock::now();
  ProcessGroupResult result = runLocalRanksDetailed(
      2, [&](int rank, RankContext& ctx) { return allReduceRank(rank, ctx, *segment, peerDies); });
  *took = test::secondsSince(start);
  return result.failure;
}

TEST(IpcCommunicator, TwoProcessesOnOneGpuReduceBitwiseInRankOrder) {
  double took = 0;
  std::optional<RankFailure> failure = runWorldOfTwo(false, &took);
  if (failure && failure->message.find(kNoGpu) != std::string::npos)
    GTEST_SKIP() << "skipped: no GPU";
  EXPECT_FALSE(failure) << failure->message;
}

TEST(IpcCommunicator, APeerThatLeavesIsNamedWithinTheTimeout) {
  double took = 0;
  std::optional<RankFailure> failure = runWorldOfTwo(true, &took);
  if (failure && failure->message.find(kNoGpu) != std::string::npos)
    GTEST_SKIP() << "skipped: no GPU";
  ASSERT_TRUE(failure);
  EXPECT_NE(failure->message.find("rank 0: all-reduce failed (peer rank 1)"), std::string::npos)
      << failure->message;
  EXPECT_LT(took, 5.0);
}

}  // namespace
}  // namespace tpc
#endif  // TPC_HAVE_CUDA
