// The two sides of an iteration across ranks: rank 0 sends each iteration's description to the
// other ranks (one broadcast over the host mesh) and runs it; every other rank receives and
// runs exactly what it is sent, in order, until the engine stops. With one rank the broadcast
// is skipped.
#pragma once

#include <functional>

#include "executor/Backend.h"
#include "executor/engine/EngineCore.h"

namespace tpc {

class LeaderRunner final : public IterationRunner {
 public:
  // `control` carries the iteration messages; `heartbeat` runs after each iteration.
  LeaderRunner(Backend& backend, Communicator& control, int64_t vocab,
               std::function<void()> heartbeat);
  Expected<const float*> forward(const Iteration& it) override;
  Expected<std::vector<int32_t>> sample(const Iteration& it) override;
  Error idle() override;
  // Tells the other ranks to return.
  Error stop();

 private:
  Error send(const Iteration& it);
  Backend& backend_;
  Communicator& control_;
  int64_t vocab_;
  std::function<void()> heartbeat_;
};

// Every rank but 0: runs the iterations rank 0 sends until it sends Stop.
Error followIterations(Backend& backend, Communicator& control, int64_t vocab,
                       const std::function<void()>& heartbeat);

}  // namespace tpc
