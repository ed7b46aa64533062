// Collectives between the ranks of one plan. The executor only ever needs these few, so a
// backend (local, Gloo, NCCL) is small and every failure comes back as an Error naming the rank.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "ir/Error.h"

namespace tpc {

// Collectives are issued by one thread at a time, in the same order on every rank; abort() may
// come from any thread.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Sums `count` floats across all ranks, in place.
  virtual Error allReduceSum(float* data, size_t count) = 0;
  // `out` holds world * countPerRank floats afterwards, in rank order. `in` may point at this
  // rank's own slot of `out`; otherwise the two must not overlap.
  virtual Error allGather(const float* in, size_t countPerRank, float* out) = 0;
  virtual Error barrier() = 0;
  // Rank `root`'s bytes replace every other rank's `bytes` (any length: the size travels
  // first). The engine sends each iteration's description this way. A communicator that only
  // carries device collectives (NCCL) keeps this default and the host mesh beside it does it.
  virtual Error broadcast(std::string& bytes, int root) {
    (void)bytes;
    (void)root;
    return makeError("this communicator cannot broadcast host bytes");
  }
  // Point to point, between pipeline stages: `count` floats to rank `peer`, which takes them
  // with recv(..., this rank) in the order they were sent. A send may return before the peer
  // has received; a count that differs from the sender's is an Error, not a silent mix-up.
  virtual Error send(const float* data, size_t count, int peer) {
    (void)data;
    (void)count;
    return makeError("rank ", rank(), ": this communicator cannot send to rank ", peer);
  }
  virtual Error recv(float* data, size_t count, int peer) {
    (void)data;
    (void)count;
    return makeError("rank ", rank(), ": this communicator cannot receive from rank ", peer);
  }
  // Floats a send may leave behind without waiting for the peer's recv (0: a send may wait for
  // it). The engine keeps pipeline micro-batches in flight only where a stage's hidden state
  // fits: then a stage sending forward never waits on one sending logits back.
  virtual size_t bufferedSendFloats() const { return 0; }
  // Makes any pending and every later collective fail quickly. Safe to call from another
  // thread, e.g. the control plane when it learns that a peer died.
  virtual void abort() = 0;
};

// The collectives of ranks [firstRank, firstRank + size) of `world` (one pipeline stage's
// tensor-parallel ranks), carried by world's send and recv: rank() and world() count within
// the group; send, recv and broadcast stay world-wide, named by world ranks. `world` must
// outlive it; abort() aborts `world`.
std::unique_ptr<Communicator> createGroupCommunicator(Communicator& world, int firstRank, int size);

// World of one: the collectives are no-ops or copies, so single-rank plans need no transport.
std::unique_ptr<Communicator> createLocalCommunicator();

struct GlooOptions {
  // Where the rendezvous store listens. Rank 0 serves it unless serveStore is false (the store
  // then runs elsewhere, e.g. on the head node).
  std::string storeHost = "127.0.0.1";
  int storePort = 0;
  // Bounds rendezvous and every collective: a dead or hung peer turns into an Error after it.
  std::chrono::milliseconds timeout{10000};
  // Namespaces the store keys, so several communicators can share one store.
  std::string prefix;
  // The address this rank's peers connect to (its own interface on a multi-node run).
  std::string deviceHost = "127.0.0.1";
  bool serveStore = true;
  // When >= 0, rank 0 serves the store on this already listening socket (it keeps its own
  // duplicate) instead of binding storePort: a parent that binds before forking the ranks
  // hands every rank the port with no race.
  int storeListenFd = -1;
};

// Rendezvous through the store, then a full mesh of TCP connections between the ranks.
Expected<std::unique_ptr<Communicator>> createGlooCommunicator(int rank, int world,
                                                               const GlooOptions& options);

// NCCL, in builds with the CUDA backend (elsewhere both return an error). Rank 0 makes the id;
// whoever started the ranks ships it to all of them (the rendezvous store on one node, the
// control plane across nodes). Initialisation is non-blocking and gives up after `initTimeout`;
// on any failure the communicator is aborted (ncclCommAbort), never left hanging.
Expected<std::string> newNcclUniqueId();
Expected<std::unique_ptr<Communicator>> createNcclCommunicator(
    int rank, int world, const std::string& uniqueId, int device,
    std::chrono::milliseconds initTimeout);

// The one-node CUDA communicator (executor/cuda/IpcCommunicator.h), in builds with the CUDA
// backend: `host` (shared memory between the node's ranks) carries the memory handles and the
// host-value collectives; `device` is this rank's GPU, which other ranks may share.
Expected<std::unique_ptr<Communicator>> createIpcCommunicator(std::unique_ptr<Communicator> host,
                                                              int device,
                                                              std::chrono::milliseconds timeout);

}  // namespace tpc
