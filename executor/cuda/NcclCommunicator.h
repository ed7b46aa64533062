// The NCCL communicator: the collectives of a CUDA run. Initialisation is non-blocking with a
// deadline, every wait polls the communicator's asynchronous error, and any failure aborts it
// (ncclCommAbort), so a dead or hung peer becomes an Error naming this rank, never a hang.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "executor/comm/Communicator.h"
#include "kernels/cuda/CudaKernels.h"

namespace tpc {

// NCCL's name for a storage type.
inline ncclDataType_t ncclTypeOf(cuda::ElementType t) {
  switch (t) {
    case cuda::ElementType::BF16:
      return ncclBfloat16;
    case cuda::ElementType::F16:
      return ncclFloat16;
    default:
      return ncclFloat32;
  }
}

class NcclCommunicator : public Communicator {
 public:
  static Expected<std::unique_ptr<NcclCommunicator>> create(int rank, int world,
                                                            const std::string& uniqueId, int device,
                                                            std::chrono::milliseconds timeout);
  ~NcclCommunicator() override;

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  // Host-memory collectives (control values such as per-rank byte counts) go through a device
  // staging buffer and wait with the deadline.
  Error allReduceSum(float* data, size_t count) override;
  Error allGather(const float* in, size_t countPerRank, float* out) override;
  Error barrier() override;
  void abort() override;

  // Device collectives enqueued on `stream`, capturable into a CUDA Graph.
  Error allReduceDevice(const void* in, void* out, size_t count, ncclDataType_t type,
                        cudaStream_t stream);
  Error allGatherDevice(const void* in, void* out, size_t countPerRank, ncclDataType_t type,
                        cudaStream_t stream);
  // Waits for `stream` while watching the communicator; past the deadline it aborts.
  Error waitFor(cudaStream_t stream, const char* what);

 private:
  NcclCommunicator(int rank, int world, int device, ncclComm_t comm,
                   std::chrono::milliseconds timeout);
  // Turns a call's status into an Error, waiting out ncclInProgress of the non-blocking comm.
  Error settle(ncclResult_t status, const char* what);
  Error stage(size_t bytes);

  int rank_, world_, device_;
  ncclComm_t comm_;
  std::chrono::milliseconds timeout_;
  std::atomic<bool> aborted_{false};
  cudaStream_t stream_ = nullptr;
  void* staging_ = nullptr;
  size_t stagingBytes_ = 0;
};

}  // namespace tpc
