// The IPC collectives' protocol under the conditions of a real run, with every "rank" in this
// process (IpcSimulatedRanks.h) and the protocol checked as it runs (IpcPeers::verify):
// - long mixed sequences (one-shot sum, fused add + RMSNorm, all-gather, two-shot, of varying
//   rows and widths, so the staging halves and flag slots are reused in every combination)
//   with the ranks skewed by random delays, eagerly and replayed as CUDA Graphs, each call
//   checked against the CPU's rank-order f32 sum;
// - a peer whose kernel needs whole SMs must still reach the collective while this rank's blocks
//   spin for it (a GEMM's shared memory; the engine's two ranks of the Llama-3-8B shape stopped
//   making progress when spinning blocks sat on every SM);
// - verify itself must catch a row read before it was staged.
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/IpcAllReduce.h"
#include "kernels/cuda/IpcTestKernels.h"
#include "tests/kernels_cuda/CudaTestUtil.h"
#include "tests/kernels_cuda/IpcSimulatedRanks.h"

namespace tpc::cuda::test {
namespace {

enum class Kind { kSum, kFused, kGather, kTwoShot };

// One collective of a sequence, with every rank's buffers and the CPU's expected results.
struct Call {
  Kind kind;
  int64_t rows, width;
  std::vector<DeviceBuffer> in, out, sum;  // per rank
  std::vector<DeviceBuffer> norm;          // fused: the residual and the weight
  std::vector<float> want, wantSum;        // out (gather: rows x world x width), fused: the sum
  std::vector<uint64_t> delayNs;           // per rank, before the call
};

int64_t outCount(const Call& c, int world) {
  return c.rows * c.width * (c.kind == Kind::kGather ? world : 1);
}

std::vector<Call> makeSequence(ElementType type, int world, int calls, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t widths[] = {64, 63, 129, 1000};
  std::vector<Call> out;
  for (int i = 0; i < calls; ++i) {
    Call c;
    c.kind = static_cast<Kind>(rng() % 4);
    c.rows = 1 + static_cast<int64_t>(rng() % 80);
    c.width = widths[rng() % 4];
    const int64_t n = c.rows * c.width;
    std::vector<std::vector<float>> partials;
    for (int r = 0; r < world; ++r) {
      partials.push_back(roundTo(type, randomFloats(n, seed * 131 + i * 17 + r, -2.0f, 2.0f)));
      c.in.push_back(upload(type, partials.back()));
      c.out.emplace_back(outCount(c, world) * elementBytes(type));
      c.sum.emplace_back(n * elementBytes(type));
      c.delayNs.push_back(rng() % 2 ? rng() % 30000 : 0);
    }
    if (c.kind == Kind::kGather) {
      c.want.resize(outCount(c, world));
      for (int64_t t = 0; t < c.rows; ++t)
        for (int r = 0; r < world; ++r)
          for (int64_t k = 0; k < c.width; ++k)
            c.want[(t * world + r) * c.width + k] = partials[r][t * c.width + k];
    } else {
      std::vector<float> reduced(n, 0.0f);
      for (int r = 0; r < world; ++r)
        for (int64_t k = 0; k < n; ++k) reduced[k] += partials[r][k];
      c.want = roundTo(type, reduced);
    }
    if (c.kind == Kind::kFused) {
      const std::vector<float> residual = roundTo(type, randomFloats(n, seed + i, -1.0f, 1.0f));
      const std::vector<float> w = roundTo(type, randomFloats(c.width, seed + i + 7, 0.5f, 1.5f));
      c.norm.push_back(upload(type, residual));
      c.norm.push_back(upload(type, w));
      std::vector<float> sum(n), normed(n);
      cpu::addRmsNorm(residual.data(), c.want.data(), w.data(), c.rows, c.width, 1e-6f, sum.data(),
                      normed.data());
      c.wantSum = roundTo(type, sum);
      c.want = normed;
    }
    out.push_back(std::move(c));
  }
  return out;
}

cudaError_t enqueue(ElementType type, const SimulatedRanks& ranks, int r, const Call& c) {
  const cudaStream_t s = ranks.stream(r);
  if (c.delayNs[r])
    if (cudaError_t e = ipcTestDelay(c.delayNs[r], s)) return e;
  const IpcPeers& p = ranks.peers(r);
  switch (c.kind) {
    case Kind::kSum:
      return ipcAllReduce(type, p, c.in[r].get(), c.rows, c.width, c.out[r].get(), s);
    case Kind::kFused:
      return ipcAllReduceAddRmsNorm(type, p, c.in[r].get(), c.norm[0].get(), c.norm[1].get(),
                                    c.rows, c.width, 1e-6f, c.sum[r].get(), c.out[r].get(), s);
    case Kind::kGather:
      return ipcAllGather(type, p, c.in[r].get(), c.rows, c.width, c.out[r].get(), s);
    case Kind::kTwoShot:
      return ipcTwoShotAllReduce(type, p, c.in[r].get(), c.rows * c.width, c.out[r].get(), s);
  }
  return cudaErrorInvalidValue;
}

void clearOutputs(const std::vector<Call>& calls) {
  for (const Call& c : calls)
    for (size_t r = 0; r < c.out.size(); ++r) {
      c.out[r].fill(0xff);  // NaN in every type: a result left unwritten cannot pass
      c.sum[r].fill(0xff);
    }
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the fills run on the legacy stream
}

void checkResults(ElementType type, const SimulatedRanks& ranks, int world,
                  const std::vector<Call>& calls, const std::string& pass) {
  for (int r = 0; r < world; ++r)
    ASSERT_EQ(ranks.error(r), 0u) << pass << ": rank " << r
                                  << " gave up waiting or broke the protocol (0x1xx: a row read "
                                     "before it was staged, 0x2xx: rewritten while read)";
  for (size_t i = 0; i < calls.size(); ++i) {
    const Call& c = calls[i];
    const size_t n = static_cast<size_t>(outCount(c, world));
    std::vector<float> first = download(type, c.out[0], n);
    for (int r = 0; r < world; ++r) {
      SCOPED_TRACE(pass + ": call " + std::to_string(i) + " kind " +
                   std::to_string(static_cast<int>(c.kind)) + " rows " + std::to_string(c.rows) +
                   " width " + std::to_string(c.width) + " rank " + std::to_string(r));
      std::vector<float> got = download(type, c.out[r], n);
      ASSERT_EQ(std::memcmp(got.data(), first.data(), n * sizeof(float)), 0) << "ranks differ";
      if (c.kind == Kind::kFused) {
        ASSERT_EQ(download(type, c.sum[r], c.wantSum.size()), c.wantSum);
        ASSERT_TRUE(allClose(got, toDouble(c.want), storageTolerance(type)));
      } else {
        ASSERT_EQ(got, c.want);
      }
    }
  }
}

TEST(CudaIpcProtocol, MixedCallsUnderSkewMatchCpuOnEveryRankEagerAndReplayed) {
  TPC_REQUIRE_GPU();
  ASSERT_EQ(ipcTestLoadKernels(), cudaSuccess);
  for (ElementType type : {ElementType::F32, ElementType::BF16})
    for (int world : {2, 3, 4, 8}) {
      SCOPED_TRACE(std::string(typeName(type)) + " world " + std::to_string(world));
      SimulatedRanks ranks(world, 5'000'000'000ull, /*verify=*/true);
      const std::vector<Call> calls = makeSequence(type, world, 40, 7 + world);
      clearOutputs(calls);
      // Eager: call by call, rank by rank, as separate processes would enqueue them.
      for (const Call& c : calls)
        for (int r = 0; r < world; ++r) TPC_CUDA_OK(enqueue(type, ranks, r, c));
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      checkResults(type, ranks, world, calls, "eager");
      // The whole sequence captured once per rank, replayed: each replay runs at fresh epochs.
      std::vector<cudaGraphExec_t> graphs(world);
      for (int r = 0; r < world; ++r) {
        cudaGraph_t graph;
        TPC_CUDA_OK(cudaStreamBeginCapture(ranks.stream(r), cudaStreamCaptureModeThreadLocal));
        for (const Call& c : calls) TPC_CUDA_OK(enqueue(type, ranks, r, c));
        TPC_CUDA_OK(cudaStreamEndCapture(ranks.stream(r), &graph));
        TPC_CUDA_OK(cudaGraphInstantiate(&graphs[r], graph, 0));
        TPC_CUDA_OK(cudaGraphDestroy(graph));
      }
      for (int replay = 0; replay < 3; ++replay) {
        clearOutputs(calls);
        for (int r = 0; r < world; ++r) TPC_CUDA_OK(cudaGraphLaunch(graphs[r], ranks.stream(r)));
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        checkResults(type, ranks, world, calls, "replay " + std::to_string(replay));
      }
      for (cudaGraphExec_t g : graphs) cudaGraphExecDestroy(g);
    }
}

// Rank 0's all-reduce is spinning for rank 1 before rank 1 runs a kernel whose every block takes
// a whole SM. Rank 0's blocks must leave it SMs to run on, or rank 1 never arrives.
TEST(CudaIpcProtocol, PeerKernelNeedingWholeSmsStillReachesTheCollective) {
  TPC_REQUIRE_GPU();
  ASSERT_EQ(ipcTestLoadKernels(), cudaSuccess);
  int device = 0, sms = 0;
  TPC_CUDA_OK(cudaGetDevice(&device));
  TPC_CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  for (int world : {2, 8}) {
    SCOPED_TRACE("world " + std::to_string(world));
    SimulatedRanks ranks(world, 3'000'000'000ull, /*verify=*/true);
    const int64_t rows = 4 * sms, width = 64;  // more rows than SMs: one block per row would
                                               // put a spinning block on every SM
    std::vector<DeviceBuffer> in, out;
    std::vector<float> want(rows * width, 0.0f);
    for (int r = 0; r < world; ++r) {
      const std::vector<float> values = randomFloats(rows * width, 40 + r, -1.0f, 1.0f);
      for (size_t i = 0; i < values.size(); ++i) want[i] += values[i];
      in.push_back(upload(ElementType::F32, values));
      out.emplace_back(rows * width * 4);
    }
    TPC_CUDA_OK(ipcAllReduce(ElementType::F32, ranks.peers(0), in[0].get(), rows, width,
                             out[0].get(), ranks.stream(0)));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // rank 0 is spinning by now
    for (int r = 1; r < world; ++r) {
      TPC_CUDA_OK(ipcTestWholeSmBlocks(3 * sms, 50'000, ranks.stream(r)));
      TPC_CUDA_OK(ipcAllReduce(ElementType::F32, ranks.peers(r), in[r].get(), rows, width,
                               out[r].get(), ranks.stream(r)));
    }
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(ranks.error(r), 0u) << "rank " << r << " gave up waiting";
      EXPECT_EQ(download(ElementType::F32, out[r], rows * width), want) << "rank " << r;
    }
  }
}

// Verify must be able to fail: a flag claiming that rank 1 staged epoch 1 lets rank 0 through
// before rank 1 has staged anything, and the tag check names rank 1.
TEST(CudaIpcProtocol, VerifyCatchesARowReadBeforeItWasStaged) {
  TPC_REQUIRE_GPU();
  SimulatedRanks ranks(2, 1'000'000'000ull, /*verify=*/true);
  const uint32_t lie = 1;  // flags[0][slot 0, from rank 1]
  TPC_CUDA_OK(cudaMemcpy(ranks.peers(0).flags[0] + 1, &lie, sizeof lie, cudaMemcpyHostToDevice));
  DeviceBuffer in(64 * 4), out(64 * 4);
  in.fill(0);
  TPC_CUDA_OK(cudaDeviceSynchronize());
  TPC_CUDA_OK(
      ipcAllReduce(ElementType::F32, ranks.peers(0), in.get(), 1, 64, out.get(), ranks.stream(0)));
  TPC_CUDA_OK(cudaStreamSynchronize(ranks.stream(0)));
  EXPECT_EQ(ranks.error(0), kIpcStaleRow + 1);
}

}  // namespace
}  // namespace tpc::cuda::test
