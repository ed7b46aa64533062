// One-shot collectives over peers' device memory; the protocol is described in IpcAllReduce.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/IpcAllReduce.h"

namespace tpc::cuda {
namespace {

using detail::fromFloat;
using detail::toFloat;

constexpr int kThreads = 256;
constexpr int64_t kRowAlign = 16;

enum class Mode { kSum, kSumAddRmsNorm, kGather };

__device__ __forceinline__ uint64_t globalNs() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Peers' rows are read past L1: the same addresses held an older epoch's row two calls ago.
__device__ __forceinline__ float loadPeer(const float* p) { return __ldcv(p); }
__device__ __forceinline__ float loadPeer(const __nv_bfloat16* p) {
  return __bfloat162float(__ushort_as_bfloat16(__ldcv(reinterpret_cast<const unsigned short*>(p))));
}
__device__ __forceinline__ float loadPeer(const __half* p) {
  return __half2float(__ushort_as_half(__ldcv(reinterpret_cast<const unsigned short*>(p))));
}

// A staged row, then its tag (the epoch that wrote it, kept under verify) in the next 16 bytes.
__host__ __device__ __forceinline__ int64_t rowDataBytes(int64_t rowBytes) {
  return (rowBytes + kRowAlign - 1) / kRowAlign * kRowAlign;
}
__host__ __device__ __forceinline__ int64_t rowStride(int64_t width, int64_t elementBytes) {
  return rowDataBytes(width * elementBytes) + kRowAlign;
}

template <typename T>
__device__ __forceinline__ T* slotOf(const IpcPeers& peers, int rank, uint32_t epoch, int64_t row,
                                     int64_t width) {
  char* base = static_cast<char*>(peers.staging[rank]) + (epoch & 1) * peers.halfBytes;
  return reinterpret_cast<T*>(base + row * rowStride(width, sizeof(T)));
}

template <typename T>
__device__ __forceinline__ uint32_t* tagOf(const IpcPeers& peers, int rank, uint32_t epoch,
                                           int64_t row, int64_t width) {
  return reinterpret_cast<uint32_t*>(
      reinterpret_cast<char*>(slotOf<T>(peers, rank, epoch, row, width)) +
      rowDataBytes(width * static_cast<int64_t>(sizeof(T))));
}

// Under verify: thread p checks that every row of this block in rank p's staging still carries
// epoch `e`, else records `code` + p (the first violation wins).
template <typename T>
__device__ void checkTags(const IpcPeers& peers, uint32_t e, int64_t rows, int64_t width,
                          uint32_t code) {
  const int p = threadIdx.x;
  if (p >= peers.world) return;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x)
    if (__ldcv(tagOf<T>(peers, p, e, row, width)) != e) {
      atomicCAS(peers.error, 0u, code + static_cast<uint32_t>(p));
      return;
    }
}

// Tells every peer that this block's part of epoch `e` is in its staging (flag slot `slot`), then
// waits for theirs. Every thread's stores to the staging come before the call (the fence and
// barrier publish them); after it, peers' staging may be read. Sets `failed` when a wait gave up
// (the peer may be gone, and its memory with it: nothing more is read).
__device__ void signalAndWait(const IpcPeers& peers, int64_t slot, uint32_t e, int* failed) {
  __threadfence_system();
  __syncthreads();
  const int p = threadIdx.x;
  if (p < peers.world) {
    auto* theirs = reinterpret_cast<volatile uint32_t*>(peers.flags[p]);
    theirs[slot * kIpcMaxRanks + peers.rank] = e;
    auto* arrived = reinterpret_cast<volatile uint32_t*>(peers.flags[peers.rank]);
    const uint64_t start = globalNs();
    while (static_cast<int32_t>(arrived[slot * kIpcMaxRanks + p] - e) < 0) {
      if (*reinterpret_cast<const volatile uint32_t*>(peers.abort) != 0) {
        *failed = 1;
        break;
      }
      if (globalNs() - start > peers.timeoutNs) {
        atomicCAS(peers.error, 0u, static_cast<uint32_t>(p + 1));
        *failed = 1;
        break;
      }
    }
    __threadfence_system();
  }
  __syncthreads();
}

// The epoch counter as this call found it (every block reads it before the last one advances it).
__device__ uint32_t callEpoch(const IpcPeers& peers, int* failed) {
  __shared__ uint32_t epoch;
  if (threadIdx.x == 0) {
    epoch = *reinterpret_cast<volatile uint32_t*>(peers.epoch);
    *failed = 0;
  }
  __syncthreads();
  return epoch;
}

// Stages this block's rows (b, b + gridDim.x, ...) for every peer and waits for theirs (the
// peers' block b has the same rows). Returns the call's epoch.
template <typename T>
__device__ uint32_t exchangeRows(const IpcPeers& peers, const T* in, int64_t rows, int64_t width,
                                 int* failed) {
  const uint32_t e = callEpoch(peers, failed) + 1;
  if (peers.verify) {
    // Claim the rows before writing them: a peer still reading them at epoch e - 2 (which the
    // protocol forbids) then finds the new tag when it checks after reading.
    if (threadIdx.x == 0)
      for (int64_t row = blockIdx.x; row < rows; row += gridDim.x)
        *tagOf<T>(peers, peers.rank, e, row, width) = e;
    __threadfence();
    __syncthreads();
  }
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    T* mine = slotOf<T>(peers, peers.rank, e, row, width);
    for (int64_t i = threadIdx.x; i < width; i += blockDim.x) mine[i] = in[row * width + i];
  }
  signalAndWait(peers, blockIdx.x, e, failed);
  return e;
}

