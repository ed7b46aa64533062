// The tpc binary as a user runs it: exit codes, one-line errors, and what each command writes.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "codegen/PlanReader.h"
#include "frontends/Presets.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using test::runCommand;

std::string tpc() { return test::binPath("tpc"); }

// A usage or input error: the documented exit code and a single "error: ..." line.
void expectOneLineError(const test::CommandResult& r, int code, const std::string& words) {
  EXPECT_EQ(r.exitCode, code) << r.output;
  EXPECT_EQ(r.lineCount(), 1) << r.output;
  EXPECT_EQ(r.output.rfind("error: ", 0), 0u) << r.output;
  EXPECT_NE(r.output.find(words), std::string::npos)
      << "expected '" << words << "' in: " << r.output;
}

class TpcCli : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = dir_.file("tiny-llama");
    test::CommandResult r =
        runCommand(tpc() + " make-model --arch llama --preset tiny --seed 3 --quiet -o " + model_);
    ASSERT_EQ(r.exitCode, 0) << r.output;
  }
  test::TempDir dir_;
  std::string model_;
};

TEST_F(TpcCli, UsageAndUnknownCommands) {
  EXPECT_EQ(runCommand(tpc() + " --help").exitCode, 0);
  EXPECT_EQ(runCommand(tpc()).exitCode, 2);
  expectOneLineError(runCommand(tpc() + " frobnicate"), 2, "unknown command 'frobnicate'");
  for (const char* command : {"compile", "dump", "inspect", "make-model"}) {
    test::CommandResult help = runCommand(tpc() + " " + command + " --help");
    EXPECT_EQ(help.exitCode, 0) << command;
    EXPECT_NE(help.output.find("usage: tpc " + std::string(command)), std::string::npos)
        << help.output;
  }
  expectOneLineError(runCommand(tpc() + " compile " + model_ + " --wrold 8"), 2,
                     "unknown flag --wrold");
  expectOneLineError(runCommand(tpc() + " compile " + model_ + " --world eight"), 2,
                     "--world expects a whole number");
  expectOneLineError(runCommand(tpc() + " compile " + model_ + " --dtype f64"), 2,
                     "--dtype must be one of bf16|f16|f32");
  expectOneLineError(runCommand(tpc() + " compile"), 2, "needs MODEL");
}

// (Experts that do not divide the world: tests/passes/ShardingTest.cpp, from a spec.)
TEST_F(TpcCli, ExpertParallelNeedsAMoeModel) {
  std::string plan = dir_.file("plan.fb");
  expectOneLineError(
      runCommand(tpc() + " compile " + model_ + " --world 2 --expert-parallel -o " + plan), 2,
      "--expert-parallel: " + model_ + " has no experts (family llama)");
  std::string moe = dir_.file("tiny-mixtral");
  ASSERT_EQ(
      runCommand(tpc() + " make-model --arch mixtral --preset tiny --quiet -o " + moe).exitCode, 0);
  test::CommandResult ok =
      runCommand(tpc() + " compile " + moe + " --world 2 --expert-parallel -o " + plan);
  EXPECT_EQ(ok.exitCode, 0) << ok.output;
  EXPECT_NE(ok.output.find("expert parallel: 4 of 8 experts per rank"), std::string::npos)
      << ok.output;
}

TEST_F(TpcCli, MakeModelWritesAConfigAndCheckpointAndRefusesToOverwrite) {
  EXPECT_TRUE(test::fileExists(model_ + "/config.json"));
  EXPECT_TRUE(test::fileExists(model_ + "/model.safetensors"));
  expectOneLineError(runCommand(tpc() + " make-model --arch llama --preset tiny -o " + model_), 1,
                     "use --force");
  expectOneLineError(
      runCommand(tpc() + " make-model --arch gpt2 --preset tiny -o " + dir_.file("x")), 2,
      "qwen3_moe");
  expectOneLineError(
      runCommand(tpc() + " make-model --arch llama --preset huge -o " + dir_.file("x")), 2, "tiny");
  EXPECT_FALSE(test::fileExists(dir_.file("x")));
  // The same seed writes the same bytes.
  ASSERT_EQ(runCommand(tpc() + " make-model --arch llama --preset tiny --seed 3 --quiet -o " +
                       dir_.file("again"))
                .exitCode,
            0);
  EXPECT_EQ(test::readFile(dir_.file("again/model.safetensors")),
            test::readFile(model_ + "/model.safetensors"));
}

