// One iteration as the scheduler hands it to every rank: the paged StepInput's arrays and how
// each logit row picks its token. Rank 0 sends it to the other ranks as one message (a
// broadcast over the host mesh), and they run exactly it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "executor/Backend.h"
#include "ir/Error.h"

namespace tpc {

struct Iteration {
  enum class Kind : int32_t {
    Forward,  // run the step; logits come back to rank 0 (host sampling)
    Sample,   // run the step and pick each logit row's token with `sampling` (device sampling)
    Idle,     // nothing to run: keeps the ranks' heartbeats and the collectives' timeouts fed
    Stop,     // the engine is done: every rank returns
  };
  Kind kind = Kind::Idle;
  std::vector<int32_t> tokenIds, positions, kvSlots, seqStarts, blockTables, logitRows;
  int64_t blockTableStride = 0;
  std::vector<RowSampling> sampling;  // one per logit row (Sample)
  // Pipeline micro-batches: the rank first finishes this many of its oldest in-flight steps
  // (as rank 0 did since its last message), then, when `inFlight`, only begins this one
  // (Backend::beginForward) and finishes it when a later message says so.
  int32_t finishFirst = 0;
  bool inFlight = false;

  // llava: the images this iteration's chunks reach. Every rank runs each through its part of
  // the (tensor-parallel) tower before the step; image i has imageRowCounts[i] rows of patches,
  // all concatenated in imagePatches. A prompt whose image tokens fall in several chunks sends
  // its image with each of them.
  std::vector<int32_t> imageRowCounts;
  std::vector<float> imagePatches;
  // With images, one per token: the row of the images' concatenated features that replaces the
  // token's embedding, or -1 where the text embedding stays.
  std::vector<int32_t> imageFeatureRows;

  // A view of the arrays, valid while this iteration lives.
  StepInput stepInput() const;
  // Every field, little-endian as in memory: both ends are the same binary on the same kind of
  // host, so the arrays travel as they are.
  std::string encode() const;
  static Expected<Iteration> decode(const std::string& bytes);
  // Whether encoded `bytes` are a Stop, without decoding the rest (the node agents look).
  static bool isStop(const std::string& bytes);
};

}  // namespace tpc
