#include "executor/cuda/IpcCommunicator.h"

#include <cstdlib>
#include <cstring>
#include <thread>

#include "executor/cuda/CudaCheck.h"

namespace tpc {
namespace {

Error cudaFailed(int rank, const char* what, cudaError_t status) {
  return makeError("rank ", rank, ": ", what, ": ", cudaGetErrorString(status));
}

}  // namespace

#define TPC_IPC_TRY(call)                                                  \
  do {                                                                     \
    cudaError_t status_ = (call);                                          \
    if (status_ != cudaSuccess) return cudaFailed(rank(), #call, status_); \
  } while (0)

Expected<std::unique_ptr<IpcCommunicator>> IpcCommunicator::create(
    std::unique_ptr<Communicator> host, int device, std::chrono::milliseconds timeout,
    size_t halfBytes, std::optional<size_t> twoShotBytes) {
  if (!host) return makeError("ipc: no host communicator");
  if (host->world() > cuda::kIpcMaxRanks)
    return makeError("rank ", host->rank(), ": the one-node CUDA communicator serves at most ",
                     cuda::kIpcMaxRanks, " ranks, not ", host->world());
  std::unique_ptr<IpcCommunicator> comm(new IpcCommunicator(std::move(host), timeout));
  comm->twoShotBytes_ = twoShotBytes.value_or(defaultTwoShotBytes(comm->world()));
  if (Error e = comm->setUp(device, halfBytes)) {
    comm->host_->abort();
    return e;
  }
  return comm;
}

Error IpcCommunicator::setUp(int device, size_t halfBytes) {
  const int r = rank(), w = world();
  TPC_IPC_TRY(cudaSetDevice(device));
  TPC_IPC_TRY(cuda::ipcLoadKernels());
  const size_t bytes = 2 * halfBytes + cuda::ipcFlagBytes();
  TPC_IPC_TRY(cudaMalloc(&own_, bytes));
  TPC_IPC_TRY(cudaMemset(own_, 0, bytes));
  TPC_IPC_TRY(cudaMalloc(&epoch_, 2 * sizeof(uint32_t)));
  TPC_IPC_TRY(cudaMemset(epoch_, 0, 2 * sizeof(uint32_t)));
  TPC_IPC_TRY(cudaMalloc(&reduced_, halfBytes));
  TPC_IPC_TRY(cudaHostAlloc(reinterpret_cast<void**>(&hostWords_), 2 * sizeof(uint32_t),
                            cudaHostAllocMapped));
  hostWords_[0] = hostWords_[1] = 0;
  void* deviceWords = nullptr;
  TPC_IPC_TRY(cudaHostGetDevicePointer(&deviceWords, hostWords_, 0));
  TPC_IPC_TRY(cudaDeviceSynchronize());

  // Handles go one byte per float (exact) over the host communicator.
  cudaIpcMemHandle_t handle;
  TPC_IPC_TRY(cudaIpcGetMemHandle(&handle, own_));
  constexpr size_t kBytes = sizeof(cudaIpcMemHandle_t);
  std::vector<float> mine(kBytes), all(kBytes * static_cast<size_t>(w));
  const auto* raw = reinterpret_cast<const unsigned char*>(&handle);
  for (size_t i = 0; i < kBytes; ++i) mine[i] = raw[i];
  if (Error e = host_->allGather(mine.data(), kBytes, all.data())) return e;

  peers_.rank = r;
  peers_.world = w;
  peers_.halfBytes = static_cast<int64_t>(halfBytes);
  peers_.timeoutNs = static_cast<uint64_t>(timeout_.count()) * 1000000ull;
  // A debugging aid: every one-shot call checks that each row it reads was staged at its epoch
  // and not rewritten while read (see IpcPeers::verify).
  const char* verify = std::getenv("TPC_IPC_VERIFY");
  peers_.verify = verify && std::strcmp(verify, "0") != 0 ? 1 : 0;
  const char* skip = std::getenv("TPC_IPC_SKIP_EXCHANGE");
  skipExchange_ = skip && std::strcmp(skip, "0") != 0;
  peers_.epoch = static_cast<uint32_t*>(epoch_);
  peers_.error = static_cast<uint32_t*>(deviceWords);
  peers_.abort = static_cast<const uint32_t*>(deviceWords) + 1;
  for (int p = 0; p < w; ++p) {
    void* base = own_;
    if (p != r) {
      cudaIpcMemHandle_t theirs;
      auto* out = reinterpret_cast<unsigned char*>(&theirs);
      for (size_t i = 0; i < kBytes; ++i)
        out[i] = static_cast<unsigned char>(all[static_cast<size_t>(p) * kBytes + i]);
      cudaError_t status = cudaIpcOpenMemHandle(&base, theirs, cudaIpcMemLazyEnablePeerAccess);
      if (status != cudaSuccess)
        return makeError("rank ", r, ": cannot open rank ", p,
                         "'s device memory (cudaIpcOpenMemHandle): ", cudaGetErrorString(status));
      opened_.push_back(base);
    }
    peers_.staging[p] = base;
    peers_.flags[p] = reinterpret_cast<uint32_t*>(static_cast<char*>(base) + 2 * halfBytes);
  }
  // No peer may signal into flags that their owner has not cleared yet.
  return host_->barrier();
}

IpcCommunicator::~IpcCommunicator() {
  for (void* p : opened_) cudaIpcCloseMemHandle(p);
  if (own_) cudaFree(own_);
  if (epoch_) cudaFree(epoch_);
  if (reduced_) cudaFree(reduced_);
  if (hostWords_) cudaFreeHost(hostWords_);
}

Error IpcCommunicator::allReduceSum(float* data, size_t count) {
  return host_->allReduceSum(data, count);
}
Error IpcCommunicator::allGather(const float* in, size_t countPerRank, float* out) {
  return host_->allGather(in, countPerRank, out);
}
Error IpcCommunicator::barrier() { return host_->barrier(); }
Error IpcCommunicator::broadcast(std::string& bytes, int root) {
  return host_->broadcast(bytes, root);
}

void IpcCommunicator::abort() {
  aborted_ = true;
  // Kernels waiting on peers read this word and stop waiting.
  if (hostWords_) reinterpret_cast<volatile uint32_t*>(hostWords_)[1] = 1;
  host_->abort();
}

int64_t IpcCommunicator::rowsPerCall(cuda::ElementType type, int64_t width) const {
  return cuda::ipcRowsPerCall(peers_.halfBytes,
                              width * static_cast<int64_t>(cuda::elementBytes(type)));
}

Error IpcCommunicator::twoShot(cuda::ElementType type, const void* in, int64_t count, void* out,
                               cudaStream_t stream) {
  const int64_t elt = static_cast<int64_t>(cuda::elementBytes(type));
  const int64_t step = cuda::ipcTwoShotMaxCount(peers_.halfBytes, elt);
  for (int64_t first = 0; first < count; first += step)
    TPC_IPC_TRY(cuda::ipcTwoShotAllReduce(type, peers_, static_cast<const char*>(in) + first * elt,
                                          std::min(step, count - first),
                                          static_cast<char*>(out) + first * elt, stream));
  return Error::success();
}

Error IpcCommunicator::allReduceDevice(cuda::ElementType type, const void* in, int64_t rows,
                                       int64_t width, void* out, cudaStream_t stream) {
  if (aborted_)
    return makeError("rank ", rank(), ": all-reduce after the communicator was aborted");
  const size_t rowBytes = static_cast<size_t>(width) * cuda::elementBytes(type);
  if (skipExchange_) {
    if (out != in)
      TPC_IPC_TRY(cudaMemcpyAsync(out, in, rows * rowBytes, cudaMemcpyDefault, stream));
    return Error::success();
  }
  if (static_cast<size_t>(rows) * rowBytes >= twoShotBytes_)
    return twoShot(type, in, rows * width, out, stream);
  const int64_t step = rowsPerCall(type, width);
  if (step < 1)
    return makeError("rank ", rank(), ": rows of ", width, " elements exceed the staging");
  for (int64_t first = 0; first < rows; first += step)
    TPC_IPC_TRY(cuda::ipcAllReduce(type, peers_, static_cast<const char*>(in) + first * rowBytes,
                                   std::min(step, rows - first), width,
                                   static_cast<char*>(out) + first * rowBytes, stream));
  return Error::success();
}

Error IpcCommunicator::allReduceAddRmsNormDevice(cuda::ElementType type, const void* partial,
                                                 const void* residual, const void* weight,
                                                 int64_t rows, int64_t width, float eps, void* sum,
                                                 void* out, cudaStream_t stream) {
  if (aborted_)
    return makeError("rank ", rank(), ": all-reduce after the communicator was aborted");
  const size_t rowBytes = static_cast<size_t>(width) * cuda::elementBytes(type);
  if (skipExchange_) {
    TPC_IPC_TRY(
        cuda::addRmsNorm(type, partial, residual, weight, rows, width, eps, sum, out, stream));
    return Error::success();
  }
  if (static_cast<size_t>(rows) * rowBytes >= twoShotBytes_) {
    // Long inputs (prefill): the two-shot sum, then the add_rms_norm the unfused plan would run.
    const int64_t rowsPerPass =
        static_cast<int64_t>(static_cast<size_t>(peers_.halfBytes) / rowBytes);
    if (rowsPerPass < 1)
      return makeError("rank ", rank(), ": rows of ", width, " elements exceed the staging");
    for (int64_t first = 0; first < rows; first += rowsPerPass) {
      const int64_t n = std::min(rowsPerPass, rows - first);
      const size_t at = static_cast<size_t>(first) * rowBytes;
      if (Error e =
              twoShot(type, static_cast<const char*>(partial) + at, n * width, reduced_, stream))
        return e;
      TPC_IPC_TRY(cuda::addRmsNorm(type, reduced_, static_cast<const char*>(residual) + at, weight,
                                   n, width, eps, static_cast<char*>(sum) + at,
                                   static_cast<char*>(out) + at, stream));
    }
    return Error::success();
  }
  const int64_t step = rowsPerCall(type, width);
  if (step < 1)
    return makeError("rank ", rank(), ": rows of ", width, " elements exceed the staging");
  for (int64_t first = 0; first < rows; first += step) {
    const size_t at = static_cast<size_t>(first) * rowBytes;
    TPC_IPC_TRY(cuda::ipcAllReduceAddRmsNorm(
        type, peers_, static_cast<const char*>(partial) + at,
        static_cast<const char*>(residual) + at, weight, std::min(step, rows - first), width, eps,
        static_cast<char*>(sum) + at, static_cast<char*>(out) + at, stream));
  }
  return Error::success();
}

Error IpcCommunicator::allGatherDevice(cuda::ElementType type, const void* in, int64_t rows,
                                       int64_t width, void* out, cudaStream_t stream) {
  if (aborted_)
    return makeError("rank ", rank(), ": all-gather after the communicator was aborted");
  const int64_t step = rowsPerCall(type, width);
  if (step < 1)
    return makeError("rank ", rank(), ": rows of ", width, " elements exceed the staging");
  const size_t rowBytes = static_cast<size_t>(width) * cuda::elementBytes(type);
  if (skipExchange_) {  // this rank's columns only
    TPC_IPC_TRY(cudaMemcpy2DAsync(out, rowBytes * world(), in, rowBytes, rowBytes,
                                  static_cast<size_t>(rows), cudaMemcpyDefault, stream));
    return Error::success();
  }
  for (int64_t first = 0; first < rows; first += step)
    TPC_IPC_TRY(cuda::ipcAllGather(
        type, peers_, static_cast<const char*>(in) + first * rowBytes, std::min(step, rows - first),
        width, static_cast<char*>(out) + static_cast<size_t>(first) * rowBytes * world(), stream));
  return Error::success();
}

Error IpcCommunicator::checkDevice(const char* what) {
  uint32_t peer = reinterpret_cast<volatile uint32_t*>(hostWords_)[0];
  if (peer >= cuda::kIpcStaleRow)
    return makeError("rank ", rank(), ": ", what, " failed: the one-node protocol was violated: ",
                     peer >= cuda::kIpcRewrittenRow ? "a row was rewritten while it was read"
                                                    : "a row was read before it was staged",
                     " (rank ", peer & 0xff, "'s staging)");
  if (peer != 0)
    return makeError("rank ", rank(), ": ", what, " failed (peer rank ", peer - 1,
                     "): timed out after ", timeout_.count(), " ms waiting for rank ", peer - 1,
                     " on the GPU");
  if (aborted_) return makeError("rank ", rank(), ": ", what, " failed (communicator aborted)");
  return Error::success();
}

Error IpcCommunicator::waitFor(cudaStream_t stream, const char* what) {
  // The kernels bound their own waits; the host deadline only guards against a GPU that never
  // runs them at all.
  const auto deadline = std::chrono::steady_clock::now() + 2 * timeout_;
  for (;;) {
    cudaError_t status = cudaStreamQuery(stream);
    if (status == cudaSuccess) return checkDevice(what);
    if (status != cudaErrorNotReady) return cudaFailed(rank(), what, status);
    if (Error e = checkDevice(what)) return e;
    if (std::chrono::steady_clock::now() > deadline)
      return makeError("rank ", rank(), ": ", what, " did not finish within ", 2 * timeout_.count(),
                       " ms");
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

Expected<std::unique_ptr<Communicator>> createIpcCommunicator(std::unique_ptr<Communicator> host,
                                                              int device,
                                                              std::chrono::milliseconds timeout) {
  Expected<std::unique_ptr<IpcCommunicator>> made =
      IpcCommunicator::create(std::move(host), device, timeout);
  if (!made) return made.takeError();
  return std::unique_ptr<Communicator>(std::move(*made));
}

}  // namespace tpc
