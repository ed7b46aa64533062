// The engine's bookkeeping without a model: the KV block pool, the prefix cache and the
// scheduler's budgets, preemption order and prefix hits, checked against counts worked out by
// hand from the rules in Scheduler.h.
#include <gtest/gtest.h>

#include <numeric>
#include <set>

#include "executor/engine/KvBlockPool.h"
#include "executor/engine/PrefixCache.h"
#include "executor/engine/Scheduler.h"

namespace tpc {
namespace {

TEST(KvBlockPool, HandsOutEveryBlockOnceThenNone) {
  KvBlockPool pool(4);
  std::set<int32_t> seen;
  for (int i = 0; i < 4; ++i) seen.insert(*pool.allocate());
  EXPECT_EQ(seen, (std::set<int32_t>{0, 1, 2, 3}));
  EXPECT_FALSE(pool.allocate());
  EXPECT_EQ(pool.used(), 4);
  pool.release(2);
  EXPECT_EQ(pool.available(), 1);
  EXPECT_EQ(*pool.allocate(), 2);
}

TEST(KvBlockPool, SharedBlocksFreeWithTheirLastHolder) {
  KvBlockPool pool(2);
  int32_t b = *pool.allocate();
  pool.retain(b);
  pool.release(b);
  EXPECT_EQ(pool.available(), 1);
  pool.release(b);
  EXPECT_EQ(pool.available(), 2);
}

TEST(KvBlockPool, CachedBlocksAreReusedLeastRecentlyReleasedFirstAfterFreeOnes) {
  KvBlockPool pool(3);
  std::vector<int32_t> evicted;
  pool.onEvict([&](int32_t b) { evicted.push_back(b); });
  int32_t a = *pool.allocate(), b = *pool.allocate(), c = *pool.allocate();
  pool.markCached(a);
  pool.markCached(b);
  pool.release(b);  // released first: evicted first
  pool.release(a);
  pool.release(c);  // never cached: handed out before any cached block
  EXPECT_EQ(*pool.allocate(), c);
  EXPECT_TRUE(evicted.empty());
  EXPECT_EQ(*pool.allocate(), b);
  EXPECT_EQ(*pool.allocate(), a);
  EXPECT_EQ(evicted, (std::vector<int32_t>{b, a}));
}

TEST(KvBlockPool, RetainingAnEvictableBlockKeepsIt) {
  KvBlockPool pool(2);
  int32_t a = *pool.allocate();
  pool.markCached(a);
  pool.release(a);
  pool.retain(a);  // a prefix hit
  EXPECT_EQ(pool.available(), 1);
  EXPECT_NE(*pool.allocate(), a);
  EXPECT_FALSE(pool.allocate());
}

std::vector<int32_t> iota(int32_t n, int32_t first = 0) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), first);
  return v;
}

TEST(PrefixCache, MatchesTheLongestCachedChainOfFullBlocks) {
  KvBlockPool pool(8);
  PrefixCache cache(pool, 4);
  const std::vector<int32_t> tokens = iota(12);
  uint64_t h0 = PrefixCache::chainHash(0, tokens.data(), 4);
  uint64_t h1 = PrefixCache::chainHash(h0, tokens.data() + 4, 4);
  int32_t b0 = *pool.allocate(), b1 = *pool.allocate();
  cache.insert(h0, tokens.data(), b0);
  cache.insert(h1, tokens.data() + 4, b1);
  std::vector<uint64_t> hashes;
  EXPECT_EQ(cache.match(tokens, 3, hashes), (std::vector<int32_t>{b0, b1}));
  EXPECT_EQ(hashes, (std::vector<uint64_t>{h0, h1}));
  EXPECT_EQ(pool.refCount(b0), 2);  // the match holds them too
  // The same second block after a different first one is another prefix: no hit past block 0.
  std::vector<int32_t> other = tokens;
  other[1] = 99;
  hashes.clear();
  EXPECT_TRUE(cache.match(other, 3, hashes).empty());
  // maxBlocks bounds the match.
  hashes.clear();
  EXPECT_EQ(cache.match(tokens, 1, hashes).size(), 1u);
}

