// argmax and sample against cpu::argmax / cpu::sample. Token choices are compared exactly: the GPU
// gets the very draw cpu::sample takes from its RNG state (cpu::drawUniform). With up to ~2000
// survivors the kernel repeats the CPU's sums in its order, so agreement is exact; past that
// (plain temperature, top-p over a large vocabulary, very large top-k) it sums f32 masses in
// another order, which could only disagree when a draw lands within ~1e-7 of a boundary between
// two tokens - with these logits and draws that does not happen.
#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/SampleRows.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

std::vector<int32_t> gpuArgmax(const std::vector<float>& logits, int64_t rows, int64_t vocab) {
  DeviceBuffer dLogits = uploadRaw(logits), dOut(rows * sizeof(int32_t));
  EXPECT_EQ(argmax(dLogits.as<float>(), rows, vocab, dOut.as<int32_t>(), nullptr), cudaSuccess);
  return downloadRaw<int32_t>(dOut, rows);
}

TEST(CudaSampling, ArgmaxTakesTheLowestIndexOfTheMaximum) {
  TPC_REQUIRE_GPU();
  for (int64_t vocab : {1, 16, 129, 4099, 128256})
    for (int64_t rows : {1, 3, 37}) {
      SCOPED_TRACE("vocab " + std::to_string(vocab) + " rows " + std::to_string(rows));
      std::vector<float> logits = randomFloats(rows * vocab, 400, -10.0f, 10.0f);
      std::mt19937 rng(401);
      for (int64_t r = 0; r < rows; ++r) {
        float* row = &logits[r * vocab];
        if (r % 3 == 1) {
          // The maximum twice (or three times): the first occurrence wins.
          const int64_t a = rng() % vocab, b = rng() % vocab, c = rng() % vocab;
          row[a] = row[b] = row[c] = 20.0f;
        } else if (r % 3 == 2) {
          std::fill(row, row + vocab, -1.5f);  // all tied: index 0
        }
      }
      std::vector<int32_t> expected(rows);
      for (int64_t r = 0; r < rows; ++r)
        expected[r] = static_cast<int32_t>(cpu::argmax(&logits[r * vocab], vocab));
      EXPECT_EQ(gpuArgmax(logits, rows, vocab), expected);
    }
}

struct SampleCase {
  const char* name;
  int64_t vocab;
  cpu::SamplingParams params;
  // Logits on a grid of this many levels (ties) instead of continuous values; 0: continuous.
  int levels = 0;
};

// Continuous logits are a shuffled arithmetic sequence: well separated, no ties.
std::vector<float> makeLogits(const SampleCase& c, int64_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> logits(rows * c.vocab);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = &logits[r * c.vocab];
    if (c.levels > 0) {
      for (int64_t i = 0; i < c.vocab; ++i)
        row[i] = static_cast<float>(rng() % c.levels) * (12.0f / c.levels) - 6.0f;
    } else {
      std::vector<int64_t> order(c.vocab);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      // Spread over ~[-8, 8] whatever the vocabulary size.
      const float step = 16.0f / static_cast<float>(c.vocab);
      for (int64_t i = 0; i < c.vocab; ++i) row[i] = static_cast<float>(order[i]) * step - 8.0f;
    }
  }
  return logits;
}

TEST(CudaSampling, SampleAgreesWithCpuForTheSameDraw) {
  TPC_REQUIRE_GPU();
  const SampleCase cases[] = {
      {"greedy", 4099, {0.0f, 0, 1.0f}},
      {"plain temperature", 128256, {0.7f, 0, 1.0f}},
      {"plain temperature small vocab", 100, {1.3f, 0, 1.0f}},
      {"top-k", 128256, {1.0f, 50, 1.0f}},
      {"top-k and top-p", 32000, {0.8f, 40, 0.9f}},
      {"top-k 1", 4099, {1.0f, 1, 1.0f}},
      {"top-p small vocab (sorted in shared memory)", 2000, {1.0f, 0, 0.8f}},
      {"top-p large vocab, nucleus past the top 2048 (bisection)", 128256, {1.2f, 0, 0.95f}},
      {"top-p large vocab, nucleus within the top 2048", 50000, {0.6f, 0, 0.3f}},
      {"top-k above the shared capacity", 32000, {1.0f, 3000, 1.0f}},
      {"top-k above capacity and top-p", 32000, {1.0f, 3000, 0.7f}},
      {"top-k with ties at the k-th logit", 1000, {1.0f, 10, 1.0f}, 40},
      {"top-k with ties and top-p", 1000, {0.9f, 25, 0.6f}, 30},
      {"top-p with ties, large vocab", 60000, {1.0f, 0, 0.9f}, 300},
      {"plain temperature with ties", 5000, {1.0f, 0, 1.0f}, 7},
      {"top-k >= vocab is off", 300, {1.0f, 300, 1.0f}},
  };
  const int64_t rows = 24;  // each row its own logits and draw
  for (const SampleCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::vector<float> logits = makeLogits(c, rows, 500);
    std::vector<double> uniforms(rows);
    std::vector<int32_t> expected(rows);
    for (int64_t r = 0; r < rows; ++r) {
      uint64_t state = 0x1234 + 977 * r;
      uint64_t copy = state;
      uniforms[r] = cpu::drawUniform(copy);
      expected[r] =
          static_cast<int32_t>(cpu::sample(&logits[r * c.vocab], c.vocab, c.params, state));
      if (c.params.temperature > 0) {
        ASSERT_EQ(state, copy) << "sample draws exactly once";
      }
    }
    DeviceBuffer dLogits = uploadRaw(logits), dUniforms = uploadRaw(uniforms);
    DeviceBuffer workspace(sampleWorkspaceBytes(rows, c.vocab));
    DeviceBuffer dOut(rows * sizeof(int32_t));
    TPC_CUDA_OK(sample(dLogits.as<float>(), rows, c.vocab, c.params.temperature, c.params.topK,
                       c.params.topP, dUniforms.as<double>(), workspace.get(), dOut.as<int32_t>(),
                       nullptr));
    EXPECT_EQ(downloadRaw<int32_t>(dOut, rows), expected);
  }
}

