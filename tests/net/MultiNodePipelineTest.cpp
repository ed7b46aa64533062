// Pipeline stages across nodes: a plan of 2 stages of 2 ranks, the head holding stage 0 and a
// worker over loopback holding stage 1 (the ranks of a node are consecutive), gives each request
// the tokens that the whole plan gives on one host.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/net/Cluster.h"

namespace tpc {
namespace {

using std::chrono::seconds;

TEST(MultiNodePipeline, TwoNodesHoldingOneStageEachGiveTheOneHostTokens) {
  test::TempDir dir;
  std::string model = test::dataDir() + "/hf/llama-gqa-llama3rope";
  std::string plan = dir.file("pp.fb");
  ASSERT_EQ(test::runCommand(test::binPath("tpc") + " compile " + model +
                             " --world 4 --pp 2 --quiet -o " + plan)
                .exitCode,
            0);
  std::string requests = dir.file("requests.jsonl");
  test::writeFile(requests,
                  "{\"id\": \"a\", \"prompt_ids\": [1, 2, 3], \"max_new_tokens\": 5}\n"
                  "{\"id\": \"b\", \"prompt_ids\": [9, 8, 7, 6], \"max_new_tokens\": 4}\n");
  test::Cluster c =
      test::startHead(dir, plan, 1, "--local-world 2 --requests " + requests + " --ignore-eos");
  ASSERT_GT(c.port, 0) << c.head->err();
  test::Spawned& worker = test::startWorker(c, dir, "--local-world 2");
  ASSERT_EQ(c.head->waitExit(seconds(60)), 0) << c.head->err();
  EXPECT_EQ(worker.waitExit(seconds(10)), 0) << worker.log();
  EXPECT_NE(c.head->err().find("ranks 2-3"), std::string::npos) << c.head->err();
  std::istringstream lines(c.head->log());
  std::vector<nlohmann::json> got;
  for (std::string line; std::getline(lines, line);) got.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(got.size(), 2u) << c.head->log();
  const char* prompts[] = {"1,2,3 --max-new-tokens 5", "9,8,7,6 --max-new-tokens 4"};
  for (int i = 0; i < 2; ++i) {
    test::CommandResult alone = test::runCommand(test::tpexecPath() + " " + plan +
                                                 " --json --ignore-eos --prompt-ids " + prompts[i]);
    ASSERT_EQ(alone.exitCode, 0) << alone.output;
    EXPECT_EQ(got[i]["generated_ids"], nlohmann::json::parse(alone.output)["generated_ids"]) << i;
  }
}

}  // namespace
}  // namespace tpc
