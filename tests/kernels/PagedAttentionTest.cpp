// pagedAttention against attention(), the contiguous-cache kernel tested against the definition
// in AttentionTest.cpp: the same iterations (prefill chunks and decode tokens of several
// sequences) through shuffled, non-contiguous blocks must give the same outputs.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels/KernelTestUtil.h"

namespace tpc::cpu {
namespace {

using test::allClose;
using test::randomFloats;
using test::toDouble;

struct Shape {
  int64_t heads, kvHeads, headDim, blockSize;
};

// Both caches of the same sequences: a contiguous slot per sequence, and a paged pool whose
// blocks are handed out in a shuffled order.
struct Caches {
  Shape shape;
  int64_t maxContext;
  std::vector<float> slotK, slotV, poolK, poolV;
  KvCache slots;
  KvPool pool;
  std::vector<std::vector<int32_t>> tables;  // per sequence
  std::vector<int32_t> freeBlocks;

  Caches(const Shape& s, int64_t sequences, int64_t maxContext, uint32_t seed)
      : shape(s), maxContext(maxContext) {
    const int64_t width = s.kvHeads * s.headDim;
    slotK.assign(sequences * maxContext * width, NAN);
    slotV.assign(slotK.size(), NAN);
    const int64_t blocks = sequences * ((maxContext + s.blockSize - 1) / s.blockSize) + 3;
    poolK.assign(blocks * s.blockSize * width, NAN);
    poolV.assign(poolK.size(), NAN);
    slots = {slotK.data(), slotV.data(), sequences, maxContext, s.kvHeads, s.headDim};
    pool = {poolK.data(), poolV.data(), blocks, s.blockSize, s.kvHeads, s.headDim};
    tables.resize(sequences);
    freeBlocks.resize(blocks);
    std::iota(freeBlocks.begin(), freeBlocks.end(), 0);
    std::shuffle(freeBlocks.begin(), freeBlocks.end(), std::mt19937(seed));
  }

  int32_t slotOf(int32_t seq, int32_t position) {
    auto& table = tables[seq];
    while (static_cast<int64_t>(table.size()) * shape.blockSize <= position) {
      table.push_back(freeBlocks.back());
      freeBlocks.pop_back();
    }
    return table[position / shape.blockSize] * static_cast<int32_t>(shape.blockSize) +
           static_cast<int32_t>(position % shape.blockSize);
  }
};

// One iteration: `chunks` of (sequence, first position, tokens), in batch order.
struct Chunk {
  int32_t seq, first, count;
};

void runIteration(Caches& c, const std::vector<Chunk>& chunks, uint32_t seed) {
  const Shape& s = c.shape;
  std::vector<int32_t> positions, seqOfToken, kvSlots, seqStarts{0};
  for (const Chunk& ch : chunks) {
    for (int32_t i = 0; i < ch.count; ++i) {
      positions.push_back(ch.first + i);
      seqOfToken.push_back(ch.seq);
      kvSlots.push_back(c.slotOf(ch.seq, ch.first + i));
    }
    seqStarts.push_back(static_cast<int32_t>(positions.size()));
  }
  const auto tokens = static_cast<int64_t>(positions.size());
  int64_t stride = 0;
  for (const Chunk& ch : chunks)
    stride = std::max<int64_t>(stride, static_cast<int64_t>(c.tables[ch.seq].size()));
  std::vector<int32_t> tables(chunks.size() * stride, -1);
  for (size_t i = 0; i < chunks.size(); ++i)
    std::copy(c.tables[chunks[i].seq].begin(), c.tables[chunks[i].seq].end(),
              tables.begin() + static_cast<int64_t>(i) * stride);

  const auto q = randomFloats(tokens * s.heads * s.headDim, seed);
  const auto k = randomFloats(tokens * s.kvHeads * s.headDim, seed + 1);
  const auto v = randomFloats(tokens * s.kvHeads * s.headDim, seed + 2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.headDim));
  std::vector<float> expected(q.size()), paged(q.size());
  attention(q.data(), k.data(), v.data(), positions.data(), seqOfToken.data(), tokens, s.heads,
            scale, c.slots, expected.data());
  PagedBatch batch{positions.data(), kvSlots.data(), tokens, static_cast<int64_t>(chunks.size()),
                   seqStarts.data(), tables.data(),  stride};
  pagedAttention(q.data(), k.data(), v.data(), batch, s.heads, scale, c.pool, paged.data());
  EXPECT_TRUE(allClose(paged, toDouble(expected), 1e-5))
      << s.heads << "/" << s.kvHeads << "x" << s.headDim << " blocks of " << s.blockSize;
  // Each token's k and v sit at its slot in the pool.
  const int64_t width = s.kvHeads * s.headDim;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < width; ++i) {
      ASSERT_EQ(c.poolK[kvSlots[t] * width + i], k[t * width + i]);
      ASSERT_EQ(c.poolV[kvSlots[t] * width + i], v[t * width + i]);
    }
}

const Shape kShapes[] = {{6, 2, 10, 4}, {8, 1, 16, 16}, {4, 4, 16, 3}, {4, 2, 8, 1}};

TEST(PagedAttention, MixedIterationsMatchTheContiguousCache) {
  for (const Shape& s : kShapes) {
    Caches c(s, 4, 40, 7);
    // Prefill chunks of different lengths, then chunks beside decode tokens, then decode only.
    runIteration(c, {{2, 0, 9}, {0, 0, 5}}, 10);
    runIteration(c, {{0, 5, 1}, {2, 9, 1}, {1, 0, 7}}, 20);
    runIteration(c, {{1, 7, 6}, {0, 6, 1}, {3, 0, 17}, {2, 10, 1}}, 30);
    for (int32_t step = 0; step < 5; ++step)
      runIteration(c, {{3, 17 + step, 1}, {0, 7 + step, 1}, {1, 13 + step, 1}, {2, 11 + step, 1}},
                   40 + static_cast<uint32_t>(step));
  }
}

TEST(PagedAttention, SequencesSharingPrefixBlocksReadThem) {
  // Two sequences whose tables start with the same block see the same keys there: what the
  // prefix cache relies on. The second sequence writes only past the shared block.
  const Shape s{4, 2, 8, 4};
  Caches c(s, 2, 16, 3);
  runIteration(c, {{0, 0, 4}}, 50);  // fills exactly one block
  c.tables[1].push_back(c.tables[0][0]);
  // Sequence 1's reference cache needs the same first four rows in its slot.
  const int64_t width = s.kvHeads * s.headDim;
  std::copy_n(c.slotK.begin(), 4 * width, c.slotK.begin() + 16 * width);
  std::copy_n(c.slotV.begin(), 4 * width, c.slotV.begin() + 16 * width);
  runIteration(c, {{1, 4, 3}, {0, 4, 1}}, 60);
  runIteration(c, {{1, 7, 1}, {0, 5, 1}}, 70);
}

TEST(PagedAttention, BlockSizeDoesNotChangeTheResult) {
  // The same sequence through blocks of 1, 5 and 32 tokens: all agree with the contiguous cache
  // and therefore with each other.
  for (int64_t blockSize : {1, 5, 32}) {
    Caches c({6, 3, 12, blockSize}, 1, 30, 11);
    runIteration(c, {{0, 0, 13}}, 80);
    runIteration(c, {{0, 13, 1}}, 81);
    runIteration(c, {{0, 14, 8}}, 82);
  }
}

}  // namespace
}  // namespace tpc::cpu
