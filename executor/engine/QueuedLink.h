// A rank following the engine with pipeline micro-batches in flight: a thread of its own takes
// every iteration message from the link as soon as rank 0 sends it, so rank 0's send never
// waits for a rank still busy with an earlier micro-batch. The rank's own thread takes the
// messages from the queue, in order. The thread starts with the first receive.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "executor/engine/RankRunners.h"

namespace tpc {

// Iteration messages from rank 0 to every other rank over point-to-point sends of `comm`:
// unlike a broadcast, rank 0's send returns without waiting for the receivers, as long as each
// took the previous message. A message travels as one frame of fixed size (its length, then as
// many bytes as fit) and, when longer, one more send of the rest.
class PointToPointLink final : public IterationLink {
 public:
  explicit PointToPointLink(Communicator& comm) : comm_(comm) {}
  Error send(std::string message) override;
  Expected<std::string> receive() override;

 private:
  Communicator& comm_;
  std::vector<float> frame_;
};

class QueuedLink final : public IterationLink {
 public:
  // `inner` must outlive this; `abortInner` makes a receive waiting on it fail (it ends the
  // thread when the rank stops early).
  QueuedLink(IterationLink& inner, std::function<void()> abortInner);
  ~QueuedLink() override;
  Error send(std::string message) override;
  Expected<std::string> receive() override;

 private:
  void pump();

  IterationLink& inner_;
  std::function<void()> abortInner_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::deque<std::string> messages_;
  std::string error_;  // the inner link failed: every later receive gets it
  bool ended_ = false;
  std::thread thread_;
};

}  // namespace tpc
