// A request's state inside the engine: its tokens (prompt, then what it generated), how many
// of them have their K/V in its blocks, and its block table. Preemption drops the blocks and
// the computed count but keeps the tokens, so recomputing them continues where it stopped.
#pragma once

#include <chrono>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "executor/engine/Engine.h"
#include "executor/engine/PrefixCache.h"

namespace tpc {

struct Sequence {
  EngineRequestId id = 0;
  EngineRequest request;
  EngineEventSink sink;
  uint64_t seed = 0;

  std::vector<int32_t> tokens;  // prompt, then the generated tokens
  int64_t promptLength = 0;
  int64_t generated = 0;
  std::unordered_map<int32_t, int32_t> generatedCounts;  // for presence/frequency penalties

  int64_t computed = 0;               // tokens whose K/V are in `blocks`
  std::vector<int32_t> blocks;        // the block table, in position order
  std::vector<uint64_t> blockHashes;  // chain hashes of the leading full blocks
  int64_t cachedPromptTokens = 0;     // prompt tokens the prefix cache gave at first admission
  bool admittedOnce = false;
  // In a pipeline micro-batch still in flight: not scheduled again, never preempted, and a
  // cancel waits for the micro-batch to come back.
  bool inFlight = false;
  bool cancelled = false;

  // llava: the prompt positions of the image tokens (ascending; the k-th takes the image's
  // k-th feature row), the image's digest, and the salt every block at or after the first of
  // them mixes into its prefix-cache name, so that blocks are never shared across images.
  std::vector<int32_t> imagePositions;
  PrefixSalt salt;
  int64_t imageBytes = 0;  // the patches' bytes an iteration carries for this sequence

  std::chrono::steady_clock::time_point submitted;
  double queueMs = 0;

  int64_t uncomputed() const { return static_cast<int64_t>(tokens.size()) - computed; }
  bool hasImage() const { return !imagePositions.empty(); }
  // Whether tokens [start, start + count) hold an image token.
  bool coversImage(int64_t start, int64_t count) const {
    return hasImage() && start < imagePositions.back() + 1 &&
           start + count > imagePositions.front();
  }
};

}  // namespace tpc
