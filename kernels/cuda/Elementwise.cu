// Memory-bound element-wise kernels: embedding rows, add, SwiGLU, column slices, conversion to
// f32. Each has a 16-byte vector path taken when every pointer (and row width) allows it, and a
// scalar path for the rest, so odd widths and offsets stay correct.
#include <algorithm>

#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DeviceMath.cuh"

namespace tpc::cuda {
namespace {

using detail::fromFloat;
using detail::kVecWidth;

constexpr int kThreads = 256;
// Enough blocks to fill an H100 several times over; grid-stride loops cover the rest.
constexpr int64_t kMaxBlocks = 132 * 16;

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct SwigluOp {
  __device__ float operator()(float gate, float up) const { return detail::silu(gate) * up; }
};

// out[i] = op(a[i], b[i]); the vector path covers count / kVecWidth vectors, the scalar loop the
// tail (and everything when not vectorized).
template <typename T, typename Op, bool kVector>
__global__ void binaryKernel(const T* a, const T* b, int64_t count, T* out, Op op) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t scalarStart = 0;
  if constexpr (kVector) {
    constexpr int kWidth = kVecWidth<T>;
    const int64_t vectors = count / kWidth;
    for (int64_t v = first; v < vectors; v += stride) {
      float x[kWidth], y[kWidth];
      detail::loadVec(a + v * kWidth, x);
      detail::loadVec(b + v * kWidth, y);
#pragma unroll
      for (int i = 0; i < kWidth; ++i) x[i] = op(x[i], y[i]);
      detail::storeVec(out + v * kWidth, x);
    }
    scalarStart = vectors * kWidth;
  }
  for (int64_t i = scalarStart + first; i < count; i += stride)
    out[i] = fromFloat<T>(op(detail::toFloat(a[i]), detail::toFloat(b[i])));
}

template <typename T, typename Op>
cudaError_t launchBinary(const void* a, const void* b, int64_t count, void* out,
                         cudaStream_t stream, Op op) {
  if (count <= 0) return cudaGetLastError();
  const auto* x = static_cast<const T*>(a);
  const auto* y = static_cast<const T*>(b);
  auto* z = static_cast<T*>(out);
  const bool vector = detail::aligned16(a) && detail::aligned16(b) && detail::aligned16(out);
  const int64_t items = vector ? count / kVecWidth<T> + kVecWidth<T> : count;
  const unsigned blocks = detail::gridFor(items, kThreads, kMaxBlocks);
  if (vector)
    binaryKernel<T, Op, true><<<blocks, kThreads, 0, stream>>>(x, y, count, z, op);
  else
    binaryKernel<T, Op, false><<<blocks, kThreads, 0, stream>>>(x, y, count, z, op);
  return cudaGetLastError();
}

// out[t, j] = silu(x[t, j]) * x[t, width + j]: as binaryKernel over a row's two halves.
template <typename T, bool kVector>
__global__ void swigluHalvesKernel(const T* x, int64_t tokens, int64_t width, T* out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const SwigluOp op;
  if constexpr (kVector) {
    constexpr int kWidth = kVecWidth<T>;
    const int64_t perRow = width / kWidth;
    for (int64_t v = first; v < tokens * perRow; v += stride) {
      const int64_t t = v / perRow, j = (v % perRow) * kWidth;
      float gate[kWidth], up[kWidth];
      detail::loadVec(x + t * 2 * width + j, gate);
      detail::loadVec(x + t * 2 * width + width + j, up);
#pragma unroll
      for (int i = 0; i < kWidth; ++i) gate[i] = op(gate[i], up[i]);
      detail::storeVec(out + t * width + j, gate);
    }
  } else {
    for (int64_t i = first; i < tokens * width; i += stride) {
      const int64_t t = i / width, j = i % width;
      out[i] = fromFloat<T>(
          op(detail::toFloat(x[t * 2 * width + j]), detail::toFloat(x[t * 2 * width + width + j])));
    }
  }
}

// Copies `width` elements per row from `src` (row stride srcStride) to `dst` (row stride
// dstStride), one block row per token; rows for which `zero` holds are zero-filled instead.
template <typename T, bool kVector>
__device__ void copyRow(const T* src, T* dst, int64_t width, bool zero) {
  int64_t scalarStart = 0;
  if constexpr (kVector) {
    constexpr int kWidth = kVecWidth<T>;
    const int64_t vectors = width / kWidth;
    for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
      uint4 raw = zero ? make_uint4(0, 0, 0, 0) : *reinterpret_cast<const uint4*>(src + v * kWidth);
      *reinterpret_cast<uint4*>(dst + v * kWidth) = raw;
    }
    scalarStart = vectors * kWidth;
  }
  for (int64_t i = scalarStart + threadIdx.x; i < width; i += blockDim.x)
    dst[i] = zero ? fromFloat<T>(0.0f) : src[i];
}

