// `tpc dump` as a user runs it: good plans print, and every bad input (file or flag) ends in
// one `error:` line and a non-zero exit, never a signal.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "tests/support/Fixtures.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using test::runCommand;

class DumpCli : public ::testing::Test {
 protected:
  void SetUp() override {
    Expected<LoadedPlan> plan = test::compileSpec(test::presetSpec(Family::Llama), kWorld);
    ASSERT_TRUE(plan) << plan.errorMessage();
    bytes_.assign(plan->bytes().begin(), plan->bytes().end());
    test::writeFile(planPath(), bytes_);
  }
  std::string planPath() const { return dir_.file("plan.fb"); }
  std::string dump(const std::string& args) const { return test::binPath("tpc") + " dump " + args; }

  // A refused command: exits with an error code of its own (not a signal or the time limit)
  // after printing exactly one line that starts with "error: ".
  static void expectOneLineError(const test::CommandResult& r) {
    EXPECT_NE(r.exitCode, 0) << r.output;
    EXPECT_LT(r.exitCode, 124) << "killed or timed out: " << r.output;
    EXPECT_EQ(r.lineCount(), 1) << r.output;
    EXPECT_EQ(r.output.rfind("error: ", 0), 0u) << r.output;
  }

  static constexpr int64_t kWorld = 4;
  test::TempDir dir_;
  std::string bytes_;
};

TEST_F(DumpCli, TruncatedPlan) {
  test::writeFile(dir_.file("cut.fb"), bytes_.substr(0, bytes_.size() / 2));
  expectOneLineError(runCommand(dump(dir_.file("cut.fb"))));
}

TEST_F(DumpCli, RandomBytes) {
  std::mt19937 random(7);
  std::string noise(4096, '\0');
  for (char& c : noise) c = static_cast<char>(random());
  test::writeFile(dir_.file("noise.fb"), noise);
  expectOneLineError(runCommand(dump(dir_.file("noise.fb"))));
  // The right identifier in front of the noise gets it past the first check only.
  std::memcpy(noise.data() + 4, "TPCP", 4);
  test::writeFile(dir_.file("noise.fb"), noise);
  expectOneLineError(runCommand(dump(dir_.file("noise.fb") + " --format json")));
}

TEST_F(DumpCli, MissingFile) {
  test::CommandResult r = runCommand(dump(dir_.file("absent.fb")));
  expectOneLineError(r);
  EXPECT_NE(r.output.find("absent.fb"), std::string::npos) << r.output;
}

TEST_F(DumpCli, RankOutsideTheWorld) {
  test::CommandResult r = runCommand(dump(planPath() + " --rank 99"));
  expectOneLineError(r);
  EXPECT_NE(r.output.find("--rank 99"), std::string::npos) << r.output;
  expectOneLineError(runCommand(dump(planPath() + " --rank -1")));
}

TEST_F(DumpCli, UnknownFormat) {
  test::CommandResult r = runCommand(dump(planPath() + " --format xml"));
  expectOneLineError(r);
  EXPECT_NE(r.output.find("xml"), std::string::npos) << r.output;
}

TEST_F(DumpCli, JsonOfEveryRankAndOfOne) {
  test::CommandResult all = runCommand(dump(planPath() + " --format json"));
  ASSERT_EQ(all.exitCode, 0) << all.output;
  nlohmann::json doc = nlohmann::json::parse(all.output);
  EXPECT_EQ(doc["world"], kWorld);
  EXPECT_EQ(doc["ranks"].size(), static_cast<size_t>(kWorld));
  test::CommandResult one = runCommand(dump(planPath() + " --format json --rank 2"));
  ASSERT_EQ(one.exitCode, 0) << one.output;
  nlohmann::json single = nlohmann::json::parse(one.output);
  ASSERT_EQ(single["ranks"].size(), 1u);
  EXPECT_EQ(single["ranks"][0], doc["ranks"][2]);
}

TEST_F(DumpCli, TextAndDot) {
  test::CommandResult text = runCommand(dump(planPath()));
  ASSERT_EQ(text.exitCode, 0) << text.output;
  for (int r = 0; r < kWorld; ++r)
    EXPECT_NE(text.output.find("\nrank " + std::to_string(r) + ": weights"), std::string::npos);
  test::CommandResult dot = runCommand(dump(planPath() + " --format dot --rank 3"));
  ASSERT_EQ(dot.exitCode, 0) << dot.output;
  EXPECT_EQ(dot.output.rfind("digraph", 0), 0u);
}

}  // namespace
}  // namespace tpc
