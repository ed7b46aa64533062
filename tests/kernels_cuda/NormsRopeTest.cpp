// RMSNorm variants and RoPE against their CPU twins. The CPU norm sums squares in double, the GPU
// in f32 (a relative difference ~1e-6 in the scale factor), and each output is rounded once to
// the storage type: storageTolerance covers both.
#include <cmath>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

struct NormShape {
  int64_t tokens, width;
};
// Block-per-row (width > 1024) and warp-per-row paths; vector and scalar tails.
const NormShape kNormShapes[] = {{1, 16}, {3, 129}, {37, 4096}, {257, 4099}, {2, 8192}, {5, 1000}};

TEST(CudaNorms, RmsNormMatchesCpu) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (const NormShape& s : kNormShapes) {
      SCOPED_TRACE(std::string(typeName(type)) + " tokens " + std::to_string(s.tokens) + " width " +
                   std::to_string(s.width));
      const std::vector<float> x = roundTo(type, randomFloats(s.tokens * s.width, 10, -3.0f, 3.0f));
      const std::vector<float> w = roundTo(type, randomFloats(s.width, 11, 0.5f, 1.5f));
      std::vector<float> expected(x.size());
      cpu::rmsNorm(x.data(), w.data(), s.tokens, s.width, 1e-5f, expected.data());
      DeviceBuffer dX = upload(type, x), dW = upload(type, w);
      DeviceBuffer dOut(x.size() * elementBytes(type));
      TPC_CUDA_OK(rmsNorm(type, dX.get(), dW.get(), s.tokens, s.width, 1e-5f, dOut.get(), nullptr));
      EXPECT_TRUE(
          allClose(download(type, dOut, x.size()), toDouble(expected), storageTolerance(type)));
      // In place (out aliases x), as the CPU twin allows.
      TPC_CUDA_OK(rmsNorm(type, dX.get(), dW.get(), s.tokens, s.width, 1e-5f, dX.get(), nullptr));
      EXPECT_TRUE(
          allClose(download(type, dX, x.size()), toDouble(expected), storageTolerance(type)));
    }
}

TEST(CudaNorms, AddRmsNormStoresTheRoundedSumAndNormalizesIt) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (const NormShape& s : kNormShapes)
      for (int alias = 0; alias < 3; ++alias) {  // sum separate, sum = x, sum = residual
        SCOPED_TRACE(std::string(typeName(type)) + " width " + std::to_string(s.width) + " alias " +
                     std::to_string(alias));
        const size_t n = s.tokens * s.width;
        const std::vector<float> x = roundTo(type, randomFloats(n, 12, -2.0f, 2.0f));
        const std::vector<float> residual = roundTo(type, randomFloats(n, 13, -2.0f, 2.0f));
        const std::vector<float> w = roundTo(type, randomFloats(s.width, 14, 0.5f, 1.5f));
        std::vector<float> sum(n), unused(n);
        cpu::addRmsNorm(x.data(), residual.data(), w.data(), s.tokens, s.width, 1e-6f, sum.data(),
                        unused.data());
        // The kernel normalizes the sum as stored: the reference does the same.
        const std::vector<float> storedSum = roundTo(type, sum);
        std::vector<float> expected(n);
        cpu::rmsNorm(storedSum.data(), w.data(), s.tokens, s.width, 1e-6f, expected.data());
        DeviceBuffer dX = upload(type, x), dR = upload(type, residual), dW = upload(type, w);
        DeviceBuffer dSum(n * elementBytes(type)), dOut(n * elementBytes(type));
        const DeviceBuffer& sumTarget = alias == 0 ? dSum : alias == 1 ? dX : dR;
        TPC_CUDA_OK(addRmsNorm(type, dX.get(), dR.get(), dW.get(), s.tokens, s.width, 1e-6f,
                               sumTarget.get(), dOut.get(), nullptr));
        // The sum is one f32 addition of two stored values, rounded once: exact against the
        // CPU's f32 sum rounded the same way.
        EXPECT_EQ(download(type, sumTarget, n), storedSum);
        EXPECT_TRUE(allClose(download(type, dOut, n), toDouble(expected), storageTolerance(type)));
      }
}

