// The small-batch GEMV (kernels/cuda/Gemv.h) against the CPU linear on the same rounded inputs:
// only the summation order differs, so results match to the output type's tolerance.
#include <cmath>
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
  EXPECT_FALSE(gemvSupports(bf16, 1, 4095, buffer, buffer));      // rows not whole 16-byte vectors
  EXPECT_FALSE(gemvSupports(bf16, 1, 4096, buffer + 2, buffer));  // misaligned x
  EXPECT_TRUE(gemvSupports(bf16, 1, 4096, buffer, buffer));
}

// The paired gate/up GEMV against the three CPU steps it replaces: linear, split, swiglu, each
// result rounded to the storage type as the plan's buffers hold them.
TEST(CudaGemv, SwigluPairMatchesLinearSplitSwiglu) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (int64_t in : {64, 4096})
      for (int64_t half : {1, 100, 1792})
        for (bool withBias : {false, true}) {
          SCOPED_TRACE(std::string(typeName(type)) + " in " + std::to_string(in) + " half " +
                       std::to_string(half) + (withBias ? " bias" : ""));
          const auto seed = static_cast<uint32_t>(in + half);
          const std::vector<float> x = roundTo(type, randomFloats(in, seed));
          const std::vector<float> w =
              roundTo(type, randomFloats(2 * half * in, seed + 1, -0.1f, 0.1f));
          const std::vector<float> bias = roundTo(type, randomFloats(2 * half, seed + 2));
          std::vector<float> gateUp(2 * half), act(half);
          cpu::linear(x.data(), w.data(), withBias ? bias.data() : nullptr, 1, in, 2 * half,
                      gateUp.data());
          gateUp = roundTo(type, gateUp);
          cpu::swiglu(gateUp.data(), gateUp.data() + half, half, act.data());
          DeviceBuffer dX = upload(type, x), dW = upload(type, w), dBias = upload(type, bias);
          DeviceBuffer dY(half * elementBytes(type));
          TPC_CUDA_OK(gemvSwiglu(type, dX.get(), dW.get(), withBias ? dBias.get() : nullptr, in,
                                 half, dY.get(), nullptr));
          // Gate and up may round differently after a different summation order; silu * up
          // carries that, so twice the storage tolerance.
          EXPECT_TRUE(
              allClose(download(type, dY, half), toDouble(act), 2 * storageTolerance(type)));
          // Every variant the table may choose, and the first pair kernel.
          for (const char* name :
               {"legacy", "u2s1", "u2s2", "u2s4", "u4s1", "u4s2", "u4s4", "u8s1", "u8s2", "u8s4"}) {
            SCOPED_TRACE(name);
            GemvVariant variant;
            ASSERT_TRUE(parseGemvVariant(name, &variant));
            TPC_CUDA_OK(cudaMemset(dY.get(), 0xff, half * elementBytes(type)));  // NaN if unwritten
            TPC_CUDA_OK(gemvSwigluWithVariant(variant, type, dX.get(), dW.get(),
                                              withBias ? dBias.get() : nullptr, in, half, dY.get(),
                                              nullptr));
            EXPECT_TRUE(
                allClose(download(type, dY, half), toDouble(act), 2 * storageTolerance(type)));
          }
        }
}

// Wide rows take the sliced argmax: ties go to the lowest index, -0 equals +0, NaN never wins.
TEST(CudaArgmax, WideRowsMatchCpu) {
  TPC_REQUIRE_GPU();
  for (int64_t vocab : {16384, 128256, 151936})
    for (int64_t rows : {1, 3, 64}) {
      SCOPED_TRACE("vocab " + std::to_string(vocab) + " rows " + std::to_string(rows));
      std::vector<float> logits =
          randomFloats(rows * vocab, static_cast<uint32_t>(vocab + rows), -5.0f, 5.0f);
      for (int64_t r = 0; r < rows; ++r) {
        float* row = logits.data() + r * vocab;
        const int64_t a = (r * 7919) % vocab, b = (a + vocab / 3) % vocab;
        row[a] = row[b] = 9.0f;  // a tie at the maximum
        row[(a + 1) % vocab] = std::nanf("");
      }
      logits[0] = 0.0f;  // row 0 of all-equal zeros below: -0 and +0 tie
      std::vector<int32_t> expected(rows);
      for (int64_t r = 0; r < rows; ++r)
        expected[r] = static_cast<int32_t>(cpu::argmax(logits.data() + r * vocab, vocab));
      DeviceBuffer dLogits = upload(ElementType::F32, logits);
      DeviceBuffer dOut(rows * sizeof(int32_t));
      TPC_CUDA_OK(argmax(dLogits.as<float>(), rows, vocab, dOut.as<int32_t>(), nullptr));
      EXPECT_EQ(downloadRaw<int32_t>(dOut, rows), expected);
    }
  std::vector<float> zeros(20000, 0.0f);
  zeros[5] = -0.0f;
  zeros[3] = -0.0f;
  DeviceBuffer dZeros = upload(ElementType::F32, zeros);
  DeviceBuffer dOut(sizeof(int32_t));
  TPC_CUDA_OK(argmax(dZeros.as<float>(), 1, 20000, dOut.as<int32_t>(), nullptr));
  EXPECT_EQ(downloadRaw<int32_t>(dOut, 1)[0], 0);
}

}  // namespace
}  // namespace tpc::cuda::test
