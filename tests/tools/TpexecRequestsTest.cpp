// `tpexec PLAN --requests` on one node: requests run concurrently through the engine, and each
// gives what `tpexec --prompt-ids` (one sequence, the slot-cache path) gives for it alone,
// greedy and seeded; bad requests fail alone with a clear message.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using test::runCommand;

std::string tpc() { return test::binPath("tpc"); }
std::string tpexec() { return test::binPath("tpexec"); }

// The JSON lines of a command's output, in order (stderr lines are not JSON).
std::vector<nlohmann::json> jsonLines(const std::string& output) {
  std::vector<nlohmann::json> out;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] == '{') out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string joined(const nlohmann::json& ids) {
  std::string s;
  for (const auto& id : ids) s += (s.empty() ? "" : ",") + std::to_string(id.get<int64_t>());
  return s;
}

class TpexecRequests : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = dir_.file("model");
    ASSERT_EQ(
        runCommand(tpc() + " make-model --arch llama --preset tiny --quiet -o " + model_).exitCode,
        0);
  }
  std::string compile(int world) {
    std::string plan = dir_.file("w" + std::to_string(world) + ".fb");
    test::CommandResult r = runCommand(tpc() + " compile " + model_ + " --quiet --world " +
                                       std::to_string(world) + " --max-context 64 -o " + plan);
    EXPECT_EQ(r.exitCode, 0) << r.output;
    return plan;
  }
  std::string writeRequests(const std::vector<nlohmann::json>& lines) {
    std::string path = dir_.file("requests.jsonl");
    std::ofstream out(path);
    for (const auto& j : lines) out << j.dump() << "\n";
    return path;
  }
  test::TempDir dir_;
  std::string model_;
};

TEST_F(TpexecRequests, ConcurrentRequestsGiveWhatEachGivesAlone) {
  const std::string plan = compile(2);
  std::vector<nlohmann::json> lines;
  for (int i = 0; i < 6; ++i) {
    nlohmann::json j;
    j["id"] = "r" + std::to_string(i);
    std::vector<int> prompt;
    prompt.reserve(3 + 5 * static_cast<size_t>(i));
    for (int k = 0; k < 3 + 5 * i; ++k) prompt.push_back((i * 31 + k * 7 + 1) % 400);
    j["prompt_ids"] = prompt;
    j["max_new_tokens"] = 4 + i;
    j["ignore_eos"] = true;
    if (i % 2) {
      j["temperature"] = 1.2;
      j["top_k"] = 20;
      j["seed"] = 40 + i;
    }
    lines.push_back(j);
  }
  test::CommandResult r = runCommand(tpexec() + " " + plan + " --requests " + writeRequests(lines) +
                                     " --max-batched-tokens 8");
  ASSERT_EQ(r.exitCode, 0) << r.output;
  std::vector<nlohmann::json> out = jsonLines(r.output);
  ASSERT_EQ(out.size(), lines.size()) << r.output;
  for (size_t i = 0; i < lines.size(); ++i) {
    SCOPED_TRACE(lines[i].dump());
    EXPECT_EQ(out[i]["id"], lines[i]["id"]);
    std::string alone = tpexec() + " " + plan + " --json --ignore-eos --prompt-ids " +
                        joined(lines[i]["prompt_ids"]) + " --max-new-tokens " +
                        std::to_string(lines[i]["max_new_tokens"].get<int>());
    if (lines[i].contains("seed"))
      alone +=
          " --temperature 1.2 --top-k 20 --seed " + std::to_string(lines[i]["seed"].get<int>());
    test::CommandResult one = runCommand(alone);
    ASSERT_EQ(one.exitCode, 0) << one.output;
    EXPECT_EQ(out[i]["generated_ids"], nlohmann::json::parse(one.output)["generated_ids"]);
    EXPECT_EQ(out[i]["finish_reason"], "length");
  }
}