// The last block to finish advances the epoch, after every block has read it.
__device__ void finishCall(const IpcPeers& peers, uint32_t e) {
  __syncthreads();
  if (threadIdx.x != 0) return;
  __threadfence();
  if (atomicAdd(peers.epoch + 1, 1u) == gridDim.x - 1) {
    peers.epoch[1] = 0;
    *reinterpret_cast<volatile uint32_t*>(peers.epoch) = e;
    __threadfence();
  }
}

template <typename T, Mode kMode>
__global__ void __launch_bounds__(kThreads)
    ipcKernel(IpcPeers peers, const T* in, const T* residual, const T* weight, int64_t rows,
              int64_t width, float eps, T* sum, T* out) {
  __shared__ float scratch[detail::kWarpSize];
  __shared__ int failed;
  const uint32_t e = exchangeRows(peers, in, rows, width, &failed);
  if (peers.verify && !failed) checkTags<T>(peers, e, rows, width, kIpcStaleRow);
  // After a failed wait nothing is read; the epoch still advances so this rank stays in step
  // (the host reports the error).
  for (int64_t row = blockIdx.x; !failed && row < rows; row += gridDim.x) {
    const int64_t base = row * width;
    if constexpr (kMode == Mode::kGather) {
      for (int r = 0; r < peers.world; ++r) {
        const T* src = slotOf<T>(peers, r, e, row, width);
        T* dst = out + (row * peers.world + r) * width;
        for (int64_t i = threadIdx.x; i < width; i += blockDim.x)
          dst[i] = fromFloat<T>(loadPeer(src + i));
      }
    } else {
      float squares = 0.0f;
      for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
        float acc = 0.0f;
        for (int r = 0; r < peers.world; ++r)
          acc += loadPeer(slotOf<T>(peers, r, e, row, width) + i);
        const T reduced = fromFloat<T>(acc);
        if constexpr (kMode == Mode::kSum) {
          out[base + i] = reduced;
        } else {
          const T rounded = fromFloat<T>(toFloat(residual[base + i]) + toFloat(reduced));
          sum[base + i] = rounded;
          const float value = toFloat(rounded);
          squares += value * value;
        }
      }
      if constexpr (kMode == Mode::kSumAddRmsNorm) {
        const float variance = detail::blockSum(squares, scratch) / static_cast<float>(width);
        const float inverseRms = 1.0f / sqrtf(variance + eps);
        // The same thread reads back what it stored above.
        for (int64_t i = threadIdx.x; i < width; i += blockDim.x)
          out[base + i] = fromFloat<T>(toFloat(weight[i]) * (toFloat(sum[base + i]) * inverseRms));
      }
    }
  }
  if (peers.verify && !failed) {
    // Every thread's reads of the peers' rows are done before their tags are read again.
    __syncthreads();
    __threadfence();
    checkTags<T>(peers, e, rows, width, kIpcRewrittenRow);
  }
  finishCall(peers, e);
}

