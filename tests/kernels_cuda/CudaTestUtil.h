// Shared by the CUDA kernel tests: a GPU check that skips the test when there is none, device
// buffers, and conversion between f32 test data and the storage types. References are computed
// by the CPU twins on the inputs as rounded to the storage type, so only the kernel's own
// arithmetic and its output rounding are judged.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/CudaKernels.h"
#include "tests/kernels/KernelTestUtil.h"

namespace tpc::cuda::test {

using tpc::test::allClose;
using tpc::test::randomFloats;
using tpc::test::toDouble;

inline bool haveGpu() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define TPC_REQUIRE_GPU()                                                 \
  do {                                                                    \
    if (!::tpc::cuda::test::haveGpu()) GTEST_SKIP() << "skipped: no GPU"; \
  } while (0)

#define TPC_CUDA_OK(expr)                                           \
  do {                                                              \
    const cudaError_t status_ = (expr);                             \
    ASSERT_EQ(status_, cudaSuccess) << cudaGetErrorString(status_); \
  } while (0)

inline const char* typeName(ElementType type) {
  switch (type) {
    case ElementType::F32:
      return "f32";
    case ElementType::BF16:
      return "bf16";
    case ElementType::F16:
      return "f16";
  }
  return "?";
}

inline std::vector<uint8_t> encode(ElementType type, const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * elementBytes(type));
  for (size_t i = 0; i < values.size(); ++i) {
    if (type == ElementType::F32) {
      std::memcpy(&bytes[i * 4], &values[i], 4);
    } else if (type == ElementType::BF16) {
      const __nv_bfloat16 h = __float2bfloat16_rn(values[i]);
      std::memcpy(&bytes[i * 2], &h, 2);
    } else {
      const __half h = __float2half_rn(values[i]);
      std::memcpy(&bytes[i * 2], &h, 2);
    }
  }
  return bytes;
}

inline std::vector<float> decode(ElementType type, const std::vector<uint8_t>& bytes) {
  const size_t count = bytes.size() / elementBytes(type);
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) {
    if (type == ElementType::F32) {
      std::memcpy(&values[i], &bytes[i * 4], 4);
    } else if (type == ElementType::BF16) {
      __nv_bfloat16 h;
      std::memcpy(&h, &bytes[i * 2], 2);
      values[i] = __bfloat162float(h);
    } else {
      __half h;
      std::memcpy(&h, &bytes[i * 2], 2);
      values[i] = __half2float(h);
    }
  }
  return values;
}

// The values as the storage type holds them.
inline std::vector<float> roundTo(ElementType type, const std::vector<float>& values) {
  return decode(type, encode(type, values));
}

// Device memory freed on scope exit. Tests sync before reading back (the kernels never do).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&data_, bytes == 0 ? 1 : bytes) != cudaSuccess) data_ = nullptr;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), bytes_(other.bytes_) {
    other.data_ = nullptr;
  }
  DeviceBuffer& operator=(DeviceBuffer&&) = delete;
  ~DeviceBuffer() { cudaFree(data_); }
  void* get() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }
  void upload(const void* host, size_t bytes) const {
    ASSERT_EQ(cudaMemcpy(data_, host, bytes, cudaMemcpyHostToDevice), cudaSuccess);
  }
  void fill(int value) const { ASSERT_EQ(cudaMemset(data_, value, bytes_), cudaSuccess); }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Uploads f32 test data in the storage type.
inline DeviceBuffer upload(ElementType type, const std::vector<float>& values) {
  const std::vector<uint8_t> bytes = encode(type, values);
  DeviceBuffer buffer(bytes.size());
  buffer.upload(bytes.data(), bytes.size());
  return buffer;
}

template <typename T>
DeviceBuffer uploadRaw(const std::vector<T>& values) {
  DeviceBuffer buffer(values.size() * sizeof(T));
  buffer.upload(values.data(), values.size() * sizeof(T));
  return buffer;
}

// Waits for the kernels and reads `count` storage-type elements back as f32.
inline std::vector<float> download(ElementType type, const DeviceBuffer& buffer, size_t count) {
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint8_t> bytes(count * elementBytes(type));
  EXPECT_EQ(cudaMemcpy(bytes.data(), buffer.get(), bytes.size(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return decode(type, bytes);
}

template <typename T>
std::vector<T> downloadRaw(const DeviceBuffer& buffer, size_t count) {
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<T> values(count);
  EXPECT_EQ(cudaMemcpy(values.data(), buffer.get(), count * sizeof(T), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return values;
}

// Relative tolerance of a result stored in `type` whose f32 computation differs from the
// reference only in summation order: f32 ~1e-5; bf16 keeps 8 bits of mantissa (half an ulp is
// 2^-9 = 0.2% relative) and f16 11 bits, so 1e-2 and 2e-3 leave room for one rounding of the
// output plus small differences upstream. allClose adds a tenth of the tensor's largest
// magnitude, so near-zero entries are judged on the tensor's scale.
inline double storageTolerance(ElementType type) {
  switch (type) {
    case ElementType::F32:
      return 1e-5;
    case ElementType::BF16:
      return 1e-2;
    case ElementType::F16:
      return 2e-3;
  }
  return 0;
}

// The tensor-core attention kernels (prefill and decode) round the output once from f32 like the
// generic kernel, and, as flash-attention does, also round the softmax weights P to the storage
// type before P V: up to half an ulp more per weight (2^-8 relative in bf16, 2^-11 in f16), which
// in a weighted mean that cancels can reach the size of the output rounding. Summation order
// (tensor-core tiles vs the CPU's GEMVs) adds ~1e-6. Hence twice the storage tolerance.
inline double tensorCoreAttentionTolerance(ElementType type) { return 2 * storageTolerance(type); }

inline const ElementType kAllTypes[] = {ElementType::F32, ElementType::BF16, ElementType::F16};

}  // namespace tpc::cuda::test