TEST(PrefixCache, EvictedBlocksAreForgotten) {
  KvBlockPool pool(1);
  PrefixCache cache(pool, 2);
  const std::vector<int32_t> tokens{5, 6, 7};
  int32_t b = *pool.allocate();
  cache.insert(PrefixCache::chainHash(0, tokens.data(), 2), tokens.data(), b);
  pool.release(b);
  EXPECT_EQ(cache.size(), 1);
  EXPECT_EQ(*pool.allocate(), b);  // the pool needs it back
  EXPECT_EQ(cache.size(), 0);
  std::vector<uint64_t> hashes;
  EXPECT_TRUE(cache.match(tokens, 1, hashes).empty());
}

std::unique_ptr<Sequence> sequence(EngineRequestId id, int32_t promptLength, int32_t first = 0) {
  auto s = std::make_unique<Sequence>();
  s->id = id;
  s->tokens = iota(promptLength, first);
  s->promptLength = promptLength;
  return s;
}

// What an iteration does to the sequences that sample: one more token each.
void complete(Scheduler& scheduler, const std::vector<ScheduledChunk>& chunks) {
  scheduler.completed(chunks);
  for (const ScheduledChunk& c : chunks)
    if (c.samples) {
      c.seq->tokens.push_back(7);
      ++c.seq->generated;
    }
}

TEST(Scheduler, ChunksPromptsUnderTheTokenBudgetBesideDecodes) {
  KvBlockPool pool(64);
  Scheduler scheduler({8, 10, 4}, pool, nullptr);
  auto a = sequence(1, 6), b = sequence(2, 9);
  scheduler.add(a.get());
  scheduler.add(b.get());
  auto first = scheduler.schedule();  // a whole (6), then 4 of b's 9
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].count, 6);
  EXPECT_TRUE(first[0].samples);
  EXPECT_EQ(first[1].count, 4);
  EXPECT_FALSE(first[1].samples);
  complete(scheduler, first);
  auto second = scheduler.schedule();  // a's decode token, the remaining 5 of b
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0].seq, a.get());
  EXPECT_EQ(second[0].count, 1);
  EXPECT_EQ(second[1].start, 4);
  EXPECT_EQ(second[1].count, 5);
  EXPECT_TRUE(second[1].samples);
}

TEST(Scheduler, AdmitsFirstComeFirstServedUpToMaxSeqs) {
  KvBlockPool pool(64);
  Scheduler scheduler({2, 100, 4}, pool, nullptr);
  auto a = sequence(1, 3), b = sequence(2, 3), c = sequence(3, 3);
  for (auto* s : {a.get(), b.get(), c.get()}) scheduler.add(s);
  auto chunks = scheduler.schedule();
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].seq, a.get());
  EXPECT_EQ(chunks[1].seq, b.get());
  EXPECT_EQ(scheduler.waiting().front(), c.get());
}

TEST(Scheduler, PreemptsTheNewestRunningSequenceWhenBlocksRunOut) {
  // Three sequences of one full block each; the pool has four blocks. The first to need a
  // second block takes the last free one; the next takes c's: c, the newest, is preempted.
  KvBlockPool pool(4);
  Scheduler scheduler({8, 100, 4}, pool, nullptr);
  auto a = sequence(1, 4), b = sequence(2, 4), c = sequence(3, 4);
  for (auto* s : {a.get(), b.get(), c.get()}) scheduler.add(s);
  complete(scheduler, scheduler.schedule());
  EXPECT_EQ(pool.used(), 3);
  auto chunks = scheduler.schedule();
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].seq, a.get());
  EXPECT_EQ(chunks[1].seq, b.get());
  EXPECT_EQ(scheduler.counters().preemptions, 1);
  ASSERT_EQ(scheduler.waiting().size(), 1u);
  EXPECT_EQ(scheduler.waiting().front(), c.get());
  EXPECT_EQ(c->computed, 0);
  EXPECT_TRUE(c->blocks.empty());
  EXPECT_EQ(c->tokens.size(), 5u) << "the token it generated is kept";
  complete(scheduler, chunks);
  // Once a finishes, c comes back and recomputes all five tokens.
  scheduler.remove(a.get());
  auto again = scheduler.schedule();
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[1].seq, c.get());
  EXPECT_EQ(again[1].start, 0);
  EXPECT_EQ(again[1].count, 5);
}

