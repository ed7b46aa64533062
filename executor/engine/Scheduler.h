// The one place that decides what every rank computes. Each iteration takes the running
// sequences first (oldest first: a decode token each, or the next chunk of a prompt being
// prefilled), then admits waiting ones first come, first served, under a token budget and a
// sequence limit. When blocks run out the newest running sequence is preempted: its blocks are
// freed and it waits again, ahead of the others, to be recomputed with the tokens it has.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "executor/engine/KvBlockPool.h"
#include "executor/engine/PrefixCache.h"
#include "executor/engine/Sequence.h"

namespace tpc {

struct SchedulerConfig {
  int64_t maxSeqs = 8;
  int64_t maxBatchedTokens = 2048;
  int64_t blockSize = 16;
  // Image patch bytes one iteration may carry (0: no limit): a chunk that would reach an image
  // past it stops before the image's first token and takes the image in a later iteration.
  int64_t maxImageBytes = 0;
};

// Tokens [start, start + count) of `seq` in this iteration; `samples` when they reach its last
// token, so the iteration produces its next one.
struct ScheduledChunk {
  Sequence* seq = nullptr;
  int64_t start = 0, count = 0;
  bool samples = false;
};

// One schedule() call's own limits, within the config's: a pipeline micro-batch takes its
// share of the sequences, and fewer tokens while another micro-batch is in flight.
struct ScheduleLimits {
  int64_t maxSeqs = 0, maxTokens = 0;
};

struct SchedulerCounters {
  int64_t preemptions = 0;
  int64_t prefixQueriedTokens = 0, prefixHitTokens = 0;
};

class Scheduler {
 public:
  // `prefix` is null when prefix caching is off.
  Scheduler(const SchedulerConfig& config, KvBlockPool& pool, PrefixCache* prefix);

  void add(Sequence* seq) { waiting_.push_back(seq); }
  // A finished or cancelled sequence leaves, its blocks released.
  void remove(Sequence* seq);
  std::vector<ScheduledChunk> schedule() {
    return schedule({config_.maxSeqs, config_.maxBatchedTokens});
  }
  // Sequences in flight are skipped and never preempted.
  std::vector<ScheduledChunk> schedule(const ScheduleLimits& limits);
  // After the iteration ran: its chunks' K/V are in their blocks; full blocks get named for
  // the prefix cache. Call before appending the sampled tokens.
  void completed(const std::vector<ScheduledChunk>& chunks);

  const std::deque<Sequence*>& running() const { return running_; }
  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const SchedulerCounters& counters() const { return counters_; }
  const SchedulerConfig& config() const { return config_; }
  bool idle() const { return running_.empty() && waiting_.empty(); }
  // Blocks a sequence of `tokens` tokens holds.
  int64_t blocksFor(int64_t tokens) const {
    return (tokens + config_.blockSize - 1) / config_.blockSize;
  }

 private:
  bool reserve(Sequence& seq, int64_t tokens);
  void freeBlocks(Sequence& seq);
  void preempt(Sequence& seq);
  void admitFromCache(Sequence& seq);
  int64_t fitImages(const Sequence& seq, int64_t count, int64_t& imageBytesLeft) const;

  SchedulerConfig config_;
  KvBlockPool& pool_;
  PrefixCache* prefix_;
  std::deque<Sequence*> running_, waiting_;
  SchedulerCounters counters_;
};

}  // namespace tpc
