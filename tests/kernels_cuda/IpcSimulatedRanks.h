// World "ranks" of the IPC collectives in this one process: each rank's kernel runs on its own
// stream and reads the other ranks' buffers through plain device pointers (what
// cudaIpcOpenMemHandle gives across processes), wired together as IpcCommunicator does.
#pragma once

#include <cstring>
#include <vector>

#include "kernels/cuda/IpcAllReduce.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {

constexpr int64_t kHalfBytes = int64_t{1} << 20;

// World ranks' buffers, flags, epochs and host words; `verify` as IpcPeers::verify.
class SimulatedRanks {
 public:
  explicit SimulatedRanks(int world, uint64_t timeoutNs = 5'000'000'000ull, bool verify = false)
      : world_(world) {
    // The ranks' kernels wait for each other across streams of this one context, where a lazy
    // load of a kernel would wait for them all (IpcCommunicator loads them the same way).
    EXPECT_EQ(ipcLoadKernels(), cudaSuccess);
    const size_t bytes = 2 * kHalfBytes + ipcFlagBytes();
    buffers_.resize(world);
    epochs_.resize(world);
    streams_.resize(world);
    EXPECT_EQ(cudaHostAlloc(reinterpret_cast<void**>(&host_), 2 * world * sizeof(uint32_t),
                            cudaHostAllocMapped),
              cudaSuccess);
    std::memset(host_, 0, 2 * world * sizeof(uint32_t));
    uint32_t* deviceHost = nullptr;
    EXPECT_EQ(cudaHostGetDevicePointer(reinterpret_cast<void**>(&deviceHost), host_, 0),
              cudaSuccess);
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(cudaMalloc(&buffers_[r], bytes), cudaSuccess);
      EXPECT_EQ(cudaMemset(buffers_[r], 0, bytes), cudaSuccess);
      EXPECT_EQ(cudaMalloc(&epochs_[r], 8), cudaSuccess);
      EXPECT_EQ(cudaMemset(epochs_[r], 0, 8), cudaSuccess);
      EXPECT_EQ(cudaStreamCreateWithFlags(&streams_[r], cudaStreamNonBlocking), cudaSuccess);
    }
    peers_.resize(world);
    for (int r = 0; r < world; ++r) {
      IpcPeers& p = peers_[r];
      p.rank = r;
      p.world = world;
      p.halfBytes = kHalfBytes;
      p.timeoutNs = timeoutNs;
      p.verify = verify ? 1 : 0;
      p.epoch = static_cast<uint32_t*>(epochs_[r]);
      p.error = deviceHost + 2 * r;
      p.abort = deviceHost + 2 * r + 1;
      for (int q = 0; q < world; ++q) {
        p.staging[q] = buffers_[q];
        p.flags[q] = reinterpret_cast<uint32_t*>(static_cast<char*>(buffers_[q]) + 2 * kHalfBytes);
      }
    }
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  ~SimulatedRanks() {
    for (int r = 0; r < world_; ++r) {
      cudaStreamDestroy(streams_[r]);
      cudaFree(buffers_[r]);
      cudaFree(epochs_[r]);
    }
    cudaFreeHost(host_);
  }
  const IpcPeers& peers(int r) const { return peers_[r]; }
  cudaStream_t stream(int r) const { return streams_[r]; }
  uint32_t error(int r) const { return reinterpret_cast<volatile uint32_t*>(host_)[2 * r]; }

 private:
  int world_;
  std::vector<void*> buffers_, epochs_;
  std::vector<cudaStream_t> streams_;
  std::vector<IpcPeers> peers_;
  uint32_t* host_ = nullptr;
};

}  // namespace tpc::cuda::test
