// The iteration message rank 0 broadcasts: what is decoded is what was encoded, a damaged
// message is an Error (never a crash), and Gloo's broadcast carries it to every rank.
#include <gtest/gtest.h>

#include "executor/engine/Iteration.h"
#include "tests/executor/CommTestUtil.h"

namespace tpc {
namespace {

Iteration sampleIteration() {
  Iteration it;
  it.kind = Iteration::Kind::Sample;
  it.tokenIds = {5, 6, 7, 8};
  it.positions = {0, 1, 2, 9};
  it.kvSlots = {12, 13, 14, 41};
  it.seqStarts = {0, 3, 4};
  it.blockTables = {3, 0, 1, 10};
  it.blockTableStride = 2;
  it.logitRows = {2, 3};
  RowSampling greedy, hot;
  hot.temperature = 0.7f;
  hot.topK = 5;
  hot.topP = 0.9f;
  hot.minP = 0.05f;
  hot.uniform = 0.25;
  it.sampling = {greedy, hot};
  it.finishFirst = 2;
  it.inFlight = true;
  return it;
}

void expectSame(const Iteration& a, const Iteration& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.tokenIds, b.tokenIds);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.kvSlots, b.kvSlots);
  EXPECT_EQ(a.seqStarts, b.seqStarts);
  EXPECT_EQ(a.blockTables, b.blockTables);
  EXPECT_EQ(a.blockTableStride, b.blockTableStride);
  EXPECT_EQ(a.logitRows, b.logitRows);
  EXPECT_EQ(a.finishFirst, b.finishFirst);
  EXPECT_EQ(a.inFlight, b.inFlight);
  ASSERT_EQ(a.sampling.size(), b.sampling.size());
  for (size_t i = 0; i < a.sampling.size(); ++i) {
    EXPECT_EQ(a.sampling[i].temperature, b.sampling[i].temperature);
    EXPECT_EQ(a.sampling[i].topK, b.sampling[i].topK);
    EXPECT_EQ(a.sampling[i].uniform, b.sampling[i].uniform);
  }
}

TEST(Iteration, DecodesWhatWasEncoded) {
  const Iteration it = sampleIteration();
  Expected<Iteration> back = Iteration::decode(it.encode());
  ASSERT_TRUE(back) << back.errorMessage();
  expectSame(*back, it);
  const StepInput in = back->stepInput();
  EXPECT_EQ(in.tokens, 4);
  EXPECT_EQ(in.sequences, 2);
  EXPECT_EQ(in.logitRowCount, 2);
  EXPECT_TRUE(in.paged());
}

TEST(Iteration, CarriesItsImages) {
  Iteration it = sampleIteration();
  it.imageRowCounts = {2};
  it.imagePatches = {0.5f, -1.0f, 2.0f, 3.25f};
  it.imageFeatureRows = {-1, 1, -1, -1};
  Expected<Iteration> back = Iteration::decode(it.encode());
  ASSERT_TRUE(back) << back.errorMessage();
  expectSame(*back, it);
  EXPECT_EQ(back->imageRowCounts, it.imageRowCounts);
  EXPECT_EQ(back->imagePatches, it.imagePatches);
  EXPECT_EQ(back->imageFeatureRows, it.imageFeatureRows);
  it.imageFeatureRows.pop_back();
  EXPECT_FALSE(Iteration::decode(it.encode())) << "image rows must cover every token";
}

TEST(Iteration, ADamagedMessageIsAnError) {
  const std::string bytes = sampleIteration().encode();
  for (size_t cut : {size_t(0), size_t(3), bytes.size() / 2, bytes.size() - 1}) {
    Expected<Iteration> back = Iteration::decode(bytes.substr(0, cut));
    ASSERT_FALSE(back) << "cut at " << cut;
    EXPECT_NE(back.errorMessage().find("iteration message"), std::string::npos);
  }
  std::string badKind = bytes;
  badKind[0] = 9;
  EXPECT_FALSE(Iteration::decode(badKind));
  EXPECT_FALSE(Iteration::decode(bytes + "x"));
}

TEST(GlooCommunicator, BroadcastGivesEveryRankTheRootsBytes) {
  test::ReservedStore store = test::ReservedStore::make();
  const std::string message = sampleIteration().encode();
  Error e = runLocalRanks(3, [&](int rank, RankContext& ctx) {
    auto comm = createGlooCommunicator(rank, 3, store.options());
    if (!comm) return ctx.fail(comm.errorMessage());
    for (const std::string& sent : {message, std::string(), std::string(100000, 'z')}) {
      std::string bytes = rank == 0 ? sent : std::string("stale");
      if (Error b = (*comm)->broadcast(bytes, 0)) return ctx.fail(b.message());
      if (bytes != sent) return ctx.fail("rank got " + std::to_string(bytes.size()) + " bytes");
    }
    return 0;
  });
  EXPECT_FALSE(e) << e.message();
}

// The node agents tell the last message from the others without decoding it.
TEST(Iteration, StopIsToldFromItsFirstBytes) {
  Iteration it;
  for (Iteration::Kind kind : {Iteration::Kind::Forward, Iteration::Kind::Sample,
                               Iteration::Kind::Idle, Iteration::Kind::Stop}) {
    it.kind = kind;
    EXPECT_EQ(Iteration::isStop(it.encode()), kind == Iteration::Kind::Stop);
  }
  EXPECT_FALSE(Iteration::isStop(""));
  EXPECT_FALSE(Iteration::isStop("\x03"));
}

TEST(LocalCommunicator, BroadcastKeepsTheBytes) {
  auto comm = createLocalCommunicator();
  std::string bytes = "abc";
  ASSERT_FALSE(comm->broadcast(bytes, 0));
  EXPECT_EQ(bytes, "abc");
}

}  // namespace
}  // namespace tpc
