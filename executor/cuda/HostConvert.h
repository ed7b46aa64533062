// Host-side type helpers of the CUDA backend: a plan dtype as a kernel storage type, and f32 host
// data in a storage type, ready to upload (weights, an image's patches, image rows).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "ir/DType.h"
#include "ir/Float16.h"
#include "kernels/cuda/CudaKernels.h"

namespace tpc {

// The storage type of a plan's dtype field; none for the types the CUDA kernels do not take.
inline std::optional<cuda::ElementType> elementTypeOf(uint8_t dtype) {
  switch (static_cast<DType>(dtype)) {
    case DType::F32:
      return cuda::ElementType::F32;
    case DType::BF16:
      return cuda::ElementType::BF16;
    case DType::F16:
      return cuda::ElementType::F16;
    default:
      return std::nullopt;
  }
}

// `count` floats from `in` as `type` (round to nearest even) at `out`.
inline void convertFromF32(const float* in, size_t count, cuda::ElementType type, uint8_t* out) {
  if (type == cuda::ElementType::F32) {
    std::memcpy(out, in, count * sizeof(float));
    return;
  }
  auto* dst = reinterpret_cast<uint16_t*>(out);
  for (size_t i = 0; i < count; ++i)
    dst[i] = type == cuda::ElementType::BF16 ? f32ToBf16(in[i]) : f32ToF16(in[i]);
}

// The same into `out`, resized to fit.
inline void convertFromF32(const float* in, size_t count, cuda::ElementType type,
                           std::vector<uint8_t>& out) {
  out.resize(count * cuda::elementBytes(type));
  convertFromF32(in, count, type, out.data());
}

}  // namespace tpc
