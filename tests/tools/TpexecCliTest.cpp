// tpexec as a user meets it: output, flags, bad input, and failures of ranks and checkpoints.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using test::runCommand;

std::string tpc() { return test::binPath("tpc"); }
std::string tpexec() { return test::binPath("tpexec"); }

class Tpexec : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = dir_.file("model");
    ASSERT_EQ(
        runCommand(tpc() + " make-model --arch qwen3 --preset tiny --quiet -o " + model_).exitCode,
        0);
  }
  std::string compile(int world, const std::string& extra = "") {
    std::string plan = dir_.file("w" + std::to_string(world) + ".fb");
    test::CommandResult r = runCommand(tpc() + " compile " + model_ + " --quiet --world " +
                                       std::to_string(world) + " -o " + plan + extra);
    EXPECT_EQ(r.exitCode, 0) << r.output;
    return plan;
  }
  test::TempDir dir_;
  std::string model_;
};

TEST_F(Tpexec, JsonReportsIdsTimingsAndWeightBytesPerRank) {
  test::CommandResult r = runCommand(tpexec() + " " + compile(4) +
                                     " --prompt-ids 5,6,7 --max-new-tokens 4 --ignore-eos --json");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["prompt_ids"], nlohmann::json::array({5, 6, 7}));
  EXPECT_EQ(j["generated_ids"].size(), 4u);
  EXPECT_EQ(j["world"], 4);
  EXPECT_GE(j["timings"]["prefill_ms"].get<double>(), 0.0);
  ASSERT_EQ(j["weight_bytes_per_rank"].size(), 4u);
  for (const auto& b : j["weight_bytes_per_rank"]) EXPECT_GT(b.get<int64_t>(), 0);
}

// Shared memory and Gloo both sum in an order every rank shares, so the two runs agree exactly;
// --json names the communicator each one used.
TEST_F(Tpexec, CommunicatorIsChosenReportedAndChangesNoBit) {
  std::string plan = compile(2);
  auto run = [&](const std::string& comm, const std::string& logits) {
    test::CommandResult r = runCommand(tpexec() + " " + plan +
                                       " --prompt-ids 5,6,7 --max-new-tokens 6 --ignore-eos --json"
                                       " --logits-out " +
                                       logits + (comm.empty() ? "" : " --comm " + comm));
    EXPECT_EQ(r.exitCode, 0) << r.output;
    return r.exitCode == 0 ? nlohmann::json::parse(r.output) : nlohmann::json();
  };
  std::string shmLogits = dir_.file("shm.npy"), glooLogits = dir_.file("gloo.npy");
  nlohmann::json automatic = run("", dir_.file("auto.npy"));
  nlohmann::json shm = run("shm", shmLogits);
  nlohmann::json gloo = run("gloo", glooLogits);
  EXPECT_EQ(automatic["communicator"], "shm");
  EXPECT_EQ(shm["communicator"], "shm");
  EXPECT_EQ(gloo["communicator"], "gloo");
  EXPECT_EQ(shm["generated_ids"], gloo["generated_ids"]);
  EXPECT_EQ(test::readFile(shmLogits), test::readFile(glooLogits));
  test::CommandResult single =
      runCommand(tpexec() + " " + compile(1) + " --prompt-ids 5 --max-new-tokens 1 --json");
  ASSERT_EQ(single.exitCode, 0) << single.output;
  EXPECT_EQ(nlohmann::json::parse(single.output)["communicator"], "local");
  test::CommandResult wrong = runCommand(tpexec() + " " + plan + " --prompt-ids 5 --comm nccl");
  EXPECT_EQ(wrong.exitCode, 1) << wrong.output;
  EXPECT_EQ(wrong.lineCount(), 1) << wrong.output;
  EXPECT_NE(wrong.output.find("--comm nccl"), std::string::npos) << wrong.output;
}

