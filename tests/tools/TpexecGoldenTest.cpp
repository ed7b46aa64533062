// tpexec against Hugging Face transformers: for every golden case (tests/data/hf, made by
// make_golden.py on the GPU machine) and worlds 1, 2, 4 and 8 on the CPU backend, the greedy
// ids equal transformers' and every logits row is within 1e-4 relative error; worlds 2, 4 and 8
// agree with world 1 within 1e-5.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "executor/Npy.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

const char* kCases[] = {"llama-gqa-llama3rope", "mistral-gqa", "qwen2-bias-tied",
                        "qwen3-qknorm-headdim", "qwen3moe",    "mixtral"};

// The largest over rows of ||ours - ref|| / ||ref||.
double worstRowError(const NpyArray& ours, const NpyArray& ref) {
  double worst = 0;
  int64_t vocab = ref.shape[1];
  for (int64_t r = 0; r < ref.shape[0]; ++r) {
    double num = 0, den = 0;
    for (int64_t c = 0; c < vocab; ++c) {
      double d = ours.data[r * vocab + c] - ref.data[r * vocab + c];
      num += d * d;
      den += static_cast<double>(ref.data[r * vocab + c]) * ref.data[r * vocab + c];
    }
    worst = std::max(worst, std::sqrt(num / den));
  }
  return worst;
}

std::string joined(const std::vector<int64_t>& ids) {
  std::string s;
  for (int64_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

TEST(TpexecGolden, MatchesTransformersAtEveryWorld) {
  test::TempDir tmp;
  for (const char* name : kCases) {
    std::string model = test::dataDir() + "/hf/" + name;
    nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
    std::vector<int64_t> prompt = golden["prompt_ids"], want = golden["generated_ids"];
    Expected<NpyArray> reference = readNpyF32(model + "/logits.npy");
    ASSERT_TRUE(reference) << reference.errorMessage();
    std::optional<NpyArray> worldOne;
    for (int world : {1, 2, 4, 8}) {
      SCOPED_TRACE(std::string(name) + " world " + std::to_string(world));
      std::string plan = tmp.file("plan.fb"), logits = tmp.file("logits.npy");
      test::CommandResult c =
          test::runCommand(test::binPath("tpc") + " compile " + model + " --world " +
                           std::to_string(world) + " --dtype f32 --quiet -o " + plan);
      ASSERT_EQ(c.exitCode, 0) << c.output;
      test::CommandResult r =
          test::runCommand(test::binPath("tpexec") + " " + plan + " --prompt-ids " +
                           joined(prompt) + " --max-new-tokens " + std::to_string(want.size()) +
                           " --ignore-eos --json --logits-out " + logits);
      ASSERT_EQ(r.exitCode, 0) << r.output;
      nlohmann::json out = nlohmann::json::parse(r.output);
      EXPECT_EQ(out["generated_ids"].get<std::vector<int64_t>>(), want);
      EXPECT_EQ(out["world"], world);
      EXPECT_EQ(out["weight_bytes_per_rank"].size(), static_cast<size_t>(world));
      Expected<NpyArray> ours = readNpyF32(logits);
      ASSERT_TRUE(ours) << ours.errorMessage();
      ASSERT_EQ(ours->shape, reference->shape);
      EXPECT_LT(worstRowError(*ours, *reference), 1e-4);
      if (world == 1)
        worldOne = *ours;
      else
        EXPECT_LT(worstRowError(*ours, *worldOne), 1e-5) << "sharding changed the logits";
    }
  }
}

}  // namespace
}  // namespace tpc
