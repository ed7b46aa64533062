// The one-shot IPC collectives with every "rank" in this process: each rank's kernel runs on its
// own stream and reads the other ranks' buffers through plain device pointers (what
// cudaIpcOpenMemHandle gives across processes). Checked against the CPU twin: the rank-order f32
// sum rounded to the storage type, then cpu::addRmsNorm. The stored sums must match it bit for
// bit, and every rank must get the same bits.
#include <cstring>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/IpcAllReduce.h"
#include "tests/kernels_cuda/CudaTestUtil.h"
#include "tests/kernels_cuda/IpcSimulatedRanks.h"

namespace tpc::cuda::test {
namespace {

struct Case {
  int world;
  int64_t rows, width;
};
const Case kCases[] = {{2, 1, 4096}, {4, 3, 129}, {8, 1, 8192}, {8, 37, 1000}, {2, 256, 64}};

std::vector<float> partialOf(ElementType type, int rank, int64_t n) {
  return roundTo(type, randomFloats(n, 100 + rank, -2.0f, 2.0f));
}

// The CPU twin: reduce in rank order in f32, round, then add the residual and normalise.
void reference(ElementType type, const Case& c, const std::vector<std::vector<float>>& partials,
               const std::vector<float>& residual, const std::vector<float>& w,
               std::vector<float>& sum, std::vector<float>& normed) {
  const size_t n = static_cast<size_t>(c.rows * c.width);
  std::vector<float> reduced(n, 0.0f);
  for (int r = 0; r < c.world; ++r)
    for (size_t i = 0; i < n; ++i) reduced[i] += partials[r][i];
  reduced = roundTo(type, reduced);
  sum.assign(n, 0.0f);
  normed.assign(n, 0.0f);
  cpu::addRmsNorm(residual.data(), reduced.data(), w.data(), c.rows, c.width, 1e-6f, sum.data(),
                  normed.data());
  sum = roundTo(type, sum);
}

TEST(CudaIpcAllReduce, FusedAddRmsNormMatchesCpuTwinOnEveryRank) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (const Case& c : kCases) {
      SCOPED_TRACE(std::string(typeName(type)) + " world " + std::to_string(c.world) + " rows " +
                   std::to_string(c.rows) + " width " + std::to_string(c.width));
      const int64_t n = c.rows * c.width;
      SimulatedRanks ranks(c.world);
      std::vector<std::vector<float>> partials;
      std::vector<DeviceBuffer> dPartial, dSum, dOut;
      for (int r = 0; r < c.world; ++r) {
        partials.push_back(partialOf(type, r, n));
        dPartial.push_back(upload(type, partials.back()));
        dSum.emplace_back(n * elementBytes(type));
        dOut.emplace_back(n * elementBytes(type));
      }
      const std::vector<float> residual = roundTo(type, randomFloats(n, 7, -1.0f, 1.0f));
      const std::vector<float> w = roundTo(type, randomFloats(c.width, 8, 0.5f, 1.5f));
      DeviceBuffer dResidual = upload(type, residual), dW = upload(type, w);
      std::vector<float> sum, normed;
      reference(type, c, partials, residual, w, sum, normed);
      // Twice: the second call runs at the next epoch, in the other half of the staging.
      for (int call = 0; call < 2; ++call) {
        for (int r = 0; r < c.world; ++r)
          TPC_CUDA_OK(ipcAllReduceAddRmsNorm(type, ranks.peers(r), dPartial[r].get(),
                                             dResidual.get(), dW.get(), c.rows, c.width, 1e-6f,
                                             dSum[r].get(), dOut[r].get(), ranks.stream(r)));
        TPC_CUDA_OK(cudaDeviceSynchronize());
        std::vector<float> first = download(type, dOut[0], n);
        for (int r = 0; r < c.world; ++r) {
          EXPECT_EQ(ranks.error(r), 0u);
          EXPECT_EQ(download(type, dSum[r], n), sum) << "rank " << r << ": stored sum";
          std::vector<float> out = download(type, dOut[r], n);
          EXPECT_EQ(std::memcmp(out.data(), first.data(), n * sizeof(float)), 0)
              << "rank " << r << " differs from rank 0";
          EXPECT_TRUE(allClose(out, toDouble(normed), storageTolerance(type)));
        }
      }
    }
}

TEST(CudaIpcAllReduce, PlainReduceAndGatherMatchCpu) {
  TPC_REQUIRE_GPU();
  const ElementType type = ElementType::F32;
  const Case c{4, 5, 300};
  const int64_t n = c.rows * c.width;
  SimulatedRanks ranks(c.world);
  std::vector<std::vector<float>> partials;
  std::vector<DeviceBuffer> dIn, dOut, dGathered;
  for (int r = 0; r < c.world; ++r) {
    partials.push_back(partialOf(type, r, n));
    dIn.push_back(upload(type, partials.back()));
    dOut.emplace_back(n * 4);
    dGathered.emplace_back(n * c.world * 4);
  }
  for (int r = 0; r < c.world; ++r) {
    TPC_CUDA_OK(ipcAllReduce(type, ranks.peers(r), dIn[r].get(), c.rows, c.width, dOut[r].get(),
                             ranks.stream(r)));
    TPC_CUDA_OK(ipcAllGather(type, ranks.peers(r), dIn[r].get(), c.rows, c.width,
                             dGathered[r].get(), ranks.stream(r)));
  }
  TPC_CUDA_OK(cudaDeviceSynchronize());
  std::vector<float> reduced(n, 0.0f), gathered(n * c.world);
  for (int r = 0; r < c.world; ++r)
    for (int64_t i = 0; i < n; ++i) reduced[i] += partials[r][i];
  for (int64_t t = 0; t < c.rows; ++t)
    for (int r = 0; r < c.world; ++r)
      for (int64_t i = 0; i < c.width; ++i)
        gathered[(t * c.world + r) * c.width + i] = partials[r][t * c.width + i];
  for (int r = 0; r < c.world; ++r) {
    EXPECT_EQ(ranks.error(r), 0u) << "rank " << r << " gave up waiting";
    EXPECT_EQ(download(type, dOut[r], n), reduced) << "rank " << r;
    EXPECT_EQ(download(type, dGathered[r], n * c.world), gathered) << "rank " << r;
  }
}

// Two-shot against the CPU's rank-order f32 sum rounded to the storage type, bit for bit on every
// rank, twice (the second call's epochs use the staging halves the other way round), then a
// one-shot call behind it on the same streams: the epochs and halves of the two algorithms mix.
TEST(CudaIpcAllReduce, TwoShotMatchesCpuSumBitwiseOnEveryRank) {
  TPC_REQUIRE_GPU();
  struct Sized {
    int world;
    int64_t count;
  };
  for (ElementType type : {ElementType::F32, ElementType::BF16})
    for (Sized c :
         {Sized{2, 4096}, Sized{4, 100003}, Sized{8, 262144}, Sized{8, 5}, Sized{3, 77}}) {
      SCOPED_TRACE(std::string(typeName(type)) + " world " + std::to_string(c.world) + " count " +
                   std::to_string(c.count));
      SimulatedRanks ranks(c.world);
      const int64_t width = 64, rows = 2;
      std::vector<std::vector<float>> partials, rowPartials;
      std::vector<DeviceBuffer> dIn, dOut, dRowsIn, dRowsOut;
      std::vector<float> want(static_cast<size_t>(c.count), 0.0f), wantRows(rows * width, 0.0f);
      for (int r = 0; r < c.world; ++r) {
        partials.push_back(partialOf(type, r, c.count));
        rowPartials.push_back(partialOf(type, 50 + r, rows * width));
        for (int64_t i = 0; i < c.count; ++i) want[i] += partials[r][i];
        for (int64_t i = 0; i < rows * width; ++i) wantRows[i] += rowPartials[r][i];
        dIn.push_back(upload(type, partials.back()));
        dRowsIn.push_back(upload(type, rowPartials.back()));
        dOut.emplace_back(c.count * elementBytes(type));
        dRowsOut.emplace_back(rows * width * elementBytes(type));
      }
      want = roundTo(type, want);
      wantRows = roundTo(type, wantRows);
      for (int call = 0; call < 2; ++call) {
        for (int r = 0; r < c.world; ++r) dOut[r].fill(0);
        TPC_CUDA_OK(cudaDeviceSynchronize());  // the fill runs on the legacy stream
        for (int r = 0; r < c.world; ++r) {
          TPC_CUDA_OK(ipcTwoShotAllReduce(type, ranks.peers(r), dIn[r].get(), c.count,
                                          dOut[r].get(), ranks.stream(r)));
          TPC_CUDA_OK(ipcAllReduce(type, ranks.peers(r), dRowsIn[r].get(), rows, width,
                                   dRowsOut[r].get(), ranks.stream(r)));
        }
        TPC_CUDA_OK(cudaDeviceSynchronize());
        for (int r = 0; r < c.world; ++r) {
          EXPECT_EQ(ranks.error(r), 0u) << "rank " << r << " gave up waiting";
          EXPECT_EQ(download(type, dOut[r], c.count), want) << "call " << call << " rank " << r;
          EXPECT_EQ(download(type, dRowsOut[r], rows * width), wantRows)
              << "call " << call << " rank " << r << ": the one-shot call behind it";
        }
      }
    }
}

// A graph captured once replays with fresh epochs: new inputs give new, correct sums each time.
TEST(CudaIpcAllReduce, GraphReplayAdvancesTheEpochItself) {
  TPC_REQUIRE_GPU();
  const ElementType type = ElementType::F32;
  const int world = 2;
  const int64_t width = 512;
  SimulatedRanks ranks(world);
  std::vector<DeviceBuffer> dIn, dOut;
  std::vector<cudaGraphExec_t> graphs(world);
  for (int r = 0; r < world; ++r) {
    dIn.emplace_back(width * 4);
    dOut.emplace_back(width * 4);
    cudaGraph_t graph;
    TPC_CUDA_OK(cudaStreamBeginCapture(ranks.stream(r), cudaStreamCaptureModeThreadLocal));
    TPC_CUDA_OK(
        ipcAllReduce(type, ranks.peers(r), dIn[r].get(), 1, width, dOut[r].get(), ranks.stream(r)));
    TPC_CUDA_OK(cudaStreamEndCapture(ranks.stream(r), &graph));
    TPC_CUDA_OK(cudaGraphInstantiate(&graphs[r], graph, 0));
    TPC_CUDA_OK(cudaGraphDestroy(graph));
  }
  for (int replay = 0; replay < 5; ++replay) {
    std::vector<float> want(width, 0.0f);
    for (int r = 0; r < world; ++r) {
      std::vector<float> in = randomFloats(width, 1000 * replay + r, -1.0f, 1.0f);
      for (int64_t i = 0; i < width; ++i) want[i] += in[i];
      TPC_CUDA_OK(cudaMemcpy(dIn[r].get(), in.data(), width * 4, cudaMemcpyHostToDevice));
    }
    for (int r = 0; r < world; ++r) TPC_CUDA_OK(cudaGraphLaunch(graphs[r], ranks.stream(r)));
    TPC_CUDA_OK(cudaDeviceSynchronize());
    for (int r = 0; r < world; ++r)
      EXPECT_EQ(download(type, dOut[r], width), want) << "replay " << replay << " rank " << r;
  }
  for (cudaGraphExec_t g : graphs) cudaGraphExecDestroy(g);
}

// A peer that never comes: the wait gives up after its timeout and names the peer.
TEST(CudaIpcAllReduce, MissingPeerTimesOutAndIsNamed) {
  TPC_REQUIRE_GPU();
  SimulatedRanks ranks(2, 50'000'000ull);
  DeviceBuffer dIn(64 * 4), dOut(64 * 4);
  TPC_CUDA_OK(ipcAllReduce(ElementType::F32, ranks.peers(0), dIn.get(), 1, 64, dOut.get(),
                           ranks.stream(0)));
  TPC_CUDA_OK(cudaStreamSynchronize(ranks.stream(0)));
  EXPECT_EQ(ranks.error(0), 2u) << "1 + the rank that never arrived";
}

}  // namespace
}  // namespace tpc::cuda::test
