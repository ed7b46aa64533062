// A head with workers on loopback against the single-process world-1 run: on every golden
// model (tests/data/hf, made by transformers), world 4 as 2+2 and world 8 as 2+2+2+2 produce
// the same greedy ids, and logits within 1e-5 relative of world 1 (and within 1e-4 of
// transformers). A worker without the checkpoint gets its slices from the head and agrees too.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "executor/Npy.h"
#include "tests/net/Cluster.h"
#include "tests/support/GoldenCases.h"

namespace tpc {
namespace {

using std::chrono::seconds;

std::string compile(const test::TempDir& dir, const std::string& model, int world,
                    const std::string& name, const std::string& extra = " --dtype f32") {
  std::string plan = dir.file(name);
  test::CommandResult c =
      test::runCommand(test::binPath("tpc") + " compile " + model + " --world " +
                       std::to_string(world) + extra + " --quiet -o " + plan);
  EXPECT_EQ(c.exitCode, 0) << c.output;
  return plan;
}

struct Outcome {
  std::vector<int64_t> ids;
  NpyArray logits;
};

// The world-1 run in one process: the reference every multi-node run must reproduce.
Outcome worldOne(const test::TempDir& dir, const std::string& plan, const std::string& flags) {
  std::string logits = dir.file("w1.npy");
  test::CommandResult r = test::runCommand(test::binPath("tpexec") + " " + plan + " " + flags +
                                           " --json --logits-out " + logits);
  EXPECT_EQ(r.exitCode, 0) << r.output;
  Outcome o;
  o.ids = nlohmann::json::parse(r.output)["generated_ids"].get<std::vector<int64_t>>();
  Expected<NpyArray> l = readNpyF32(logits);
  EXPECT_TRUE(l) << l.errorMessage();
  if (l) o.logits = *l;
  return o;
}

// Head with `workers` workers of `perNode` ranks each; returns the head's JSON and logits.
Outcome multiNode(const test::TempDir& dir, const std::string& plan, int workers, int perNode,
                  const std::string& flags, const std::string& workerFlags = "",
                  std::string* workerLogs = nullptr) {
  std::string logits = dir.file("mn.npy");
  test::Cluster c = test::startHead(
      dir, plan, workers,
      "--local-world " + std::to_string(perNode) + " " + flags + " --json --logits-out " + logits);
  EXPECT_GT(c.port, 0) << c.head->err();
  for (int w = 0; w < workers; ++w)
    test::startWorker(c, dir, "--local-world " + std::to_string(perNode) + " " + workerFlags);
  int headExit = c.head->waitExit(seconds(120));
  std::string logs;
  for (auto& w : c.workers) {
    EXPECT_EQ(w->waitExit(seconds(10)), 0) << w->log();
    logs += w->log();
  }
  if (workerLogs) *workerLogs = logs;
  EXPECT_EQ(headExit, 0) << c.head->err() << logs;
  Outcome o;
  nlohmann::json j = nlohmann::json::parse(c.head->log(), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << c.head->log() << c.head->err();
  if (j.is_discarded()) return o;
  o.ids = j["generated_ids"].get<std::vector<int64_t>>();
  EXPECT_EQ(j["world"], workers * perNode + perNode);
  Expected<NpyArray> l = readNpyF32(logits);
  EXPECT_TRUE(l) << l.errorMessage();
  if (l) o.logits = *l;
  return o;
}

TEST(MultiNodeGolden, HeadAndWorkersMatchWorldOneOnEveryGoldenModel) {
  test::TempDir tmp;
  for (const char* name : test::kGoldenCases) {
    std::string model = test::dataDir() + "/hf/" + name;
    nlohmann::json golden = nlohmann::json::parse(test::readFile(model + "/golden.json"));
    std::vector<int64_t> prompt = golden["prompt_ids"], want = golden["generated_ids"];
    std::string flags = "--prompt-ids " + test::joinedIds(prompt) + " --max-new-tokens " +
                        std::to_string(want.size()) + " --ignore-eos";
    Outcome one = worldOne(tmp, compile(tmp, model, 1, "w1.fb"), flags);
    EXPECT_EQ(one.ids, want) << name;
    for (auto [world, workers] : {std::pair{4, 1}, std::pair{8, 3}}) {
      SCOPED_TRACE(std::string(name) + " world " + std::to_string(world));
      Outcome mn = multiNode(tmp, compile(tmp, model, world, "mn.fb"), workers, 2, flags);
      EXPECT_EQ(mn.ids, one.ids);
      ASSERT_EQ(mn.logits.shape, one.logits.shape);
      EXPECT_LT(test::worstRowError(mn.logits, one.logits), 1e-5);
    }
  }
}

// The checkpoint here is bf16, so the streamed slices are converted on arrival exactly as the
// loader converts them when reading the file.
TEST(MultiNodeGolden, AWorkerWithoutTheCheckpointGetsItsSlicesFromTheHead) {
  test::TempDir tmp;
  std::string model = tmp.file("model"), empty = tmp.file("empty");
  ASSERT_EQ(
      test::runCommand(test::binPath("tpc") +
                       " make-model --arch qwen3 --preset tiny --dtype bf16 --quiet -o " + model)
          .exitCode,
      0);
  ASSERT_EQ(test::runCommand("mkdir -p " + empty).exitCode, 0);
  std::string flags = "--prompt-ids 3,1,4,1,5 --max-new-tokens 8 --ignore-eos";
  Outcome one = worldOne(tmp, compile(tmp, model, 1, "w1.fb", ""), flags);
  std::string logs;
  Outcome mn = multiNode(tmp, compile(tmp, model, 4, "w4.fb", ""), 1, 2, flags,
                         "--model-dir " + empty, &logs);
  EXPECT_NE(logs.find("the head streams this node's weight slices"), std::string::npos) << logs;
  EXPECT_NE(logs.find("received the weight slices of ranks 2-3"), std::string::npos) << logs;
  EXPECT_EQ(mn.ids, one.ids);
  ASSERT_EQ(mn.logits.shape, one.logits.shape);
  EXPECT_LT(test::worstRowError(mn.logits, one.logits), 1e-5);
}

}  // namespace
}  // namespace tpc
