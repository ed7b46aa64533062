// The one-node CUDA communicator: every rank's staging buffer is one plain cudaMalloc
// allocation, registered once with cudaIpcGetMemHandle; the handles travel over the host's
// communicator (shared memory), which also carries the host-value collectives. Device collectives
// are the kernels of kernels/cuda/IpcAllReduce, capturable into CUDA Graphs: one-shot for decode
// sizes, two-shot (reduce-scatter then all-gather) for all-reduces of `twoShotBytes` or more,
// where every rank reading every peer's whole input costs more than the second barrier. Ranks may
// share a GPU (NCCL refuses them); on one GPU they then need the MPS daemon to run concurrently,
// otherwise their contexts time-slice and every exchange waits a time slice.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "executor/comm/Communicator.h"
#include "kernels/cuda/IpcAllReduce.h"

namespace tpc {

class IpcCommunicator : public Communicator {
 public:
  // `host` carries the handle exchange and the host collectives; `device` is this rank's GPU.
  // `halfBytes` of staging per epoch parity bound the rows of one kernel call.
  static Expected<std::unique_ptr<IpcCommunicator>> create(
      std::unique_ptr<Communicator> host, int device, std::chrono::milliseconds timeout,
      size_t halfBytes = size_t{8} << 20, std::optional<size_t> twoShotBytes = std::nullopt);
  // Where two-shot starts by default. On one H200 with every rank on it (tpc_ipc_bench), two-shot
  // was slower than one-shot at every size from 8 KB to 4 MB at worlds 2 and 4, and faster only
  // from 1 MB at world 8 (418 us against 465 us; both with one block per row, before the block
  // cap of IpcAllReduce.h): the ranks share one memory, so reading a world-th of each peer saves
  // less than the second barrier costs until world is large.
  static size_t defaultTwoShotBytes(int world) {
    return world >= 8 ? size_t{1} << 20 : std::numeric_limits<size_t>::max();
  }
  ~IpcCommunicator() override;

  int rank() const override { return host_->rank(); }
  int world() const override { return host_->world(); }
  Error allReduceSum(float* data, size_t count) override;
  Error allGather(const float* in, size_t countPerRank, float* out) override;
  Error barrier() override;
  Error broadcast(std::string& bytes, int root) override;
  void abort() override;

  // Device collectives on `stream` over rows × width elements; longer inputs take several calls.
  Error allReduceDevice(cuda::ElementType type, const void* in, int64_t rows, int64_t width,
                        void* out, cudaStream_t stream);
  Error allReduceAddRmsNormDevice(cuda::ElementType type, const void* partial, const void* residual,
                                  const void* weight, int64_t rows, int64_t width, float eps,
                                  void* sum, void* out, cudaStream_t stream);
  // out: rows of world × width, in rank order.
  Error allGatherDevice(cuda::ElementType type, const void* in, int64_t rows, int64_t width,
                        void* out, cudaStream_t stream);
  // Waits for `stream`; a device wait that gave up on a peer, or an abort, becomes an Error
  // naming it.
  Error waitFor(cudaStream_t stream, const char* what);
  // All-reduces of this many bytes or more take the two-shot path (benchmarks force either).
  void setTwoShotBytes(size_t bytes) { twoShotBytes_ = bytes; }
  // The all-reduce algorithm for `bytes` of input.
  const char* algorithmFor(size_t bytes) const {
    return bytes >= twoShotBytes_ ? "two-shot" : "one-shot";
  }

 private:
  IpcCommunicator(std::unique_ptr<Communicator> host, std::chrono::milliseconds timeout)
      : host_(std::move(host)), timeout_(timeout) {}
  Error setUp(int device, size_t halfBytes);
  Error twoShot(cuda::ElementType type, const void* in, int64_t count, void* out,
                cudaStream_t stream);
  Error checkDevice(const char* what);
  int64_t rowsPerCall(cuda::ElementType type, int64_t width) const;

  std::unique_ptr<Communicator> host_;
  std::chrono::milliseconds timeout_;
  size_t twoShotBytes_ = std::numeric_limits<size_t>::max();
  cuda::IpcPeers peers_;
  void* own_ = nullptr;            // this rank's staging + flags
  void* epoch_ = nullptr;          // device call counter
  void* reduced_ = nullptr;        // a fused call's two-shot sum, before add + RMSNorm
  uint32_t* hostWords_ = nullptr;  // mapped: [0] error, [1] abort
  std::vector<void*> opened_;      // peers' allocations, opened from their handles
  std::atomic<bool> aborted_{false};
  // TPC_IPC_SKIP_EXCHANGE=1, for benchmarks only: every device collective becomes a local copy
  // (wrong results), so a step's time without its collectives can be measured.
  bool skipExchange_ = false;
};

}  // namespace tpc
