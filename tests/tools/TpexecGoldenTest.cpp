// tpexec against Hugging Face transformers: for every golden case (tests/data/hf, made by
// make_golden.py on the GPU machine) and worlds 1, 2, 4 and 8 on the CPU backend, the greedy
// ids equal transformers' and every logits row is within 1e-4 relative error; worlds 2, 4 and 8
// agree with world 1 within 1e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "executor/Npy.h"
#include "tests/support/GoldenCases.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

TEST(TpexecGolden, MatchesTransformersAtEveryWorld) {
  test::TempDir tmp;
  for (const char* name : test::kGoldenCases) {
    std::string model = test::dataDir() + "/hf/" + name;
    nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
    std::vector<int64_t> prompt = golden["prompt_ids"], want = golden["generated_ids"];
    Expected<NpyArray> reference = readNpyF32(model + "/logits.npy");
    ASSERT_TRUE(reference) << reference.errorMessage();
    std::optional<NpyArray> worldOne;
    for (int world : {1, 2, 4, 8}) {
      SCOPED_TRACE(std::string(name) + " world " + std::to_string(world));
      std::string plan = tmp.file("plan.fb"), logits = tmp.file("logits.npy");
      std::string compile = test::binPath("tpc");
      compile += " compile " + model;
      compile += " --world " + std::to_string(world);
      compile += " --dtype f32 --quiet -o " + plan;
      test::CommandResult c = test::runCommand(compile);
      ASSERT_EQ(c.exitCode, 0) << c.output;
      std::string run = test::binPath("tpexec");
      run += " " + plan;
      run += " --prompt-ids " + test::joinedIds(prompt);
      run += " --max-new-tokens " + std::to_string(want.size());
      run += " --ignore-eos --json --logits-out " + logits;
      test::CommandResult r = test::runCommand(run);
      ASSERT_EQ(r.exitCode, 0) << r.output;
      nlohmann::json out = nlohmann::json::parse(r.output);
      EXPECT_EQ(out["generated_ids"].get<std::vector<int64_t>>(), want);
      EXPECT_EQ(out["world"], world);
      EXPECT_EQ(out["weight_bytes_per_rank"].size(), static_cast<size_t>(world));
      Expected<NpyArray> ours = readNpyF32(logits);
      ASSERT_TRUE(ours) << ours.errorMessage();
      ASSERT_EQ(ours->shape, reference->shape);
      EXPECT_LT(test::worstRowError(*ours, *reference), 1e-4);
      if (world == 1)
        worldOne = *ours;
      else
        EXPECT_LT(test::worstRowError(*ours, *worldOne), 1e-5) << "sharding changed the logits";
    }
  }
}

// Expert parallelism on the MoE cases: whole experts per rank (8 experts: worlds 2, 4 and 8),
// the same 1e-4 bound against transformers and the same greedy ids, over Gloo.
TEST(TpexecGolden, ExpertParallelMatchesTransformers) {
  test::TempDir tmp;
  for (const char* name : {"qwen3moe", "mixtral"}) {
    std::string model = test::dataDir() + "/hf/" + name;
    nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
    std::vector<int64_t> prompt = golden["prompt_ids"], want = golden["generated_ids"];
    Expected<NpyArray> reference = readNpyF32(model + "/logits.npy");
    ASSERT_TRUE(reference) << reference.errorMessage();
    for (int world : {2, 4, 8}) {
      SCOPED_TRACE(std::string(name) + " expert-parallel world " + std::to_string(world));
      std::string plan = tmp.file("plan.fb"), logits = tmp.file("logits.npy");
      std::string compile = test::binPath("tpc");
      compile += " compile " + model;
      compile += " --world " + std::to_string(world);
      compile += " --expert-parallel --dtype f32 -o " + plan;
      test::CommandResult c = test::runCommand(compile);
      ASSERT_EQ(c.exitCode, 0) << c.output;
      EXPECT_NE(c.output.find("expert parallel: " + std::to_string(8 / world) + " of 8 experts"),
                std::string::npos)
          << c.output;
      std::string run = test::binPath("tpexec");
      run += " " + plan;
      run += " --prompt-ids " + test::joinedIds(prompt);
      run += " --max-new-tokens " + std::to_string(want.size());
      run += " --ignore-eos --json --logits-out " + logits;
      test::CommandResult r = test::runCommand(run);
      ASSERT_EQ(r.exitCode, 0) << r.output;
      nlohmann::json out = nlohmann::json::parse(r.output);
      EXPECT_EQ(out["generated_ids"].get<std::vector<int64_t>>(), want);
      EXPECT_EQ(out["world"], world);
      Expected<NpyArray> ours = readNpyF32(logits);
      ASSERT_TRUE(ours) << ours.errorMessage();
      ASSERT_EQ(ours->shape, reference->shape);
      EXPECT_LT(test::worstRowError(*ours, *reference), 1e-4);
    }
  }
}

}  // namespace
}  // namespace tpc
