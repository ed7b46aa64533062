#include "executor/PagedStepLayout.h"

#include <algorithm>
#include <set>

namespace tpc {
namespace {

Error checkPosition(const StepInput& in, int64_t t, const KvPoolShape& pool) {
  if (in.positions[t] < 0 || in.positions[t] >= pool.maxContext)
    return makeError("position ", in.positions[t], " of token ", t,
                     " is outside the plan's max context of ", pool.maxContext);
  return Error::success();
}

Error layoutSlots(const StepInput& in, const KvPoolShape& pool, PagedStepLayout& out) {
  std::vector<int32_t> rowOfSlot(static_cast<size_t>(pool.maxBatch), -1);
  std::vector<int64_t> lastBlock;
  for (int64_t t = 0; t < in.tokens; ++t) {
    const int32_t slot = in.slots[t];
    if (slot < 0 || slot >= pool.maxBatch)
      return makeError("sequence slot ", slot, " is outside the plan's max batch of ",
                       pool.maxBatch);
    if (Error e = checkPosition(in, t, pool)) return e;
    const int64_t block = slot * pool.blocksPerSequence + in.positions[t] / pool.blockSize;
    if (block >= pool.blocks)
      return makeError("slot ", slot, " at position ", in.positions[t], " needs KV block ", block,
                       " but the pool holds ", pool.blocks, " blocks of ", pool.blockSize,
                       " tokens");
    int32_t& row = rowOfSlot[static_cast<size_t>(slot)];
    if (row < 0) {
      row = static_cast<int32_t>(out.rows++);
      lastBlock.push_back(0);
      out.table.resize(static_cast<size_t>(out.rows * pool.blocksPerSequence), 0);
    }
    lastBlock[static_cast<size_t>(row)] =
        std::max(lastBlock[static_cast<size_t>(row)], block - slot * pool.blocksPerSequence);
    out.rowOf.push_back(row);
  }
  for (int32_t slot = 0; slot < pool.maxBatch; ++slot) {
    const int32_t row = rowOfSlot[static_cast<size_t>(slot)];
    if (row < 0) continue;
    for (int64_t b = 0; b <= lastBlock[static_cast<size_t>(row)]; ++b)
      out.table[static_cast<size_t>(row * pool.blocksPerSequence + b)] =
          static_cast<int32_t>(slot * pool.blocksPerSequence + b);
  }
  return Error::success();
}

Error layoutSequences(const StepInput& in, const KvPoolShape& pool, PagedStepLayout& out) {
  if (in.sequences < 1 || in.sequences > pool.maxBatch)
    return makeError("a step of ", in.sequences, " sequences is outside the plan's max batch of ",
                     pool.maxBatch);
  if (!in.seqStarts || in.seqStarts[0] != 0 || in.seqStarts[in.sequences] != in.tokens)
    return makeError("the sequences' token ranges do not cover the step's ", in.tokens, " tokens");
  out.rows = in.sequences;
  out.table.assign(static_cast<size_t>(out.rows * pool.blocksPerSequence), 0);
  for (int64_t s = 0; s < in.sequences; ++s) {
    const int64_t begin = in.seqStarts[s], end = in.seqStarts[s + 1];
    if (end <= begin) return makeError("sequence ", s, " of the step has no tokens");
    for (int64_t t = begin; t < end; ++t) {
      if (Error e = checkPosition(in, t, pool)) return e;
      if (t > begin && in.positions[t] != in.positions[t - 1] + 1)
        return makeError("token ", t, " of sequence ", s, " is at position ", in.positions[t],
                         " after position ", in.positions[t - 1]);
      out.rowOf.push_back(static_cast<int32_t>(s));
    }
    const int64_t needed = in.positions[end - 1] / pool.blockSize + 1;
    if (needed > in.blockTableStride)
      return makeError("sequence ", s, " reaches position ", in.positions[end - 1], ", block ",
                       needed - 1, " of its table, past the table stride of ", in.blockTableStride);
    const int32_t* blocks = in.blockTables + s * in.blockTableStride;
    for (int64_t b = 0; b < needed; ++b) {
      if (blocks[b] < 0 || blocks[b] >= pool.blocks)
        return makeError("block ", blocks[b], " in the table of sequence ", s,
                         " is outside the KV pool of ", pool.blocks, " blocks");
      out.table[static_cast<size_t>(s * pool.blocksPerSequence + b)] = blocks[b];
    }
    if (in.kvSlots)
      for (int64_t t = begin; t < end; ++t) {
        const int64_t p = in.positions[t];
        const int64_t expected =
            int64_t{blocks[p / pool.blockSize]} * pool.blockSize + p % pool.blockSize;
        if (in.kvSlots[t] != expected)
          return makeError("the KV slot ", in.kvSlots[t], " of token ", t, " is not slot ",
                           expected, " that its block table gives position ", p);
      }
  }
  return Error::success();
}

}  // namespace

Expected<PagedStepLayout> layoutPagedStep(const StepInput& in, const KvPoolShape& pool) {
  if (in.tokens < 1) return makeError("a forward step needs at least one token");
  PagedStepLayout out;
  out.rowOf.reserve(static_cast<size_t>(in.tokens));
  if (Error e = in.paged() ? layoutSequences(in, pool, out) : layoutSlots(in, pool, out)) return e;
  if (!in.logitRows && !in.paged()) {
    out.logitRows.resize(static_cast<size_t>(in.tokens));
    for (int64_t t = 0; t < in.tokens; ++t) out.logitRows[static_cast<size_t>(t)] = int32_t(t);
    return out;
  }
  if (!in.logitRows && in.logitRowCount > 0)
    return makeError("the step names ", in.logitRowCount, " logit rows but gives none");
  for (int64_t i = 0; i < in.logitRowCount; ++i) {
    const int32_t row = in.logitRows[i];
    if (row < 0 || row >= in.tokens || (i > 0 && row <= in.logitRows[i - 1]))
      return makeError("logit row ", row, " is not an ascending row of the step's ", in.tokens,
                       " tokens");
    out.logitRows.push_back(row);
  }
  out.allRowsSample = in.logitRowCount == in.tokens;  // ascending and in range: 0 .. tokens - 1
  return out;
}

std::vector<AttentionPiece> attentionPieces(const PagedStepLayout& layout, const int32_t* positions,
                                            int64_t first, int64_t count) {
  std::vector<AttentionPiece> pieces;
  for (int64_t t = first; t < first + count; ++t) {
    const int32_t row = layout.rowOf[static_cast<size_t>(t)];
    if (!pieces.empty()) {
      AttentionPiece& last = pieces.back();
      if (last.row == row && positions[t] == last.startPosition + last.count) {
        ++last.count;
        continue;
      }
    }
    pieces.push_back({t, 1, positions[t], row});
  }
  return pieces;
}

bool isDecodeStep(const std::vector<AttentionPiece>& pieces) {
  std::set<int32_t> rows;
  for (const AttentionPiece& p : pieces)
    if (p.count != 1 || !rows.insert(p.row).second) return false;
  return true;
}

std::vector<std::pair<size_t, size_t>> launchGroups(const std::vector<AttentionPiece>& pieces) {
  std::vector<std::pair<size_t, size_t>> groups;
  std::set<int32_t> rows;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const bool single = pieces[i].count == 1;
    const bool extends = single && !groups.empty() && groups.back().second == i &&
                         pieces[groups.back().first].count == 1 && !rows.count(pieces[i].row);
    if (extends) {
      groups.back().second = i + 1;
    } else {
      groups.emplace_back(i, i + 1);
      rows.clear();
    }
    rows.insert(pieces[i].row);
  }
  return groups;
}

}  // namespace tpc