// The fused all-reduce + add + RMSNorm step (what `tpc dump` shows) gives the logits of the two
// steps it replaces, bit for bit: the CPU twin reduces in rank order, then adds and normalises.
TEST_F(Tpexec, FusedAllReduceAddRmsNormEqualsTheUnfusedSteps) {
  for (int world : {2, 4, 8}) {
    SCOPED_TRACE("world " + std::to_string(world));
    std::string fused = compile(world);
    std::string unfused = dir_.file("unfused.fb");
    ASSERT_EQ(runCommand(tpc() + " compile " + model_ + " --quiet --unfused-all-reduce --world " +
                         std::to_string(world) + " -o " + unfused)
                  .exitCode,
              0);
    test::CommandResult dump = runCommand(tpc() + " dump " + fused);
    ASSERT_EQ(dump.exitCode, 0) << dump.output;
    EXPECT_NE(dump.output.find("all_reduce_add_rms_norm"), std::string::npos) << dump.output;
    test::CommandResult plain = runCommand(tpc() + " dump " + unfused);
    EXPECT_EQ(plain.output.find("all_reduce_add_rms_norm"), std::string::npos);
    std::string a = dir_.file("fused.npy"), b = dir_.file("unfused.npy");
    for (auto [plan, logits] : {std::pair{fused, a}, std::pair{unfused, b}}) {
      std::string command = tpexec() + " " + plan;
      command += " --prompt-ids 5,6,7,8 --max-new-tokens 5 --ignore-eos --logits-out " + logits;
      test::CommandResult r = runCommand(command);
      ASSERT_EQ(r.exitCode, 0) << r.output;
    }
    EXPECT_EQ(test::readFile(a), test::readFile(b)) << "the fused step changed the logits";
  }
}

TEST_F(Tpexec, SamplingIsSeededAndTopKOneIsGreedy) {
  std::string plan = compile(2);
  auto ids = [&](const std::string& flags) {
    test::CommandResult r = runCommand(
        tpexec() + " " + plan + " --prompt-ids 1,2,3 --max-new-tokens 12 --ignore-eos " + flags);
    EXPECT_EQ(r.exitCode, 0) << r.output;
    return r.output.substr(0, r.output.find('\n'));
  };
  EXPECT_EQ(ids("--temperature 1.5 --seed 7"), ids("--temperature 1.5 --seed 7"));
  EXPECT_NE(ids("--temperature 1.5 --seed 7"), ids("--temperature 1.5 --seed 8"));
  EXPECT_EQ(ids("--temperature 1.5 --top-k 1 --seed 3"), ids(""));
}

TEST_F(Tpexec, BadInputGivesOneLineErrors) {
  std::string plan = compile(2, " --max-context 8");
  auto oneLine = [](const test::CommandResult& r, int code, const std::string& words) {
    EXPECT_EQ(r.exitCode, code) << r.output;
    EXPECT_EQ(r.lineCount(), 1) << r.output;
    EXPECT_NE(r.output.find(words), std::string::npos) << r.output;
  };
  oneLine(runCommand(tpexec() + " " + plan + " --prompt-ids 1,2,3,4,5,6,7,8,9"), 1,
          "max context is 8");
  oneLine(runCommand(tpexec() + " " + plan + " --prompt-ids 1,x"), 2, "--prompt-ids expects");
  oneLine(runCommand(tpexec() + " " + plan + " --prompt-ids 99999"), 1, "outside the vocab");
  oneLine(runCommand(tpexec() + " " + plan + " --prompt-ids 1 --top-p 0"), 2, "--top-p");
  oneLine(runCommand(tpexec() + " " + plan), 2, "--prompt-ids is required");
  oneLine(runCommand(tpexec() + " " + dir_.file("missing.fb") + " --prompt-ids 1"), 1,
          "missing.fb");
  oneLine(runCommand(tpexec() + " " + model_ + "/config.json --prompt-ids 1"), 1, "not a tpc plan");
}

