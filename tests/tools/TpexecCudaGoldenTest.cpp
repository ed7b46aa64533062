// The CUDA backend against Hugging Face transformers and against itself, on the golden cases of
// tests/data/hf (made by make_golden.py: transformers in fp32, eager attention):
// - f32 plans: greedy ids equal transformers' and every logits row is within 1e-4 relative error;
// - bf16 plans: every logits row within kBf16RowError, and greedy ids equal wherever the logits
//   error we measured cannot have flipped the choice (see idsMustAgreeUpTo in GoldenCases.h);
// - a replayed CUDA Graph gives bit-identical logits to eager execution.
// Without a GPU every test says "skipped: no GPU".
#include <gtest/gtest.h>

#include <cmath>
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

struct CaseRun {
  std::vector<int64_t> ids;
  NpyArray logits;
  std::string communicator;
};

CaseRun runCase(const std::string& model, const std::string& dtype, const std::string& extra,
                const test::TempDir& tmp, int world = 1, const std::string& compileFlags = "") {
  nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
  std::vector<int64_t> prompt = golden["prompt_ids"], want = golden["generated_ids"];
  std::string plan = tmp.file("plan-" + dtype + ".fb"), logits = tmp.file("logits.npy");
  test::CommandResult c = test::runCommand(
      test::binPath("tpc") + " compile " + model + " --dtype " + dtype + " --world " +
      std::to_string(world) + " " + compileFlags + " --quiet -o " + plan);
  EXPECT_EQ(c.exitCode, 0) << c.output;
  test::CommandResult r = test::runCommand(
      test::binPath("tpexec") + " " + plan + " --backend cuda --prompt-ids " +
      test::joinedIds(prompt) + " --max-new-tokens " + std::to_string(want.size()) +
      " --ignore-eos --json --logits-out " + logits + " " + extra);
  EXPECT_EQ(r.exitCode, 0) << r.output;
  CaseRun out;
  if (r.exitCode != 0) return out;
  nlohmann::json j = nlohmann::json::parse(test::jsonLine(r.output));
  EXPECT_EQ(j["backend"], "cuda");
  out.ids = j["generated_ids"].get<std::vector<int64_t>>();
  out.communicator = j["communicator"].get<std::string>();
  Expected<NpyArray> read = readNpyF32(logits);
  EXPECT_TRUE(read) << read.errorMessage();
  if (read) out.logits = std::move(*read);
  return out;
}

TEST(TpexecCudaGolden, F32MatchesTransformers) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  for (const char* name : test::kGoldenCases) {
    SCOPED_TRACE(name);
    std::string model = test::dataDir() + "/hf/" + name;
    nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
    Expected<NpyArray> ref = readNpyF32(model + "/logits.npy");
    ASSERT_TRUE(ref) << ref.errorMessage();
    CaseRun run = runCase(model, "f32", "", tmp);
    ASSERT_EQ(run.logits.shape, ref->shape);
    EXPECT_EQ(run.ids, golden["generated_ids"].get<std::vector<int64_t>>());
    for (int64_t r = 0; r < ref->shape[0]; ++r)
      EXPECT_LT(test::rowError(run.logits, *ref, r), 1e-4);
  }
}

TEST(TpexecCudaGolden, Bf16WithinTolerance) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  for (const char* name : test::kGoldenCases) {
    SCOPED_TRACE(name);
    std::string model = test::dataDir() + "/hf/" + name;
    nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
    std::vector<int64_t> want = golden["generated_ids"];
    Expected<NpyArray> ref = readNpyF32(model + "/logits.npy");
    ASSERT_TRUE(ref) << ref.errorMessage();
    CaseRun run = runCase(model, "bf16", "", tmp);
    ASSERT_EQ(run.logits.shape, ref->shape);
    int64_t agree = test::idsMustAgreeUpTo(run.logits, *ref);
    for (int64_t r = 0; r < agree; ++r) {
      EXPECT_EQ(run.ids[static_cast<size_t>(r)], want[static_cast<size_t>(r)]) << "step " << r;
      EXPECT_LT(test::rowError(run.logits, *ref, r), test::kBf16RowError) << "step " << r;
    }
    // Row 0 (the prompt's last position) never depends on a generated token.
    EXPECT_LT(test::rowError(run.logits, *ref, 0), test::kBf16RowError);
    std::printf("%s bf16: ids agree on the %lld of %zu steps the error bound covers\n", name,
                static_cast<long long>(agree), want.size());
  }
}