TEST(Scheduler, SkipsSequencesInFlightAndNeverPreemptsThem) {
  // As above, but c is in a micro-batch still in flight: b, needing a second block with none
  // free, preempts itself instead of c, and the next micro-batch's limits hold.
  KvBlockPool pool(4);
  Scheduler scheduler({8, 100, 4}, pool, nullptr);
  auto a = sequence(1, 4), b = sequence(2, 4), c = sequence(3, 4);
  for (auto* s : {a.get(), b.get(), c.get()}) scheduler.add(s);
  complete(scheduler, scheduler.schedule());
  c->inFlight = true;
  auto chunks = scheduler.schedule({8, 100});
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].seq, a.get());
  EXPECT_EQ(scheduler.counters().preemptions, 1);
  ASSERT_EQ(scheduler.waiting().size(), 1u);
  EXPECT_EQ(scheduler.waiting().front(), b.get());
  EXPECT_EQ(c->blocks.size(), 1u) << "the sequence in flight keeps its block";
  complete(scheduler, chunks);
  c->inFlight = false;
  auto limited = scheduler.schedule({1, 100});
  ASSERT_EQ(limited.size(), 1u) << "a micro-batch's share of the sequences";
  EXPECT_EQ(limited[0].seq, a.get());
}

TEST(Scheduler, APrefixHitComputesOnlyTheRest) {
  KvBlockPool pool(16);
  PrefixCache cache(pool, 4);
  Scheduler scheduler({8, 100, 4}, pool, &cache);
  auto a = sequence(1, 14);
  scheduler.add(a.get());
  complete(scheduler, scheduler.schedule());
  scheduler.remove(a.get());  // finished: its three full blocks stay cached
  auto b = sequence(2, 15);   // the same first 14 tokens, and one more
  scheduler.add(b.get());
  auto chunks = scheduler.schedule();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].start, 12);
  EXPECT_EQ(chunks[0].count, 3);
  EXPECT_EQ(b->cachedPromptTokens, 12);
  EXPECT_EQ(scheduler.counters().prefixHitTokens, 12);
  // A prompt that is exactly cached blocks still computes its last token.
  scheduler.remove(b.get());
  auto c = sequence(3, 8);
  scheduler.add(c.get());
  auto last = scheduler.schedule();
  EXPECT_EQ(last[0].start, 4);
  EXPECT_EQ(last[0].count, 4);
}

// llava: two prompts of the same ids whose images differ share the blocks before the first
// image token and none after it; the same image shares them all.
TEST(Scheduler, ImagesSaltTheBlocksFromTheirFirstImageTokenOn) {
  KvBlockPool pool(32);
  PrefixCache cache(pool, 4);
  Scheduler scheduler({8, 100, 4}, pool, &cache);
  auto withImage = [](EngineRequestId id, uint64_t digest) {
    auto s = sequence(id, 17);
    for (int32_t p = 6; p < 10; ++p) s->imagePositions.push_back(p);
    s->salt = {digest, 6};
    return s;
  };
  auto a = withImage(1, 111);
  scheduler.add(a.get());
  complete(scheduler, scheduler.schedule());
  scheduler.remove(a.get());  // its four full blocks stay cached
  auto b = withImage(2, 222);
  scheduler.add(b.get());
  auto chunks = scheduler.schedule();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].start, 4) << "only the block before the image (tokens 0..3) is shared";
  complete(scheduler, chunks);
  scheduler.remove(b.get());
  auto again = withImage(3, 111);
  scheduler.add(again.get());
  EXPECT_EQ(scheduler.schedule()[0].start, 16) << "the same image shares every full block";
}

// Across nodes an iteration carries a bounded amount of image patches: a chunk that would reach
// a second image stops before it, and that image comes in the next iteration.
TEST(Scheduler, AnImageOverTheIterationsImageBudgetWaitsForTheNext) {
  KvBlockPool pool(64);
  SchedulerConfig config{8, 100, 4};
  config.maxImageBytes = 1000;
  Scheduler scheduler(config, pool, nullptr);
  auto image = [](EngineRequestId id) {
    auto s = sequence(id, 12);
    for (int32_t p = 3; p < 7; ++p) s->imagePositions.push_back(p);
    s->imageBytes = 800;
    return s;
  };
  auto a = image(1), b = image(2);
  scheduler.add(a.get());
  scheduler.add(b.get());
  auto first = scheduler.schedule();
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].count, 12);
  EXPECT_EQ(first[1].seq, b.get());
  EXPECT_EQ(first[1].count, 3) << "b stops before its image";
  complete(scheduler, first);
  auto second = scheduler.schedule();
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[1].start, 3);
  EXPECT_EQ(second[1].count, 9);
}

}  // namespace
}  // namespace tpc
