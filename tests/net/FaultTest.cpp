// Failures during a multi-node run are detected, not hung on: a worker node or one of its
// ranks killed (SIGKILL) or frozen (SIGSTOP) ends the run within 5 s with the head naming the
// node and ranks; a worker whose head dies exits within 5 s; no process is left behind.
#include <gtest/gtest.h>

#include <signal.h>

#include <sstream>
#include <thread>

#include "tests/net/Cluster.h"

namespace tpc {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

class MultiNodeFault : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    std::string model = dir_->file("model");
    ASSERT_EQ(test::runCommand(test::binPath("tpc") +
                               " make-model --arch qwen3 --preset tiny --quiet -o " + model)
                  .exitCode,
              0);
    plan_ = dir_->file("w4.fb");
    ASSERT_EQ(test::runCommand(test::binPath("tpc") + " compile " + model +
                               " --world 4 --max-context 65536 --quiet -o " + plan_)
                  .exitCode,
              0);
  }
  static void TearDownTestSuite() { delete dir_; }

  // Head (ranks 0-1) and one worker (ranks 2-3), decoding for far longer than any test waits.
  void startDecoding() {
    cluster_ = test::startHead(tmp_, plan_, 1,
                               "--local-world 2 --prompt-ids 1,2,3 --max-new-tokens 60000 "
                               "--ignore-eos");
    ASSERT_GT(cluster_.port, 0) << cluster_.head->err();
    test::startWorker(cluster_, tmp_, "--local-world 2");
    ASSERT_TRUE(cluster_.head->waitForText("ready:", seconds(60))) << cluster_.head->err();
    std::this_thread::sleep_for(milliseconds(500));  // well into decoding
    headRanks_ = test::childrenOf(cluster_.head->pid());
    workerRanks_ = test::childrenOf(cluster_.workers[0]->pid());
    ASSERT_EQ(headRanks_.size(), 2u);
    ASSERT_EQ(workerRanks_.size(), 2u);
  }

  // Every rank of both nodes is gone within `bound` (zombies of a frozen parent count as gone).
  void expectNoRankLeft(milliseconds bound) {
    auto until = Clock::now() + bound;
    auto alive = [&] {
      int n = 0;
      for (pid_t p : headRanks_) n += test::isAlive(p);
      for (pid_t p : workerRanks_) n += test::isAlive(p);
      return n;
    };
    while (alive() > 0 && Clock::now() < until) std::this_thread::sleep_for(milliseconds(20));
    EXPECT_EQ(alive(), 0) << "ranks left behind";
  }

  // Milliseconds until `process` exits (-1: not within 10 s), and its exit code.
  static std::pair<long long, int> timeExit(test::Spawned& process, Clock::time_point since) {
    int code = process.waitExit(seconds(10));
    long long ms = std::chrono::duration_cast<milliseconds>(Clock::now() - since).count();
    return {code < 0 ? -1 : ms, code};
  }

  static test::TempDir* dir_;
  static std::string plan_;
  test::TempDir tmp_;
  test::Cluster cluster_;
  std::vector<pid_t> headRanks_, workerRanks_;
};

test::TempDir* MultiNodeFault::dir_ = nullptr;
std::string MultiNodeFault::plan_;

TEST_F(MultiNodeFault, AKilledOrFrozenWorkerIsNamedWithin5Seconds) {
  for (int sig : {SIGKILL, SIGSTOP}) {
    SCOPED_TRACE(strsignal(sig));
    startDecoding();
    if (HasFatalFailure()) return;
    test::Spawned& worker = *cluster_.workers[0];
    auto start = Clock::now();
    worker.signal(sig);
    auto [ms, code] = timeExit(*cluster_.head, start);
    std::string err = cluster_.head->err();
    EXPECT_GE(ms, 0) << "the head hung: " << err;
    EXPECT_LT(ms, 5000) << err;
    EXPECT_EQ(code, 1) << err;
    EXPECT_NE(err.find("error: worker"), std::string::npos) << err;
    EXPECT_NE(err.find("ranks 2-3"), std::string::npos) << err;
    EXPECT_EQ(cluster_.head->log().find("generated"), std::string::npos);
    expectNoRankLeft(seconds(5));
    worker.signal(SIGKILL);
    worker.signal(SIGCONT);
  }
}