TEST(TpexecCudaGolden, GraphReplayIsBitIdenticalToEager) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  for (const char* name : test::kGoldenCases) {
    for (const char* dtype : {"f32", "bf16"}) {
      SCOPED_TRACE(std::string(name) + " " + dtype);
      std::string model = test::dataDir() + "/hf/" + name;
      CaseRun graph = runCase(model, dtype, "", tmp);
      CaseRun eager = runCase(model, dtype, "--eager", tmp);
      EXPECT_EQ(graph.ids, eager.ids);
      ASSERT_EQ(graph.logits.data.size(), eager.logits.data.size());
      EXPECT_EQ(0, std::memcmp(graph.logits.data.data(), eager.logits.data.data(),
                               graph.logits.data.size() * sizeof(float)));
    }
  }
}

// One golden case at worlds 2, 4 and 8, the ranks sharing the GPUs there are (one H200: all of
// them on it) over the one-node IPC communicator: f32 as close to transformers as world 1 (ids
// equal, every row within 1e-4), bf16 ids equal as far as the error bound covers and within
// tolerance on the prompt's row (on every such row when `everyAgreeingRow`), graph replay
// bit-identical to eager. `compileFlags` go to tpc compile.
void expectRanksSharingAGpuMatch(const std::string& name, const std::string& compileFlags,
                                 bool everyAgreeingRow, const test::TempDir& tmp) {
  std::string model = test::dataDir() + "/hf/" + name;
  nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
  std::vector<int64_t> want = golden["generated_ids"];
  Expected<NpyArray> ref = readNpyF32(model + "/logits.npy");
  ASSERT_TRUE(ref) << ref.errorMessage();
  for (int world : {2, 4, 8}) {
    std::string trace = name;
    trace += " " + compileFlags;
    trace += " world " + std::to_string(world);
    SCOPED_TRACE(trace);
    CaseRun f32 = runCase(model, "f32", "--comm ipc", tmp, world, compileFlags);
    ASSERT_EQ(f32.logits.shape, ref->shape);
    EXPECT_EQ(f32.communicator, "ipc");
    EXPECT_EQ(f32.ids, want);
    for (int64_t r = 0; r < ref->shape[0]; ++r)
      EXPECT_LT(test::rowError(f32.logits, *ref, r), 1e-4);
    CaseRun bf16 = runCase(model, "bf16", "--comm ipc", tmp, world, compileFlags);
    ASSERT_EQ(bf16.logits.shape, ref->shape);
    int64_t agree = test::idsMustAgreeUpTo(bf16.logits, *ref);
    for (int64_t r = 0; r < agree; ++r) {
      EXPECT_EQ(bf16.ids[static_cast<size_t>(r)], want[static_cast<size_t>(r)]) << "step " << r;
      if (everyAgreeingRow)
        EXPECT_LT(test::rowError(bf16.logits, *ref, r), test::kBf16RowError) << "step " << r;
    }
    EXPECT_LT(test::rowError(bf16.logits, *ref, 0), test::kBf16RowError);
    CaseRun eager = runCase(model, "bf16", "--comm ipc --eager", tmp, world, compileFlags);
    ASSERT_EQ(eager.logits.data.size(), bf16.logits.data.size());
    EXPECT_EQ(0, std::memcmp(eager.logits.data.data(), bf16.logits.data.data(),
                             bf16.logits.data.size() * sizeof(float)))
        << "graph replay differs from eager";
  }
}

// Tensor parallelism with its fused all-reduce + add + RMSNorm kernel, every golden case.
TEST(TpexecCudaGolden, RanksSharingAGpuOverIpcMatchTransformers) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  for (const char* name : test::kGoldenCases) expectRanksSharingAGpuMatch(name, "", false, tmp);
}

// Expert parallelism: whole experts per rank (8 experts: worlds 2, 4 and 8). Each rank's expert
// kernels see only its own experts (the choices renumbered on the device); the all-reduce adds
// the ranks' parts.
TEST(TpexecCudaGolden, ExpertParallelRanksMatchTransformers) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  for (const char* name : {"qwen3moe", "mixtral"})
    expectRanksSharingAGpuMatch(name, "--expert-parallel", true, tmp);
}

}  // namespace
}  // namespace tpc