TEST_F(Tpexec, ACheckpointChangedAfterCompilingIsRefused) {
  std::string plan = compile(2);
  ASSERT_EQ(
      runCommand(tpc() + " make-model --arch qwen3 --preset tiny --dtype f32 --force --quiet -o " +
                 model_)
          .exitCode,
      0);
  test::CommandResult r = runCommand(tpexec() + " " + plan + " --prompt-ids 1,2,3", 20);
  EXPECT_EQ(r.exitCode, 1) << r.output;
  EXPECT_NE(r.output.find("changed since the plan was compiled"), std::string::npos) << r.output;
}

// Starts a long decode at world 4, sends `signal` to rank 2 once decoding runs, and reports
// the exit code, the milliseconds from the signal to tpexec's exit, and the ranks still alive.
std::string faultScript(const std::string& plan, const std::string& signal,
                        const std::string& comm) {
  return "#!/bin/bash\n"
         "\"" +
         test::binPath("tpexec") + "\" \"" + plan +
         "\" --prompt-ids 1,2,3 --max-new-tokens 100000 --ignore-eos --comm " + comm +
         " > \"$1\" 2>&1 &\n"
         "pid=$!\n"
         "for i in $(seq 100); do [ \"$(pgrep -P $pid | wc -l)\" -ge 4 ] && break; sleep 0.05; "
         "done\n"
         "ranks=$(pgrep -P $pid | sort -n)\n"
         "sleep 1\n"
         "victim=$(echo \"$ranks\" | sed -n 3p)\n"
         "start=$(date +%s%N)\n"
         "kill -" +
         signal +
         " $victim\n"
         "wait $pid; rc=$?\n"
         "end=$(date +%s%N)\n"
         "alive=0; for p in $ranks; do kill -0 $p 2>/dev/null && alive=$((alive+1)); done\n"
         "echo \"rc=$rc ms=$(( (end-start)/1000000 )) alive=$alive\"\n";
}

// Shared memory ends the run within 5 s (the rank timeout); Gloo within 10.
TEST_F(Tpexec, AKilledOrFrozenRankEndsTheRunInBoundedTimeNamingIt) {
  std::string small = dir_.file("small");
  ASSERT_EQ(runCommand(tpc() + " make-model --arch llama --preset small --quiet -o " + small, 120)
                .exitCode,
            0);
  std::string plan = dir_.file("small.fb");
  ASSERT_EQ(
      runCommand(tpc() + " compile " + small + " --world 4 --max-context 8192 --quiet -o " + plan)
          .exitCode,
      0);
  for (auto [signal, comm] : {std::pair{"KILL", "shm"}, std::pair{"STOP", "shm"},
                              std::pair{"KILL", "gloo"}, std::pair{"STOP", "gloo"}}) {
    SCOPED_TRACE(std::string(signal) + " over " + comm);
    std::string script = dir_.file("fault.sh"), log = dir_.file("tpexec.log");
    test::writeFile(script, faultScript(plan, signal, comm));
    std::string command = "bash " + script;
    command += " " + log;
    test::CommandResult r = runCommand(command, 60);
    ASSERT_EQ(r.exitCode, 0) << r.output;
    int rc = -1, ms = -1, alive = -1;
    ASSERT_EQ(std::sscanf(r.output.c_str(), "rc=%d ms=%d alive=%d", &rc, &ms, &alive), 3)
        << r.output;
    std::string errors = test::readFile(log);
    EXPECT_EQ(rc, 1) << errors;
    EXPECT_LT(ms, std::string(comm) == "shm" ? 5000 : 10000) << errors;
    EXPECT_EQ(alive, 0) << "ranks left behind";
    EXPECT_NE(errors.find("rank 2"), std::string::npos) << errors;
    EXPECT_EQ(errors.find("generated:"), std::string::npos)
        << "a failed run must not print a result";
  }
}

}  // namespace
}  // namespace tpc
