// Grouping of MoE assignments by expert and the row kernels around the grouped GEMMs (see
// MoeGrouped.h). The sort is a counting sort in three small kernels: integer atomics count each
// expert's assignments (the counts do not depend on the order of the additions), one thread
// turns them into padded first rows (numExperts is at most a few thousand), and one block per
// expert walks the assignments in order, ranking its own by a block-wide prefix count, so the
// order within an expert is the assignment order whatever the scheduling.
#include <climits>

#include "kernels/cuda/DeviceMath.cuh"
#include "kernels/cuda/MoeGrouped.h"

namespace tpc::cuda {
namespace {

using detail::fromFloat;
using detail::kFullMask;
using detail::kWarpSize;
using detail::toFloat;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;

__global__ void countKernel(const int32_t* experts, int64_t assignments, int64_t numExperts,
                            int32_t* counts) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t a = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; a < assignments;
       a += stride) {
    const int32_t e = experts[a];
    if (e >= 0 && e < numExperts) atomicAdd(&counts[e], 1);
  }
}

__global__ void firstRowsKernel(const int32_t* counts, int64_t numExperts, int64_t rowAlign,
                                int32_t* firstRows) {
  int64_t next = 0;
  for (int64_t e = 0; e < numExperts; ++e) {
    firstRows[e] = static_cast<int32_t>(next);
    next += (counts[e] + rowAlign - 1) / rowAlign * rowAlign;
  }
}

// One block per expert.
__global__ void orderKernel(const int32_t* experts, int64_t assignments, const int32_t* counts,
                            const int32_t* firstRows, int32_t* slots, int32_t* rowSources) {
  __shared__ int32_t warpTotals[kWarps];
  const auto e = static_cast<int32_t>(blockIdx.x);
  const int32_t count = counts[e];
  if (count == 0) return;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const unsigned lanesBelow = (1u << lane) - 1u;
  int64_t placed = 0;  // the same in every thread: the loop's exit is uniform
  for (int64_t base = 0; base < assignments && placed < count; base += kThreads) {
    const int64_t a = base + threadIdx.x;
    const bool mine = a < assignments && experts[a] == e;
    const unsigned ballot = __ballot_sync(kFullMask, mine);
    if (lane == 0) warpTotals[warp] = __popc(ballot);
    __syncthreads();
    int32_t before = 0, total = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (w < warp) before += warpTotals[w];
      total += warpTotals[w];
    }
    if (mine) {
      const int64_t row = firstRows[e] + placed + before + __popc(ballot & lanesBelow);
      slots[a] = static_cast<int32_t>(row);
      rowSources[row] = static_cast<int32_t>(a);
    }
    placed += total;
    __syncthreads();  // every warp has read warpTotals before the next tile writes it
  }
}

// One block per row; 16-byte words when the rows and both buffers allow it.
__global__ void gatherKernel(const char* x, int64_t rowBytes, const int32_t* rowSources,
                             int64_t topK, bool vector, char* gathered) {
  const int64_t row = blockIdx.x;
  const int32_t source = rowSources[row];
  char* dst = gathered + row * rowBytes;
  const char* src = source >= 0 ? x + (source / topK) * rowBytes : nullptr;
  if (vector) {
    auto* d = reinterpret_cast<uint4*>(dst);
    const auto* s = reinterpret_cast<const uint4*>(src);
    for (int64_t i = threadIdx.x; i < rowBytes / 16; i += blockDim.x)
      d[i] = s ? s[i] : make_uint4(0, 0, 0, 0);
  } else {
    for (int64_t i = threadIdx.x; i < rowBytes; i += blockDim.x) dst[i] = src ? src[i] : 0;
  }
}

template <typename T>
__global__ void swigluRowsKernel(const float* gate, const float* up, int64_t stride,
                                 const int32_t* rowSources, int64_t intermediate, T* activations) {
  const int64_t row = blockIdx.x;
  const bool padding = rowSources[row] < 0;
  T* dst = activations + row * intermediate;
  for (int64_t i = threadIdx.x; i < intermediate; i += blockDim.x)
    dst[i] = padding ? fromFloat<T>(0.0f)
                     : fromFloat<T>(detail::silu(gate[row * stride + i]) * up[row * stride + i]);
}

