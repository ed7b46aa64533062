// Pipeline stages on the GPU, against transformers (tests/data/hf, made by make_golden.py): the
// golden models with layer 0 on cuda:0 and the rest on the CPU (one plan, two backends, the
// hidden state crossing through host memory), and with both stages on cuda:0. f32 gives
// transformers' greedy ids and every logits row within 1e-4; bf16 (a boundary converted to f32
// and back) the first row within the bf16 tolerance; the engine gives --prompt-ids' tokens.
// Without a GPU every test says "skipped: no GPU" (tests/tools/TpexecPipelineTest.cpp checks the
// one-line error such a plan gets there).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "executor/Backend.h"
#include "executor/Npy.h"
#include "tests/support/GoldenCases.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

constexpr double kBf16RowError = 3e-2;  // as TpexecCudaGoldenTest.cpp

#define SKIP_WITHOUT_GPU()                                            \
  if (!haveCudaBackend()) GTEST_SKIP() << "skipped: no CUDA backend"; \
  if (cudaDeviceCount() == 0) GTEST_SKIP() << "skipped: no GPU"

struct StagedRun {
  std::vector<int64_t> ids;
  NpyArray logits;
  std::string backend;
};

StagedRun runMapped(const std::string& model, const std::string& map, const std::string& dtype,
                    const test::TempDir& tmp) {
  nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
  std::vector<int64_t> prompt = golden["prompt_ids"], want = golden["generated_ids"];
  std::string plan = tmp.file("mapped.fb"), logits = tmp.file("logits.npy");
  test::CommandResult c =
      test::runCommand(test::binPath("tpc") + " compile " + model + " --dtype " + dtype +
                       " --device-map " + map + " --quiet -o " + plan);
  EXPECT_EQ(c.exitCode, 0) << c.output;
  test::CommandResult r =
      test::runCommand(test::binPath("tpexec") + " " + plan + " --prompt-ids " +
                       test::joinedIds(prompt) + " --max-new-tokens " +
                       std::to_string(want.size()) + " --ignore-eos --json --logits-out " + logits);
  EXPECT_EQ(r.exitCode, 0) << r.output;
  StagedRun out;
  if (r.exitCode != 0) return out;
  nlohmann::json j = nlohmann::json::parse(r.output);
  out.ids = j["generated_ids"].get<std::vector<int64_t>>();
  out.backend = j["backend"].get<std::string>();
  Expected<NpyArray> read = readNpyF32(logits);
  EXPECT_TRUE(read) << read.errorMessage();
  if (read) out.logits = std::move(*read);
  return out;
}

TEST(TpexecCudaGoldenStages, LayerZeroOnTheGpuAndTheRestOnTheCpuMatchTransformers) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  for (const char* name : test::kGoldenCases) {
    std::string model = test::dataDir() + "/hf/" + name;
    nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
    Expected<NpyArray> ref = readNpyF32(model + "/logits.npy");
    ASSERT_TRUE(ref) << ref.errorMessage();
    for (const char* map : {"cuda:0=1,cpu=*", "cuda:0=1,cuda:0=*"}) {
      SCOPED_TRACE(std::string(name) + " " + map);
      StagedRun f32 = runMapped(model, map, "f32", tmp);
      ASSERT_EQ(f32.logits.shape, ref->shape);
      EXPECT_EQ(f32.backend,
                std::string(map).find("cpu") != std::string::npos ? "cuda+cpu" : "cuda");
      EXPECT_EQ(f32.ids, golden["generated_ids"].get<std::vector<int64_t>>());
      double worst = 0;
      for (int64_t r = 0; r < ref->shape[0]; ++r) {
        EXPECT_LT(test::rowError(f32.logits, *ref, r), 1e-4) << "row " << r;
        worst = std::max(worst, test::rowError(f32.logits, *ref, r));
      }
      std::printf("%s --device-map %s f32: worst row error %.3g against transformers\n", name, map,
                  worst);
      StagedRun bf16 = runMapped(model, map, "bf16", tmp);
      ASSERT_EQ(bf16.logits.shape, ref->shape);
      EXPECT_LT(test::rowError(bf16.logits, *ref, 0), kBf16RowError);
    }
  }
}

// The engine over a mixed plan (paged KV on both backends, the pools agreeing on their blocks)
// decodes what --prompt-ids decodes with the same plan.
TEST(TpexecCudaGoldenStages, TheEngineRunsAMixedPlan) {
  SKIP_WITHOUT_GPU();
  test::TempDir tmp;
  std::string model = test::dataDir() + "/hf/llama-gqa-llama3rope";
  std::string plan = tmp.file("mixed.fb"), requests = tmp.file("requests.jsonl");
  ASSERT_EQ(test::runCommand(test::binPath("tpc") + " compile " + model +
                             " --dtype f32 --device-map cuda:0=1,cpu=* --quiet -o " + plan)
                .exitCode,
            0);
  const std::vector<std::vector<int64_t>> prompts = test::writeStaggeredRequests(requests);
  test::CommandResult r = test::runCommand(test::binPath("tpexec") + " " + plan + " --requests " +
                                           requests + " --max-batched-tokens 8");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  std::istringstream lines(r.output);
  size_t seen = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    nlohmann::json got = nlohmann::json::parse(line);
    size_t i = std::stoul(got["id"].get<std::string>().substr(1));
    ASSERT_LT(i, prompts.size());
    test::CommandResult alone =
        test::runCommand(test::binPath("tpexec") + " " + plan + " --json --ignore-eos " +
                         "--max-new-tokens 5 --prompt-ids " + test::joinedIds(prompts[i]));
    ASSERT_EQ(alone.exitCode, 0) << alone.output;
    EXPECT_EQ(got["generated_ids"], nlohmann::json::parse(alone.output)["generated_ids"]) << line;
    ++seen;
  }
  EXPECT_EQ(seen, prompts.size()) << r.output;
}

}  // namespace
}  // namespace tpc