TEST_F(MultiNodeFault, AKilledOrFrozenWorkerRankIsNamedWithin5Seconds) {
  for (int sig : {SIGKILL, SIGSTOP}) {
    SCOPED_TRACE(strsignal(sig));
    startDecoding();
    if (HasFatalFailure()) return;
    auto start = Clock::now();
    ::kill(workerRanks_[1], sig);  // global rank 3
    auto [ms, code] = timeExit(*cluster_.head, start);
    std::string err = cluster_.head->err();
    EXPECT_GE(ms, 0) << "the head hung: " << err;
    EXPECT_LT(ms, 5000) << err;
    EXPECT_EQ(code, 1) << err;
    EXPECT_NE(err.find("ranks 2-3"), std::string::npos) << err;
    EXPECT_NE(err.find("rank 3"), std::string::npos) << err;
    auto [workerMs, workerCode] = timeExit(*cluster_.workers[0], start);
    EXPECT_GE(workerMs, 0) << cluster_.workers[0]->log();
    EXPECT_LT(workerMs, 5000) << cluster_.workers[0]->log();
    EXPECT_EQ(workerCode, 1) << cluster_.workers[0]->log();
    expectNoRankLeft(seconds(5));
  }
}

// The engine across nodes: a worker killed or frozen while its ranks follow the head's
// iterations ends the head within 5 s with one error line naming the node.
TEST_F(MultiNodeFault, AKilledOrFrozenWorkerEndsAnEngineRunWithin5SecondsNamingIt) {
  std::string requests = tmp_.file("long.jsonl");
  std::string lines;
  for (int i = 1; i <= 4; ++i)
    lines += "{\"id\": " + std::to_string(i) + ", \"prompt_ids\": [" + std::to_string(i) +
             ", 2, 3], \"max_new_tokens\": 30000}\n";
  test::writeFile(requests, lines);
  for (int sig : {SIGKILL, SIGSTOP}) {
    SCOPED_TRACE(strsignal(sig));
    cluster_ = test::startHead(
        tmp_, plan_, 1,
        "--local-world 2 --requests " + requests + " --ignore-eos --kv-cache-memory 512MiB");
    ASSERT_GT(cluster_.port, 0) << cluster_.head->err();
    test::Spawned& worker = test::startWorker(cluster_, tmp_, "--local-world 2");
    ASSERT_TRUE(cluster_.head->waitForText("ready:", seconds(60))) << cluster_.head->err();
    std::this_thread::sleep_for(milliseconds(500));  // well into decoding
    headRanks_ = test::childrenOf(cluster_.head->pid());
    workerRanks_ = test::childrenOf(worker.pid());
    auto start = Clock::now();
    worker.signal(sig);
    auto [ms, code] = timeExit(*cluster_.head, start);
    std::string err = cluster_.head->err();
    EXPECT_GE(ms, 0) << "the head hung: " << err;
    EXPECT_LT(ms, 5000) << err;
    EXPECT_EQ(code, 1) << err;
    std::istringstream errLines(err);
    std::vector<std::string> errors;
    for (std::string line; std::getline(errLines, line);)
      if (line.rfind("error:", 0) == 0) errors.push_back(line);
    ASSERT_EQ(errors.size(), 1u) << err;
    EXPECT_NE(errors[0].find("worker"), std::string::npos) << err;
    EXPECT_NE(errors[0].find("ranks 2-3"), std::string::npos) << err;
    EXPECT_EQ(cluster_.head->log(), "");  // no partial results
    expectNoRankLeft(seconds(5));
    worker.signal(SIGKILL);
    worker.signal(SIGCONT);
  }
}

TEST_F(MultiNodeFault, AWorkerWhoseHeadDiesExitsWithin5Seconds) {
  for (int sig : {SIGKILL, SIGSTOP}) {
    SCOPED_TRACE(strsignal(sig));
    startDecoding();
    if (HasFatalFailure()) return;
    auto start = Clock::now();
    cluster_.head->signal(sig);
    auto [ms, code] = timeExit(*cluster_.workers[0], start);
    std::string log = cluster_.workers[0]->log();
    EXPECT_GE(ms, 0) << "the worker hung: " << log;
    EXPECT_LT(ms, 5000) << log;
    EXPECT_EQ(code, 1) << log;
    EXPECT_NE(log.find("error:"), std::string::npos) << log;
    expectNoRankLeft(seconds(5));
    cluster_.head->signal(SIGKILL);
    cluster_.head->signal(SIGCONT);
  }
}

}  // namespace
}  // namespace tpc
