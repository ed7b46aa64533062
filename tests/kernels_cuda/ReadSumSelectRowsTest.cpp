// The read-bandwidth probe's sum and the logit-row selection against plain host loops.
#include <cstring>
#include <numeric>
#include <vector>

#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

TEST(CudaReadSum, WrappingSumOfEveryWord) {
  TPC_REQUIRE_GPU();
  // Sizes below one vector per thread, around the unrolled stride's edge, and several MiB.
  for (size_t words : {size_t{4}, size_t{1000} * 4, size_t{3} << 20}) {
    std::vector<uint32_t> data(words);
    for (size_t i = 0; i < words; ++i) data[i] = static_cast<uint32_t>(i * 2654435761u + 7);
    const uint32_t expected = std::accumulate(data.begin(), data.end(), uint32_t{0});
    DeviceBuffer device = uploadRaw(data), sum(sizeof(uint32_t));
    TPC_CUDA_OK(readSum(device.get(), words * 4, sum.as<uint32_t>(), nullptr));
    EXPECT_EQ(downloadRaw<uint32_t>(sum, 1)[0], expected) << words << " words";
  }
  DeviceBuffer odd(20), sum(4);
  EXPECT_EQ(readSum(odd.get(), 20, sum.as<uint32_t>(), nullptr), cudaErrorInvalidValue);
}

TEST(CudaSelectRows, CopiesTheNamedRowsInOrder) {
  TPC_REQUIRE_GPU();
  for (ElementType type : kAllTypes) {
    const int64_t tokens = 9, width = 4099;
    const std::vector<float> x = roundTo(type, randomFloats(tokens * width, 3));
    const std::vector<int32_t> rows = {0, 4, 5, 8};
    std::vector<float> expected;
    for (int32_t r : rows)
      expected.insert(expected.end(), x.begin() + r * width, x.begin() + (r + 1) * width);
    DeviceBuffer dX = upload(type, x), dRows = uploadRaw(rows);
    DeviceBuffer dOut(expected.size() * elementBytes(type));
    TPC_CUDA_OK(selectRows(type, dX.get(), dRows.as<int32_t>(), static_cast<int64_t>(rows.size()),
                           width, dOut.get(), nullptr));
    EXPECT_EQ(download(type, dOut, expected.size()), expected) << typeName(type);
  }
}

}  // namespace
}  // namespace tpc::cuda::test
