// `tpexec bench` on the CPU backend (the CUDA figures come from scripts/gpu/run-suite.sh): the
// report is consistent with the plan it measured, and bad requests are one-line errors.
#include <gtest/gtest.h>

#include <cmath>
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

TEST_F(TpexecBench, EngineModeReportsThroughputOfTheRequestsItServed) {
  // 6 requests of 8 prompt and 4 generated tokens, 3 at a time: every figure follows from
  // those counts and the measured seconds.
  test::CommandResult r =
      bench("--requests 6 --input-len 8 --output-len 4 --concurrency 3 --kv-block-size 4 --json");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["mode"], "engine");
  EXPECT_EQ(j["backend"], "cpu");
  EXPECT_EQ(j["concurrency"], 3);
  EXPECT_EQ(j["micro_batches"], 1) << "an unstaged plan";
  const double seconds = j["seconds"].get<double>();
  ASSERT_GT(seconds, 0.0);
  EXPECT_NEAR(j["requests_per_s"].get<double>() * seconds, 6.0, 1e-6);
  EXPECT_NEAR(j["output_tokens_per_s"].get<double>() * seconds, 24.0, 1e-6);
  EXPECT_NEAR(j["total_tokens_per_s"].get<double>() * seconds, 72.0, 1e-6);
  // Each request computes its 8 prompt tokens, then 3 decode tokens (the 4th is never fed).
  EXPECT_NEAR(j["prefill_token_share"].get<double>(), 8.0 / 11.0, 1e-9);
  // At most 3 sequences share an iteration: at least 6 * 4 / 3 of them, at most 6 * 4.
  const int64_t iterations = j["iterations"].get<int64_t>();
  EXPECT_GE(iterations, 8);
  EXPECT_LE(iterations, 24);
  EXPECT_GE(j["p99_iteration_ms"].get<double>(), j["mean_iteration_ms"].get<double>() * 0.999);
  EXPECT_NEAR(j["prefill_time_share"].get<double>() + j["decode_time_share"].get<double>(), 1.0,
              1e-9);
  EXPECT_EQ(j["preemptions"], 0);
  EXPECT_EQ(j["compute_roofline_s"], 0.0) << "no GPU, no ceilings measured";
}

// A MoE decode step reads the attention, router and norm weights, the lm_head, the KV cache
// and, of each layer's experts, only those its tokens chose: top_k at batch 1, and at batch B
// the expected distinct experts under uniform routing, E * (1 - (1 - k/E)^B). Worked out here
// from config.json (f32 plan: 4 bytes per element).
TEST(TpexecBenchMoe, StepReadsOnlyTheChosenExperts) {
  test::TempDir dir;
  std::string model = test::dataDir() + "/hf/mixtral", plan = dir.file("mixtral.fb");
  test::CommandResult c =
      runCommand(test::binPath("tpc") + " compile " + model +
                 " --dtype f32 --max-context 64 --max-batch 4 --quiet -o " + plan);
  ASSERT_EQ(c.exitCode, 0) << c.output;
  nlohmann::json config = nlohmann::json::parse(test::readFile(model + "/config.json"));
  const double hidden = config["hidden_size"], heads = config["num_attention_heads"],
               kvHeads = config["num_key_value_heads"], layers = config["num_hidden_layers"],
               vocab = config["vocab_size"], expertWidth = config["intermediate_size"],
               experts = config["num_local_experts"], topK = config["num_experts_per_tok"];
  ASSERT_FALSE(config["tie_word_embeddings"].get<bool>());
  const double headDim = hidden / heads;
  const double attention = 2 * hidden * heads * headDim + 2 * hidden * kvHeads * headDim;
  const double perLayer = attention + 2 * hidden + experts * hidden;  // + norms and router
  const double expertElements = 3 * hidden * expertWidth;
  const double kvPerPosition = layers * 2 * kvHeads * headDim * 4;
  const int64_t prompt = 8, gen = 5, warmup = 3;  // the bench's warm-up steps
  for (int64_t batch : {1, 4}) {
    SCOPED_TRACE("batch " + std::to_string(batch));
    test::CommandResult r =
        runCommand(test::binPath("tpexec") + " bench " + plan + " --backend cpu --batch " +
                   std::to_string(batch) + " --prompt-len 8 --gen 5 --json");
    ASSERT_EQ(r.exitCode, 0) << r.output;
    nlohmann::json j = nlohmann::json::parse(r.output);
    const double touched = batch == 1 ? topK : experts * (1 - std::pow(1 - topK / experts, batch));
    EXPECT_NEAR(j["experts_read_per_layer"].get<double>(), touched, 1e-9);
    const double weights =
        4 * (layers * (perLayer + touched * expertElements) + hidden + vocab * hidden);
    const double kv = static_cast<double>(batch) * (prompt + warmup + gen / 2.0) * kvPerPosition;
    EXPECT_NEAR(j["bytes_read_per_step"].get<double>(), weights + kv, 2.0);
  }
}

// llava: --pixel-values (or --image) times the vision tower and projector on the image, and the
// prompts carry its image tokens; a prompt too short for them, or a text plan, is one line.
TEST(TpexecBenchLlava, ReportsTheImageEncodeTime) {
  test::TempDir dir;
  std::string model = test::dataDir() + "/hf/llava-tiny", plan = dir.file("llava.fb");
  test::CommandResult c = runCommand(test::binPath("tpc") + " compile " + model +
                                     " --dtype f32 --max-context 64 --quiet -o " + plan);
  ASSERT_EQ(c.exitCode, 0) << c.output;
  const std::string bench = test::binPath("tpexec") + " bench " + plan +
                            " --backend cpu --pixel-values " + model + "/pixel_values.npy";
  test::CommandResult r = runCommand(bench + " --prompt-len 20 --gen 3 --json");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["image_tokens"], 16);
  EXPECT_GT(j["image_encode_ms"].get<double>(), 0.0);
  EXPECT_GT(j["decode_ms_per_step"].get<double>(), 0.0);
  test::CommandResult text = runCommand(bench + " --prompt-len 20 --gen 3");
  ASSERT_EQ(text.exitCode, 0) << text.output;
  EXPECT_NE(text.output.find("image: the vision tower and projector in "), std::string::npos)
      << text.output;
  test::CommandResult tooShort = runCommand(bench + " --prompt-len 16 --gen 3");
  EXPECT_NE(tooShort.exitCode, 0);
  EXPECT_EQ(tooShort.lineCount(), 1) << tooShort.output;
  EXPECT_NE(tooShort.output.find("cannot hold the image's 16 tokens"), std::string::npos)
      << tooShort.output;
}

TEST_F(TpexecBench, BadRequestsAreOneLineErrors) {
  for (const char* flags :
       {"--batch 5", "--batch 0", "--prompt-len 60 --gen 10", "--synthetic-weights", "--gen x",
        "--requests 0", "--requests 2 --input-len 60 --output-len 10",
        "--requests 2 --kv-block-size 0", "--pixel-values x.npy", "--compare-micro-batches",
        "--requests 2 --micro-batches 2"}) {
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
