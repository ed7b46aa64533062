#include "executor/engine/Scheduler.h"

#include <algorithm>

namespace tpc {

Scheduler::Scheduler(const SchedulerConfig& config, KvBlockPool& pool, PrefixCache* prefix)
    : config_(config), pool_(pool), prefix_(prefix) {}

void Scheduler::freeBlocks(Sequence& seq) {
  for (int32_t b : seq.blocks) pool_.release(b);
  seq.blocks.clear();
  seq.blockHashes.clear();
  seq.computed = 0;
}

void Scheduler::remove(Sequence* seq) {
  freeBlocks(*seq);
  for (auto* list : {&running_, &waiting_}) {
    auto it = std::find(list->begin(), list->end(), seq);
    if (it != list->end()) list->erase(it);
  }
}

bool Scheduler::reserve(Sequence& seq, int64_t tokens) {
  const int64_t needed = blocksFor(tokens) - static_cast<int64_t>(seq.blocks.size());
  if (needed <= 0) return true;
  if (pool_.available() < needed) return false;
  for (int64_t i = 0; i < needed; ++i) seq.blocks.push_back(*pool_.allocate());
  return true;
}

void Scheduler::preempt(Sequence& seq) {
  freeBlocks(seq);
  ++counters_.preemptions;
  waiting_.push_front(&seq);
}

void Scheduler::admitFromCache(Sequence& seq) {
  if (!prefix_ || seq.computed != 0) return;
  // At least the last token is computed: its logits give the next token.
  const int64_t maxBlocks = (static_cast<int64_t>(seq.tokens.size()) - 1) / config_.blockSize;
  seq.blocks = prefix_->match(seq.tokens, maxBlocks, seq.blockHashes, seq.salt);
  seq.computed = static_cast<int64_t>(seq.blocks.size()) * config_.blockSize;
}

// An iteration that runs any of an image's tokens carries the image's patches (every rank runs
// the tower): past the iteration's image budget, the chunk stops before the image.
int64_t Scheduler::fitImages(const Sequence& seq, int64_t count, int64_t& imageBytesLeft) const {
  if (config_.maxImageBytes <= 0 || !seq.coversImage(seq.computed, count)) return count;
  if (seq.imageBytes <= imageBytesLeft) {
    imageBytesLeft -= seq.imageBytes;
    return count;
  }
  return std::max<int64_t>(0, seq.imagePositions.front() - seq.computed);
}

std::vector<ScheduledChunk> Scheduler::schedule(const ScheduleLimits& limits) {
  std::vector<ScheduledChunk> chunks;
  const int64_t maxSeqs = std::min(limits.maxSeqs, config_.maxSeqs);
  int64_t budget = std::min(limits.maxTokens, config_.maxBatchedTokens);
  int64_t imageBytesLeft = config_.maxImageBytes;
  bool preempted = false;
  for (size_t i = 0; i < running_.size();) {
    if (static_cast<int64_t>(chunks.size()) >= maxSeqs || budget <= 0) break;
    Sequence* seq = running_[i];
    if (seq->inFlight) {
      ++i;
      continue;
    }
    const int64_t count = fitImages(*seq, std::min(seq->uncomputed(), budget), imageBytesLeft);
    if (count == 0) {  // its image waits for an iteration with room (the oldest always has)
      ++i;
      continue;
    }
    bool selfPreempted = false;
    while (!reserve(*seq, seq->computed + count)) {
      // The newest running sequence not in flight: `seq` itself at the latest.
      size_t v = running_.size() - 1;
      while (running_[v]->inFlight) --v;
      Sequence* victim = running_[v];
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(v));
      preempt(*victim);
      preempted = true;
      if (victim == seq) {
        selfPreempted = true;
        break;
      }
    }
    if (selfPreempted) break;
    chunks.push_back({seq, seq->computed, count,
                      seq->computed + count == static_cast<int64_t>(seq->tokens.size())});
    budget -= count;
    ++i;
  }
  // A preemption means the pool is short: admitting more now would only preempt again.
  while (!preempted && !waiting_.empty() && static_cast<int64_t>(chunks.size()) < maxSeqs &&
         budget > 0) {
    Sequence* seq = waiting_.front();
    admitFromCache(*seq);
    const int64_t hit = seq->computed;
    int64_t left = imageBytesLeft;
    const int64_t count = fitImages(*seq, std::min(seq->uncomputed(), budget), left);
    if (count == 0 || !reserve(*seq, seq->computed + count)) {
      freeBlocks(*seq);  // gives back the prefix blocks it matched
      break;
    }
    counters_.prefixQueriedTokens += static_cast<int64_t>(seq->tokens.size());
    counters_.prefixHitTokens += hit;
    if (!seq->admittedOnce) seq->cachedPromptTokens = std::min(hit, seq->promptLength);
    seq->admittedOnce = true;
    imageBytesLeft = left;
    waiting_.pop_front();
    running_.push_back(seq);
    chunks.push_back({seq, seq->computed, count,
                      seq->computed + count == static_cast<int64_t>(seq->tokens.size())});
    budget -= count;
  }
  return chunks;
}

void Scheduler::completed(const std::vector<ScheduledChunk>& chunks) {
  for (const ScheduledChunk& c : chunks) {
    Sequence& seq = *c.seq;
    seq.computed = c.start + c.count;
    if (!prefix_) continue;
    const int64_t bs = config_.blockSize;
    for (auto b = static_cast<int64_t>(seq.blockHashes.size()); (b + 1) * bs <= seq.computed; ++b) {
      const uint64_t previous = b == 0 ? 0 : seq.blockHashes.back();
      const int32_t* first = seq.tokens.data() + b * bs;
      const uint64_t salt = seq.salt.forBlock(b, bs);
      const uint64_t hash = PrefixCache::chainHash(previous, first, bs, salt);
      seq.blockHashes.push_back(hash);
      prefix_->insert(hash, first, seq.blocks[static_cast<size_t>(b)], salt);
    }
  }
}

}  // namespace tpc
