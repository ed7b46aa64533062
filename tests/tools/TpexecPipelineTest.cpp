// Pipeline stages on the CPU backend, end to end through tpc compile --pp and tpexec: the
// golden cases at (tp, pp) = (1, 2) and (2, 2) give transformers' greedy ids and logits within
// 1e-4, and world 1's within 1e-5; a four-layer model at (1, 4), (2, 4) and uneven stages gives
// world 1's; the engine (--requests), with micro-batches in flight or not, gives what
// --prompt-ids gives; a dead stage ends the run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "executor/Backend.h"
#include "executor/Npy.h"
#include "tests/support/GoldenCases.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

struct Decoded {
  std::vector<int64_t> ids;
  NpyArray logits;
};

class TpexecPipeline : public ::testing::Test {
 protected:
  // Compiles `model` with `flags` and decodes `prompt` greedily, keeping every step's logits.
  Decoded run(const std::string& model, const std::string& flags,
              const std::vector<int64_t>& prompt, size_t tokens, const std::string& runFlags = "") {
    std::string plan = dir_.file("plan.fb"), logits = dir_.file("logits.npy");
    test::CommandResult c = test::runCommand(test::binPath("tpc") + " compile " + model + " " +
                                             flags + " --dtype f32 --quiet -o " + plan);
    EXPECT_EQ(c.exitCode, 0) << c.output;
    test::CommandResult r =
        test::runCommand(test::binPath("tpexec") + " " + plan + " --prompt-ids " +
                         test::joinedIds(prompt) + " --max-new-tokens " + std::to_string(tokens) +
                         " --ignore-eos --json --logits-out " + logits + " " + runFlags);
    EXPECT_EQ(r.exitCode, 0) << r.output;
    Decoded out;
    if (r.exitCode != 0) return out;
    out.ids = nlohmann::json::parse(r.output)["generated_ids"].get<std::vector<int64_t>>();
    Expected<NpyArray> read = readNpyF32(logits);
    EXPECT_TRUE(read) << read.errorMessage();
    if (read) out.logits = *read;
    return out;
  }
  test::TempDir dir_;
};

TEST_F(TpexecPipeline, GoldenCasesMatchTransformersAndWorldOne) {
  for (const char* name : test::kGoldenCases) {
    std::string model = test::dataDir() + "/hf/" + name;
    nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
    std::vector<int64_t> prompt = golden["prompt_ids"], want = golden["generated_ids"];
    Expected<NpyArray> reference = readNpyF32(model + "/logits.npy");
    ASSERT_TRUE(reference) << reference.errorMessage();
    Decoded one = run(model, "--world 1", prompt, want.size());
    ASSERT_EQ(one.logits.shape, reference->shape) << name;
    for (auto [tp, pp] : {std::pair{1, 2}, std::pair{2, 2}}) {
      SCOPED_TRACE(std::string(name) + " tp " + std::to_string(tp) + " pp " + std::to_string(pp));
      Decoded staged =
          run(model, "--world " + std::to_string(tp * pp) + " --pp " + std::to_string(pp), prompt,
              want.size());
      EXPECT_EQ(staged.ids, want);
      ASSERT_EQ(staged.logits.shape, reference->shape);
      EXPECT_LT(test::worstRowError(staged.logits, *reference), 1e-4);
      EXPECT_LT(test::worstRowError(staged.logits, one.logits), 1e-5);
    }
  }
}

