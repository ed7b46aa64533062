// The vision tower's CUDA kernels against their CPU twins (kernels/cpu/Vision.h), on inputs
// rounded to each storage type: one f32 computation and one rounding, so the storage tolerance.
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

}  // namespace
}  // namespace tpc::cuda::test