TEST(CudaNorms, HeadRmsNormNormalizesEachHead) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (int64_t headDim : {16, 64, 128, 256})
      for (int64_t tokens : {1, 37}) {
        SCOPED_TRACE(std::string(typeName(type)) + " headDim " + std::to_string(headDim));
        const int64_t heads = 12;
        const size_t n = tokens * heads * headDim;
        const std::vector<float> x = roundTo(type, randomFloats(n, 15, -4.0f, 4.0f));
        const std::vector<float> w = roundTo(type, randomFloats(headDim, 16, 0.5f, 1.5f));
        std::vector<float> expected(n);
        cpu::headRmsNorm(x.data(), w.data(), tokens, heads, headDim, 1e-6f, expected.data());
        DeviceBuffer dX = upload(type, x), dW = upload(type, w);
        DeviceBuffer dOut(n * elementBytes(type));
        TPC_CUDA_OK(headRmsNorm(type, dX.get(), dW.get(), tokens, heads, headDim, 1e-6f, dOut.get(),
                                nullptr));
        EXPECT_TRUE(allClose(download(type, dOut, n), toDouble(expected), storageTolerance(type)));
      }
}

TEST(CudaRope, MatchesCpuForEveryRopeType) {
  TPC_REQUIRE_GPU();
  cpu::RopeParams llama3;
  llama3.type = "llama3";
  llama3.theta = 500000.0;
  llama3.factor = 8.0;
  llama3.originalMaxPosition = 8192;
  cpu::RopeParams yarn;
  yarn.type = "yarn";
  yarn.theta = 1000000.0;
  yarn.factor = 4.0;
  yarn.originalMaxPosition = 32768;
  cpu::RopeParams plain;
  const cpu::RopeParams variants[] = {plain, llama3, yarn};
  for (ElementType type : kAllTypes)
    for (cpu::RopeParams p : variants)
      for (int64_t headDim : {16, 32, 64, 128, 256, 80})
        for (int64_t tokens : {1, 3, 37, 257}) {
          SCOPED_TRACE(std::string(typeName(type)) + " " + p.type + " headDim " +
                       std::to_string(headDim) + " tokens " + std::to_string(tokens));
          p.headDim = headDim;
          const int64_t heads = 5;
          const size_t n = tokens * heads * headDim;
          const std::vector<float> x = roundTo(type, randomFloats(n, 17));
          // Positions up to 100k: large angles are where f32 angle rounding would show.
          std::vector<int32_t> positions(tokens);
          for (int64_t t = 0; t < tokens; ++t)
            positions[t] = static_cast<int32_t>((t * 7919 + 13) % 100003);
          std::vector<float> expected(n);
          cpu::rope(x.data(), positions.data(), tokens, heads, p, expected.data());
          float scaling = 1.0f;
          const std::vector<float> inverse = cpu::ropeInverseFrequencies(p, &scaling);
          DeviceBuffer dX = upload(type, x), dPos = uploadRaw(positions);
          DeviceBuffer dInv = uploadRaw(inverse);
          DeviceBuffer dOut(n * elementBytes(type));
          TPC_CUDA_OK(rope(type, dX.get(), dPos.as<int32_t>(), tokens, heads, headDim,
                           dInv.as<float>(), scaling, dOut.get(), nullptr));
          // Same f32 angle and the same double cos/sin rounded to f32: only FMA contraction in
          // the rotation differs (~1 ulp) before the output rounding.
          EXPECT_TRUE(
              allClose(download(type, dOut, n), toDouble(expected), storageTolerance(type)));
          // In place.
          TPC_CUDA_OK(rope(type, dX.get(), dPos.as<int32_t>(), tokens, heads, headDim,
                           dInv.as<float>(), scaling, dX.get(), nullptr));
          EXPECT_TRUE(allClose(download(type, dX, n), toDouble(expected), storageTolerance(type)));
        }
}

}  // namespace
}  // namespace tpc::cuda::test
