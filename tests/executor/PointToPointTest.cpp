// Point-to-point messages (pipeline boundaries) over shared memory and Gloo, and a stage's
// collectives built on them: every rank regenerates what its peers sent and checks the bits;
// messages of several chunks arrive whole and in order; a receiver expecting another length
// says so; two stages of two ranks each sum only among themselves, in rank order.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "executor/comm/ShmCommunicator.h"
#include "tests/executor/CommTestUtil.h"

namespace tpc {
namespace {

float valueOf(int rank, int message, size_t i) {
  uint32_t h = static_cast<uint32_t>(rank) * 2654435761u + static_cast<uint32_t>(i) * 40503u +
               static_cast<uint32_t>(message) * 97u;
  h ^= h >> 13;
  h *= 0x5bd1e995u;
  return static_cast<float>(static_cast<int32_t>(h)) / static_cast<float>(1 << (h % 29 + 1));
}

// Rank r sends three messages to r + 1 and takes three from r - 1 (around the ring); even
// ranks send first, odd ranks receive first, so that no two ranks wait on each other.
int exchange(Communicator& comm, RankContext& ctx) {
  const int rank = comm.rank(), world = comm.world();
  const int next = (rank + 1) % world, prev = (rank + world - 1) % world;
  const std::vector<size_t> sizes = {3, 700, 1};  // 700 spans several chunks of a small segment
  auto sendAll = [&]() -> Error {
    for (size_t m = 0; m < sizes.size(); ++m) {
      std::vector<float> data(sizes[m]);
      for (size_t i = 0; i < data.size(); ++i) data[i] = valueOf(rank, static_cast<int>(m), i);
      if (Error e = comm.send(data.data(), data.size(), next)) return e;
    }
    return Error::success();
  };
  auto recvAll = [&]() -> Error {
    for (size_t m = 0; m < sizes.size(); ++m) {
      std::vector<float> data(sizes[m], -1.0f);
      if (Error e = comm.recv(data.data(), data.size(), prev)) return e;
      for (size_t i = 0; i < data.size(); ++i)
        if (std::bit_cast<uint32_t>(data[i]) !=
            std::bit_cast<uint32_t>(valueOf(prev, static_cast<int>(m), i)))
          return makeError("message ", m, " element ", i, " from rank ", prev, " differs");
    }
    return Error::success();
  };
  Error first = rank % 2 == 0 ? sendAll() : recvAll();
  if (first) return ctx.fail(first.message());
  Error second = rank % 2 == 0 ? recvAll() : sendAll();
  if (second) return ctx.fail(second.message());
  ctx.heartbeat();

  // Two stages of world / 2 ranks: each sums among its own, in rank order.
  const int half = world / 2, firstOfGroup = rank < half ? 0 : half;
  std::unique_ptr<Communicator> group = createGroupCommunicator(comm, firstOfGroup, half);
  std::vector<float> data(50), want(50);
  for (size_t i = 0; i < data.size(); ++i) {
    data[i] = valueOf(rank, 9, i);
    want[i] = valueOf(firstOfGroup, 9, i);
    for (int r = firstOfGroup + 1; r < firstOfGroup + half; ++r) want[i] += valueOf(r, 9, i);
  }
  if (Error e = group->allReduceSum(data.data(), data.size())) return ctx.fail(e.message());
  for (size_t i = 0; i < data.size(); ++i)
    if (std::bit_cast<uint32_t>(data[i]) != std::bit_cast<uint32_t>(want[i]))
      return ctx.fail("group allReduceSum element " + std::to_string(i) + " differs");
  std::vector<float> gathered(2 * static_cast<size_t>(half), -1.0f);
  float mine[2] = {static_cast<float>(rank), static_cast<float>(rank) + 0.5f};
  if (Error e = group->allGather(mine, 2, gathered.data())) return ctx.fail(e.message());
  for (int r = 0; r < half; ++r)
    if (gathered[2 * static_cast<size_t>(r)] != static_cast<float>(firstOfGroup + r))
      return ctx.fail("group allGather slot " + std::to_string(r) + " is wrong");

  // A receiver that expects a different length is told, not handed a mix.
  if (rank == 0) {
    float two[2] = {1, 2};
    if (Error e = comm.send(two, 2, 1)) return ctx.fail(e.message());
  } else if (rank == 1) {
    float three[3];
    Error e = comm.recv(three, 3, 0);
    if (!e) return ctx.fail("a recv of 3 floats took a message of 2");
    if (e.message().find("expected 3 floats but rank 0 sent 2") == std::string::npos)
      return ctx.fail("unclear length error: " + e.message());
  }
  return 0;
}

TEST(PointToPoint, SharedMemoryMessagesArriveWholeAndInOrder) {
  const int world = 4;
  auto segment = ShmSegment::create(world, 256);  // 700 floats take three chunks
  ASSERT_TRUE(segment) << segment.errorMessage();
  Error e = runLocalRanks(world, [&](int rank, RankContext& ctx) {
    ShmOptions options;
    options.timeout = std::chrono::milliseconds(5000);
    auto comm = createShmCommunicator(rank, *segment, options);
    if (!comm) return ctx.fail(comm.errorMessage());
    return exchange(**comm, ctx);
  });
  EXPECT_FALSE(e) << e.message();
}

TEST(PointToPoint, GlooMessagesArriveWholeAndInOrder) {
  const int world = 4;
  test::ReservedStore store = test::ReservedStore::make();
  Error e = runLocalRanks(world, [&](int rank, RankContext& ctx) {
    auto comm = createGlooCommunicator(rank, world, store.options());
    if (!comm) return ctx.fail(comm.errorMessage());
    const int rank0 = (*comm)->rank();
    {
      const int next = (rank0 + 1) % world, prev = (rank0 + world - 1) % world;
      std::vector<float> data(700), got(700, -1.0f);
      for (size_t i = 0; i < data.size(); ++i) data[i] = valueOf(rank0, 0, i);
      Error first = rank0 % 2 == 0 ? (*comm)->send(data.data(), data.size(), next)
                                   : (*comm)->recv(got.data(), got.size(), prev);
      if (first) return ctx.fail(first.message());
      Error second = rank0 % 2 == 0 ? (*comm)->recv(got.data(), got.size(), prev)
                                    : (*comm)->send(data.data(), data.size(), next);
      if (second) return ctx.fail(second.message());
      for (size_t i = 0; i < got.size(); ++i)
        if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(valueOf(prev, 0, i)))
          return ctx.fail("element " + std::to_string(i) + " from rank " + std::to_string(prev) +
                          " differs");
    }
    // The tags of later collectives still agree on every rank.
    float one = 1.0f;
    if (Error e2 = (*comm)->allReduceSum(&one, 1)) return ctx.fail(e2.message());
    if (one != static_cast<float>(world)) return ctx.fail("allReduceSum after messages is wrong");
    return 0;
  });
  EXPECT_FALSE(e) << e.message();
}

}  // namespace
}  // namespace tpc