TEST_F(TpexecRequests, ABadRequestFailsAloneAndTheOthersFinish) {
  const std::string plan = compile(1);
  std::vector<nlohmann::json> lines = {
      {{"id", "good"}, {"prompt_ids", {1, 2, 3}}, {"max_new_tokens", 3}, {"ignore_eos", true}},
      {{"id", "vocab"}, {"prompt_ids", {1, 100000}}},
      {{"id", "long"}, {"prompt_ids", std::vector<int>(64, 1)}},
      {{"id", "none"}, {"prompt_ids", {1}}, {"max_new_tokens", 0}},
      {{"id", "also-good"}, {"prompt_ids", {4}}, {"max_new_tokens", 2}, {"ignore_eos", true}},
  };
  test::CommandResult r = runCommand(tpexec() + " " + plan + " --requests " + writeRequests(lines));
  EXPECT_EQ(r.exitCode, 1) << r.output;
  std::vector<nlohmann::json> out = jsonLines(r.output);
  ASSERT_EQ(out.size(), lines.size()) << r.output;
  EXPECT_EQ(out[0]["generated_ids"].size(), 3u);
  EXPECT_EQ(out[4]["generated_ids"].size(), 2u);
  EXPECT_NE(out[1]["error"].get<std::string>().find("outside the vocab"), std::string::npos);
  EXPECT_NE(out[2]["error"].get<std::string>().find("max context is 64"), std::string::npos);
  EXPECT_NE(out[3]["error"].get<std::string>().find("max tokens must be at least 1"),
            std::string::npos);
  EXPECT_NE(r.output.find("3 of 5 requests failed"), std::string::npos) << r.output;
}

TEST_F(TpexecRequests, EngineFlagsAreChecked) {
  const std::string plan = compile(1);
  std::string requests = writeRequests({{{"prompt_ids", {1}}}});
  for (const char* bad : {"--kv-cache-memory 12XB", "--kv-block-size 0", "--max-batched-tokens 0",
                          "--gpu-memory-utilization 1.5"}) {
    std::string command = tpexec();
    for (const std::string& part : {std::string(" "), plan, std::string(" --requests "), requests,
                                    std::string(" "), std::string(bad)})
      command += part;
    test::CommandResult r = runCommand(command);
    EXPECT_EQ(r.exitCode, 2) << bad << ": " << r.output;
    EXPECT_NE(r.output.find(std::string(bad).substr(0, std::string(bad).find(' '))),
              std::string::npos)
        << r.output;
  }
  // A pool too small for one block of the request.
  test::CommandResult r =
      runCommand(tpexec() + " " + plan + " --requests " + requests + " --kv-cache-memory 1KiB");
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.output.find("--kv-cache-memory"), std::string::npos) << r.output;
}

// A rank that dies or freezes while the engine runs a request ends the run within the rank
// timeout (5 s) with an error, and leaves no rank behind.
TEST_F(TpexecRequests, AKilledOrFrozenRankEndsTheRunWithin5Seconds) {
  std::string plan = dir_.file("long.fb");
  ASSERT_EQ(
      runCommand(tpc() + " compile " + model_ + " --world 2 --max-context 8192 --quiet -o " + plan)
          .exitCode,
      0);
  std::string requests = writeRequests(
      {{{"prompt_ids", {1, 2, 3}}, {"max_new_tokens", 100000}, {"ignore_eos", true}}});
  for (const char* signal : {"KILL", "STOP"}) {
    SCOPED_TRACE(signal);
    std::string script = dir_.file("fault.sh"), log = dir_.file("tpexec.log");
    std::string text = "#!/bin/bash\n\"" + tpexec();
    for (const std::string& part :
         {std::string("\" \""), plan, std::string("\" --requests \""), requests})
      text += part;
    test::writeFile(script,
                    text +
                        "\" > \"$1\" 2>&1 &\n"
                        "pid=$!\n"
                        "for i in $(seq 100); do [ \"$(pgrep -P $pid | wc -l)\" -ge 2 ] && break; "
                        "sleep 0.05; done\n"
                        "ranks=$(pgrep -P $pid | sort -n)\n"
                        "sleep 1\n"
                        "victim=$(echo \"$ranks\" | sed -n 2p)\n"
                        "start=$(date +%s%N)\n"
                        "kill -" +
                        signal +
                        " $victim\n"
                        "wait $pid; rc=$?\n"
                        "end=$(date +%s%N)\n"
                        "alive=0; for p in $ranks; do kill -0 $p 2>/dev/null && "
                        "alive=$((alive+1)); done\n"
                        "echo \"rc=$rc ms=$(( (end-start)/1000000 )) alive=$alive\"\n");
    std::string command = "bash " + script;
    command += " ";
    command += log;
    test::CommandResult r = runCommand(command, 60);
    ASSERT_EQ(r.exitCode, 0) << r.output;
    int rc = -1, ms = -1, alive = -1;
    ASSERT_EQ(std::sscanf(r.output.c_str(), "rc=%d ms=%d alive=%d", &rc, &ms, &alive), 3)
        << r.output;
    std::string errors = test::readFile(log);
    EXPECT_EQ(rc, 1) << errors;
    EXPECT_LT(ms, 5000 + 1000) << errors;  // the rank timeout and the kill grace's start
    EXPECT_EQ(alive, 0) << errors;
    EXPECT_NE(errors.find("rank 1"), std::string::npos) << errors;
  }
}

}  // namespace
}  // namespace tpc