TEST_F(TpexecPipeline, FourLayersOnFourStagesAndUnevenStagesGiveWorldOnesLogits) {
  std::string model = dir_.file("small");
  ASSERT_EQ(test::runCommand(test::binPath("tpc") +
                                 " make-model --arch llama --preset small --dtype f32 --quiet -o " +
                                 model,
                             120)
                .exitCode,
            0);
  std::vector<int64_t> prompt = {1, 17, 42, 99, 3, 201, 7};
  Decoded one = run(model, "--world 1 --max-context 64", prompt, 6);
  ASSERT_FALSE(one.ids.empty());
  for (const char* flags :
       {"--world 4 --pp 4", "--world 8 --pp 4", "--world 2 --pp 2 --stage-layers 1,3"}) {
    SCOPED_TRACE(flags);
    Decoded staged = run(model, std::string(flags) + " --max-context 64", prompt, 6);
    EXPECT_EQ(staged.ids, one.ids);
    ASSERT_EQ(staged.logits.shape, one.logits.shape);
    EXPECT_LT(test::worstRowError(staged.logits, one.logits), 1e-5);
  }
  // The same over Gloo's point-to-point messages.
  Decoded gloo = run(model, "--world 4 --pp 2 --max-context 64", prompt, 6, "--comm gloo");
  EXPECT_EQ(gloo.ids, one.ids);
  ASSERT_EQ(gloo.logits.shape, one.logits.shape);
  EXPECT_LT(test::worstRowError(gloo.logits, one.logits), 1e-5);
}

// The engine at (1, 2) and (2, 2): concurrent requests, chunked prefill, with two micro-batches
// in flight (the default) and with one, each request's tokens those of --prompt-ids alone on
// the unstaged plan.
TEST_F(TpexecPipeline, TheEngineRunsStagedPlans) {
  std::string model = test::dataDir() + "/hf/llama-gqa-llama3rope";
  std::string flat = dir_.file("flat.fb");
  ASSERT_EQ(
      test::runCommand(test::binPath("tpc") + " compile " + model + " --quiet -o " + flat).exitCode,
      0);
  std::string requests = dir_.file("requests.jsonl");
  const std::vector<std::vector<int64_t>> prompts = test::writeStaggeredRequests(requests);
  std::vector<nlohmann::json> alone;
  for (const std::vector<int64_t>& prompt : prompts) {
    test::CommandResult r =
        test::runCommand(test::binPath("tpexec") + " " + flat + " --json --ignore-eos " +
                         "--max-new-tokens 5 --prompt-ids " + test::joinedIds(prompt));
    ASSERT_EQ(r.exitCode, 0) << r.output;
    alone.push_back(nlohmann::json::parse(r.output)["generated_ids"]);
  }
  for (const char* world : {"2", "4"}) {
    std::string staged = dir_.file("staged.fb");
    std::string compile = test::binPath("tpc");
    compile.append(" compile ").append(model).append(" --world ").append(world);
    compile.append(" --pp 2 --quiet -o ").append(staged);
    ASSERT_EQ(test::runCommand(compile).exitCode, 0);
    for (const char* micro : {"", " --micro-batches 1"}) {
      SCOPED_TRACE(std::string("world ") + world + micro);
      std::string command = test::binPath("tpexec");
      command.append(" ").append(staged).append(" --requests ").append(requests);
      command.append(" --max-batched-tokens 8").append(micro);
      test::CommandResult r = test::runCommand(command);
      ASSERT_EQ(r.exitCode, 0) << r.output;
      std::istringstream lines(r.output);
      size_t seen = 0;
      for (std::string line; std::getline(lines, line);) {
        if (line.empty() || line[0] != '{') continue;
        nlohmann::json got = nlohmann::json::parse(line);
        size_t i = std::stoul(got["id"].get<std::string>().substr(1));
        ASSERT_LT(i, prompts.size());
        EXPECT_EQ(got["generated_ids"], alone[i]) << line;
        ++seen;
      }
      EXPECT_EQ(seen, prompts.size()) << r.output;
    }
  }
  // Bad micro-batch counts: one line each.
  for (auto [flags, message] :
       {std::pair{flat + " --micro-batches 2",
                  "--micro-batches 2 keeps pipeline stages busy, but the plan has one stage"},
        std::pair{flat + " --micro-batches 0", "--micro-batches must be a whole number in 1..1024"},
        std::pair{flat + " --micro-batches two", "not 'two'"}}) {
    std::string command = test::binPath("tpexec");
    command.append(" ").append(flags).append(" --requests ").append(requests);
    test::CommandResult bad = test::runCommand(command);
    EXPECT_NE(bad.exitCode, 0) << flags;
    EXPECT_NE(bad.output.find(message), std::string::npos) << flags << ": " << bad.output;
    EXPECT_EQ(std::count(bad.output.begin(), bad.output.end(), '\n'), 1) << bad.output;
  }
}