// Two-shot: the input is cut into `world` segments, rank s reducing segment s, and each segment
// into gridDim.x chunks, block b owning chunk b of every segment, so each block depends only on
// the peers' block b (flag slot b). Epoch e1: every rank stages its whole input; each reduces its
// own segment's chunk in rank order, in f32, into the other staging half (epoch e2 = e1 + 1);
// then every rank copies every segment's reduced chunk out. Each element is summed by one rank
// in the one-shot order, so all ranks get the one-shot bits while reading a world-th of them.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    ipcTwoShotKernel(IpcPeers peers, const T* in, int64_t count, int64_t segment, int64_t chunk,
                     T* out) {
  __shared__ int failed;
  const uint32_t e1 = callEpoch(peers, &failed) + 1, e2 = e1 + 1;
  const int64_t first = blockIdx.x * chunk;
  const int64_t last = first + chunk < segment ? first + chunk : segment;
  const auto half = [&](int rank, uint32_t e) {
    return reinterpret_cast<T*>(static_cast<char*>(peers.staging[rank]) +
                                (e & 1) * peers.halfBytes);
  };
  // Element i of segment s is at s * segment + i; the last segment may be short.
  const auto end = [&](int s) {
    const int64_t stop = s * segment + last;
    return stop < count ? stop : count;
  };
  T* staged = half(peers.rank, e1);
  for (int s = 0; s < peers.world; ++s)
    for (int64_t i = s * segment + first + threadIdx.x; i < end(s); i += blockDim.x)
      staged[i] = in[i];
  signalAndWait(peers, blockIdx.x, e1, &failed);
  if (!failed) {
    T* reduced = half(peers.rank, e2);
    const int s = peers.rank;
    for (int64_t i = s * segment + first + threadIdx.x; i < end(s); i += blockDim.x) {
      float acc = 0.0f;
      for (int r = 0; r < peers.world; ++r) acc += loadPeer(half(r, e1) + i);
      reduced[i] = fromFloat<T>(acc);
    }
    signalAndWait(peers, blockIdx.x, e2, &failed);
  }
  if (!failed)
    for (int s = 0; s < peers.world; ++s) {
      const T* src = half(s, e2);
      for (int64_t i = s * segment + first + threadIdx.x; i < end(s); i += blockDim.x)
        out[i] = fromFloat<T>(loadPeer(src + i));
    }
  finishCall(peers, e2);
}

template <typename T, Mode kMode>
cudaError_t launch(const IpcPeers& peers, const void* in, const void* residual, const void* weight,
                   int64_t rows, int64_t width, float eps, void* sum, void* out,
                   cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return cudaSuccess;
  if (peers.world < 1 || peers.world > kIpcMaxRanks ||
      ipcRowsPerCall(peers.halfBytes, width * static_cast<int64_t>(sizeof(T))) < rows)
    return cudaErrorInvalidValue;
  const int64_t most = ipcMaxBlocks(peers.world);
  const auto blocks = static_cast<unsigned>(rows < most ? rows : most);
  ipcKernel<T, kMode><<<blocks, kThreads, 0, stream>>>(
      peers, static_cast<const T*>(in), static_cast<const T*>(residual),
      static_cast<const T*>(weight), rows, width, eps, static_cast<T*>(sum), static_cast<T*>(out));
  return cudaGetLastError();
}

