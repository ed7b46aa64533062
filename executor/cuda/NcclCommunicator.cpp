#include "executor/cuda/NcclCommunicator.h"

#include <cstring>
#include <thread>

#include "executor/cuda/CudaCheck.h"

namespace tpc {
namespace {

using Clock = std::chrono::steady_clock;

Error rankError(int rank, const std::string& message) {
  return makeError("rank ", rank, ": ", message);
}

}  // namespace

Expected<std::string> newNcclUniqueId() {
  ncclUniqueId id;
  if (Error e = cudacheck::check(ncclGetUniqueId(&id), "ncclGetUniqueId")) return e;
  return std::string(id.internal, sizeof id.internal);
}

Expected<std::unique_ptr<Communicator>> createNcclCommunicator(
    int rank, int world, const std::string& uniqueId, int device,
    std::chrono::milliseconds initTimeout) {
  Expected<std::unique_ptr<NcclCommunicator>> comm =
      NcclCommunicator::create(rank, world, uniqueId, device, initTimeout);
  if (!comm) return comm.takeError();
  return std::unique_ptr<Communicator>(std::move(*comm));
}

Expected<std::unique_ptr<NcclCommunicator>> NcclCommunicator::create(
    int rank, int world, const std::string& uniqueId, int device,
    std::chrono::milliseconds timeout) {
  ncclUniqueId id;
  if (uniqueId.size() != sizeof id.internal)
    return rankError(rank, "the NCCL unique id has " + std::to_string(uniqueId.size()) +
                               " bytes, not " + std::to_string(sizeof id.internal));
  std::memcpy(id.internal, uniqueId.data(), sizeof id.internal);
  if (device < 0) {
    int devices = 0;
    if (Error e = cudacheck::check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount"))
      return rankError(rank, e.message());
    if (devices == 0) return rankError(rank, "no CUDA device is visible");
    device = rank % devices;
  }
  if (Error e = cudacheck::check(cudaSetDevice(device), "cudaSetDevice"))
    return rankError(rank, e.message());
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // so initialisation can be abandoned when a peer never shows up
  ncclComm_t comm = nullptr;
  ncclResult_t status = ncclCommInitRankConfig(&comm, world, id, rank, &config);
  auto deadline = Clock::now() + timeout;
  while (status == ncclInProgress) {
    if (Clock::now() > deadline) {
      ncclCommAbort(comm);
      return rankError(rank, "NCCL initialisation did not finish within " +
                                 std::to_string(timeout.count()) +
                                 " ms (are all ranks of the world running?)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (ncclCommGetAsyncError(comm, &status) != ncclSuccess) status = ncclSystemError;
  }
  if (status != ncclSuccess) {
    if (comm) ncclCommAbort(comm);
    return rankError(rank,
                     std::string("NCCL initialisation failed: ") + ncclGetErrorString(status));
  }
  auto out =
      std::unique_ptr<NcclCommunicator>(new NcclCommunicator(rank, world, device, comm, timeout));
  if (Error e = cudacheck::check(cudaStreamCreateWithFlags(&out->stream_, cudaStreamNonBlocking),
                                 "cudaStreamCreate"))
    return rankError(rank, e.message());
  return out;
}

NcclCommunicator::NcclCommunicator(int rank, int world, int device, ncclComm_t comm,
                                   std::chrono::milliseconds timeout)
    : rank_(rank), world_(world), device_(device), comm_(comm), timeout_(timeout) {}

NcclCommunicator::~NcclCommunicator() {
  if (staging_) cudaFree(staging_);
  if (stream_) cudaStreamDestroy(stream_);
  // Destroying a communicator whose peers are gone can block; aborting never does.
  if (!aborted_.exchange(true)) ncclCommAbort(comm_);
}

void NcclCommunicator::abort() {
  if (!aborted_.exchange(true)) ncclCommAbort(comm_);
}

Error NcclCommunicator::settle(ncclResult_t status, const char* what) {
  if (aborted_) return rankError(rank_, std::string(what) + ": the communicator was aborted");
  auto deadline = Clock::now() + timeout_;
  while (status == ncclInProgress) {
    if (Clock::now() > deadline) {
      abort();
      return rankError(rank_, std::string(what) + " did not return within the deadline");
    }
    std::this_thread::yield();
    if (ncclCommGetAsyncError(comm_, &status) != ncclSuccess) status = ncclSystemError;
  }
  if (status == ncclSuccess) return Error::success();
  abort();
  return rankError(rank_, std::string(what) + " failed: " + ncclGetErrorString(status));
}

Error NcclCommunicator::waitFor(cudaStream_t stream, const char* what) {
  auto deadline = Clock::now() + timeout_;
  while (true) {
    cudaError_t status = cudaStreamQuery(stream);
    if (status == cudaSuccess) return Error::success();
    if (status != cudaErrorNotReady)
      return rankError(rank_, std::string(what) + ": " + cudaGetErrorString(status));
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async);
    if (async != ncclSuccess && async != ncclInProgress) {
      abort();
      return rankError(rank_, std::string(what) + ": NCCL failed: " + ncclGetErrorString(async));
    }
    if (aborted_) return rankError(rank_, std::string(what) + ": the communicator was aborted");
    if (Clock::now() > deadline) {
      abort();
      return rankError(rank_, std::string(what) + " did not complete within " +
                                  std::to_string(timeout_.count()) + " ms (is a peer dead?)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

Error NcclCommunicator::allReduceDevice(const void* in, void* out, size_t count,
                                        ncclDataType_t type, cudaStream_t stream) {
  return settle(ncclAllReduce(in, out, count, type, ncclSum, comm_, stream), "ncclAllReduce");
}

Error NcclCommunicator::allGatherDevice(const void* in, void* out, size_t countPerRank,
                                        ncclDataType_t type, cudaStream_t stream) {
  return settle(ncclAllGather(in, out, countPerRank, type, comm_, stream), "ncclAllGather");
}

Error NcclCommunicator::stage(size_t bytes) {
  if (bytes <= stagingBytes_) return Error::success();
  if (staging_) cudaFree(staging_);
  staging_ = nullptr;
  stagingBytes_ = 0;
  TPC_CUDA_TRY(cudaMalloc(&staging_, bytes));
  stagingBytes_ = bytes;
  return Error::success();
}

Error NcclCommunicator::allReduceSum(float* data, size_t count) {
  if (Error e = stage(count * sizeof(float))) return e;
  TPC_CUDA_TRY(
      cudaMemcpyAsync(staging_, data, count * sizeof(float), cudaMemcpyHostToDevice, stream_));
  if (Error e = allReduceDevice(staging_, staging_, count, ncclFloat32, stream_)) return e;
  TPC_CUDA_TRY(
      cudaMemcpyAsync(data, staging_, count * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  return waitFor(stream_, "all-reduce");
}

Error NcclCommunicator::allGather(const float* in, size_t countPerRank, float* out) {
  size_t total = countPerRank * static_cast<size_t>(world_);
  if (Error e = stage((total + countPerRank) * sizeof(float))) return e;
  float* gathered = static_cast<float*>(staging_);
  float* mine = gathered + total;
  TPC_CUDA_TRY(
      cudaMemcpyAsync(mine, in, countPerRank * sizeof(float), cudaMemcpyHostToDevice, stream_));
  if (Error e = allGatherDevice(mine, gathered, countPerRank, ncclFloat32, stream_)) return e;
  TPC_CUDA_TRY(
      cudaMemcpyAsync(out, gathered, total * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  return waitFor(stream_, "all-gather");
}

Error NcclCommunicator::barrier() {
  float one = 1.0f;
  return allReduceSum(&one, 1);
}

}  // namespace tpc
