// The multi-node command line: a requests file runs concurrently through the engine and gives
// one JSON line per request in order, as one node running every rank does; the
// TPC_MN_* environment variables stand in for the flags, CURVE keys keep strangers out, and
// mistakes on the command line are one-line errors.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/net/Cluster.h"

namespace tpc {
namespace {

using std::chrono::seconds;

class MultiNodeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string model = dir_.file("model");
    ASSERT_EQ(test::runCommand(test::binPath("tpc") +
                               " make-model --arch qwen3 --preset tiny --quiet -o " + model)
                  .exitCode,
              0);
    plan_ = dir_.file("w4.fb");
    ASSERT_EQ(test::runCommand(test::binPath("tpc") + " compile " + model +
                               " --world 4 --quiet -o " + plan_)
                  .exitCode,
              0);
  }
  // The same request on this host alone (one process per rank): the reference.
  nlohmann::json local(const std::string& flags) {
    test::CommandResult r =
        test::runCommand(test::tpexecPath() + " " + plan_ + " " + flags + " --json");
    EXPECT_EQ(r.exitCode, 0) << r.output;
    return nlohmann::json::parse(r.output, nullptr, false);
  }
  test::TempDir dir_;
  std::string plan_;
};

TEST_F(MultiNodeCli, ARequestsFileGivesOneResultLinePerRequestInOrder) {
  std::string requests = dir_.file("requests.jsonl");
  test::writeFile(
      requests,
      "{\"id\": \"a\", \"prompt_ids\": [1, 2, 3], \"max_new_tokens\": 5}\n"
      "\n"
      "{\"id\": 7, \"prompt_ids\": [9, 8], \"max_new_tokens\": 3, \"temperature\": 0.8, "
      "\"top_k\": 20, \"seed\": 3}\n"
      "{\"id\": \"c\", \"prompt_ids\": [4], \"max_new_tokens\": 4, \"top_p\": 0.9, "
      "\"temperature\": 1.2, \"seed\": 11}\n");
  test::Cluster c = test::startHead(dir_, plan_, 1, "--requests " + requests + " --ignore-eos");
  ASSERT_GT(c.port, 0) << c.head->err();
  test::Spawned& worker = test::startWorker(c, dir_, "--local-world 2");
  ASSERT_EQ(c.head->waitExit(seconds(60)), 0) << c.head->err();
  EXPECT_EQ(worker.waitExit(seconds(10)), 0) << worker.log();
  std::istringstream lines(c.head->log());
  std::vector<nlohmann::json> got;
  for (std::string line; std::getline(lines, line);) got.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(got.size(), 3u) << c.head->log();
  const char* flags[] = {
      "--prompt-ids 1,2,3 --max-new-tokens 5",
      "--prompt-ids 9,8 --max-new-tokens 3 --temperature 0.8 --top-k 20 --seed 3",
      "--prompt-ids 4 --max-new-tokens 4 --top-p 0.9 --temperature 1.2 --seed 11"};
  const char* ids[] = {"a", "7", "c"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i]["id"], ids[i]);
    EXPECT_EQ(got[i]["generated_ids"],
              local(std::string(flags[i]) + " --ignore-eos")["generated_ids"])
        << i;
  }
}

// The engine across nodes against the engine on one node running all four ranks: greedy and
// seeded requests, and fields only the engine knows (min_p, stop token ids, penalties).
TEST_F(MultiNodeCli, TheEngineAcrossNodesGivesWhatOneNodeGives) {
  std::string requests = dir_.file("engine.jsonl");
  std::string lines;
  for (int i = 0; i < 8; ++i) {
    lines += "{\"id\": \"r" + std::to_string(i) + "\", \"prompt_ids\": [";
    for (int t = 0; t <= i * 3; ++t) lines += (t ? ", " : "") + std::to_string(7 + 13 * t + i);
    lines += "], \"max_new_tokens\": " + std::to_string(4 + i);
    if (i % 2) lines += ", \"temperature\": 0.9, \"top_k\": 30, \"seed\": " + std::to_string(i);
    if (i == 2) lines += ", \"min_p\": 0.05, \"temperature\": 0.7, \"seed\": 5";
    if (i == 4) lines += ", \"repetition_penalty\": 1.3";
    lines += "}\n";
  }
  test::writeFile(requests, lines);
  test::CommandResult one = test::runCommand(test::tpexecPath() + " " + plan_ + " --requests " +
                                             requests + " --ignore-eos --max-seqs 4");
  ASSERT_EQ(one.exitCode, 0) << one.output;
  test::Cluster c =
      test::startHead(dir_, plan_, 1, "--requests " + requests + " --ignore-eos --max-seqs 4");
  ASSERT_GT(c.port, 0) << c.head->err();
  test::Spawned& worker = test::startWorker(c, dir_, "--local-world 2");
  ASSERT_EQ(c.head->waitExit(seconds(60)), 0) << c.head->err();
  EXPECT_EQ(worker.waitExit(seconds(10)), 0) << worker.log();
  std::istringstream mine(c.head->log()), theirs(one.output);
  std::vector<nlohmann::json> got, want;
  for (std::string line; std::getline(mine, line);) got.push_back(nlohmann::json::parse(line));
  for (std::string line; std::getline(theirs, line);) want.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(want.size(), 8u) << one.output;
  ASSERT_EQ(got.size(), want.size()) << c.head->log();
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i]["id"], want[i]["id"]);
    EXPECT_EQ(got[i]["generated_ids"], want[i]["generated_ids"]) << i;
    EXPECT_EQ(got[i]["generated_ids"].size(), 4 + i) << i;
  }
}

