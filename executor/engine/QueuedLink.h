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

#include "executor/engine/RankRunners.h"

namespace tpc {

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
