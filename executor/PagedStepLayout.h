// How a device backend with a paged KV pool lays out one StepInput, in either form: each token's
// row of the step's block table, the table rows themselves at a fixed stride, the logit rows, and
// the attention pieces of a range of tokens (runs of one sequence at consecutive positions), from
// which it picks its kernels. The slot form maps slot s to the contiguous blocks
// [s * blocksPerSequence, (s + 1) * blocksPerSequence), so only the paged pool exists.
// Plain host code (no CUDA), so it is tested on any machine.
#pragma once

#include <cstdint>
#include <vector>

#include "executor/Backend.h"
#include "ir/Error.h"

namespace tpc {

struct KvPoolShape {
  int64_t blockSize = 16;
  int64_t blocks = 0;             // usable by sequences, ids [0, blocks)
  int64_t blocksPerSequence = 0;  // the table stride: ceil(maxContext / blockSize)
  int64_t maxContext = 0;         // the plan's
  int64_t maxBatch = 0;           // the most sequences (slots) in one step
};

struct PagedStepLayout {
  std::vector<int32_t> rowOf;  // [tokens]: the token's row of `table`
  std::vector<int32_t> table;  // [rows][blocksPerSequence]; entries past a row's last block are 0
  int64_t rows = 0;
  // The rows whose logits are wanted, ascending: the input's logit rows, or every token's when
  // a slot-form input names none (a paged input that names none wants none).
  std::vector<int32_t> logitRows;
  bool allRowsSample = true;  // logitRows is 0 .. tokens - 1
};

// Checks the input against the pool (a clear error naming the token, sequence or slot) and lays
// it out. Slot form: table rows in order of each slot's first token.
Expected<PagedStepLayout> layoutPagedStep(const StepInput& in, const KvPoolShape& pool);

// Tokens [first, first + count) of one table row at consecutive positions from startPosition.
struct AttentionPiece {
  int64_t first = 0, count = 0, startPosition = 0;
  int32_t row = 0;
};
std::vector<AttentionPiece> attentionPieces(const PagedStepLayout& layout, const int32_t* positions,
                                            int64_t first, int64_t count);

// Whether every piece is a single token of a different row: a decode step, one launch of the
// decode kernel with no token reading another's new row.
bool isDecodeStep(const std::vector<AttentionPiece>& pieces);

// Consecutive single-token pieces of distinct rows, as [begin, end) indexes into `pieces`: each
// run is one decode launch in a mixed step. Pieces of several tokens stand alone.
std::vector<std::pair<size_t, size_t>> launchGroups(const std::vector<AttentionPiece>& pieces);

}  // namespace tpc
