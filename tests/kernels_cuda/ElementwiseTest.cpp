// Element-wise kernels against their CPU twins. Copies (embedding, copyColumns, toFloat) must be
// exact; add and swiglu compute in f32 and round once, so they get the storage tolerance.
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/FillHash.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

TEST(CudaElementwise, EmbeddingCopiesOwnedRowsAndZeroesOthers) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (int64_t hidden : {16, 129, 4096, 4099}) {
      SCOPED_TRACE(std::string(typeName(type)) + " hidden " + std::to_string(hidden));
      const int64_t rows = 50, firstRow = 100;
      const std::vector<float> table = roundTo(type, randomFloats(rows * hidden, 1));
      // Ids below, inside and past this rank's range [100, 150).
      const std::vector<int32_t> ids = {100, 0, 149, 150, 123, 99, 100, 131, 7, 149, 120};
      const auto tokens = static_cast<int64_t>(ids.size());
      std::vector<float> expected(tokens * hidden);
      cpu::embedding(ids.data(), tokens, table.data(), rows, firstRow, hidden, expected.data());
      DeviceBuffer dTable = upload(type, table);
      DeviceBuffer dIds = uploadRaw(ids);
      DeviceBuffer dOut(tokens * hidden * elementBytes(type));
      dOut.fill(0x7f);  // garbage, so zero rows must be written
      TPC_CUDA_OK(embedding(type, dIds.as<int32_t>(), tokens, dTable.get(), rows, firstRow, hidden,
                            dOut.get(), nullptr));
      EXPECT_EQ(download(type, dOut, tokens * hidden), expected);
    }
}

TEST(CudaElementwise, AddAndSwigluMatchCpu) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (int64_t count : {1, 7, 16, 129, 4096, 4099, 1 << 20}) {
      SCOPED_TRACE(std::string(typeName(type)) + " count " + std::to_string(count));
      // Gate values over [-12, 12] reach both silu tails.
      const std::vector<float> a = roundTo(type, randomFloats(count, 2, -12.0f, 12.0f));
      const std::vector<float> b = roundTo(type, randomFloats(count, 3));
      std::vector<float> sum(count), product(count);
      cpu::add(a.data(), b.data(), count, sum.data());
      cpu::swiglu(a.data(), b.data(), count, product.data());
      DeviceBuffer dA = upload(type, a), dB = upload(type, b);
      DeviceBuffer dSum(count * elementBytes(type)), dProduct(count * elementBytes(type));
      TPC_CUDA_OK(add(type, dA.get(), dB.get(), count, dSum.get(), nullptr));
      TPC_CUDA_OK(swiglu(type, dA.get(), dB.get(), count, dProduct.get(), nullptr));
      // One rounding of an f32 result (exact for f32 add; expf may differ by an ulp or two).
      EXPECT_TRUE(allClose(download(type, dSum, count), toDouble(sum), storageTolerance(type)));
      EXPECT_TRUE(
          allClose(download(type, dProduct, count), toDouble(product), storageTolerance(type)));
    }
}

// swigluHalves over a gate/up linear's rows: the same bits as splitting them and then swiglu, on
// the vector path (widths of whole 16-byte vectors) and the scalar one.
TEST(CudaElementwise, SwigluHalvesIsSplitThenSwigluExactly) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (int64_t width : {7, 16, 4099, 14336})
      for (int64_t tokens : {1, 3, 8}) {
        SCOPED_TRACE(std::string(typeName(type)) + " width " + std::to_string(width) + " tokens " +
                     std::to_string(tokens));
        const std::vector<float> rows =
            roundTo(type, randomFloats(tokens * 2 * width, 4, -12.0f, 12.0f));
        const size_t half = static_cast<size_t>(tokens * width) * elementBytes(type);
        DeviceBuffer dRows = upload(type, rows), gate(half), up(half), split(half), fused(half);
        const int64_t widths[2] = {width, width};
        void* outs[2] = {gate.get(), up.get()};
        TPC_CUDA_OK(splitColumns(type, dRows.get(), tokens, 2 * width, widths, outs, 2, nullptr));
        TPC_CUDA_OK(swiglu(type, gate.get(), up.get(), tokens * width, split.get(), nullptr));
        fused.fill(0x7f);
        TPC_CUDA_OK(swigluHalves(type, dRows.get(), tokens, width, fused.get(), nullptr));
        EXPECT_EQ(downloadRaw<uint8_t>(fused, half), downloadRaw<uint8_t>(split, half));
      }
}

TEST(CudaElementwise, AddMayWriteInPlace) {
  TPC_REQUIRE_GPU();
  const ElementType type = ElementType::BF16;
  const int64_t count = 4099;
  const std::vector<float> a = roundTo(type, randomFloats(count, 4));
  const std::vector<float> b = roundTo(type, randomFloats(count, 5));
  std::vector<float> expected(count);
  cpu::add(a.data(), b.data(), count, expected.data());
  DeviceBuffer dA = upload(type, a), dB = upload(type, b);
  TPC_CUDA_OK(add(type, dA.get(), dB.get(), count, dA.get(), nullptr));
  EXPECT_TRUE(allClose(download(type, dA, count), toDouble(expected), storageTolerance(type)));
}