template <typename T>
cudaError_t launchTwoShot(const IpcPeers& peers, const void* in, int64_t count, void* out,
                          cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  if (peers.world < 1 || peers.world > kIpcMaxRanks ||
      count > ipcTwoShotMaxCount(peers.halfBytes, static_cast<int64_t>(sizeof(T))))
    return cudaErrorInvalidValue;
  const int64_t segment = (count + peers.world - 1) / peers.world;
  // About four elements per thread, at most one flag slot per block.
  int64_t blocks = (segment + 4 * kThreads - 1) / (4 * kThreads);
  blocks = blocks < ipcMaxBlocks(peers.world) ? blocks : ipcMaxBlocks(peers.world);
  const int64_t chunk = (segment + blocks - 1) / blocks;
  ipcTwoShotKernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      peers, static_cast<const T*>(in), count, segment, chunk, static_cast<T*>(out));
  return cudaGetLastError();
}

template <typename T>
cudaError_t loadKernelsOf() {
  cudaFuncAttributes attributes;
  for (cudaError_t status : {cudaFuncGetAttributes(&attributes, ipcKernel<T, Mode::kSum>),
                             cudaFuncGetAttributes(&attributes, ipcKernel<T, Mode::kSumAddRmsNorm>),
                             cudaFuncGetAttributes(&attributes, ipcKernel<T, Mode::kGather>),
                             cudaFuncGetAttributes(&attributes, ipcTwoShotKernel<T>)})
    if (status != cudaSuccess) return status;
  return cudaSuccess;
}

}  // namespace

int64_t ipcRowsPerCall(int64_t halfBytes, int64_t rowBytes) {
  if (rowBytes <= 0) return 0;
  return halfBytes / (rowDataBytes(rowBytes) + kRowAlign);
}

cudaError_t ipcAllReduce(ElementType type, const IpcPeers& peers, const void* in, int64_t rows,
                         int64_t width, void* out, cudaStream_t stream) {
  return TPC_DISPATCH_ELEMENT(type, [&] {
    return launch<Element, Mode::kSum>(peers, in, nullptr, nullptr, rows, width, 0.0f, nullptr, out,
                                       stream);
  });
}

cudaError_t ipcAllReduceAddRmsNorm(ElementType type, const IpcPeers& peers, const void* partial,
                                   const void* residual, const void* weight, int64_t rows,
                                   int64_t width, float eps, void* sum, void* out,
                                   cudaStream_t stream) {
  return TPC_DISPATCH_ELEMENT(type, [&] {
    return launch<Element, Mode::kSumAddRmsNorm>(peers, partial, residual, weight, rows, width, eps,
                                                 sum, out, stream);
  });
}

cudaError_t ipcAllGather(ElementType type, const IpcPeers& peers, const void* in, int64_t rows,
                         int64_t width, void* out, cudaStream_t stream) {
  return TPC_DISPATCH_ELEMENT(type, [&] {
    return launch<Element, Mode::kGather>(peers, in, nullptr, nullptr, rows, width, 0.0f, nullptr,
                                          out, stream);
  });
}

}  // namespace tpc::cuda

namespace tpc::cuda {

int64_t ipcTwoShotMaxCount(int64_t halfBytes, int64_t elementBytes) {
  return elementBytes > 0 ? halfBytes / elementBytes : 0;
}

cudaError_t ipcTwoShotAllReduce(ElementType type, const IpcPeers& peers, const void* in,
                                int64_t count, void* out, cudaStream_t stream) {
  return TPC_DISPATCH_ELEMENT(
      type, [&] { return launchTwoShot<Element>(peers, in, count, out, stream); });
}

cudaError_t ipcLoadKernels() {
  if (cudaError_t status = loadKernelsOf<float>()) return status;
  if (cudaError_t status = loadKernelsOf<__nv_bfloat16>()) return status;
  return loadKernelsOf<__half>();
}

}  // namespace tpc::cuda