TEST_F(TpcCli, MakeModelShardsLargeModelsWithAnIndex) {
  std::string sharded = dir_.file("sharded");
  test::CommandResult r = runCommand(
      tpc() + " make-model --arch qwen3 --preset small --shard-size 8 --quiet -o " + sharded, 300);
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_TRUE(test::fileExists(sharded + "/model.safetensors.index.json"));
  EXPECT_FALSE(test::fileExists(sharded + "/model.safetensors"));
  test::CommandResult inspect = runCommand(tpc() + " inspect " + sharded + " --format json");
  ASSERT_EQ(inspect.exitCode, 0) << inspect.output;
  nlohmann::json j = nlohmann::json::parse(inspect.output);
  Expected<ModelSpec> spec = makePresetSpec(Family::Qwen3, "small", DType::BF16);
  ASSERT_TRUE(spec);
  EXPECT_EQ(j["parameters"].get<int64_t>(), parameterCount(*spec));
}

TEST_F(TpcCli, InspectReportsTheModelAndRejectsBadCheckpoints) {
  test::CommandResult text = runCommand(tpc() + " inspect " + model_);
  ASSERT_EQ(text.exitCode, 0) << text.output;
  Expected<ModelSpec> spec = makePresetSpec(Family::Llama, "tiny", DType::BF16);
  ASSERT_TRUE(spec);
  EXPECT_NE(text.output.find("parameters " + std::to_string(parameterCount(*spec))),
            std::string::npos)
      << text.output;
  EXPECT_NE(text.output.find("rope llama3"), std::string::npos) << text.output;

  test::CommandResult json = runCommand(tpc() + " inspect " + model_ + " --format json");
  ASSERT_EQ(json.exitCode, 0) << json.output;
  nlohmann::json j = nlohmann::json::parse(json.output);
  EXPECT_EQ(j["family"], "llama");
  EXPECT_EQ(j["layers"].size(), static_cast<size_t>(spec->numLayers));
  EXPECT_EQ(j["config"]["num_key_value_heads"], spec->numKvHeads);

  // A checkpoint cut short: the reader names the file and the problem.
  std::string bytes = test::readFile(model_ + "/model.safetensors");
  test::writeFile(model_ + "/model.safetensors", bytes.substr(0, bytes.size() / 2));
  expectOneLineError(runCommand(tpc() + " inspect " + model_), 1, "model.safetensors");
  expectOneLineError(runCommand(tpc() + " inspect " + dir_.file("nothing-here")), 1,
                     "no such file");
}

TEST_F(TpcCli, CompileWritesAPlanAndExplainsWorldErrors) {
  std::string plan = dir_.file("plan.fb");
  test::CommandResult r = runCommand(tpc() + " compile " + model_ + " --world 8 -o " + plan);
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_NE(r.output.find("collectives per step: 5 all-reduce, 1 all-gather"), std::string::npos)
      << r.output;
  Expected<LoadedPlan> loaded = LoadedPlan::readFile(plan);
  ASSERT_TRUE(loaded) << loaded.errorMessage();
  EXPECT_EQ(loaded->plan().world(), 8u);

  expectOneLineError(
      runCommand(tpc() + " compile " + model_ + " --world 6 -o " + dir_.file("w6.fb")), 2,
      "world 6 is not a power of 2");
  EXPECT_FALSE(test::fileExists(dir_.file("w6.fb")));
  expectOneLineError(
      runCommand(tpc() + " compile " + model_ + " --world 2 -o " + dir_.file("no/such/dir/p.fb")),
      1, "p.fb");
  expectOneLineError(runCommand(tpc() + " compile " + model_ + " --print-after sharding"), 2,
                     "no pass named 'sharding'");
}

TEST_F(TpcCli, PrintAfterShowsTheIrOfThatPass) {
  test::CommandResult r = runCommand(tpc() + " compile " + model_ +
                                     " --world 2 --print-after shard -o " + dir_.file("p.fb"));
  ASSERT_EQ(r.exitCode, 0) << r.output;
  EXPECT_NE(r.output.find("graph \"llama\""), std::string::npos);
  EXPECT_NE(r.output.find("sharding = \"row-parallel\""), std::string::npos);
  EXPECT_EQ(r.output.find("all_reduce("), std::string::npos) << "collectives come in a later pass";
}

TEST_F(TpcCli, CompileRefusesAModelWhoseTensorsDoNotMatchItsConfig) {
  std::string config = test::readFile(model_ + "/config.json");
  size_t at = config.find("\"intermediate_size\": ");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, std::string("\"intermediate_size\": 256").size(),
                 "\"intermediate_size\": 512");
  test::writeFile(model_ + "/config.json", config);
  expectOneLineError(runCommand(tpc() + " compile " + model_ + " -o " + dir_.file("p.fb")), 1,
                     "has shape [256, 128], expected [512, 128]");
  EXPECT_FALSE(test::fileExists(dir_.file("p.fb")));
}

}  // namespace
}  // namespace tpc