// Device maps whose stages are all on the CPU run world 1's tokens and logits; a stage placed
// on a GPU is refused by the CPU backend, and bad maps get one line each.
TEST_F(TpexecPipeline, CpuDeviceMapsRunTheSameTokens) {
  std::string model = test::dataDir() + "/hf/llama-gqa-llama3rope";
  nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
  std::vector<int64_t> prompt = golden["prompt_ids"], want = golden["generated_ids"];
  Decoded one = run(model, "--world 1", prompt, want.size());
  ASSERT_EQ(one.ids, want);
  for (const char* flags :
       {"--device-map cpu=1,cpu=*", "--device-map auto --device-memory cpu=1GiB"}) {
    SCOPED_TRACE(flags);
    Decoded mapped = run(model, flags, prompt, want.size());
    EXPECT_EQ(mapped.ids, want);
    ASSERT_EQ(mapped.logits.shape, one.logits.shape);
    EXPECT_LT(test::worstRowError(mapped.logits, one.logits), 1e-5);
  }
  std::string plan = dir_.file("gpu.fb");
  test::CommandResult c = test::runCommand(test::binPath("tpc") + " compile " + model +
                                           " --device-map cuda:0=1,cpu=* --quiet -o " + plan);
  ASSERT_EQ(c.exitCode, 0) << c.output;
  // Each stage runs on its own device whatever --backend says; a host without the GPU the plan
  // names gets one line (the GPU machine runs this plan in TpexecCudaGolden).
  if (cudaDeviceCount() == 0) {
    test::CommandResult r =
        test::runCommand(test::binPath("tpexec") + " " + plan + " --backend cpu --prompt-ids 1,2");
    EXPECT_EQ(r.exitCode, 1) << r.output;
    EXPECT_EQ(r.output,
              "error: the plan places stage 0 on cuda:0 but this host has no GPU the CUDA "
              "backend can use (recompile the device map for this host)\n");
  }
  for (auto [flags, message] :
       {std::pair{"--device-map auto --device-memory cpu=64KiB", "but its budget is 64.00 KiB"},
        std::pair{"--device-map auto", "--device-map auto needs --device-memory"},
        std::pair{"--device-map cpu=5", "--device-map places 5 layers but the model has 2"},
        std::pair{"--device-map cpu=1,cpu=* --world 2", "leave out --world"},
        std::pair{"--device-map auto --device-memory cpu=lots", "is not a size in bytes"}}) {
    test::CommandResult bad = test::runCommand(test::binPath("tpc") + " compile " + model + " " +
                                               flags + " -o " + dir_.file("bad.fb"));
    EXPECT_NE(bad.exitCode, 0) << flags;
    EXPECT_NE(bad.output.find(message), std::string::npos) << flags << ": " << bad.output;
    EXPECT_EQ(std::count(bad.output.begin(), bad.output.end(), '\n'), 1) << bad.output;
  }
}