TEST(CudaElementwise, CopyColumnsTakesTheSliceExactly) {
  TPC_REQUIRE_GPU();
  struct Case {
    int64_t tokens, inWidth, offset, width;
  };
  // Aligned slices (vector path) and odd ones (scalar path).
  const Case cases[] = {{1, 4096, 1024, 1024},    {3, 129, 5, 64},   {37, 4099, 0, 4099},
                        {257, 48, 16, 16},        {5, 1000, 999, 1}, {2, 8192, 4096, 4096},
                        {64, 28672, 14336, 14336}};  // a batch of decode rows' up half
  for (ElementType type : kAllTypes)
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(typeName(type)) + " inWidth " + std::to_string(c.inWidth) +
                   " offset " + std::to_string(c.offset));
      const std::vector<float> x = roundTo(type, randomFloats(c.tokens * c.inWidth, 6));
      std::vector<float> expected(c.tokens * c.width);
      for (int64_t t = 0; t < c.tokens; ++t)
        for (int64_t i = 0; i < c.width; ++i)
          expected[t * c.width + i] = x[t * c.inWidth + c.offset + i];
      DeviceBuffer dX = upload(type, x);
      DeviceBuffer dOut(c.tokens * c.width * elementBytes(type));
      TPC_CUDA_OK(
          copyColumns(type, dX.get(), c.tokens, c.inWidth, c.offset, c.width, dOut.get(), nullptr));
      EXPECT_EQ(download(type, dOut, c.tokens * c.width), expected);
    }
}

// A split's results in one launch: each part exactly its columns, on the vector path (a layer's
// q/k/v and gate/up at decode batch sizes) and the scalar one (odd widths).
TEST(CudaElementwise, SplitColumnsTakesEveryPartExactly) {
  TPC_REQUIRE_GPU();
  const std::vector<std::pair<int64_t, std::vector<int64_t>>> cases = {
      {8, {4096, 1024, 1024}}, {64, {14336, 14336}}, {3, {5, 7, 9}}, {1, {16, 8, 24, 8}}};
  for (ElementType type : kAllTypes)
    for (const auto& [tokens, widths] : cases) {
      int64_t inWidth = 0;
      for (int64_t w : widths) inWidth += w;
      SCOPED_TRACE(std::string(typeName(type)) + " tokens " + std::to_string(tokens) + " inWidth " +
                   std::to_string(inWidth));
      const std::vector<float> x = roundTo(type, randomFloats(tokens * inWidth, 8));
      std::vector<DeviceBuffer> outs;
      std::vector<void*> pointers;
      for (int64_t w : widths) {
        outs.emplace_back(tokens * w * elementBytes(type));
        outs.back().fill(0xff);  // NaN where nothing is written
        pointers.push_back(outs.back().get());
      }
      DeviceBuffer dX = upload(type, x);
      TPC_CUDA_OK(splitColumns(type, dX.get(), tokens, inWidth, widths.data(), pointers.data(),
                               static_cast<int>(widths.size()), nullptr));
      int64_t offset = 0;
      for (size_t p = 0; p < widths.size(); ++p) {
        std::vector<float> expected(tokens * widths[p]);
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t i = 0; i < widths[p]; ++i)
            expected[t * widths[p] + i] = x[t * inWidth + offset + i];
        EXPECT_EQ(download(type, outs[p], tokens * widths[p]), expected) << "part " << p;
        offset += widths[p];
      }
    }
  std::vector<int64_t> tooMany(kMaxSplitParts + 1, 8);
  std::vector<void*> none(tooMany.size(), nullptr);
  EXPECT_EQ(splitColumns(ElementType::F32, nullptr, 1, 8 * static_cast<int64_t>(tooMany.size()),
                         tooMany.data(), none.data(), static_cast<int>(tooMany.size()), nullptr),
            cudaErrorInvalidValue);
}

TEST(CudaElementwise, ToFloatIsExact) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes)
    for (int64_t count : {1, 13, 4096, 128257}) {
      SCOPED_TRACE(std::string(typeName(type)) + " count " + std::to_string(count));
      const std::vector<float> x = roundTo(type, randomFloats(count, 7, -30.0f, 30.0f));
      DeviceBuffer dX = upload(type, x);
      DeviceBuffer dOut(count * sizeof(float));
      TPC_CUDA_OK(toFloat(type, dX.get(), count, dOut.as<float>(), nullptr));
      EXPECT_EQ(downloadRaw<float>(dOut, count), x);
    }
}

TEST(CudaElementwise, FillUniformFollowsTheSharedHash) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes) {
    SCOPED_TRACE(typeName(type));
    const int64_t count = 100003;
    const float scale = 0.05f;
    std::vector<float> expected(count);
    for (int64_t i = 0; i < count; ++i) expected[i] = fillUniformValue(42, i, scale);
    DeviceBuffer dOut(count * elementBytes(type));
    TPC_CUDA_OK(fillUniform(type, dOut.get(), count, scale, 42, nullptr));
    const std::vector<float> values = download(type, dOut, count);
    // Same hash on both sides: equal once rounded to the storage type.
    EXPECT_EQ(values, roundTo(type, expected));
    double mean = 0.0;
    // Rounding to bf16 (2^-8 relative) may carry a value just past the f32 bound.
    for (float v : values) {
      ASSERT_LE(std::abs(v), scale * 1.01f);
      mean += v;
    }
    // Uniform on [-s, s): the mean of 1e5 draws is within a few s / sqrt(3e5) of zero.
    EXPECT_NEAR(mean / count, 0.0, 5 * scale / std::sqrt(3.0 * count));
  }
  // A different seed gives different values.
  EXPECT_NE(fillUniformValue(1, 0, 1.0f), fillUniformValue(2, 0, 1.0f));
}

}  // namespace
}  // namespace tpc::cuda::test
