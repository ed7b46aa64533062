// GEMVs start before the kernel ahead of them in the stream has finished (programmatic dependent
// launch): each must still read the x that kernel writes, never what the buffer held before.
// Here x is filled with NaN, then a long GEMV writes it and a second GEMV (or the paired SwiGLU
// GEMV) reads it straight away, back to back in one stream with no host wait; a stale read makes
// NaN rows. The decode norm the same way between two GEMVs. TPC_NO_PDL=1 runs the same launches
// in plain stream order.
#include <cmath>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/Gemv.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

class Stream {
 public:
  Stream() { cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking); }
  ~Stream() { cudaStreamDestroy(stream_); }
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

TEST(CudaGemvDependentLaunch, ReadsWhatTheGemvAheadOfItWrites) {
  TPC_REQUIRE_GPU();
  // The first GEMV streams 32 MiB of f32 weights (tens of microseconds), so the second one is
  // resident and waiting long before its x is written.
  constexpr int64_t kIn = 2048, kMid = 4096, kOut = 1000, kRepeats = 20;
  const ElementType f32 = ElementType::F32;
  const std::vector<float> x = randomFloats(kIn, 1);
  const std::vector<float> w1 = randomFloats(kMid * kIn, 2, -0.05f, 0.05f);
  const std::vector<float> w2 = randomFloats(kOut * kMid, 3, -0.05f, 0.05f);
  const std::vector<float> w3 = randomFloats(2 * kOut * kMid, 4, -0.05f, 0.05f);
  std::vector<float> mid(kMid), expected(kOut), gateUp(2 * kOut), swiglu(kOut);
  cpu::linear(x.data(), w1.data(), nullptr, 1, kIn, kMid, mid.data());
  cpu::linear(mid.data(), w2.data(), nullptr, 1, kMid, kOut, expected.data());
  cpu::linear(mid.data(), w3.data(), nullptr, 1, kMid, 2 * kOut, gateUp.data());
  cpu::swiglu(gateUp.data(), gateUp.data() + kOut, kOut, swiglu.data());
  DeviceBuffer dX = upload(f32, x), dW1 = upload(f32, w1), dW2 = upload(f32, w2);
  DeviceBuffer dW3 = upload(f32, w3);
  DeviceBuffer dMid(kMid * sizeof(float)), dY(kOut * sizeof(float)), dAct(kOut * sizeof(float));
  Stream stream;
  for (int64_t r = 0; r < kRepeats; ++r) {
    SCOPED_TRACE("repeat " + std::to_string(r));
    // All-ones bytes: NaN in every element until the first GEMV overwrites them.
    TPC_CUDA_OK(cudaMemsetAsync(dMid.get(), 0xff, kMid * sizeof(float), stream.get()));
    TPC_CUDA_OK(
        gemv(f32, f32, dX.get(), dW1.get(), nullptr, 1, kIn, kMid, dMid.get(), stream.get()));
    TPC_CUDA_OK(
        gemv(f32, f32, dMid.get(), dW2.get(), nullptr, 1, kMid, kOut, dY.get(), stream.get()));
    TPC_CUDA_OK(
        gemvSwiglu(f32, dMid.get(), dW3.get(), nullptr, kMid, kOut, dAct.get(), stream.get()));
    TPC_CUDA_OK(cudaStreamSynchronize(stream.get()));
    EXPECT_TRUE(allClose(download(f32, dY, kOut), toDouble(expected), 1e-4));
    EXPECT_TRUE(allClose(download(f32, dAct, kOut), toDouble(swiglu), 2e-4));
  }
}

// The decode norm (one thread per vector) between two GEMVs: it must read the x and residual
// the GEMV ahead of it writes, and the GEMV after it must read its output. One row (the norm in
// stream order, the GEMV after it started early) and four (the norm a dependent launch, which
// loads its weight before the wait); f32 rows of 4096 (1024 vectors: the registers kernel).
TEST(CudaGemvDependentLaunch, TheNormBetweenGemvsReadsWhatTheGemvAheadOfItWrites) {
  TPC_REQUIRE_GPU();
  constexpr int64_t kIn = 2048, kMid = 4096, kOut = 1000, kRepeats = 10;
  const ElementType f32 = ElementType::F32;
  const std::vector<float> w1 = randomFloats(kMid * kIn, 12, -0.05f, 0.05f);
  const std::vector<float> gamma = randomFloats(kMid, 14, 0.5f, 1.5f);
  const std::vector<float> w2 = randomFloats(kOut * kMid, 15, -0.05f, 0.05f);
  DeviceBuffer dW1 = upload(f32, w1), dW2 = upload(f32, w2), dGamma = upload(f32, gamma);
  Stream stream;
  for (int64_t rows : {1, 4}) {
    const std::vector<float> x = randomFloats(rows * kIn, 11);
    const std::vector<float> residual = randomFloats(rows * kMid, 13);
    std::vector<float> mid(rows * kMid), sum(rows * kMid), normed(rows * kMid),
        expected(rows * kOut);
    cpu::linear(x.data(), w1.data(), nullptr, rows, kIn, kMid, mid.data());
    cpu::addRmsNorm(mid.data(), residual.data(), gamma.data(), rows, kMid, 1e-5f, sum.data(),
                    normed.data());
    cpu::linear(normed.data(), w2.data(), nullptr, rows, kMid, kOut, expected.data());
    DeviceBuffer dX = upload(f32, x), dResidual = upload(f32, residual);
    DeviceBuffer dMid(rows * kMid * sizeof(float)), dSum(rows * kMid * sizeof(float));
    DeviceBuffer dNormed(rows * kMid * sizeof(float)), dY(rows * kOut * sizeof(float));
    for (int64_t r = 0; r < kRepeats; ++r) {
      SCOPED_TRACE(std::to_string(rows) + " rows, repeat " + std::to_string(r));
      for (const DeviceBuffer* b : {&dMid, &dNormed})  // NaN until written
        TPC_CUDA_OK(cudaMemsetAsync(b->get(), 0xff, rows * kMid * sizeof(float), stream.get()));
      TPC_CUDA_OK(
          gemv(f32, f32, dX.get(), dW1.get(), nullptr, rows, kIn, kMid, dMid.get(), stream.get()));
      TPC_CUDA_OK(addRmsNorm(f32, dMid.get(), dResidual.get(), dGamma.get(), rows, kMid, 1e-5f,
                             dSum.get(), dNormed.get(), stream.get()));
      TPC_CUDA_OK(gemv(f32, f32, dNormed.get(), dW2.get(), nullptr, rows, kMid, kOut, dY.get(),
                       stream.get()));
      TPC_CUDA_OK(cudaStreamSynchronize(stream.get()));
      EXPECT_TRUE(allClose(download(f32, dSum, rows * kMid), toDouble(sum), 1e-5));
      EXPECT_TRUE(allClose(download(f32, dNormed, rows * kMid), toDouble(normed), 1e-4));
      EXPECT_TRUE(allClose(download(f32, dY, rows * kOut), toDouble(expected), 1e-4));
    }
  }
}

}  // namespace
}  // namespace tpc::cuda::test
