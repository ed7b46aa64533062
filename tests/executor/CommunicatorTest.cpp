// Collectives give exact results: values are small integers, so float sums are exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/executor/CommTestUtil.h"

namespace tpc {
namespace {

TEST(LocalCommunicator, CollectivesAreIdentity) {
  auto comm = createLocalCommunicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->world(), 1);
  std::vector<float> data = {1, -2, 3.5f};
  ASSERT_FALSE(comm->allReduceSum(data.data(), data.size()));
  EXPECT_EQ(data, (std::vector<float>{1, -2, 3.5f}));
  std::vector<float> gathered(3);
  ASSERT_FALSE(comm->allGather(data.data(), data.size(), gathered.data()));
  EXPECT_EQ(gathered, data);
  ASSERT_FALSE(comm->allGather(gathered.data(), gathered.size(), gathered.data()));
  EXPECT_EQ(gathered, data);
  ASSERT_FALSE(comm->barrier());
  comm->abort();
  Error e = comm->barrier();
  ASSERT_TRUE(e);
  EXPECT_NE(e.message().find("aborted"), std::string::npos) << e.message();
}

TEST(GlooCommunicator, WorldOfOneNeedsNoStore) {
  auto comm = createGlooCommunicator(0, 1, GlooOptions{});
  ASSERT_TRUE(comm) << comm.errorMessage();
  std::vector<float> data = {4, 5};
  ASSERT_FALSE((*comm)->allReduceSum(data.data(), data.size()));
  EXPECT_EQ(data, (std::vector<float>{4, 5}));
}

TEST(GlooCommunicator, RejectsBadRankAndMissingPort) {
  auto bad = createGlooCommunicator(4, 4, GlooOptions{});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.errorMessage().find("rank 4"), std::string::npos) << bad.errorMessage();
  auto noPort = createGlooCommunicator(1, 2, GlooOptions{});
  ASSERT_FALSE(noPort);
  EXPECT_NE(noPort.errorMessage().find("rank 1"), std::string::npos) << noPort.errorMessage();
}

// Reports the first mismatch as the rank's error line, so the test output shows it.
int checkEqual(RankContext& ctx, const char* what, size_t size, const std::vector<float>& got,
               const std::vector<float>& want) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] != want[i]) {
      return ctx.fail(std::string(what) + " of " + std::to_string(size) + ": element " +
                      std::to_string(i) + " is " + std::to_string(got[i]) + ", expected " +
                      std::to_string(want[i]));
    }
  }
  return 0;
}

int runCollectives(int rank, int world, RankContext& ctx, const GlooOptions& options) {
  auto comm = createGlooCommunicator(rank, world, options);
  if (!comm) return ctx.fail(comm.errorMessage());
  if ((*comm)->rank() != rank || (*comm)->world() != world) return ctx.fail("wrong rank/world");
  for (size_t size : {size_t(1), size_t(7), size_t(1000), size_t(1) << 20, size_t(3)}) {
    ctx.heartbeat();
    std::vector<float> data(size), want(size);
    for (size_t i = 0; i < size; ++i) {
      data[i] = float(rank * 1000 + int(i % 1000));
      want[i] = float(1000 * world * (world - 1) / 2 + world * int(i % 1000));
    }
    if (Error e = (*comm)->allReduceSum(data.data(), size)) return ctx.fail(e.message());
    if (int bad = checkEqual(ctx, "allReduceSum", size, data, want)) return bad;

    std::vector<float> in(size), out(size * world, -1.0f), expected(size * world);
    for (size_t i = 0; i < size; ++i) in[i] = float(rank * 100000 + int(i % 100000));
    for (int r = 0; r < world; ++r) {
      for (size_t i = 0; i < size; ++i)
        expected[r * size + i] = float(r * 100000 + int(i % 100000));
    }
    if (Error e = (*comm)->allGather(in.data(), size, out.data())) return ctx.fail(e.message());
    if (int bad = checkEqual(ctx, "allGather", size, out, expected)) return bad;

    // In place: this rank's input already sits in its slot of the output.
    std::fill(out.begin(), out.end(), -1.0f);
    std::copy(in.begin(), in.end(), out.begin() + rank * size);
    if (Error e = (*comm)->allGather(out.data() + rank * size, size, out.data())) {
      return ctx.fail(e.message());
    }
    if (int bad = checkEqual(ctx, "in-place allGather", size, out, expected)) return bad;
  }
  if (Error e = (*comm)->barrier()) return ctx.fail(e.message());
  return 0;
}

class GlooWorld : public ::testing::TestWithParam<int> {};

