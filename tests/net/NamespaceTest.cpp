// Head and worker in two network namespaces joined by a veth pair, so they reach each other
// over real (non-loopback) addresses as two hosts would: the run reproduces world 1, and a cut
// link is detected on both sides within 5 s. Skipped where namespaces cannot be made.
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include <nlohmann/json.hpp>

#include "tests/net/Cluster.h"

namespace tpc {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Two namespaces, "head" at 10.77.0.1 and "worker" at 10.77.0.2, removed on destruction.
class TwoHosts {
 public:
  TwoHosts() {
    std::string id = std::to_string(getpid());
    head_ = "tpch" + id;
    worker_ = "tpcw" + id;
    std::string a = "vh" + id, b = "vw" + id;
    std::string script =
        "ip netns add " + head_ + " && ip netns add " + worker_ + " && ip link add " + a +
        " type veth peer name " + b + " && ip link set " + a + " netns " + head_ +
        " && ip link set " + b + " netns " + worker_ + " && ip -n " + head_ +
        " addr add 10.77.0.1/24 dev " + a + " && ip -n " + worker_ + " addr add 10.77.0.2/24 dev " +
        b + " && ip -n " + head_ + " link set " + a + " up && ip -n " + worker_ + " link set " + b +
        " up && ip -n " + head_ + " link set lo up && ip -n " + worker_ + " link set lo up";
    ok_ = test::runCommand(script + " 2>&1", 20).exitCode == 0;
    workerLink_ = b;
  }
  ~TwoHosts() {
    [[maybe_unused]] auto r = test::runCommand(
        "ip netns del " + head_ + " 2>/dev/null; ip netns del " + worker_ + " 2>/dev/null; true");
  }
  bool ok() const { return ok_; }
  std::string onHead(const std::string& command) const {
    return "ip netns exec " + head_ + " " + command;
  }
  std::string onWorker(const std::string& command) const {
    return "ip netns exec " + worker_ + " " + command;
  }
  void cut() const {
    [[maybe_unused]] auto r =
        test::runCommand("ip -n " + worker_ + " link set " + workerLink_ + " down");
  }

 private:
  std::string head_, worker_, workerLink_;
  bool ok_ = false;
};

class MultiNodeNamespaces : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!hosts_.ok()) GTEST_SKIP() << "network namespaces are not available here";
    std::string model = dir_.file("model");
    ASSERT_EQ(test::runCommand(test::binPath("tpc") +
                               " make-model --arch llama --preset tiny --quiet -o " + model)
                  .exitCode,
              0);
    for (int world : {1, 4})
      ASSERT_EQ(
          test::runCommand(test::binPath("tpc") + " compile " + model + " --world " +
                           std::to_string(world) + " --max-context 65536 --quiet -o " + plan(world))
              .exitCode,
          0);
  }
  std::string plan(int world) { return dir_.file("w" + std::to_string(world) + ".fb"); }
  // Head in one namespace, worker in the other, both with 2 ranks.
  void start(const std::string& request) {
    head_ = std::make_unique<test::Spawned>(
        hosts_.onHead(test::tpexecPath() + " " + plan(4) +
                      " --listen 10.77.0.1:0 --workers 1 --local-world 2 --json " + request),
        dir_.file("head.out"), dir_.file("head.err"));
    ASSERT_TRUE(head_->waitForText("listening on", seconds(20))) << head_->err();
    int port = test::headPort(head_->err());
    worker_ = std::make_unique<test::Spawned>(
        hosts_.onWorker(test::tpexecPath() + " --join 10.77.0.1:" + std::to_string(port) +
                        " --local-world 2"),
        dir_.file("worker.log"));
  }
  TwoHosts hosts_;
  test::TempDir dir_;
  std::unique_ptr<test::Spawned> head_, worker_;
};

TEST_F(MultiNodeNamespaces, TwoHostsReproduceWorldOne) {
  std::string request = "--prompt-ids 1,17,42 --max-new-tokens 8 --ignore-eos";
  test::CommandResult one =
      test::runCommand(test::tpexecPath() + " " + plan(1) + " --json " + request);
  ASSERT_EQ(one.exitCode, 0) << one.output;
  start(request);
  ASSERT_EQ(head_->waitExit(seconds(60)), 0) << head_->err() << worker_->log();
  EXPECT_EQ(worker_->waitExit(seconds(10)), 0) << worker_->log();
  EXPECT_NE(head_->err().find("worker #0 (10.77.0.2, ranks 2-3)"), std::string::npos)
      << head_->err();
  EXPECT_EQ(nlohmann::json::parse(head_->log())["generated_ids"],
            nlohmann::json::parse(one.output)["generated_ids"]);
}

TEST_F(MultiNodeNamespaces, ACutLinkIsDetectedOnBothSidesWithin5Seconds) {
  start("--prompt-ids 1,2,3 --max-new-tokens 60000 --ignore-eos");
  ASSERT_TRUE(head_->waitForText("ready:", seconds(60))) << head_->err() << worker_->log();
  std::this_thread::sleep_for(milliseconds(500));
  auto start = Clock::now();
  hosts_.cut();
  int headCode = head_->waitExit(seconds(10));
  auto headMs = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  int workerCode = worker_->waitExit(seconds(10));
  auto workerMs = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  EXPECT_EQ(headCode, 1) << head_->err();
  EXPECT_LT(headMs, 5000) << head_->err();
  EXPECT_NE(head_->err().find("ranks 2-3"), std::string::npos) << head_->err();
  EXPECT_EQ(workerCode, 1) << worker_->log();
  EXPECT_LT(workerMs, 5000) << worker_->log();
}

}  // namespace
}  // namespace tpc
