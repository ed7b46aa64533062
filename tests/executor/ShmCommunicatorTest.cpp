// The shared memory communicator against sums computed independently on each rank: every rank
// regenerates every rank's data and adds it in rank order, so the all-reduce must match bit for
// bit (values are not small integers here: the order of the additions shows). Faults: an
// aborted, dead, stopped or silent peer is named within bounded time.
#include <gtest/gtest.h>
#include <signal.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "executor/comm/ShmCommunicator.h"
#include "tests/executor/CommTestUtil.h"

namespace tpc {
namespace {

using std::chrono::milliseconds;

// Rank r's element i: fractions of all magnitudes, so float addition is not associative on them.
float valueOf(int rank, size_t i) {
  uint32_t h = static_cast<uint32_t>(rank) * 2654435761u + static_cast<uint32_t>(i) * 40503u;
  h ^= h >> 13;
  h *= 0x5bd1e995u;
  h ^= h >> 15;
  return static_cast<float>(static_cast<int32_t>(h)) / static_cast<float>(1 << (h % 29 + 1));
}

int mismatch(RankContext& ctx, const std::string& what, size_t i, float got, float want) {
  return ctx.fail(what + ": element " + std::to_string(i) + " is " + std::to_string(got) +
                  ", expected " + std::to_string(want));
}

int runCollectives(int rank, int world, RankContext& ctx,
                   const std::shared_ptr<ShmSegment>& segment) {
  auto comm = createShmCommunicator(rank, segment);
  if (!comm) return ctx.fail(comm.errorMessage());
  if ((*comm)->rank() != rank || (*comm)->world() != world) return ctx.fail("wrong rank/world");
  // 1000 and 2500 span several slots of the test's small segment: chunks must line up.
  for (size_t size : {size_t(1), size_t(7), size_t(1000), size_t(2500), size_t(0), size_t(3)}) {
    ctx.heartbeat();
    std::vector<float> data(size), want(size);
    for (size_t i = 0; i < size; ++i) {
      data[i] = valueOf(rank, i);
      want[i] = valueOf(0, i);
      for (int r = 1; r < world; ++r) want[i] += valueOf(r, i);
    }
    if (Error e = (*comm)->allReduceSum(data.data(), size)) return ctx.fail(e.message());
    for (size_t i = 0; i < size; ++i)
      if (std::bit_cast<uint32_t>(data[i]) != std::bit_cast<uint32_t>(want[i]))
        return mismatch(ctx, "allReduceSum of " + std::to_string(size), i, data[i], want[i]);

    std::vector<float> in(size), out(size * world, -1.0f);
    for (size_t i = 0; i < size; ++i) in[i] = valueOf(rank + 100, i);
    if (Error e = (*comm)->allGather(in.data(), size, out.data())) return ctx.fail(e.message());
    for (int r = 0; r < world; ++r)
      for (size_t i = 0; i < size; ++i)
        if (out[r * size + i] != valueOf(r + 100, i))
          return mismatch(ctx, "allGather", r * size + i, out[r * size + i], valueOf(r + 100, i));
    // In place: this rank's piece already sits in its slot of the output.
    std::fill(out.begin(), out.end(), -1.0f);
    std::copy(in.begin(), in.end(), out.begin() + rank * size);
    if (Error e = (*comm)->allGather(out.data() + rank * size, size, out.data()))
      return ctx.fail(e.message());
    for (int r = 0; r < world; ++r)
      for (size_t i = 0; i < size; ++i)
        if (out[r * size + i] != valueOf(r + 100, i))
          return mismatch(ctx, "in-place allGather", r * size + i, out[r * size + i],
                          valueOf(r + 100, i));
  }
  // Broadcasts of no bytes, a few, and more than one slot holds, from the first and last rank.
  for (size_t length : {size_t(0), size_t(10), size_t(3000)}) {
    for (int root : {0, world - 1}) {
      std::string want(length, '\0');
      for (size_t i = 0; i < length; ++i) want[i] = static_cast<char>('a' + (i * 7 + root) % 26);
      std::string bytes = rank == root ? want : std::string("stale");
      if (Error e = (*comm)->broadcast(bytes, root)) return ctx.fail(e.message());
      if (bytes != want)
        return ctx.fail("broadcast of " + std::to_string(length) + " bytes from rank " +
                        std::to_string(root) + " arrived as " + std::to_string(bytes.size()) +
                        " different bytes");
    }
  }
  // Many back-to-back phases: the two slots per rank must never be overwritten early.
  for (int step = 0; step < 2000; ++step) {
    float x = static_cast<float>(rank + step);
    if (Error e = (*comm)->allReduceSum(&x, 1)) return ctx.fail(e.message());
    const int sum = world * step + world * (world - 1) / 2;  // an integer: exact in f32
    float expect = static_cast<float>(sum);
    if (x != expect) return mismatch(ctx, "step " + std::to_string(step), 0, x, expect);
  }
  if (Error e = (*comm)->barrier()) return ctx.fail(e.message());
  return 0;
}

class ShmWorld : public ::testing::TestWithParam<int> {};

TEST_P(ShmWorld, AllReduceIsBitwiseTheRankOrderSumOnEveryRank) {
  int world = GetParam();
  auto segment = ShmSegment::create(world, 256);
  ASSERT_TRUE(segment) << segment.errorMessage();
  Error e = runLocalRanks(world, [&](int rank, RankContext& ctx) {
    return runCollectives(rank, world, ctx, *segment);
  });
  EXPECT_FALSE(e) << e.message();
}

INSTANTIATE_TEST_SUITE_P(Worlds, ShmWorld, ::testing::Values(1, 2, 4, 8));

TEST(ShmCommunicator, RejectsBadRankAndSegment) {
  auto segment = ShmSegment::create(2);
  ASSERT_TRUE(segment) << segment.errorMessage();
  auto bad = createShmCommunicator(2, *segment);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.errorMessage().find("rank 2"), std::string::npos) << bad.errorMessage();
  auto none = createShmCommunicator(0, nullptr);
  ASSERT_FALSE(none);
  EXPECT_FALSE(ShmSegment::create(0));
}

// A world of two where rank 1 does `peer` and rank 0 one all-reduce; rank 0's failure line.
std::string rank0AllReduceError(milliseconds timeout,
                                const std::function<void(Communicator&, RankContext&)>& peer,
                                double* took = nullptr) {
  auto segment = ShmSegment::create(2);
  EXPECT_TRUE(segment);
  ShmOptions options;
  options.timeout = timeout;
  ProcessGroupOptions group;
  group.heartbeatTimeout = milliseconds(20000);
  auto start = std::chrono::steady_clock::now();
  auto result = runLocalRanksDetailed(
      2,
      [&](int rank, RankContext& ctx) {
        auto comm = createShmCommunicator(rank, *segment, options);
        if (!comm) return ctx.fail(comm.errorMessage());
        if (rank == 1) {
          peer(**comm, ctx);
          return 0;
        }
        float x = 1;
        Error e = (*comm)->allReduceSum(&x, 1);
        return e ? ctx.fail(e.message()) : 0;
      },
      group);
  if (took) *took = test::secondsSince(start);
  if (!result.failure) return "";
  // The root cause may be rank 1 (killed or stopped); rank 0's own line is what we test.
  if (result.failure->rank == 0) return result.failure->message;
  for (const RankFailure& f : result.otherFailures)
    if (f.rank == 0) return f.message;
  return result.failure->message;
}

TEST(ShmCommunicator, DeadPeerIsNamed) {
  double took = 0;
  std::string message = rank0AllReduceError(
      milliseconds(10000), [](Communicator&, RankContext&) { raise(SIGKILL); }, &took);
  EXPECT_EQ(message.rfind("rank 0 exited with code 1: rank 0: allReduceSum failed (peer rank 1): "
                          "rank 1 exited",
                          0),
            0u)
      << message;
  EXPECT_LT(took, 3.0);
}

TEST(ShmCommunicator, PeerThatReturnsWithoutTheCollectiveIsNamed) {
  std::string message =
      rank0AllReduceError(milliseconds(10000), [](Communicator&, RankContext&) {});
  EXPECT_EQ(message.rfind("rank 0 exited with code 1: rank 0: allReduceSum failed (peer rank 1): "
                          "rank 1 exited",
                          0),
            0u)
      << message;
}

TEST(ShmCommunicator, StoppedPeerIsNamed) {
  double took = 0;
  std::string message = rank0AllReduceError(
      milliseconds(10000), [](Communicator&, RankContext&) { raise(SIGSTOP); }, &took);
  EXPECT_NE(message.find("rank 0: allReduceSum failed (peer rank 1): rank 1 is stopped"),
            std::string::npos)
      << message;
  EXPECT_LT(took, 5.0);
}

TEST(ShmCommunicator, TimeoutNamesTheOperationAndPeer) {
  double took = 0;
  std::string message = rank0AllReduceError(
      milliseconds(500),
      [](Communicator&, RankContext& ctx) {
        for (int i = 0; i < 300; ++i) {
          ctx.heartbeat();
          std::this_thread::sleep_for(milliseconds(10));
        }
      },
      &took);
  EXPECT_EQ(message.rfind("rank 0 exited with code 1: rank 0: allReduceSum failed (peer rank 1): "
                          "timed out after 500 ms waiting for rank 1",
                          0),
            0u)
      << message;
  EXPECT_LT(took, 4.0);
}

TEST(ShmCommunicator, AbortUnblocksThisRankAndReachesItsPeers) {
  auto segment = ShmSegment::create(2);
  ASSERT_TRUE(segment);
  Error e = runLocalRanks(2, [&](int rank, RankContext& ctx) {
    auto comm = createShmCommunicator(rank, *segment);
    if (!comm) return ctx.fail(comm.errorMessage());
    if (rank == 1) {
      // Comes late to rank 0's all-reduce, after rank 0 aborted: it must fail, naming rank 0.
      for (int i = 0; i < 100; ++i) {
        ctx.heartbeat();
        std::this_thread::sleep_for(milliseconds(10));
      }
      Error e = (*comm)->barrier();
      if (!e) return ctx.fail("barrier succeeded after the peer aborted");
      if (e.message().find("rank 0 aborted the communicator") == std::string::npos)
        return ctx.fail("unexpected error: " + e.message());
      return 0;
    }
    std::thread aborter([&] {
      std::this_thread::sleep_for(milliseconds(200));
      (*comm)->abort();
    });
    auto start = std::chrono::steady_clock::now();
    std::vector<float> x(10, 1.0f);
    Error failed = (*comm)->allReduceSum(x.data(), x.size());
    double took = test::secondsSince(start);
    aborter.join();
    if (!failed) return ctx.fail("all-reduce succeeded without its peer");
    if (took > 0.9) return ctx.fail("abort took " + std::to_string(took) + " s");
    Error later = (*comm)->barrier();
    if (!later || later.message().find("aborted") == std::string::npos)
      return ctx.fail("a collective after abort did not fail as aborted");
    return 0;
  });
  EXPECT_FALSE(e) << e.message();
}

TEST(ShmCommunicator, RankMissingFromRendezvousIsNamed) {
  auto segment = ShmSegment::create(2);
  ASSERT_TRUE(segment);
  ShmOptions options;
  options.timeout = milliseconds(500);
  auto result = runLocalRanksDetailed(2, [&](int rank, RankContext& ctx) {
    if (rank == 1) {
      std::this_thread::sleep_for(milliseconds(3000));
      return 0;
    }
    auto comm = createShmCommunicator(rank, *segment, options);
    return comm ? 0 : ctx.fail(comm.errorMessage());
  });
  ASSERT_TRUE(result.failure);
  EXPECT_EQ(result.failure->message.rfind(
                "rank 0 exited with code 1: rank 0: rendezvous failed: rank 1 did not join within "
                "500 ms",
                0),
            0u)
      << result.failure->message;
}

// A decode-like loop at world 4 (many small all-reduces); rank 2 gets `signal` at step 50. The
// whole group must end within 5 s of it, blaming rank 2, with no process left.
ProcessGroupResult faultyDecode(int signal, double* took) {
  auto segment = ShmSegment::create(4);
  EXPECT_TRUE(segment);
  ShmOptions shm;
  shm.timeout = milliseconds(4000);
  ProcessGroupOptions options;
  options.heartbeatTimeout = milliseconds(2000);
  options.killGrace = milliseconds(500);
  auto start = std::chrono::steady_clock::now();
  auto result = runLocalRanksDetailed(
      4,
      [&](int rank, RankContext& ctx) {
        auto comm = createShmCommunicator(rank, *segment, shm);
        if (!comm) return ctx.fail(comm.errorMessage());
        std::vector<float> data(128, 1.0f);
        for (int step = 0; step < 1000000; ++step) {
          ctx.heartbeat();
          if (rank == 2 && step == 50) raise(signal);
          if (Error e = (*comm)->allReduceSum(data.data(), data.size()))
            return ctx.fail(e.message());
          std::fill(data.begin(), data.end(), 1.0f);
        }
        return 0;
      },
      options);
  *took = test::secondsSince(start);
  return result;
}

TEST(ShmProcessGroup, RankKilledMidDecodeEndsEveryRankWithin5Seconds) {
  double took = 0;
  ProcessGroupResult result = faultyDecode(SIGKILL, &took);
  ASSERT_TRUE(result.failure);
  EXPECT_EQ(result.failure->rank, 2) << result.failure->message;
  EXPECT_EQ(result.failure->message.rfind("rank 2 was killed by signal 9", 0), 0u)
      << result.failure->message;
  EXPECT_LT(took, 5.0);
  for (pid_t pid : result.pids) EXPECT_NE(::kill(pid, 0), 0) << "process " << pid << " is left";
  // The peers name the dead rank themselves, not only the parent.
  bool named = false;
  for (const RankFailure& f : result.otherFailures)
    named |= f.message.find("(peer rank 2): rank 2 exited") != std::string::npos;
  EXPECT_TRUE(named) << "no peer named rank 2";
  std::printf("[ timing   ] SIGKILLed rank over shared memory: run ended after %.2f s\n", took);
}

TEST(ShmProcessGroup, RankStoppedMidDecodeEndsEveryRankWithin5Seconds) {
  double took = 0;
  ProcessGroupResult result = faultyDecode(SIGSTOP, &took);
  ASSERT_TRUE(result.failure);
  EXPECT_EQ(result.failure->rank, 2) << result.failure->message;
  EXPECT_NE(result.failure->message.find("(process stopped)"), std::string::npos)
      << result.failure->message;
  EXPECT_LT(took, 5.0);
  for (pid_t pid : result.pids) EXPECT_NE(::kill(pid, 0), 0) << "process " << pid << " is left";
  std::printf("[ timing   ] SIGSTOPped rank over shared memory: run ended after %.2f s (%s)\n",
              took, result.failure->message.c_str());
}

}  // namespace
}  // namespace tpc
