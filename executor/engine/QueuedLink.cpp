#include "executor/engine/QueuedLink.h"

#include "executor/engine/Iteration.h"

namespace tpc {

QueuedLink::QueuedLink(IterationLink& inner, std::function<void()> abortInner)
    : inner_(inner), abortInner_(std::move(abortInner)) {}

QueuedLink::~QueuedLink() {
  if (!thread_.joinable()) return;
  bool running = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    running = !ended_;
  }
  if (running && abortInner_) abortInner_();
  thread_.join();
}

Error QueuedLink::send(std::string message) { return inner_.send(std::move(message)); }

void QueuedLink::pump() {
  while (true) {
    Expected<std::string> message = inner_.receive();
    std::lock_guard<std::mutex> lock(mutex_);
    if (!message) {
      error_ = message.errorMessage();
      ended_ = true;
      arrived_.notify_all();
      return;
    }
    const bool stop = Iteration::isStop(*message);
    messages_.push_back(std::move(*message));
    ended_ = stop;
    arrived_.notify_all();
    if (stop) return;
  }
}

Expected<std::string> QueuedLink::receive() {
  // The thread starts with the first receive: the rank has loaded its weights by then, as rank
  // 0 has before its first message.
  if (!thread_.joinable()) thread_ = std::thread([this] { pump(); });
  std::unique_lock<std::mutex> lock(mutex_);
  arrived_.wait(lock, [&] { return !messages_.empty() || ended_; });
  if (messages_.empty()) return makeError(error_.empty() ? "the iteration link ended" : error_);
  std::string message = std::move(messages_.front());
  messages_.pop_front();
  return message;
}

}  // namespace tpc
