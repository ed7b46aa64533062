// Automatic prefix caching: every full KV block is named by a hash chain of its tokens (the
// hash of the previous block and its own tokens), so a block's name covers the whole prefix up
// to it. A new sequence whose first blocks' names are known reuses those blocks and computes
// only the rest. Cached blocks stay in the pool until it needs them (KvBlockPool evicts the
// least recently released).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "executor/engine/KvBlockPool.h"

namespace tpc {

// What a sequence mixes into its blocks' names besides their tokens: llava's image digest, for
// every block that ends after position `from` (the first image token). Image tokens are the same
// ids whatever the image, so without it two images would share their blocks.
struct PrefixSalt {
  uint64_t digest = 0;
  int64_t from = -1;  // -1: no salt
  uint64_t forBlock(int64_t block, int64_t blockSize) const {
    return from >= 0 && (block + 1) * blockSize > from ? digest : 0;
  }
};

class PrefixCache {
 public:
  PrefixCache(KvBlockPool& pool, int64_t blockSize);

  static uint64_t chainHash(uint64_t previous, const int32_t* tokens, int64_t count,
                            uint64_t salt = 0);

  // The cached blocks that hold tokens[0, k * blockSize) for the largest k <= maxBlocks, each
  // retained for the caller; their chain hashes go to `hashes`.
  std::vector<int32_t> match(const std::vector<int32_t>& tokens, int64_t maxBlocks,
                             std::vector<uint64_t>& hashes, const PrefixSalt& salt = {});
  // Names `block`, which holds the blockSize tokens at `tokens` after the prefix `hash`'s
  // chain ends with. A name already known keeps its block (the new one is freed as usual).
  void insert(uint64_t hash, const int32_t* tokens, int32_t block, uint64_t salt = 0);
  int64_t size() const { return static_cast<int64_t>(byHash_.size()); }

 private:
  struct Entry {
    int32_t block;
    std::vector<int32_t> tokens;  // compared on a hit: a hash collision never reuses a block
    uint64_t salt = 0;            // compared too
  };
  KvBlockPool& pool_;
  int64_t blockSize_;
  std::unordered_map<uint64_t, Entry> byHash_;
  std::unordered_map<int32_t, uint64_t> hashOfBlock_;
};

}  // namespace tpc
