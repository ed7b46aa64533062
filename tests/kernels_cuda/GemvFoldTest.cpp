// The one-token GEMV's variants and the RMSNorm folded into it (kernels/cuda/Gemv.h). Every variant
// is checked against the CPU linear; variants that keep one warp per row sum in the same order and
// must agree bit for bit. A folded norm must give exactly what the norm kernel then the GEMV
// give (the GEMV repeats the norm kernel's arithmetic), and store add_rms_norm's sum as the norm
// kernel stores it.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/Gemv.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

const GemvVariant kVariants[] = {{0, 1}, {2, 1}, {2, 2}, {2, 4}, {4, 1},
                                 {4, 2}, {4, 4}, {8, 1}, {8, 2}, {8, 4}};

std::vector<uint8_t> bytesOf(const DeviceBuffer& buffer, size_t bytes) {
  return downloadRaw<uint8_t>(buffer, bytes);
}

TEST(CudaGemvVariants, EveryVariantMatchesCpuAndOneWarpPerRowIsBitIdentical) {
  TPC_REQUIRE_GPU();
  struct Shape {
    int64_t in, out;
  };
  for (ElementType type : kAllTypes)
    for (Shape shape :
         {Shape{16, 3}, Shape{4096, 129}, Shape{4104, 64}, Shape{14336, 40}, Shape{1000, 17}})
      for (bool f32Out : {false, true}) {
        const ElementType outType = f32Out ? ElementType::F32 : type;
        const int64_t elems = 16 / static_cast<int64_t>(elementBytes(type));
        if (shape.in % elems != 0) continue;
        SCOPED_TRACE(std::string(typeName(type)) + "->" + typeName(outType) + " in " +
                     std::to_string(shape.in) + " out " + std::to_string(shape.out));
        const auto seed = static_cast<uint32_t>(shape.in * 7 + shape.out);
        const std::vector<float> x = roundTo(type, randomFloats(shape.in, seed));
        const std::vector<float> w =
            roundTo(type, randomFloats(shape.out * shape.in, seed + 1, -0.05f, 0.05f));
        const std::vector<float> bias = roundTo(outType, randomFloats(shape.out, seed + 2));
        std::vector<float> expected(shape.out);
        cpu::linear(x.data(), w.data(), bias.data(), 1, shape.in, shape.out, expected.data());
        DeviceBuffer dX = upload(type, x), dW = upload(type, w), dBias = upload(outType, bias);
        const size_t yBytes = shape.out * elementBytes(outType);
        std::vector<uint8_t> oneWarpPerRow;
        for (GemvVariant v : kVariants) {
          SCOPED_TRACE(gemvVariantName(v));
          DeviceBuffer dY(yBytes);
          TPC_CUDA_OK(gemvWithVariant(v, type, outType, dX.get(), dW.get(), dBias.get(), shape.in,
                                      shape.out, dY.get(), nullptr));
          EXPECT_TRUE(allClose(download(outType, dY, shape.out), toDouble(expected),
                               storageTolerance(outType)));
          if (v.split != 1) continue;
          if (oneWarpPerRow.empty())
            oneWarpPerRow = bytesOf(dY, yBytes);
          else
            EXPECT_EQ(bytesOf(dY, yBytes), oneWarpPerRow);
        }
      }
}

TEST(CudaGemvVariants, ParsesOnlyWhatItRuns) {
  GemvVariant v;
  EXPECT_TRUE(parseGemvVariant("u2s4", &v));
  EXPECT_EQ(v, (GemvVariant{2, 4}));
  EXPECT_EQ(gemvVariantName(v), "u2s4");
  EXPECT_TRUE(parseGemvVariant("legacy", &v));
  EXPECT_EQ(gemvVariantName(v), "legacy");
  EXPECT_TRUE(parseGemvVariant("cublas", &v));
  EXPECT_EQ(gemvVariantName(v), "cublas");
  for (const char* bad : {"", "u3s1", "u16s1", "u4s3", "u4s1x", "s1u4", "u4"})
    EXPECT_FALSE(parseGemvVariant(bad, &v)) << bad;
}

struct NormCase {
  ElementType type;
  int64_t in;
  bool add;
};

