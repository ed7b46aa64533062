// The small-batch GEMV (kernels/cuda/Gemv.h) against the CPU linear on the same rounded inputs:
// only the summation order differs, so results match to the output type's tolerance.
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/Gemv.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

TEST(CudaGemv, MatchesCpuLinearForEveryTokenCountAndType) {
  TPC_REQUIRE_GPU();
  struct Shape {
    int64_t in, out;
  };
  for (ElementType type : kAllTypes)
    for (Shape shape : {Shape{16, 1}, Shape{4096, 129}, Shape{4104, 64}, Shape{1024, 3000}})
      for (int64_t tokens = 1; tokens <= kMaxGemvTokens; ++tokens)
        for (bool withBias : {false, true})
          for (bool f32Out : {false, true}) {
            const ElementType outType = f32Out ? ElementType::F32 : type;
            SCOPED_TRACE(std::string(typeName(type)) + "->" + typeName(outType) + " in " +
                         std::to_string(shape.in) + " out " + std::to_string(shape.out) +
                         " tokens " + std::to_string(tokens) + (withBias ? " bias" : ""));
            const auto seed = static_cast<uint32_t>(shape.in + shape.out + tokens);
            const std::vector<float> x = roundTo(type, randomFloats(tokens * shape.in, seed));
            const std::vector<float> w =
                roundTo(type, randomFloats(shape.out * shape.in, seed + 1, -0.05f, 0.05f));
            const std::vector<float> bias = roundTo(outType, randomFloats(shape.out, seed + 2));
            std::vector<float> expected(tokens * shape.out);
            cpu::linear(x.data(), w.data(), withBias ? bias.data() : nullptr, tokens, shape.in,
                        shape.out, expected.data());
            DeviceBuffer dX = upload(type, x), dW = upload(type, w), dBias = upload(outType, bias);
            DeviceBuffer dY(tokens * shape.out * elementBytes(outType));
            ASSERT_TRUE(gemvSupports(type, tokens, shape.in, dX.get(), dW.get()));
            TPC_CUDA_OK(gemv(type, outType, dX.get(), dW.get(), withBias ? dBias.get() : nullptr,
                             tokens, shape.in, shape.out, dY.get(), nullptr));
            EXPECT_TRUE(allClose(download(outType, dY, tokens * shape.out), toDouble(expected),
                                 storageTolerance(outType)));
          }
}

TEST(CudaGemv, RefusesShapesItCannotStream) {
  const ElementType bf16 = ElementType::BF16;
  alignas(16) static char buffer[64];
  EXPECT_FALSE(gemvSupports(bf16, 0, 4096, buffer, buffer));
  EXPECT_FALSE(gemvSupports(bf16, kMaxGemvTokens + 1, 4096, buffer, buffer));
  EXPECT_FALSE(gemvSupports(bf16, 1, 4095, buffer, buffer));   // rows not whole 16-byte vectors
  EXPECT_FALSE(gemvSupports(bf16, 1, 4096, buffer + 2, buffer));  // misaligned x
  EXPECT_TRUE(gemvSupports(bf16, 1, 4096, buffer, buffer));
}

}  // namespace
}  // namespace tpc::cuda::test
