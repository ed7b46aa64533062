#include "executor/engine/PrefixCache.h"

#include <algorithm>

namespace tpc {
namespace {

uint64_t mix(uint64_t z) {  // splitmix64's finaliser: every input bit moves every output bit
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

PrefixCache::PrefixCache(KvBlockPool& pool, int64_t blockSize)
    : pool_(pool), blockSize_(blockSize) {
  pool_.onEvict([this](int32_t block) {
    auto it = hashOfBlock_.find(block);
    if (it == hashOfBlock_.end()) return;
    byHash_.erase(it->second);
    hashOfBlock_.erase(it);
  });
}

uint64_t PrefixCache::chainHash(uint64_t previous, const int32_t* tokens, int64_t count,
                                uint64_t salt) {
  uint64_t h = mix(previous + 0x9e3779b97f4a7c15ULL);
  if (salt) h = mix(h ^ salt);
  for (int64_t i = 0; i < count; ++i)
    h = mix(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) + 0x9e3779b97f4a7c15ULL));
  return h;
}

std::vector<int32_t> PrefixCache::match(const std::vector<int32_t>& tokens, int64_t maxBlocks,
                                        std::vector<uint64_t>& hashes, const PrefixSalt& salt) {
  std::vector<int32_t> blocks;
  uint64_t hash = 0;
  for (int64_t b = 0; b < maxBlocks && (b + 1) * blockSize_ <= static_cast<int64_t>(tokens.size());
       ++b) {
    const int32_t* first = tokens.data() + b * blockSize_;
    const uint64_t blockSalt = salt.forBlock(b, blockSize_);
    hash = chainHash(hash, first, blockSize_, blockSalt);
    auto it = byHash_.find(hash);
    if (it == byHash_.end() || it->second.salt != blockSalt ||
        !std::equal(first, first + blockSize_, it->second.tokens.begin()))
      break;
    pool_.retain(it->second.block);
    blocks.push_back(it->second.block);
    hashes.push_back(hash);
  }
  return blocks;
}

void PrefixCache::insert(uint64_t hash, const int32_t* tokens, int32_t block, uint64_t salt) {
  if (byHash_.count(hash) || hashOfBlock_.count(block)) return;
  byHash_.emplace(hash, Entry{block, std::vector<int32_t>(tokens, tokens + blockSize_), salt});
  hashOfBlock_.emplace(block, hash);
  pool_.markCached(block);
}

}  // namespace tpc
