// What a node without the checkpoint receives: for every rank of an 8-way plan (row and column
// splits, vocab padding, MoE experts, KV replication), the packed slices read by the head and
// converted on arrival equal what the loader reads from the file, bit for bit; any chunking of
// a slice gives the same bytes; out-of-range requests from a peer are refused.
#include <gtest/gtest.h>

#include <cstring>

#include "codegen/WeightSliceLayout.h"
#include "executor/WeightLoader.h"
#include "executor/WeightSlices.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

TEST(WeightStream, PackedSlicesRebuildExactlyWhatTheLoaderReads) {
  test::TempDir dir;
  for (const char* arch : {"qwen3_moe", "qwen2"}) {
    SCOPED_TRACE(arch);
    std::string model = dir.file(arch), plan = dir.file(std::string(arch) + ".fb");
    std::string makeModel = test::binPath("tpc");
    makeModel += " make-model --arch ";
    makeModel += arch;
    makeModel += " --preset tiny --dtype bf16 --quiet -o " + model;
    ASSERT_EQ(test::runCommand(makeModel).exitCode, 0);
    std::string compile = test::binPath("tpc");
    compile += " compile " + model;
    compile += " --world 8 --quiet -o " + plan;
    ASSERT_EQ(test::runCommand(compile).exitCode, 0);
    Expected<LoadedPlan> loaded = LoadedPlan::readFile(plan);
    ASSERT_TRUE(loaded) << loaded.errorMessage();
    const plan::Plan& p = loaded->plan();
    Expected<Checkpoint> checkpoint = openPlanCheckpoint(p, "");
    ASSERT_TRUE(checkpoint) << checkpoint.errorMessage();
    for (uint32_t rank = 0; rank < p.world(); ++rank) {
      Expected<std::vector<std::vector<float>>> want = loadWeightsF32(p, rank, *checkpoint);
      ASSERT_TRUE(want) << want.errorMessage();
      const plan::RankProgram* program = p.ranks()->Get(rank);
      for (uint32_t w = 0; w < program->weights()->size(); ++w) {
        const plan::Weight* weight = program->weights()->Get(w);
        std::vector<std::vector<uint8_t>> slices;
        for (uint32_t s = 0; s < weight->slices()->size(); ++s) {
          uint64_t size = sliceLayout(*weight->slices()->Get(s)).packedBytes();
          // In uneven chunks, as a window of fetches would get them.
          std::vector<uint8_t> bytes;
          for (uint64_t at = 0; at < size;) {
            uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(size - at, 1000 + at % 777));
            Expected<std::vector<uint8_t>> chunk =
                readPackedSlice(p, *checkpoint, rank, w, s, at, n);
            ASSERT_TRUE(chunk) << chunk.errorMessage();
            bytes.insert(bytes.end(), chunk->begin(), chunk->end());
            at += n;
          }
          slices.push_back(std::move(bytes));
        }
        Expected<std::vector<float>> got = weightFromPackedSlices(p, rank, w, slices);
        ASSERT_TRUE(got) << got.errorMessage();
        const std::vector<float>& ref = (*want)[w];
        ASSERT_EQ(got->size(), ref.size()) << weight->name()->str();
        EXPECT_EQ(std::memcmp(got->data(), ref.data(), ref.size() * sizeof(float)), 0)
            << "rank " << rank << " " << weight->name()->str();
      }
    }
    // A peer asking for what is not there gets an error, never bytes from elsewhere.
    EXPECT_FALSE(readPackedSlice(p, *checkpoint, 8, 0, 0, 0, 1));
    EXPECT_FALSE(readPackedSlice(p, *checkpoint, 0, 100000, 0, 0, 1));
    EXPECT_FALSE(readPackedSlice(p, *checkpoint, 0, 0, 99, 0, 1));
    uint64_t size =
        sliceLayout(*p.ranks()->Get(0)->weights()->Get(0)->slices()->Get(0)).packedBytes();
    EXPECT_FALSE(readPackedSlice(p, *checkpoint, 0, 0, 0, size - 1, 2));
    EXPECT_FALSE(weightFromPackedSlices(p, 0, 0, {}));
  }
}

}  // namespace
}  // namespace tpc