TEST_F(MultiNodeCli, ACancelledRequestStopsEarlyAndTheOtherRuns) {
  std::string requests = dir_.file("cancel.jsonl");
  test::writeFile(requests,
                  "{\"id\": \"long\", \"prompt_ids\": [1, 2, 3], \"max_new_tokens\": 1000, "
                  "\"cancel_after_ms\": 300}\n"
                  "{\"id\": \"next\", \"prompt_ids\": [4, 5], \"max_new_tokens\": 4}\n");
  test::Cluster c = test::startHead(dir_, plan_, 1, "--requests " + requests + " --ignore-eos");
  ASSERT_GT(c.port, 0) << c.head->err();
  test::Spawned& worker = test::startWorker(c, dir_, "--local-world 2");
  ASSERT_EQ(c.head->waitExit(seconds(60)), 0) << c.head->err();
  EXPECT_EQ(worker.waitExit(seconds(10)), 0) << worker.log();
  std::istringstream lines(c.head->log());
  std::vector<nlohmann::json> got;
  for (std::string line; std::getline(lines, line);) got.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(got.size(), 2u) << c.head->log();
  EXPECT_EQ(got[0]["finish_reason"], "cancelled");
  size_t n = got[0]["generated_ids"].size();
  EXPECT_LT(n, 1000u);
  // What was generated before the cancellation is what an uncancelled run generates.
  EXPECT_EQ(got[0]["generated_ids"], local("--prompt-ids 1,2,3 --ignore-eos --max-new-tokens " +
                                           std::to_string(n))["generated_ids"]);
  EXPECT_EQ(got[1]["generated_ids"],
            local("--prompt-ids 4,5 --max-new-tokens 4 --ignore-eos")["generated_ids"]);
}

// A loopback port free a moment ago (the head binds it right after); -1 if none was found.
int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

TEST_F(MultiNodeCli, EnvironmentVariablesStandInForTheFlags) {
  int free = freePort();
  ASSERT_GT(free, 0);
  std::string port = std::to_string(free);
  std::string request = "--prompt-ids 5,6,7 --max-new-tokens 4 --ignore-eos";
  test::Spawned head("env TPC_MN_HEAD_PORT=" + port +
                         " TPC_MN_HEAD_NUM_WORKERS=1 TPC_MN_LOCAL_WORLD_SIZE=2 "
                         "TPC_MN_GLOBAL_WORLD_SIZE=4 " +
                         test::tpexecPath() + " " + plan_ + " --json " + request,
                     dir_.file("head.out"), dir_.file("head.err"));
  ASSERT_TRUE(head.waitForText("listening on", seconds(20))) << head.err();
  test::Spawned worker("env TPC_MN_WORKER_SERVER_ADDR=127.0.0.1:" + port +
                           " TPC_MN_WORKER_ID=0 TPC_MN_LOCAL_WORLD_SIZE=2 " + test::tpexecPath(),
                       dir_.file("worker.log"));
  ASSERT_EQ(head.waitExit(seconds(60)), 0) << head.err() << worker.log();
  EXPECT_EQ(worker.waitExit(seconds(10)), 0) << worker.log();
  EXPECT_NE(head.err().find("ranks 2-3"), std::string::npos) << head.err();
  EXPECT_EQ(nlohmann::json::parse(head.log())["generated_ids"], local(request)["generated_ids"]);
  // A global world that is not the plan's is refused before anything starts.
  test::CommandResult wrong =
      test::runCommand("TPC_MN_GLOBAL_WORLD_SIZE=8 " + test::tpexecPath() + " " + plan_ +
                       " --listen 127.0.0.1:0 --workers 1 " + request);
  EXPECT_EQ(wrong.exitCode, 1) << wrong.output;
  EXPECT_NE(wrong.output.find("TPC_MN_GLOBAL_WORLD_SIZE=8 but the plan's world is 4"),
            std::string::npos)
      << wrong.output;
}

