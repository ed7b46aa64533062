// The one-node CUDA communicator: every rank's staging buffer is one plain cudaMalloc
// allocation, registered once with cudaIpcGetMemHandle; the handles travel over the host's
// communicator (shared memory), which also carries the host-value collectives. Device collectives
// are the one-shot kernels of kernels/cuda/IpcAllReduce, capturable into CUDA Graphs. Ranks may
// share a GPU (NCCL refuses them); on one GPU they then need the MPS daemon to run concurrently,
// otherwise their contexts time-slice and every exchange waits a time slice.
#pragma once

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "executor/comm/Communicator.h"
#include "kernels/cuda/IpcAllReduce.h"

namespace tpc {

class IpcCommunicator : public Communicator {
 public:
  // `host` carries the handle exchange and the host collectives; `device` is this rank's GPU.
  // `halfBytes` of staging per epoch parity bound the rows of one kernel call.
  static Expected<std::unique_ptr<IpcCommunicator>> create(std::unique_ptr<Communicator> host,
                                                           int device,
                                                           std::chrono::milliseconds timeout,
                                                           size_t halfBytes = size_t{8} << 20);
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
  static const char* algorithm() { return "one-shot"; }

 private:
  IpcCommunicator(std::unique_ptr<Communicator> host, std::chrono::milliseconds timeout)
      : host_(std::move(host)), timeout_(timeout) {}
  Error setUp(int device, size_t halfBytes);
  Error checkDevice(const char* what);
  int64_t rowsPerCall(cuda::ElementType type, int64_t width) const;

  std::unique_ptr<Communicator> host_;
  std::chrono::milliseconds timeout_;
  cuda::IpcPeers peers_;
  void* own_ = nullptr;            // this rank's staging + flags
  void* epoch_ = nullptr;          // device call counter
  uint32_t* hostWords_ = nullptr;  // mapped: [0] error, [1] abort
  std::vector<void*> opened_;      // peers' allocations, opened from their handles
  std::atomic<bool> aborted_{false};
};

}  // namespace tpc
