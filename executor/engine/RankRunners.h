// The two sides of an iteration across ranks: rank 0 sends each iteration's description to the
// other ranks (one message per iteration, through an IterationLink) and runs it; every other
// rank receives and runs exactly what it is sent, in order, until the engine stops.
#pragma once

#include <functional>
#include <string>

#include "executor/Backend.h"
#include "executor/comm/Communicator.h"
#include "executor/engine/EngineCore.h"

namespace tpc {

// How iteration messages travel from rank 0 to every other rank, in order: a broadcast over
// the host's mesh on one node, or through the node agents across nodes.
class IterationLink {
 public:
  virtual ~IterationLink() = default;
  // Rank 0: one message to every other rank.
  virtual Error send(std::string message) = 0;
  // Every other rank: the next message.
  virtual Expected<std::string> receive() = 0;
};

// A broadcast from rank 0 over `mesh` (nothing to do with one rank).
class MeshLink final : public IterationLink {
 public:
  explicit MeshLink(Communicator& mesh) : mesh_(mesh) {}
  Error send(std::string message) override;
  Expected<std::string> receive() override;

 private:
  Communicator& mesh_;
};

class LeaderRunner final : public IterationRunner {
 public:
  // `link` carries the iteration messages; `heartbeat` runs after each iteration. `hidden`:
  // the text model's width (the row width of image features). `inFlightTokens`: see
  // IterationRunner::inFlightTokens.
  LeaderRunner(Backend& backend, IterationLink& link, int64_t vocab, int64_t hidden,
               std::function<void()> heartbeat, int64_t inFlightTokens = 0);
  Expected<const float*> forward(const Iteration& it) override;
  Expected<std::vector<int32_t>> sample(const Iteration& it) override;
  Error begin(const Iteration& it) override;
  Expected<const float*> finish(const Iteration& it) override;
  int64_t inFlightTokens() const override { return inFlightTokens_; }
  Error idle() override;
  // Tells the other ranks to return.
  Error stop();

 private:
  Error send(Iteration it);
  Backend& backend_;
  IterationLink& link_;
  int64_t vocab_, hidden_;
  std::function<void()> heartbeat_;
  int64_t inFlightTokens_;
  int32_t finished_ = 0;  // steps finished since the last message
};

// The most tokens a micro-batch may have while another is in flight: its hidden state, at
// every stage boundary, must fit what `comm` buffers for a send (0: none may).
int64_t inFlightTokenLimit(const plan::Plan& plan, const Communicator& comm);

// Every rank but 0: runs the iterations rank 0 sends until it sends Stop.
Error followIterations(Backend& backend, IterationLink& link, int64_t vocab, int64_t hidden,
                       const std::function<void()>& heartbeat);

}  // namespace tpc