TEST_F(MultiNodeCli, WithCurveKeysOnlyANodeWithTheRightKeyJoins) {
  std::string keys = dir_.file("keys"), others = dir_.file("others");
  ASSERT_EQ(test::runCommand("mkdir -p " + keys + " " + others).exitCode, 0);
  ASSERT_EQ(test::runCommand(test::tpexecPath() + " --make-curve-keys " + keys).exitCode, 0);
  ASSERT_EQ(test::runCommand(test::tpexecPath() + " --make-curve-keys " + others).exitCode, 0);
  // The right head key but a node key the head never authorized.
  ASSERT_EQ(test::runCommand("cp " + keys + "/head.key " + others + "/head.key").exitCode, 0);
  std::string request = "--prompt-ids 5,6 --max-new-tokens 3 --ignore-eos";
  test::Cluster c = test::startHead(dir_, plan_, 1, "--curve-keys " + keys + " --json " + request);
  ASSERT_GT(c.port, 0) << c.head->err();
  // No key, and a key the head does not know: the handshake fails, and both sides say why.
  test::Spawned& plain = test::startWorker(c, dir_, "--local-world 2 --join-timeout-ms 2000");
  test::Spawned& wrong =
      test::startWorker(c, dir_, "--local-world 2 --join-timeout-ms 2000 --curve-keys " + others);
  EXPECT_EQ(plain.waitExit(seconds(10)), 1) << plain.log();
  // Either side may notice the refused handshake first; the node's message starts alike.
  EXPECT_NE(plain.log().find("the ZeroMQ handshake with the head failed"), std::string::npos)
      << plain.log();
  EXPECT_EQ(wrong.waitExit(seconds(10)), 1) << wrong.log();
  EXPECT_NE(wrong.log().find("the ZeroMQ handshake with the head failed"), std::string::npos)
      << wrong.log();
  EXPECT_NE(c.head->err().find("a node's CURVE key is not authorized"), std::string::npos)
      << c.head->err();
  // The node without keys is dropped too. ZeroMQ reports it to the head as a mechanism mismatch
  // or, when the node hangs up first, as a handshake failure with no detail: either names it.
  const std::string headErr = c.head->err();
  EXPECT_TRUE(headErr.find("security mechanism does not match") != std::string::npos ||
              headErr.find("a connection failed the ZeroMQ handshake") != std::string::npos)
      << headErr;
  test::Spawned& good = test::startWorker(c, dir_, "--local-world 2 --curve-keys " + keys);
  ASSERT_EQ(c.head->waitExit(seconds(60)), 0) << c.head->err() << good.log();
  EXPECT_EQ(good.waitExit(seconds(10)), 0) << good.log();
  EXPECT_EQ(nlohmann::json::parse(c.head->log())["generated_ids"], local(request)["generated_ids"]);
}

TEST_F(MultiNodeCli, AHeadWhoseWorkersNeverComeGivesUpNamingWhoIsMissing) {
  test::CommandResult r = test::runCommand(test::tpexecPath() + " " + plan_ +
                                               " --listen 127.0.0.1:0 --workers 2 --local-world 2 "
                                               "--join-timeout 0.5 --prompt-ids 1",
                                           30);
  EXPECT_EQ(r.exitCode, 1) << r.output;
  EXPECT_NE(r.output.find("--join-timeout: after 0.5 s, 0 of 2 worker(s) joined; 2 never "
                          "connected"),
            std::string::npos)
      << r.output;
}

TEST_F(MultiNodeCli, BadFlagsGiveOneLineErrors) {
  auto oneLine = [](const std::string& args, int code, const std::string& words) {
    test::CommandResult r = test::runCommand(test::tpexecPath() + " " + args, 20);
    EXPECT_EQ(r.exitCode, code) << args << "\n" << r.output;
    EXPECT_EQ(r.lineCount(), 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(words), std::string::npos) << args << "\n" << r.output;
  };
  oneLine(plan_ + " --listen 127.0.0.1 --workers 1 --prompt-ids 1", 2,
          "--listen expects HOST:PORT");
  oneLine(plan_ + " --listen 127.0.0.1:0 --prompt-ids 1", 2, "--workers must be at least 1");
  oneLine(plan_ + " --listen 127.0.0.1:0 --workers 1", 2, "either --prompt-ids or --requests");
  oneLine(plan_ + " --listen 127.0.0.1:0 --workers 1 --prompt-ids 1 --max-seqs 4", 2,
          "--max-seqs goes with --requests");
  oneLine(plan_ + " --listen 127.0.0.1:0 --workers 2 --prompt-ids 1", 2, "does not split evenly");
  oneLine(plan_ + " --listen 127.0.0.1:0 --workers 1 --requests " + dir_.file("none.jsonl"), 1,
          "none.jsonl: cannot read");
  std::string bad = dir_.file("bad.jsonl");
  test::writeFile(bad, "{\"prompt_ids\": [1]}\n{\"prompt_ids\": [1], \"colour\": 3}\n");
  oneLine(plan_ + " --listen 127.0.0.1:0 --workers 1 --requests " + bad, 1,
          "bad.jsonl:2: unknown field \"colour\"");
  oneLine("--join nowhere", 2, "--join expects HOST:PORT");
  oneLine("--join 127.0.0.1:1 --local-world 0", 2, "--local-world must be in 1..1024");
  oneLine("--join 127.0.0.1:1 --join-timeout-ms 500", 1, "no answer from a head at 127.0.0.1:1");
}

}  // namespace
}  // namespace tpc
