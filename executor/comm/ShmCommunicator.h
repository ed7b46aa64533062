// Collectives between the ranks of one host through one shared memory segment: no sockets, no
// kernel on the fast path. The segment is mapped before the ranks are forked, so every rank
// inherits it; a rank waits for its peers by spinning briefly, then sleeping on a futex.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "executor/comm/Communicator.h"
#include "ir/Error.h"

namespace tpc {

// The shared mapping: one flag word per rank, and two data slots per rank (collectives alternate
// between them, so a rank may write its next contribution while slow peers still read the last).
class ShmSegment {
 public:
  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  // Maps a segment for `world` ranks, each slot `slotFloats` floats; larger collectives go
  // through it in chunks. Call before forking the ranks.
  static Expected<std::shared_ptr<ShmSegment>> create(int world, size_t slotFloats = 1 << 18);

  int world() const { return world_; }
  size_t slotFloats() const { return slotFloats_; }
  void* base() const { return base_; }

 private:
  ShmSegment(void* base, size_t bytes, int world, size_t slotFloats)
      : base_(base), bytes_(bytes), world_(world), slotFloats_(slotFloats) {}
  void* base_;
  size_t bytes_;
  int world_;
  size_t slotFloats_;
};

struct ShmOptions {
  // Bounds the rendezvous and every collective: a peer that dies, stops or falls silent for this
  // long turns into an Error naming it.
  std::chrono::milliseconds timeout{10000};
  // How long a waiting rank spins before it sleeps. Negative: chosen from the host's cores
  // (spinning only helps while every rank has a core of its own).
  std::chrono::microseconds spin{-1};
};

// Rank `rank`'s communicator over `segment`; every rank of the segment's world must create one
// (the call waits for all of them, at most options.timeout).
Expected<std::unique_ptr<Communicator>> createShmCommunicator(int rank,
                                                              std::shared_ptr<ShmSegment> segment,
                                                              const ShmOptions& options = {});

}  // namespace tpc
