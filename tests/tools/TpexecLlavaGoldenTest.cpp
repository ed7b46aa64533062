// tpexec on LLaVA against Hugging Face transformers (tests/data/hf/llava-*, made by
// make_llava_golden.py): pixel_values fed directly, worlds 1, 2, 4 and 8 on the CPU backend. The
// greedy ids equal transformers', every logits row is within 1e-4 relative error, and the
// sharded worlds agree with world 1 within 1e-5.
#include <gtest/gtest.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "executor/Npy.h"
#include "tests/support/GoldenCases.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

std::string compile(test::TempDir& tmp, const std::string& model, int world) {
  std::string plan = tmp.file("llava.w" + std::to_string(world) + ".fb");
  test::CommandResult c =
      test::runCommand(test::binPath("tpc") + " compile " + model + " --world " +
                       std::to_string(world) + " --dtype f32 --quiet -o " + plan);
  EXPECT_EQ(c.exitCode, 0) << c.output;
  return plan;
}

TEST(TpexecLlavaGolden, MatchesTransformersAtEveryWorld) {
  test::TempDir tmp;
  for (const char* name : {"llava-tiny", "llava-tiny-full"}) {
    std::string model = test::dataDir() + "/hf/" + name;
    nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
    std::vector<int64_t> prompt = golden["prompt_ids"], want = golden["generated_ids"];
    Expected<NpyArray> reference = readNpyF32(model + "/logits.npy");
    ASSERT_TRUE(reference) << reference.errorMessage();
    std::optional<NpyArray> worldOne;
    for (int world : {1, 2, 4, 8}) {
      SCOPED_TRACE(std::string(name) + " world " + std::to_string(world));
      std::string plan = compile(tmp, model, world), logits = tmp.file("logits.npy");
      std::string run = test::binPath("tpexec");
      run += " " + plan + " --backend cpu --prompt-ids " + test::joinedIds(prompt);
      run += " --pixel-values " + model + "/pixel_values.npy";
      run += " --max-new-tokens " + std::to_string(want.size());
      run += " --ignore-eos --json --logits-out " + logits;
      test::CommandResult r = test::runCommand(run);
      ASSERT_EQ(r.exitCode, 0) << r.output;
      nlohmann::json out = nlohmann::json::parse(r.output);
      EXPECT_EQ(out["generated_ids"].get<std::vector<int64_t>>(), want);
      EXPECT_TRUE(out["timings"].contains("image_encode_ms"));
      Expected<NpyArray> ours = readNpyF32(logits);
      ASSERT_TRUE(ours) << ours.errorMessage();
      ASSERT_EQ(ours->shape, reference->shape);
      const double error = test::worstRowError(*ours, *reference);
      EXPECT_LT(error, 1e-4);
      std::printf("%s world %d: worst row error against transformers %.3g\n", name, world, error);
      if (world == 1)
        worldOne = *ours;
      else
        EXPECT_LT(test::worstRowError(*ours, *worldOne), 1e-5) << "sharding changed the logits";
    }
  }
}

