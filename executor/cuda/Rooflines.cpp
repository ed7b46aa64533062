// The rooflines `tpexec bench` reports against, measured on the device itself.
#include <algorithm>
#include <vector>

#include "executor/cuda/CudaBackend.h"
#include "executor/cuda/CudaCheck.h"
#include "executor/cuda/DeviceMemory.h"
#include "executor/cuda/Gemm.h"
#include "kernels/cuda/CudaKernels.h"

namespace tpc {
namespace {

using cuda::ElementType;

constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

// Bandwidth figures depend on what ran before them: an idle H200 drops its SM clock to a few
// hundred MHz, and after a freed model and one warm-up pass the 4 GiB read measured 4.02 TB/s
// where the same pass on a busy device reads 4.63. So each measurement first keeps the device
// busy for kWarmUpMs, then times kPasses passes one by one and takes the median, which one slow
// pass does not move.
constexpr float kWarmUpMs = 200.0f;
constexpr int kPasses = 21;

// Seconds of one `pass`, after the warm-up: the median of kPasses individually timed runs.
template <class Pass>
Expected<double> medianPassSeconds(Pass pass) {
  struct Events {
    cudaEvent_t start = nullptr, stop = nullptr;
    ~Events() {
      if (start) cudaEventDestroy(start);
      if (stop) cudaEventDestroy(stop);
    }
  } events;
  TPC_CUDA_TRY(cudaEventCreate(&events.start));
  TPC_CUDA_TRY(cudaEventCreate(&events.stop));
  cudaEvent_t start = events.start, stop = events.stop;
  TPC_CUDA_TRY(cudaEventRecord(start));
  for (float busyMs = 0; busyMs < kWarmUpMs;) {
    for (int i = 0; i < 8; ++i) TPC_CUDA_TRY(pass());
    TPC_CUDA_TRY(cudaEventRecord(stop));
    TPC_CUDA_TRY(cudaEventSynchronize(stop));
    TPC_CUDA_TRY(cudaEventElapsedTime(&busyMs, start, stop));
  }
  std::vector<float> ms(kPasses);
  for (float& m : ms) {
    TPC_CUDA_TRY(cudaEventRecord(start));
    TPC_CUDA_TRY(pass());
    TPC_CUDA_TRY(cudaEventRecord(stop));
    TPC_CUDA_TRY(cudaEventSynchronize(stop));
    TPC_CUDA_TRY(cudaEventElapsedTime(&m, start, stop));
  }
  std::nth_element(ms.begin(), ms.begin() + kPasses / 2, ms.end());
  return static_cast<double>(ms[kPasses / 2]) / 1e3;
}

}  // namespace

Expected<double> measureCopyBandwidth(int device) {
  TPC_CUDA_TRY(cudaSetDevice(device));
  const size_t bytes = size_t{1} << 30;
  DeviceMemory a, b;
  TPC_CUDA_TRY(a.allocate(bytes));
  TPC_CUDA_TRY(b.allocate(bytes));
  Expected<double> seconds = medianPassSeconds(
      [&] { return cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice); });
  if (!seconds) return seconds.takeError();
  // A copy reads and writes every byte.
  return 2.0 * static_cast<double>(bytes) / *seconds;
}

Expected<double> measureReadBandwidth(int device) {
  TPC_CUDA_TRY(cudaSetDevice(device));
  // 4 GiB, far past the 60 MB L2 of an H200, so every pass comes from memory (below 256 MB the
  // figure falls off: a pass is then too short to hide its ramp-up and tail).
  const size_t bytes = size_t{4} << 30;
  DeviceMemory data, sum;
  TPC_CUDA_TRY(data.allocate(bytes));
  TPC_CUDA_TRY(sum.allocate(sizeof(uint32_t)));
  TPC_CUDA_TRY(cudaMemset(data.data(), 1, bytes));
  auto* total = reinterpret_cast<uint32_t*>(sum.data());
  Expected<double> seconds =
      medianPassSeconds([&] { return cuda::readSum(data.data(), bytes, total, nullptr); });
  if (!seconds) return seconds.takeError();
  return static_cast<double>(bytes) / *seconds;
}

Expected<double> measureGemmFlops(int device) {
  TPC_CUDA_TRY(cudaSetDevice(device));
  const int64_t n = 8192;
  const size_t bytes = static_cast<size_t>(n * n) * 2;
  DeviceMemory a, b, c;
  TPC_CUDA_TRY(a.allocate(bytes));
  TPC_CUDA_TRY(b.allocate(bytes));
  TPC_CUDA_TRY(c.allocate(bytes));
  // Random data: tensor cores draw less power on zeros, which flatters the ceiling.
  TPC_CUDA_TRY(cuda::fillUniform(ElementType::BF16, a.data(), n * n, 1.0f, 1, nullptr));
  TPC_CUDA_TRY(cuda::fillUniform(ElementType::BF16, b.data(), n * n, 1.0f, 2, nullptr));
  Expected<std::unique_ptr<GemmRunner>> gemm = GemmRunner::create(kGemmWorkspaceBytes);
  if (!gemm) return gemm.takeError();
  auto once = [&]() {
    return (*gemm)->linear(ElementType::BF16, ElementType::BF16, a.data(), b.data(), nullptr, n, n,
                           n, c.data(), nullptr);
  };
  if (Error e = once()) return e;
  cudaEvent_t start = nullptr, stop = nullptr;
  TPC_CUDA_TRY(cudaEventCreate(&start));
  TPC_CUDA_TRY(cudaEventCreate(&stop));
  const int repeats = 10;
  TPC_CUDA_TRY(cudaEventRecord(start));
  for (int i = 0; i < repeats; ++i)
    if (Error e = once()) return e;
  TPC_CUDA_TRY(cudaEventRecord(stop));
  TPC_CUDA_TRY(cudaEventSynchronize(stop));
  float ms = 0;
  TPC_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 2.0 * static_cast<double>(n) * n * n * repeats / (ms / 1e3);
}

}  // namespace tpc
