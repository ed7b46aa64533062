// Owning handles for device and pinned host memory, so every early error return frees them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

namespace tpc {

class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  DeviceMemory(DeviceMemory&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(o.bytes_), pinned_(o.pinned_) {}
  ~DeviceMemory() { release(); }

  cudaError_t allocate(size_t bytes) {
    release();
    bytes_ = bytes;
    pinned_ = false;
    return cudaMalloc(&ptr_, bytes ? bytes : 1);
  }
  cudaError_t allocatePinned(size_t bytes) {
    release();
    bytes_ = bytes;
    pinned_ = true;
    return cudaMallocHost(&ptr_, bytes ? bytes : 1);
  }
  // Pinned host memory the device reads and writes directly (see cudaHostGetDevicePointer).
  cudaError_t allocateMapped(size_t bytes) {
    release();
    bytes_ = bytes;
    pinned_ = true;
    return cudaHostAlloc(&ptr_, bytes ? bytes : 1, cudaHostAllocMapped);
  }
  char* data() const { return static_cast<char*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void release() {
    if (ptr_) pinned_ ? cudaFreeHost(ptr_) : cudaFree(ptr_);
    ptr_ = nullptr;
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  bool pinned_ = false;
};

}  // namespace tpc
