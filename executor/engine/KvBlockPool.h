// The paged KV cache's blocks as the scheduler sees them: which are free, which are held (and
// by how many sequences: a cached prefix block can be shared), and which are free but still
// named by the prefix cache, reused least recently released first. The KV data itself lives in
// the backends; every rank's pool has the same blocks, so one pool on rank 0 decides for all.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <optional>
#include <vector>

namespace tpc {

class KvBlockPool {
 public:
  explicit KvBlockPool(int64_t blocks);

  int64_t total() const { return static_cast<int64_t>(refs_.size()); }
  // Blocks allocate() can hand out now: never-cached free ones and evictable cached ones.
  int64_t available() const { return static_cast<int64_t>(free_.size() + lru_.size()); }
  int64_t used() const { return total() - available(); }

  // A block held once; a free uncached block if there is one, else the cached block released
  // longest ago (the eviction handler forgets it first). nullopt when every block is held.
  std::optional<int32_t> allocate();
  // One more holder (a prefix-cache hit); an evictable block stops being evictable.
  void retain(int32_t block);
  // One holder less; with none left the block is free, or evictable if it is cached.
  void release(int32_t block);
  int32_t refCount(int32_t block) const { return refs_[static_cast<size_t>(block)]; }

  // The prefix cache names a held block (its tokens are complete and will not change).
  void markCached(int32_t block) { cached_[static_cast<size_t>(block)] = true; }
  bool isCached(int32_t block) const { return cached_[static_cast<size_t>(block)]; }
  // Called with a cached block just before allocate() reuses it.
  void onEvict(std::function<void(int32_t)> handler) { onEvict_ = std::move(handler); }

 private:
  std::vector<int32_t> refs_;
  std::vector<bool> cached_;
  std::deque<int32_t> free_;
  std::list<int32_t> lru_;  // evictable cached blocks, least recently released first
  std::vector<std::list<int32_t>::iterator> lruPosition_;
  std::vector<bool> inLru_;
  std::function<void(int32_t)> onEvict_;
};

}  // namespace tpc
