#include "executor/engine/KvBlockPool.h"

#include <cassert>

namespace tpc {

KvBlockPool::KvBlockPool(int64_t blocks)
    : refs_(static_cast<size_t>(blocks), 0),
      cached_(static_cast<size_t>(blocks), false),
      lruPosition_(static_cast<size_t>(blocks)),
      inLru_(static_cast<size_t>(blocks), false) {
  for (int64_t b = 0; b < blocks; ++b) free_.push_back(static_cast<int32_t>(b));
}

std::optional<int32_t> KvBlockPool::allocate() {
  int32_t block = 0;
  if (!free_.empty()) {
    block = free_.front();
    free_.pop_front();
  } else if (!lru_.empty()) {
    block = lru_.front();
    lru_.pop_front();
    inLru_[static_cast<size_t>(block)] = false;
    if (onEvict_) onEvict_(block);
    cached_[static_cast<size_t>(block)] = false;
  } else {
    return std::nullopt;
  }
  refs_[static_cast<size_t>(block)] = 1;
  return block;
}

void KvBlockPool::retain(int32_t block) {
  const auto b = static_cast<size_t>(block);
  if (inLru_[b]) {
    lru_.erase(lruPosition_[b]);
    inLru_[b] = false;
  }
  assert(refs_[b] > 0 || cached_[b]);
  ++refs_[b];
}

void KvBlockPool::release(int32_t block) {
  const auto b = static_cast<size_t>(block);
  assert(refs_[b] > 0);
  if (--refs_[b] > 0) return;
  if (cached_[b]) {
    lruPosition_[b] = lru_.insert(lru_.end(), block);
    inLru_[b] = true;
  } else {
    free_.push_back(block);
  }
}

}  // namespace tpc