// Synthetic weights (benchmarks of shapes without a checkpoint) are seeded by weight name, so a
// device map of whole-weight stages makes the weights of world 1 and decodes its tokens.
TEST_F(TpexecPipeline, SyntheticWeightsOfStagesAreWorldOnes) {
  std::string model = test::dataDir() + "/hf/llama-gqa-llama3rope";
  const std::vector<int64_t> prompt = {1, 5, 9, 13};
  Decoded one = run(model, "--world 1", prompt, 6, "--backend cpu --synthetic-weights");
  Decoded mapped =
      run(model, "--device-map cpu=1,cpu=*", prompt, 6, "--backend cpu --synthetic-weights");
  ASSERT_EQ(one.ids.size(), 6u);
  EXPECT_EQ(mapped.ids, one.ids);
  ASSERT_EQ(mapped.logits.shape, one.logits.shape);
  EXPECT_LT(test::worstRowError(mapped.logits, one.logits), 1e-5);
  // Different from the checkpoint's: the weights really are made up.
  Decoded real = run(model, "--world 1", prompt, 6, "--backend cpu");
  EXPECT_GT(test::worstRowError(real.logits, one.logits), 1e-2);
}

// A rank of the second stage killed mid-decode ends every rank within the 5 s rank timeout:
// one sequence, and the engine's two sequences in two micro-batches in flight.
TEST_F(TpexecPipeline, ADeadStageEndsTheRunInBoundedTime) {
  std::string model = dir_.file("small");
  ASSERT_EQ(test::runCommand(test::binPath("tpc") + " make-model --arch llama --preset small " +
                                 "--quiet -o " + model,
                             120)
                .exitCode,
            0);
  std::string plan = dir_.file("staged.fb");
  ASSERT_EQ(test::runCommand(test::binPath("tpc") + " compile " + model +
                             " --world 4 --pp 2 --max-context 8192 --quiet -o " + plan)
                .exitCode,
            0);
  std::string requests = dir_.file("long.jsonl");
  test::writeFile(
      requests,
      "{\"id\":\"a\",\"prompt_ids\":[1,2,3],\"max_new_tokens\":8000,\"ignore_eos\":true}\n"
      "{\"id\":\"b\",\"prompt_ids\":[4,5],\"max_new_tokens\":8000,\"ignore_eos\":true}\n");
  for (const std::string& run :
       {std::string("--prompt-ids 1,2,3 --max-new-tokens 100000 --ignore-eos"),
        "--requests \"" + requests + "\" --micro-batches 2"}) {
    SCOPED_TRACE(run);
    std::string log = dir_.file("tpexec.log"), script = dir_.file("fault.sh");
    std::string text = "#!/bin/bash\n\"";
    text.append(test::binPath("tpexec")).append("\" \"").append(plan).append("\" ").append(run);
    text.append(
        " > \"$1\" 2>&1 &\n"
        "pid=$!\n"
        "for i in $(seq 100); do [ \"$(pgrep -P $pid | wc -l)\" -ge 4 ] && break; sleep 0.05; "
        "done\n"
        "ranks=$(pgrep -P $pid | sort -n)\n"
        "sleep 1\n"
        "victim=$(echo \"$ranks\" | sed -n 3p)\n"
        "start=$(date +%s%N)\n"
        "kill -KILL $victim\n"
        "wait $pid; rc=$?\n"
        "end=$(date +%s%N)\n"
        "alive=0; for p in $ranks; do kill -0 $p 2>/dev/null && alive=$((alive+1)); done\n"
        "echo \"rc=$rc ms=$(( (end-start)/1000000 )) alive=$alive\"\n");
    test::writeFile(script, text);
    std::string command = "bash ";
    command.append(script).append(" ").append(log);
    test::CommandResult r = test::runCommand(command, 60);
    ASSERT_EQ(r.exitCode, 0) << r.output;
    int rc = -1, ms = -1, alive = -1;
    ASSERT_EQ(std::sscanf(r.output.c_str(), "rc=%d ms=%d alive=%d", &rc, &ms, &alive), 3)
        << r.output;
    std::string errors = test::readFile(log);
    EXPECT_EQ(rc, 1) << errors;
    EXPECT_LT(ms, 5000) << errors;
    EXPECT_EQ(alive, 0) << "ranks left behind";
    EXPECT_NE(errors.find("rank 2"), std::string::npos) << errors;
  }
}

}  // namespace
}  // namespace tpc
