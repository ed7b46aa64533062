// The CUDA backend on LLaVA against Hugging Face transformers (tests/data/hf/llava-*, made by
// make_llava_golden.py: fp32, eager attention), with pixel_values fed directly: the vision tower
// and projector run on the GPU and the prefill takes their rows at the image tokens. The bounds
// are TpexecCudaGoldenTest's:
// - f32 plans: greedy ids equal transformers' and every logits row is within 1e-4 relative error;
// - bf16 plans: every logits row within kBf16RowError, and greedy ids equal wherever the logits
//   error we measured cannot have flipped the choice (idsMustAgreeUpTo in GoldenCases.h);
// - decode from replayed CUDA Graphs gives bit-identical logits to eager execution;
// - worlds 2 and 4 with the ranks sharing the GPU over the IPC communicator (the tower's split
//   heads and MLP and their all-reduces included): f32 as close to transformers as world 1.
// Without a GPU every test says "skipped: no GPU".
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "executor/Backend.h"
#include "executor/Npy.h"
#include "tests/support/GoldenCases.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

#define SKIP_WITHOUT_GPU()                                            \
  if (!haveCudaBackend()) GTEST_SKIP() << "skipped: no CUDA backend"; \
  if (cudaDeviceCount() == 0) GTEST_SKIP() << "skipped: no GPU"

// Both golden towers: hidden state -2 with the class row dropped and a biased projector, hidden
// state -1 with the class row kept and no projector bias.
const char* const kLlavaCases[] = {"llava-tiny", "llava-tiny-full"};

struct LlavaRun {
  std::vector<int64_t> ids;
  NpyArray logits;
  std::string communicator;
};

LlavaRun runLlava(const std::string& model, const std::string& dtype, const std::string& extra,
                  const test::TempDir& tmp, int world = 1) {
  nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
  std::vector<int64_t> prompt = golden["prompt_ids"], want = golden["generated_ids"];
  std::string plan = tmp.file("llava-" + dtype + ".w" + std::to_string(world) + ".fb");
  std::string logits = tmp.file("logits.npy");
  test::CommandResult c =
      test::runCommand(test::binPath("tpc") + " compile " + model + " --dtype " + dtype +
                       " --world " + std::to_string(world) + " --quiet -o " + plan);
  EXPECT_EQ(c.exitCode, 0) << c.output;
  std::string run = test::binPath("tpexec") + " " + plan + " --backend cuda --prompt-ids " +
                    test::joinedIds(prompt) + " --pixel-values " + model + "/pixel_values.npy";
  run += " --max-new-tokens " + std::to_string(want.size());
  run += " --ignore-eos --json --logits-out " + logits + " " + extra;
  test::CommandResult r = test::runCommand(run);
  EXPECT_EQ(r.exitCode, 0) << r.output;
  LlavaRun out;
  if (r.exitCode != 0) return out;
  nlohmann::json j = nlohmann::json::parse(test::jsonLine(r.output));
  EXPECT_EQ(j["backend"], "cuda");
  EXPECT_TRUE(j["timings"].contains("image_encode_ms"));
  out.ids = j["generated_ids"].get<std::vector<int64_t>>();
  out.communicator = j["communicator"].get<std::string>();
  Expected<NpyArray> read = readNpyF32(logits);
  EXPECT_TRUE(read) << read.errorMessage();
  if (read) out.logits = std::move(*read);
  return out;
}

NpyArray reference(const std::string& model) {
  Expected<NpyArray> ref = readNpyF32(model + "/logits.npy");
  EXPECT_TRUE(ref) << ref.errorMessage();
  return ref ? std::move(*ref) : NpyArray{};
}

std::vector<int64_t> goldenIds(const std::string& model) {
  return nlohmann::json::parse(test::readFile(model + "/golden.json"))["generated_ids"];
}

TEST(TpexecCudaLlavaGolden, F32MatchesTransformers) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  for (const char* name : kLlavaCases) {
    SCOPED_TRACE(name);
    const std::string model = test::dataDir() + "/hf/" + name;
    const NpyArray ref = reference(model);
    LlavaRun run = runLlava(model, "f32", "", tmp);
    ASSERT_EQ(run.logits.shape, ref.shape);
    EXPECT_EQ(run.ids, goldenIds(model));
    for (int64_t r = 0; r < ref.shape[0]; ++r) EXPECT_LT(test::rowError(run.logits, ref, r), 1e-4);
    std::printf("%s f32 world 1: worst row error against transformers %.3g\n", name,
                test::worstRowError(run.logits, ref));
  }
}

TEST(TpexecCudaLlavaGolden, Bf16WithinTolerance) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  for (const char* name : kLlavaCases) {
    SCOPED_TRACE(name);
    const std::string model = test::dataDir() + "/hf/" + name;
    const NpyArray ref = reference(model);
    const std::vector<int64_t> want = goldenIds(model);
    LlavaRun run = runLlava(model, "bf16", "", tmp);
    ASSERT_EQ(run.logits.shape, ref.shape);
    const int64_t agree = test::idsMustAgreeUpTo(run.logits, ref);
    for (int64_t r = 0; r < agree; ++r) {
      EXPECT_EQ(run.ids[static_cast<size_t>(r)], want[static_cast<size_t>(r)]) << "step " << r;
      EXPECT_LT(test::rowError(run.logits, ref, r), test::kBf16RowError) << "step " << r;
    }
    // Row 0 (the prompt's last position, after every image row) never depends on a generated
    // token.
    const double first = test::rowError(run.logits, ref, 0);
    EXPECT_LT(first, test::kBf16RowError);
    std::printf("%s bf16: row 0 error %.3g; ids agree on the %lld of %zu steps the bound covers\n",
                name, first, static_cast<long long>(agree), want.size());
  }
}

TEST(TpexecCudaLlavaGolden, GraphReplayIsBitIdenticalToEager) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  for (const char* name : kLlavaCases)
    for (const char* dtype : {"f32", "bf16"}) {
      SCOPED_TRACE(std::string(name) + " " + dtype);
      const std::string model = test::dataDir() + "/hf/" + name;
      LlavaRun graph = runLlava(model, dtype, "", tmp);
      LlavaRun eager = runLlava(model, dtype, "--eager", tmp);
      EXPECT_EQ(graph.ids, eager.ids);
      ASSERT_EQ(graph.logits.data.size(), eager.logits.data.size());
      ASSERT_FALSE(graph.logits.data.empty());
      EXPECT_EQ(0, std::memcmp(graph.logits.data.data(), eager.logits.data.data(),
                               graph.logits.data.size() * sizeof(float)));
    }
}

TEST(TpexecCudaLlavaGolden, RanksSharingAGpuOverIpcMatchTransformers) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  for (const char* name : kLlavaCases) {
    const std::string model = test::dataDir() + "/hf/" + name;
    const NpyArray ref = reference(model);
    for (int world : {2, 4}) {
      SCOPED_TRACE(std::string(name) + " world " + std::to_string(world));
      LlavaRun run = runLlava(model, "f32", "--comm ipc", tmp, world);
      ASSERT_EQ(run.logits.shape, ref.shape);
      EXPECT_EQ(run.communicator, "ipc");
      EXPECT_EQ(run.ids, goldenIds(model));
      for (int64_t r = 0; r < ref.shape[0]; ++r)
        EXPECT_LT(test::rowError(run.logits, ref, r), 1e-4);
      std::printf("%s f32 world %d: worst row error against transformers %.3g\n", name, world,
                  test::worstRowError(run.logits, ref));
    }
  }
}

}  // namespace
}  // namespace tpc
