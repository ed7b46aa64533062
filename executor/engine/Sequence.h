// A request's state inside the engine: its tokens (prompt, then what it generated), how many
// of them have their K/V in its blocks, and its block table. Preemption drops the blocks and
// the computed count but keeps the tokens, so recomputing them continues where it stopped.
#pragma once

#include <chrono>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "executor/engine/Engine.h"

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

  std::chrono::steady_clock::time_point submitted;
  double queueMs = 0;

  int64_t uncomputed() const { return static_cast<int64_t>(tokens.size()) - computed; }
};

}  // namespace tpc