TEST(CudaGemvFoldedNorm, GivesExactlyTheNormKernelThenTheGemv) {
  TPC_REQUIRE_GPU();
  for (NormCase c :
       {NormCase{ElementType::BF16, 4096, true}, NormCase{ElementType::BF16, 2048, false},
        NormCase{ElementType::BF16, 4104, true}, NormCase{ElementType::F16, 8192, true},
        NormCase{ElementType::F32, 4096, true}, NormCase{ElementType::F32, 2048, false}})
    for (int64_t out : {1, 77, 1024}) {
      SCOPED_TRACE(std::string(typeName(c.type)) + " in " + std::to_string(c.in) + " out " +
                   std::to_string(out) + (c.add ? " add_rms_norm" : " rms_norm"));
      const size_t rowBytes = c.in * elementBytes(c.type);
      const auto seed = static_cast<uint32_t>(c.in + out + c.add);
      DeviceBuffer dX = upload(c.type, randomFloats(c.in, seed, -3.0f, 3.0f));
      DeviceBuffer dResidual = upload(c.type, randomFloats(c.in, seed + 1, -3.0f, 3.0f));
      DeviceBuffer dGamma = upload(c.type, randomFloats(c.in, seed + 2, 0.5f, 1.5f));
      DeviceBuffer dW = upload(c.type, randomFloats(out * c.in, seed + 3, -0.05f, 0.05f));
      DeviceBuffer dBias = upload(c.type, randomFloats(out, seed + 4));
      const float eps = 1e-5f;
      // The unfused steps.
      DeviceBuffer dSum(rowBytes), dNormed(rowBytes), dY(out * elementBytes(c.type));
      if (c.add) {
        TPC_CUDA_OK(addRmsNorm(c.type, dX.get(), dResidual.get(), dGamma.get(), 1, c.in, eps,
                               dSum.get(), dNormed.get(), nullptr));
      } else {
        TPC_CUDA_OK(rmsNorm(c.type, dX.get(), dGamma.get(), 1, c.in, eps, dNormed.get(), nullptr));
      }
      TPC_CUDA_OK(gemvWithVariant({4, 1}, c.type, c.type, dNormed.get(), dW.get(), dBias.get(),
                                  c.in, out, dY.get(), nullptr));
      const std::vector<uint8_t> expectedY = bytesOf(dY, out * elementBytes(c.type));
      const std::vector<uint8_t> expectedSum =
          c.add ? bytesOf(dSum, rowBytes) : std::vector<uint8_t>{};

      GemvNorm norm;
      norm.x = dX.get();
      norm.residual = c.add ? dResidual.get() : nullptr;
      norm.weight = dGamma.get();
      norm.eps = eps;
      for (GemvVariant v : kVariants) {
        if (v.unroll == 0) continue;  // the legacy kernel takes no folded norm
        SCOPED_TRACE(gemvVariantName(v));
        DeviceBuffer dFoldedSum(rowBytes), dFoldedY(out * elementBytes(c.type));
        norm.sum = c.add ? dFoldedSum.get() : nullptr;
        ASSERT_TRUE(gemvNormSupports(c.type, c.in, norm));
        TPC_CUDA_OK(gemvWithVariant(v, c.type, c.type, nullptr, dW.get(), dBias.get(), c.in, out,
                                    dFoldedY.get(), nullptr, &norm));
        const std::vector<uint8_t> y = bytesOf(dFoldedY, out * elementBytes(c.type));
        if (v.split == 1) {
          EXPECT_EQ(y, expectedY);
        }
        // More warps per row sum in another order: close, not equal.
        EXPECT_TRUE(allClose(download(c.type, dFoldedY, out), toDouble(download(c.type, dY, out)),
                             2 * storageTolerance(c.type)));
        if (c.add) {
          EXPECT_EQ(bytesOf(dFoldedSum, rowBytes), expectedSum);
        }
      }
    }
}

TEST(CudaGemvFoldedNorm, RefusesRowsTheNormKernelDoesNotTakeInOneBlock) {
  alignas(16) static char buffer[64];
  GemvNorm norm;
  norm.x = buffer;
  norm.weight = buffer;
  EXPECT_TRUE(gemvNormSupports(ElementType::BF16, 4096, norm));
  EXPECT_FALSE(gemvNormSupports(ElementType::BF16, 1024, norm));   // warp-per-row norm path
  EXPECT_FALSE(gemvNormSupports(ElementType::BF16, 16384, norm));  // more than 1024 vectors
  EXPECT_FALSE(gemvNormSupports(ElementType::F32, 8192, norm));
  EXPECT_FALSE(gemvNormSupports(ElementType::BF16, 4100, norm));  // not whole vectors
  norm.residual = buffer;                                         // add_rms_norm without its sum
  EXPECT_FALSE(gemvNormSupports(ElementType::BF16, 4096, norm));
  norm.sum = buffer + 2;  // misaligned
  EXPECT_FALSE(gemvNormSupports(ElementType::BF16, 4096, norm));
}

}  // namespace
}  // namespace tpc::cuda::test