// Grid (tokens, column blocks of hidden).
template <typename T>
__global__ void combineKernel(const float* weights, const int32_t* slots, const float* expertRows,
                              int64_t topK, int64_t hidden, T* out) {
  const int64_t t = blockIdx.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; j < hidden;
       j += static_cast<int64_t>(gridDim.y) * blockDim.x) {
    float total = 0.0f;
    for (int64_t k = 0; k < topK; ++k) {
      const int64_t assignment = t * topK + k;
      const int32_t slot = slots[assignment];
      if (slot >= 0) total += expertRows[slot * hidden + j] * weights[assignment];
    }
    out[t * hidden + j] = fromFloat<T>(toFloat(out[t * hidden + j]) + total);
  }
}

}  // namespace

cudaError_t moeGroupByExpert(const int32_t* experts, int64_t assignments, int64_t numExperts,
                             int64_t rowAlign, int64_t rowCapacity, int32_t* counts,
                             int32_t* firstRows, int32_t* slots, int32_t* rowSources,
                             cudaStream_t stream) {
  if (assignments < 0 || numExperts <= 0 || rowAlign <= 0 || assignments > INT32_MAX ||
      rowCapacity > INT32_MAX || numExperts > INT32_MAX)
    return cudaErrorInvalidValue;
  // 0xff bytes: -1 in every slot and row source, so dropped assignments and padding read as none.
  cudaError_t status =
      cudaMemsetAsync(counts, 0, static_cast<size_t>(numExperts) * sizeof(int32_t), stream);
  if (status == cudaSuccess)
    status =
        cudaMemsetAsync(slots, 0xff, static_cast<size_t>(assignments) * sizeof(int32_t), stream);
  if (status == cudaSuccess)
    status = cudaMemsetAsync(rowSources, 0xff, static_cast<size_t>(rowCapacity) * sizeof(int32_t),
                             stream);
  if (status != cudaSuccess) return status;
  if (assignments > 0)
    countKernel<<<detail::gridFor(assignments, kThreads, 1024), kThreads, 0, stream>>>(
        experts, assignments, numExperts, counts);
  firstRowsKernel<<<1, 1, 0, stream>>>(counts, numExperts, rowAlign, firstRows);
  if (assignments > 0)
    orderKernel<<<static_cast<unsigned>(numExperts), kThreads, 0, stream>>>(
        experts, assignments, counts, firstRows, slots, rowSources);
  return cudaGetLastError();
}

cudaError_t moeGatherRows(const void* x, int64_t rowBytes, const int32_t* rowSources, int64_t rows,
                          int64_t topK, void* gathered, cudaStream_t stream) {
  if (rowBytes <= 0 || topK <= 0 || rows > INT32_MAX) return cudaErrorInvalidValue;
  if (rows <= 0) return cudaGetLastError();
  const bool vector = rowBytes % 16 == 0 && detail::aligned16(x) && detail::aligned16(gathered);
  gatherKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      static_cast<const char*>(x), rowBytes, rowSources, topK, vector,
      static_cast<char*>(gathered));
  return cudaGetLastError();
}

cudaError_t moeSwigluRows(ElementType type, const float* gate, const float* up, int64_t stride,
                          const int32_t* rowSources, int64_t rows, int64_t intermediate,
                          void* activations, cudaStream_t stream) {
  if (intermediate <= 0 || stride < intermediate || rows > INT32_MAX) return cudaErrorInvalidValue;
  if (rows <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    swigluRowsKernel<Element><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        gate, up, stride, rowSources, intermediate, static_cast<Element*>(activations));
    return cudaGetLastError();
  });
}

cudaError_t moeCombine(ElementType type, const float* weights, const int32_t* slots,
                       const float* expertRows, int64_t tokens, int64_t topK, int64_t hidden,
                       void* out, cudaStream_t stream) {
  if (topK <= 0 || hidden <= 0 || tokens > INT32_MAX) return cudaErrorInvalidValue;
  if (tokens <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    const dim3 grid(static_cast<unsigned>(tokens), detail::gridFor(hidden, kThreads, 65535));
    combineKernel<Element><<<grid, kThreads, 0, stream>>>(weights, slots, expertRows, topK, hidden,
                                                          static_cast<Element*>(out));
    return cudaGetLastError();
  });
}

}  // namespace tpc::cuda