TEST_P(GlooWorld, AllReduceAndAllGatherAreExactOnEveryRank) {
  int world = GetParam();
  auto store = test::ReservedStore::make();
  GlooOptions options = store.options();
  Error e = runLocalRanks(
      world, [&](int rank, RankContext& ctx) { return runCollectives(rank, world, ctx, options); });
  EXPECT_FALSE(e) << e.message();
}

INSTANTIATE_TEST_SUITE_P(Worlds, GlooWorld, ::testing::Values(2, 4, 8));

TEST(GlooCommunicator, AbortUnblocksAPendingCollective) {
  auto store = test::ReservedStore::make();
  GlooOptions options = store.options();
  Error e = runLocalRanks(2, [&](int rank, RankContext& ctx) {
    auto comm = createGlooCommunicator(rank, 2, options);
    if (!comm) return ctx.fail(comm.errorMessage());
    if (rank == 1) {
      // Waits in a different collective, so rank 0's all-reduce has no partner; rank 0's
      // abort must end this wait too, long before the 10 s timeout.
      auto start = std::chrono::steady_clock::now();
      Error e = (*comm)->barrier();
      if (!e) return ctx.fail("barrier succeeded without its peer");
      if (test::secondsSince(start) > 2.0) return ctx.fail("peer's abort was not noticed");
      return 0;
    }
    std::thread aborter([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      (*comm)->abort();
    });
    auto start = std::chrono::steady_clock::now();
    float x = 1;
    Error failed = (*comm)->allReduceSum(&x, 1);
    double took = test::secondsSince(start);
    aborter.join();
    if (!failed) return ctx.fail("all-reduce succeeded without its peer");
    if (took > 2.0)
      return ctx.fail("abort took " + std::to_string(took) + " s: " + failed.message());
    Error later = (*comm)->barrier();
    if (!later || later.message().find("aborted") == std::string::npos) {
      return ctx.fail("a collective after abort did not fail as aborted");
    }
    return 0;
  });
  EXPECT_FALSE(e) << e.message();
}

// Runs a world of two where rank 1 does `peer` and rank 0 one all-reduce; returns rank 0's
// error message (empty if the all-reduce succeeded).
std::string rank0AllReduceError(std::chrono::milliseconds timeout,
                                const std::function<void(Communicator&, RankContext&)>& peer) {
  auto store = test::ReservedStore::make();
  GlooOptions options = store.options(timeout);
  auto result = runLocalRanksDetailed(2, [&](int rank, RankContext& ctx) {
    auto comm = createGlooCommunicator(rank, 2, options);
    if (!comm) return ctx.fail(comm.errorMessage());
    if (rank == 1) {
      peer(**comm, ctx);
      return 0;
    }
    float x = 1;
    Error e = (*comm)->allReduceSum(&x, 1);
    return e ? ctx.fail(e.message()) : 0;
  });
  return result.failure ? result.failure->message : "";
}

TEST(GlooCommunicator, DeadPeerIsNamed) {
  std::string message =
      rank0AllReduceError(std::chrono::milliseconds(10000), [](Communicator&, RankContext&) {});
  EXPECT_EQ(
      message.rfind("rank 0 exited with code 1: rank 0: allReduceSum failed (peer rank 1): ", 0),
      0u)
      << message;
}

TEST(GlooCommunicator, RankMissingFromRendezvousIsNamed) {
  auto store = test::ReservedStore::make();
  GlooOptions options = store.options(std::chrono::milliseconds(500));
  auto result = runLocalRanksDetailed(2, [&](int rank, RankContext& ctx) {
    if (rank == 1) {
      std::this_thread::sleep_for(std::chrono::milliseconds(3000));
      return 0;
    }
    auto comm = createGlooCommunicator(rank, 2, options);
    return comm ? 0 : ctx.fail(comm.errorMessage());
  });
  ASSERT_TRUE(result.failure);
  EXPECT_EQ(result.failure->message.rfind(
                "rank 0 exited with code 1: rank 0: rendezvous failed: rank 1 did not join: ", 0),
            0u)
      << result.failure->message;
}

TEST(GlooCommunicator, TimeoutNamesTheOperation) {
  auto start = std::chrono::steady_clock::now();
  std::string message =
      rank0AllReduceError(std::chrono::milliseconds(500), [](Communicator&, RankContext& ctx) {
        for (int i = 0; i < 300; ++i) {
          ctx.heartbeat();
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
      });
  EXPECT_EQ(message.rfind("rank 0 exited with code 1: rank 0: allReduceSum failed: ", 0), 0u)
      << message;
  EXPECT_NE(message.find("500ms"), std::string::npos) << message;
  std::printf("[ message  ] %s\n", message.c_str());
  EXPECT_LT(test::secondsSince(start), 3.0);
}

}  // namespace
}  // namespace tpc