TEST(CudaSampling, ExtremeDrawsPickTheEnds) {
  TPC_REQUIRE_GPU();
  // u = 0 takes the first token of the walk, u just below 1 the last survivor.
  const SampleCase c{"ends", 3000, {1.0f, 0, 0.5f}};
  const int64_t rows = 2;
  const std::vector<float> logits = makeLogits(c, rows, 600);
  const std::vector<double> uniforms = {0.0, 1.0 - 0x1.0p-53};
  DeviceBuffer dLogits = uploadRaw(logits), dUniforms = uploadRaw(uniforms);
  DeviceBuffer dOut(rows * sizeof(int32_t));
  TPC_CUDA_OK(sample(dLogits.as<float>(), rows, c.vocab, 1.0f, 0, 0.5f, dUniforms.as<double>(),
                     nullptr, dOut.as<int32_t>(), nullptr));
  const std::vector<int32_t> got = downloadRaw<int32_t>(dOut, rows);
  EXPECT_EQ(got[0], cpu::argmax(&logits[0], c.vocab));
  // The CPU twin with a state whose draw is the same value is not constructible; check the
  // survivor instead: a token inside the top-p nucleus, i.e. not below the median logit.
  std::vector<float> sorted(logits.begin() + c.vocab, logits.end());
  std::nth_element(sorted.begin(), sorted.begin() + c.vocab / 2, sorted.end());
  EXPECT_GE(logits[c.vocab + got[1]], sorted[c.vocab / 2]);
}

// Every row with its own parameters and draw, greedy rows among them, against
// cpu::sampleWithDraw row by row. Logits are a shuffled arithmetic sequence (no ties).
TEST(CudaSampling, SampleRowsTakesEachRowsOwnParameters) {
  TPC_REQUIRE_GPU();
  for (int64_t vocab : {int64_t{4099}, int64_t{128256}}) {
    SCOPED_TRACE("vocab " + std::to_string(vocab));
    const std::vector<SamplingRow> params = {
        {0.0f, 0, 1.0f, 0.5},  {0.8f, 0, 1.0f, 0.3},   {1.0f, 40, 1.0f, 0.9},
        {0.7f, 0, 0.9f, 0.05}, {1.2f, 50, 0.8f, 0.6},  {0.0f, 40, 0.5f, 0.99},
        {0.6f, 1, 1.0f, 0.42}, {1.0f, 0, 0.95f, 0.77},
    };
    const auto rows = static_cast<int64_t>(params.size());
    std::vector<float> logits(static_cast<size_t>(rows * vocab));
    std::mt19937 rng(77);
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<float> row(static_cast<size_t>(vocab));
      for (int64_t i = 0; i < vocab; ++i) row[i] = -8.0f + 16.0f * i / vocab;
      std::shuffle(row.begin(), row.end(), rng);
      std::copy(row.begin(), row.end(), logits.begin() + r * vocab);
    }
    std::vector<int32_t> expected;
    for (int64_t r = 0; r < rows; ++r) {
      cpu::SamplingParams p;
      p.temperature = params[r].temperature;
      p.topK = params[r].topK;
      p.topP = params[r].topP;
      expected.push_back(static_cast<int32_t>(
          cpu::sampleWithDraw(&logits[r * vocab], vocab, p, params[r].uniform)));
    }
    DeviceBuffer dLogits = uploadRaw(logits), dParams = uploadRaw(params);
    DeviceBuffer dOut(rows * sizeof(int32_t));
    TPC_CUDA_OK(sampleRows(dLogits.as<float>(), rows, vocab, dParams.as<SamplingRow>(),
                           dOut.as<int32_t>(), nullptr));
    EXPECT_EQ(downloadRaw<int32_t>(dOut, rows), expected);
  }
}

}  // namespace
}  // namespace tpc::cuda::test