// tpc inspect names the three parts, with the tower's and projector's own parameter counts
// (2-layer CLIP tower: its second layer and post_layernorm are unused at hidden state -2).
TEST(TpexecLlavaGolden, InspectShowsTowerProjectorAndText) {
  test::CommandResult r =
      test::runCommand(test::binPath("tpc") + " inspect " + test::dataDir() + "/hf/llava-tiny");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  // Tower: patch 32*3*8*8, class 32, positions 17*32, pre-norm 64, one layer 4*(32*32+32) +
  // 2*32*64 + 64 + 32 + 4*32. Projector: 32*64 + 64 + 64*64 + 64.
  EXPECT_NE(r.output.find("llava, text model llama"), std::string::npos) << r.output;
  EXPECT_NE(
      r.output.find("vision tower: CLIP, hidden 32, 2 layers (runs 1: hidden state -2), 8 "
                    "heads, intermediate 64; image 32 px, patch 8: 17 rows; 15328 parameters"),
      std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("projector: linear 32 -> 64, gelu, linear 64 -> 64 (biased); 6272 "
                          "parameters"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("image token 250 x 16 (class row dropped)"), std::string::npos);
}

// tpc dump shows each rank's vision tower program with its split: half the heads per rank at
// world 2, the row-parallel out_proj followed by its all_reduce and then its bias.
TEST(TpexecLlavaGolden, DumpShowsTheTowerSplit) {
  test::TempDir tmp;
  std::string plan = compile(tmp, test::dataDir() + "/hf/llava-tiny", 2);
  test::CommandResult r = test::runCommand(test::binPath("tpc") + " dump " + plan + " --rank 1");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  size_t tower = r.output.find("vision tower, rank 1:"), text = r.output.find("\nrank 1:");
  ASSERT_NE(tower, std::string::npos) << r.output;
  ASSERT_NE(text, std::string::npos) << r.output;
  EXPECT_LT(tower, text);
  std::string towerPart = r.output.substr(tower, text - tower);
  for (const char* want :
       {"encoder_attention  head-parallel", "heads=4",
        "v0.o                 f32[tokens, 32]  partial",
        "all_reduce         all-reduce       v0.o.sum",
        "bias_add           replicated       v0.o_bias", "self_attn.out_proj.weight[cols 16:32]",
        "linear             column-parallel  proj1"})
    EXPECT_NE(towerPart.find(want), std::string::npos) << want << "\n" << towerPart;
  EXPECT_NE(r.output.substr(text).find("image_rows"), std::string::npos);
}

// The image token written once is expanded to image_seq_length copies, as the processor does;
// a prompt whose image tokens do not match the image is one clear error.
TEST(TpexecLlavaGolden, ImageTokenExpansionAndMismatch) {
  test::TempDir tmp;
  std::string model = test::dataDir() + "/hf/llava-tiny";
  std::string plan = compile(tmp, model, 2);
  std::string run = test::binPath("tpexec") + " " + plan + " --backend cpu --pixel-values " +
                    model + "/pixel_values.npy --max-new-tokens 4 --ignore-eos --json";
  test::CommandResult once = test::runCommand(run + " --prompt-ids 1,17,42,250,99,3,201,7");
  ASSERT_EQ(once.exitCode, 0) << once.output;
  nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
  nlohmann::json out = nlohmann::json::parse(once.output);
  EXPECT_EQ(out["prompt_ids"], golden["prompt_ids"]);
  EXPECT_EQ(out["generated_ids"], golden["generated_ids"]);

  test::CommandResult twice = test::runCommand(run + " --prompt-ids 1,250,17,250");
  EXPECT_NE(twice.exitCode, 0);
  EXPECT_NE(twice.output.find("the prompt has 2 image tokens (id 250) but the image gives 16 rows"),
            std::string::npos)
      << twice.output;
  test::CommandResult wrongShape =
      test::runCommand(test::binPath("tpexec") + " " + plan +
                       " --backend cpu --prompt-ids 1,250 --pixel-values " + model + "/logits.npy");
  EXPECT_NE(wrongShape.exitCode, 0);
  EXPECT_NE(wrongShape.output.find("pixel values must be [1, 3, 32, 32]"), std::string::npos)
      << wrongShape.output;
}

// --image runs the C++ preprocessing (preprocessor_config.json beside the checkpoint): on the
// image at the tower's exact size it gives what --pixel-values gives with transformers' own
// pixel values of that image.
TEST(TpexecLlavaGolden, ImageFileAgreesWithTransformersPixelValues) {
  test::TempDir tmp;
  std::string model = test::dataDir() + "/hf/llava-tiny";
  std::string image = test::dataDir() + "/images/exact-32x32.png";
  std::string plan = compile(tmp, model, 4);
  std::string run =
      test::binPath("tpexec") + " " + plan +
      " --backend cpu --prompt-ids 1,17,250,99 --max-new-tokens 3 --ignore-eos --json";
  test::CommandResult ours =
      test::runCommand(run + " --image " + image + " --logits-out " + tmp.file("ours.npy"));
  ASSERT_EQ(ours.exitCode, 0) << ours.output;
  test::CommandResult theirs = test::runCommand(
      run + " --pixel-values " + image + ".pixels.npy --logits-out " + tmp.file("theirs.npy"));
  ASSERT_EQ(theirs.exitCode, 0) << theirs.output;
  EXPECT_EQ(nlohmann::json::parse(ours.output)["generated_ids"],
            nlohmann::json::parse(theirs.output)["generated_ids"]);
  Expected<NpyArray> a = readNpyF32(tmp.file("ours.npy")), b = readNpyF32(tmp.file("theirs.npy"));
  ASSERT_TRUE(a && b);
  EXPECT_LT(test::worstRowError(*a, *b), 1e-4);

  test::CommandResult corrupt = test::runCommand(run + " --image " + model + "/config.json");
  EXPECT_NE(corrupt.exitCode, 0);
  EXPECT_NE(corrupt.output.find("config.json: not a JPEG or PNG image"), std::string::npos)
      << corrupt.output;
}

}  // namespace
}  // namespace tpc
