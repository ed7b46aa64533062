// `tpexec bench` on the CPU backend (the CUDA figures come from scripts/gpu/run-suite.sh): the
// report is consistent with the plan it measured, and bad requests are one-line errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "executor/Backend.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using test::runCommand;

class TpexecBench : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string model = dir_.file("model");
    ASSERT_EQ(runCommand(test::binPath("tpc") +
                         " make-model --arch llama --preset tiny --quiet -o " + model)
                  .exitCode,
              0);
    plan_ = dir_.file("tiny.fb");
    test::CommandResult c = runCommand(test::binPath("tpc") + " compile " + model +
                                       " --max-context 64 --max-batch 4 --quiet -o " + plan_);
    ASSERT_EQ(c.exitCode, 0) << c.output;
    test::CommandResult d = runCommand(test::binPath("tpc") + " dump " + plan_ + " --format json");
    ASSERT_EQ(d.exitCode, 0) << d.output;
    dump_ = nlohmann::json::parse(d.output);
  }
  test::CommandResult bench(const std::string& flags) {
    return runCommand(test::binPath("tpexec") + " bench " + plan_ + " --backend cpu " + flags);
  }
  test::TempDir dir_;
  std::string plan_;
  nlohmann::json dump_;
};

TEST_F(TpexecBench, ReportIsConsistentWithThePlan) {
  test::CommandResult r = bench("--batch 2 --prompt-len 8 --gen 5 --json");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["backend"], "cpu");
  EXPECT_EQ(j["batch"], 2);
  double ms = j["decode_ms_per_step"].get<double>();
  ASSERT_GT(ms, 0.0);
  EXPECT_NEAR(j["decode_tokens_per_s"].get<double>(), 2 * 1000.0 / ms, 1e-6 * 2000 / ms);
  EXPECT_GT(j["prefill_tokens_per_s"].get<double>(), 0.0);
  // A decode step reads every weight but the embedding table, plus the KV cache: more than
  // the weights without the table, less than all weights plus a cache of max batch x max
  // context tokens.
  uint64_t weights = 0, embedding = 0;
  for (const auto& w : dump_["ranks"][0]["weights"]) {
    weights += w["bytes"].get<uint64_t>();
    if (w["name"].get<std::string>().find("embed") != std::string::npos)
      embedding += w["bytes"].get<uint64_t>();
  }
  ASSERT_GT(embedding, 0u);
  uint64_t read = j["bytes_read_per_step"].get<uint64_t>();
  EXPECT_GT(read, weights - embedding);
  const uint64_t wholeCache = dump_["ranks"][0]["kv_bytes_per_token"].get<uint64_t>() *
                              dump_["limits"]["max_context"].get<uint64_t>() *
                              dump_["limits"]["max_batch"].get<uint64_t>();
  EXPECT_GT(wholeCache, 0u);
  EXPECT_LT(read, weights + wholeCache);
}

TEST_F(TpexecBench, BadRequestsAreOneLineErrors) {
  for (const char* flags :
       {"--batch 5", "--batch 0", "--prompt-len 60 --gen 10", "--synthetic-weights", "--gen x"}) {
    SCOPED_TRACE(flags);
    test::CommandResult r = bench(flags);
    EXPECT_NE(r.exitCode, 0);
    EXPECT_EQ(r.lineCount(), 1) << r.output;
    EXPECT_NE(r.output.find("error:"), std::string::npos) << r.output;
  }
}

TEST(TpexecCuda, WithoutAGpuItIsAOneLineError) {
  if (cudaDeviceCount() > 0) GTEST_SKIP() << "skipped: this machine has a GPU";
  test::TempDir dir;
  std::string model = dir.file("model"), plan = dir.file("p.fb");
  ASSERT_EQ(runCommand(test::binPath("tpc") + " make-model --arch llama --preset tiny --quiet -o " +
                       model)
                .exitCode,
            0);
  ASSERT_EQ(runCommand(test::binPath("tpc") + " compile " + model + " --quiet -o " + plan).exitCode,
            0);
  test::CommandResult r =
      runCommand(test::binPath("tpexec") + " " + plan + " --backend cuda --prompt-ids 1,2");
  EXPECT_NE(r.exitCode, 0);
  EXPECT_EQ(r.lineCount(), 1) << r.output;
  EXPECT_NE(r.output.find(haveCudaBackend() ? "no CUDA" : "no CUDA backend"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace tpc
