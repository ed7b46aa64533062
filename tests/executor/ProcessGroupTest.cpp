// A failing, dying or hung rank ends the whole run quickly, is named in the error, and leaves
// no process behind.
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "tests/executor/CommTestUtil.h"

namespace tpc {
namespace {

using std::chrono::milliseconds;

// Children of this process, from /proc (every thread's list).
int childCount() {
  int count = 0;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(task.path() / "children");
    for (std::string pid; in >> pid;) ++count;
  }
  return count;
}

void expectNoneLeft(const ProcessGroupResult& result) {
  for (pid_t pid : result.pids) {
    EXPECT_NE(::kill(pid, 0), 0) << "process " << pid << " is still there";
  }
  EXPECT_EQ(childCount(), 0);
}

// Keeps heartbeating until killed, like a healthy rank waiting on its peers.
int idleRank(RankContext& ctx, milliseconds howLong = milliseconds(20000)) {
  auto end = std::chrono::steady_clock::now() + howLong;
  while (std::chrono::steady_clock::now() < end) {
    ctx.heartbeat();
    std::this_thread::sleep_for(milliseconds(5));
  }
  return 0;
}

TEST(ProcessGroup, AllRanksSucceed) {
  auto result = runLocalRanksDetailed(
      4, [](int rank, RankContext& ctx) { return ctx.rank() == rank && ctx.world() == 4 ? 0 : 1; });
  EXPECT_FALSE(result.failure) << result.failure->message;
  EXPECT_EQ(result.pids.size(), 4u);
  expectNoneLeft(result);
}

TEST(ProcessGroup, ErrorLineOfAFailingRankIsPropagated) {
  ProcessGroupOptions options;
  options.killGrace = milliseconds(500);
  auto start = std::chrono::steady_clock::now();
  auto result = runLocalRanksDetailed(
      4,
      [](int rank, RankContext& ctx) {
        if (rank == 2) {
          std::this_thread::sleep_for(milliseconds(100));
          return ctx.fail("weights for layer 7 are missing\nsecond line");
        }
        return idleRank(ctx);
      },
      options);
  double took = test::secondsSince(start);
  ASSERT_TRUE(result.failure);
  EXPECT_EQ(result.failure->rank, 2);
  EXPECT_EQ(result.failure->message,
            "rank 2 exited with code 1: weights for layer 7 are missing second line");
  EXPECT_TRUE(result.otherFailures.empty());
  EXPECT_LT(took, 3.0);
  expectNoneLeft(result);
  std::printf("[ timing   ] failing rank: run ended after %.2f s\n", took);
}

TEST(ProcessGroup, UncaughtExceptionAndOddExitCodes) {
  auto result = runLocalRanksDetailed(2, [](int rank, RankContext& ctx) -> int {
    if (rank == 1) throw std::runtime_error("boom");
    return idleRank(ctx);
  });
  ASSERT_TRUE(result.failure);
  EXPECT_EQ(result.failure->message, "rank 1 exited with code 1: uncaught exception: boom");
  // 256 would read as success after truncation to 8 bits.
  auto wrapped = runLocalRanksDetailed(1, [](int, RankContext&) { return 256; });
  ASSERT_TRUE(wrapped.failure);
  EXPECT_EQ(wrapped.failure->message, "rank 0 exited with code 255");
  expectNoneLeft(result);
}

TEST(ProcessGroup, RankKilledBySignalDuringGlooCollectives) {
  auto store = test::ReservedStore::make();
  GlooOptions glooOptions = store.options();
  ProcessGroupOptions options;
  options.heartbeatTimeout = milliseconds(5000);
  auto start = std::chrono::steady_clock::now();
  auto result = runLocalRanksDetailed(
      4,
      [&](int rank, RankContext& ctx) {
        auto comm = createGlooCommunicator(rank, 4, glooOptions);
        if (!comm) return ctx.fail(comm.errorMessage());
        std::vector<float> data(1000, 1.0f);
        for (int step = 0; step < 1000; ++step) {
          ctx.heartbeat();
          if (Error e = (*comm)->allReduceSum(data.data(), data.size())) {
            return ctx.fail(e.message());
          }
          if (rank == 2) raise(SIGKILL);
          std::fill(data.begin(), data.end(), 1.0f);
        }
        return 0;
      },
      options);
  double took = test::secondsSince(start);
  ASSERT_TRUE(result.failure);
  EXPECT_EQ(result.failure->rank, 2);
  EXPECT_EQ(result.failure->message.rfind("rank 2 was killed by signal 9", 0), 0u)
      << result.failure->message;
  EXPECT_LT(took, 10.0);
  expectNoneLeft(result);
  std::printf("[ timing   ] SIGKILLed rank: run ended after %.2f s\n", took);
  for (const auto& other : result.otherFailures) std::printf("  also: %s\n", other.message.c_str());
}

TEST(ProcessGroup, StoppedRankIsFoundByHeartbeatTimeout) {
  auto store = test::ReservedStore::make();
  GlooOptions glooOptions = store.options(milliseconds(20000));
  ProcessGroupOptions options;
  options.heartbeatTimeout = milliseconds(2000);
  options.killGrace = milliseconds(500);
  auto start = std::chrono::steady_clock::now();
  auto result = runLocalRanksDetailed(
      4,
      [&](int rank, RankContext& ctx) {
        auto comm = createGlooCommunicator(rank, 4, glooOptions);
        if (!comm) return ctx.fail(comm.errorMessage());
        float x = 1;
        for (int step = 0; step < 100000; ++step) {
          ctx.heartbeat();
          if (rank == 1 && step == 10) raise(SIGSTOP);
          if (Error e = (*comm)->allReduceSum(&x, 1)) return ctx.fail(e.message());
          x = 1;
        }
        return 0;
      },
      options);
  double took = test::secondsSince(start);
  ASSERT_TRUE(result.failure);
  EXPECT_EQ(result.failure->rank, 1) << result.failure->message;
  EXPECT_NE(result.failure->message.find("(process stopped)"), std::string::npos)
      << result.failure->message;
  EXPECT_LT(took, 10.0);
  expectNoneLeft(result);
  std::printf("[ timing   ] SIGSTOPped rank: run ended after %.2f s (%s)\n", took,
              result.failure->message.c_str());
}

TEST(ProcessGroup, SilentRankIsKilledAfterGrace) {
  ProcessGroupOptions options;
  options.heartbeatTimeout = milliseconds(500);
  options.killGrace = milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  auto result = runLocalRanksDetailed(
      2,
      [](int rank, RankContext& ctx) {
        if (rank == 0) {
          // Ignores SIGTERM and never reports progress: only SIGKILL ends it.
          signal(SIGTERM, SIG_IGN);
          for (;;) pause();
        }
        return idleRank(ctx);
      },
      options);
  double took = test::secondsSince(start);
  ASSERT_TRUE(result.failure);
  EXPECT_EQ(result.failure->rank, 0);
  EXPECT_EQ(result.failure->message.rfind("rank 0 made no progress for ", 0), 0u)
      << result.failure->message;
  EXPECT_LT(took, 3.0);
  expectNoneLeft(result);
}

// The ranks must not outlive a parent that is SIGKILLed (no chance to clean up). A helper
// process adopts the orphans (child subreaper), so it can see them die and reap them.
TEST(ProcessGroup, RanksDieWithTheirParent) {
  constexpr int kWorld = 3;
  auto* pids = static_cast<pid_t*>(mmap(nullptr, sizeof(pid_t) * kWorld, PROT_READ | PROT_WRITE,
                                        MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(pids, MAP_FAILED);
  for (int i = 0; i < kWorld; ++i) pids[i] = 0;
  pid_t helper = fork();
  ASSERT_GE(helper, 0);
  if (helper == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t parent = fork();
    if (parent == 0) {
      Error e = runLocalRanks(kWorld, [&](int rank, RankContext& ctx) {
        pids[rank] = getpid();
        return idleRank(ctx);
      });
      _exit(e ? 1 : 0);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    auto allStarted = [&] {
      for (int i = 0; i < kWorld; ++i) {
        if (__atomic_load_n(&pids[i], __ATOMIC_SEQ_CST) == 0) return false;
      }
      return true;
    };
    while (!allStarted()) {
      if (std::chrono::steady_clock::now() > deadline) _exit(2);
      std::this_thread::sleep_for(milliseconds(5));
    }
    kill(parent, SIGKILL);
    // Every orphaned rank must be reported dead (and reaped here) well within the deadline.
    int reaped = 0;
    while (reaped < kWorld + 1) {
      int status = 0;
      pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid > 0) {
        if (pid != parent && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) _exit(3);
        ++reaped;
      } else if (std::chrono::steady_clock::now() > deadline) {
        _exit(4);
      } else {
        std::this_thread::sleep_for(milliseconds(5));
      }
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(helper, &status, 0), helper);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "helper status " << status;
  for (int i = 0; i < kWorld; ++i) {
    EXPECT_NE(pids[i], 0);
    EXPECT_NE(::kill(pids[i], 0), 0) << "rank " << i << " survived its parent";
  }
  munmap(pids, sizeof(pid_t) * kWorld);
  EXPECT_EQ(childCount(), 0);
}

}  // namespace
}  // namespace tpc