template <typename T, bool kVector>
__global__ void embeddingKernel(const int32_t* ids, const T* table, int64_t rows, int64_t firstRow,
                                int64_t hidden, T* out) {
  const int64_t t = blockIdx.x;
  const int64_t row = static_cast<int64_t>(ids[t]) - firstRow;
  const bool outside = row < 0 || row >= rows;
  copyRow<T, kVector>(table + (outside ? 0 : row) * hidden, out + t * hidden, hidden, outside);
}

// One block per selected row.
template <typename T>
__global__ void selectRowsKernel(const T* x, const int32_t* rows, int64_t width, T* out) {
  const T* src = x + static_cast<int64_t>(rows[blockIdx.x]) * width;
  T* dst = out + static_cast<int64_t>(blockIdx.x) * width;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) dst[i] = src[i];
}

// A block per (row, piece of kThreads vectors, part): a few rows of a wide split (a batch of
// decode rows) still spread over every SM, and a split's results take one launch.
template <typename T>
constexpr int64_t kColumnPiece = static_cast<int64_t>(kThreads) * kVecWidth<T>;

template <typename T>
struct SplitParts {
  T* out[kMaxSplitParts];
  int64_t offset[kMaxSplitParts], width[kMaxSplitParts];
};

// out[part][t, :width) = x[t, offset:offset + width) for the part blockIdx.z picks: the plan's
// split (every result) and slice (one).
template <typename T, bool kVector>
__global__ void columnPartsKernel(const T* x, int64_t inWidth, SplitParts<T> parts) {
  const int part = static_cast<int>(blockIdx.z);
  const int64_t t = blockIdx.x, first = static_cast<int64_t>(blockIdx.y) * kColumnPiece<T>;
  const int64_t width = parts.width[part];
  if (first >= width) return;
  copyRow<T, kVector>(x + t * inWidth + parts.offset[part] + first,
                      parts.out[part] + t * width + first, min(kColumnPiece<T>, width - first),
                      false);
}

template <typename T, bool kVector>
__global__ void toFloatKernel(const T* x, int64_t count, float* out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t scalarStart = 0;
  if constexpr (kVector) {
    // One 16-byte load of x, written as kVecWidth floats (4-float stores stay 16-byte aligned).
    constexpr int kWidth = kVecWidth<T>;
    const int64_t vectors = count / kWidth;
    for (int64_t v = first; v < vectors; v += stride) {
      float values[kWidth];
      detail::loadVec(x + v * kWidth, values);
#pragma unroll
      for (int i = 0; i < kWidth; i += 4)
        *reinterpret_cast<float4*>(out + v * kWidth + i) =
            make_float4(values[i], values[i + 1], values[i + 2], values[i + 3]);
    }
    scalarStart = vectors * kWidth;
  }
  for (int64_t i = scalarStart + first; i < count; i += stride) out[i] = detail::toFloat(x[i]);
}

// Rows are at most 65535 blocks per grid dimension on y/z, but x allows 2^31 - 1: tokens fit.
unsigned rowBlocks(int64_t tokens) { return static_cast<unsigned>(tokens); }

}  // namespace

size_t elementBytes(ElementType type) {
  switch (type) {
    case ElementType::F32:
      return 4;
    case ElementType::BF16:
    case ElementType::F16:
      return 2;
  }
  return 0;
}

cudaError_t embedding(ElementType type, const int32_t* ids, int64_t tokens, const void* table,
                      int64_t rows, int64_t firstRow, int64_t hidden, void* out,
                      cudaStream_t stream) {
  if (tokens <= 0 || hidden <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    const auto* src = static_cast<const Element*>(table);
    auto* dst = static_cast<Element*>(out);
    if (detail::rowsVectorizable<Element>(hidden, {table, out}))
      embeddingKernel<Element, true>
          <<<rowBlocks(tokens), kThreads, 0, stream>>>(ids, src, rows, firstRow, hidden, dst);
    else
      embeddingKernel<Element, false>
          <<<rowBlocks(tokens), kThreads, 0, stream>>>(ids, src, rows, firstRow, hidden, dst);
    return cudaGetLastError();
  });
}

cudaError_t add(ElementType type, const void* a, const void* b, int64_t count, void* out,
                cudaStream_t stream) {
  return TPC_DISPATCH_ELEMENT(
      type, [&] { return launchBinary<Element>(a, b, count, out, stream, AddOp{}); });
}

cudaError_t swiglu(ElementType type, const void* gate, const void* up, int64_t count, void* out,
                   cudaStream_t stream) {
  return TPC_DISPATCH_ELEMENT(
      type, [&] { return launchBinary<Element>(gate, up, count, out, stream, SwigluOp{}); });
}

