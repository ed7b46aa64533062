// The vision tower's CUDA kernels against their CPU twins (kernels/cpu/Vision.h), on inputs
// rounded to each storage type: one f32 computation and one rounding, so the storage tolerance.
#include <cmath>
#include <utility>
#include <vector>

#include "kernels/cpu/Vision.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

TEST(CudaVision, LayerNormWithBiasMatchesCpu) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (int64_t width : {1, 31, 1024, 1280, 4099}) {
      SCOPED_TRACE(std::string(typeName(type)) + " width " + std::to_string(width));
      const int64_t rows = 577;  // a CLIP-L/336 image: class slot and 576 patches
      const std::vector<float> x = roundTo(type, randomFloats(rows * width, 1, -3.0f, 5.0f));
      const std::vector<float> w = roundTo(type, randomFloats(width, 2, 0.5f, 1.5f));
      const std::vector<float> b = roundTo(type, randomFloats(width, 3));
      std::vector<float> expected(x.size());
      cpu::layerNorm(x.data(), w.data(), b.data(), rows, width, 1e-5f, expected.data());
      DeviceBuffer dX = upload(type, x), dW = upload(type, w), dB = upload(type, b);
      DeviceBuffer dOut(x.size() * elementBytes(type));
      TPC_CUDA_OK(
          layerNorm(type, dX.get(), dW.get(), dB.get(), rows, width, 1e-5f, dOut.get(), nullptr));
      EXPECT_TRUE(
          allClose(download(type, dOut, x.size()), toDouble(expected), storageTolerance(type)));
      // In place, as the backend may run it.
      TPC_CUDA_OK(
          layerNorm(type, dX.get(), dW.get(), dB.get(), rows, width, 1e-5f, dX.get(), nullptr));
      EXPECT_TRUE(
          allClose(download(type, dX, x.size()), toDouble(expected), storageTolerance(type)));
    }
}

TEST(CudaVision, GeluQuickGeluAndBiasAddMatchCpu) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (int64_t count : {1, 129, 4096 * 3, 1 << 20}) {
      SCOPED_TRACE(std::string(typeName(type)) + " count " + std::to_string(count));
      const std::vector<float> x = roundTo(type, randomFloats(count, 4, -8.0f, 8.0f));
      std::vector<float> g(count), q(count);
      cpu::gelu(x.data(), count, g.data());
      cpu::quickGelu(x.data(), count, q.data());
      DeviceBuffer dX = upload(type, x);
      DeviceBuffer dG(count * elementBytes(type)), dQ(count * elementBytes(type));
      TPC_CUDA_OK(gelu(type, dX.get(), count, dG.get(), nullptr));
      TPC_CUDA_OK(quickGelu(type, dX.get(), count, dQ.get(), nullptr));
      EXPECT_TRUE(allClose(download(type, dG, count), toDouble(g), storageTolerance(type)));
      EXPECT_TRUE(allClose(download(type, dQ, count), toDouble(q), storageTolerance(type)));

      const int64_t width = count % 3 == 0 ? 3 : 1, rows = count / width;
      const std::vector<float> bias = roundTo(type, randomFloats(width, 5));
      std::vector<float> sum(count);
      cpu::biasAdd(x.data(), bias.data(), rows, width, sum.data());
      DeviceBuffer dBias = upload(type, bias), dSum(count * elementBytes(type));
      TPC_CUDA_OK(biasAdd(type, dX.get(), dBias.get(), rows, width, dSum.get(), nullptr));
      EXPECT_TRUE(allClose(download(type, dSum, count), toDouble(sum), storageTolerance(type)));
    }
}

TEST(CudaVision, VisionEmbedMatchesCpu) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (auto [rows, width] : {std::pair<int64_t, int64_t>{1, 7}, {17, 32}, {577, 1024}}) {
      SCOPED_TRACE(std::string(typeName(type)) + " rows " + std::to_string(rows));
      const std::vector<float> x = roundTo(type, randomFloats(rows * width, 6));
      const std::vector<float> cls = roundTo(type, randomFloats(width, 7));
      const std::vector<float> pos = roundTo(type, randomFloats(rows * width, 8));
      std::vector<float> expected(x.size());
      cpu::visionEmbed(x.data(), cls.data(), pos.data(), rows, width, expected.data());
      DeviceBuffer dX = upload(type, x), dC = upload(type, cls), dP = upload(type, pos);
      DeviceBuffer dOut(x.size() * elementBytes(type));
      TPC_CUDA_OK(
          visionEmbed(type, dX.get(), dC.get(), dP.get(), rows, width, dOut.get(), nullptr));
      EXPECT_TRUE(
          allClose(download(type, dOut, x.size()), toDouble(expected), storageTolerance(type)));
    }
}

// Shapes of the tiny golden tower (4 dims per head), CLIP-L/336 (577 rows, 64 dims), a head
// wider than the block (160) and one row; scores spread wide enough that the softmax is peaked.
TEST(CudaVision, EncoderAttentionMatchesCpu) {
  TPC_REQUIRE_GPU();
  struct Shape {
    int64_t rows, heads, headDim;
  };
  for (ElementType type : kAllTypes)
    for (Shape sh : {Shape{17, 8, 4}, Shape{577, 4, 64}, Shape{50, 2, 160}, Shape{1, 3, 64}}) {
      SCOPED_TRACE(std::string(typeName(type)) + " rows " + std::to_string(sh.rows) + " dim " +
                   std::to_string(sh.headDim));
      const int64_t n = sh.rows * sh.heads * sh.headDim;
      const std::vector<float> q = roundTo(type, randomFloats(n, 9, -2.0f, 2.0f));
      const std::vector<float> k = roundTo(type, randomFloats(n, 10, -2.0f, 2.0f));
      const std::vector<float> v = roundTo(type, randomFloats(n, 11));
      const float scale = 1.0f / std::sqrt(static_cast<float>(sh.headDim));
      std::vector<float> expected(static_cast<size_t>(n));
      cpu::encoderAttention(q.data(), k.data(), v.data(), sh.rows, sh.heads, sh.headDim, scale,
                            expected.data());
      DeviceBuffer dQ = upload(type, q), dK = upload(type, k), dV = upload(type, v);
      DeviceBuffer dOut(static_cast<size_t>(n) * elementBytes(type));
      TPC_CUDA_OK(encoderAttention(type, dQ.get(), dK.get(), dV.get(), sh.rows, sh.heads,
                                   sh.headDim, scale, dOut.get(), nullptr));
      EXPECT_TRUE(allClose(download(type, dOut, static_cast<size_t>(n)), toDouble(expected),
                           storageTolerance(type)));
    }
  // More rows than one row's scores fit in shared memory: refused, never a wrong answer.
  EXPECT_EQ(encoderAttention(ElementType::F32, nullptr, nullptr, nullptr, 100000, 1, 64, 1.0f,
                             nullptr, nullptr),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace tpc::cuda::test