cudaError_t swigluHalves(ElementType type, const void* x, int64_t tokens, int64_t width, void* out,
                         cudaStream_t stream) {
  if (tokens <= 0 || width <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    const auto* in = static_cast<const Element*>(x);
    auto* z = static_cast<Element*>(out);
    const bool vector =
        detail::aligned16(x) && detail::aligned16(out) && width % kVecWidth<Element> == 0;
    const unsigned blocks = detail::gridFor(
        vector ? tokens * width / kVecWidth<Element> : tokens * width, kThreads, kMaxBlocks);
    if (vector)
      swigluHalvesKernel<Element, true><<<blocks, kThreads, 0, stream>>>(in, tokens, width, z);
    else
      swigluHalvesKernel<Element, false><<<blocks, kThreads, 0, stream>>>(in, tokens, width, z);
    return cudaGetLastError();
  });
}

namespace {

// Column ranges of x's rows (offsets[i], widths[i]) into outs[i], one launch.
cudaError_t launchColumnParts(ElementType type, const void* x, int64_t tokens, int64_t inWidth,
                              const int64_t* offsets, const int64_t* widths, void* const* outs,
                              int parts, cudaStream_t stream) {
  return TPC_DISPATCH_ELEMENT(type, [&] {
    SplitParts<Element> p{};
    bool vector = detail::rowsVectorizable<Element>(inWidth, {x});
    int64_t widest = 0;
    for (int i = 0; i < parts; ++i) {
      p.out[i] = static_cast<Element*>(outs[i]);
      p.offset[i] = offsets[i];
      p.width[i] = widths[i];
      vector = vector && detail::rowsVectorizable<Element>(widths[i], {outs[i]}) &&
               detail::rowsVectorizable<Element>(offsets[i], {});
      widest = std::max(widest, widths[i]);
    }
    if (widest <= 0) return cudaGetLastError();
    const dim3 grid(
        rowBlocks(tokens),
        static_cast<unsigned>((widest + kColumnPiece<Element> - 1) / kColumnPiece<Element>),
        static_cast<unsigned>(parts));
    const auto* src = static_cast<const Element*>(x);
    if (vector)
      columnPartsKernel<Element, true><<<grid, kThreads, 0, stream>>>(src, inWidth, p);
    else
      columnPartsKernel<Element, false><<<grid, kThreads, 0, stream>>>(src, inWidth, p);
    return cudaGetLastError();
  });
}

}  // namespace

cudaError_t copyColumns(ElementType type, const void* x, int64_t tokens, int64_t inWidth,
                        int64_t offset, int64_t width, void* out, cudaStream_t stream) {
  if (tokens <= 0 || width <= 0) return cudaGetLastError();
  return launchColumnParts(type, x, tokens, inWidth, &offset, &width, &out, 1, stream);
}

cudaError_t splitColumns(ElementType type, const void* x, int64_t tokens, int64_t inWidth,
                         const int64_t* widths, void* const* outs, int parts, cudaStream_t stream) {
  if (parts < 1 || parts > kMaxSplitParts) return cudaErrorInvalidValue;
  if (tokens <= 0) return cudaGetLastError();
  int64_t offsets[kMaxSplitParts], offset = 0;
  for (int i = 0; i < parts; ++i) {
    offsets[i] = offset;
    offset += widths[i];
  }
  return launchColumnParts(type, x, tokens, inWidth, offsets, widths, outs, parts, stream);
}

cudaError_t toFloat(ElementType type, const void* x, int64_t count, float* out,
                    cudaStream_t stream) {
  if (count <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    const auto* src = static_cast<const Element*>(x);
    const bool vector = detail::aligned16(x) && detail::aligned16(out);
    const int64_t items = vector ? count / kVecWidth<Element> + kVecWidth<Element> : count;
    const unsigned blocks = detail::gridFor(items, kThreads, kMaxBlocks);
    if (vector)
      toFloatKernel<Element, true><<<blocks, kThreads, 0, stream>>>(src, count, out);
    else
      toFloatKernel<Element, false><<<blocks, kThreads, 0, stream>>>(src, count, out);
    return cudaGetLastError();
  });
}

cudaError_t selectRows(ElementType type, const void* x, const int32_t* rows, int64_t count,
                       int64_t width, void* out, cudaStream_t stream) {
  if (count <= 0 || width <= 0) return cudaGetLastError();
  return TPC_DISPATCH_ELEMENT(type, [&] {
    selectRowsKernel<Element><<<static_cast<unsigned>(count), kThreads, 0, stream>>>(
        static_cast<const Element*>(x), rows, width, static_cast<Element*>(out));
    return cudaGetLastError();
  });
}

}  // namespace tpc::cuda
