#include "executor/engine/QueuedLink.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "executor/engine/Iteration.h"

namespace tpc {

namespace {

// Small enough to copy for every message, large enough for any decode iteration.
constexpr size_t kFrameFloats = 4096;
constexpr size_t kFrameBytes = kFrameFloats * sizeof(float) - sizeof(uint64_t);

}  // namespace

Error PointToPointLink::send(std::string message) {
  frame_.assign(kFrameFloats, 0.0f);
  const uint64_t size = message.size();
  std::memcpy(frame_.data(), &size, sizeof size);
  const size_t first = std::min<size_t>(size, kFrameBytes);
  std::memcpy(reinterpret_cast<char*>(frame_.data()) + sizeof size, message.data(), first);
  std::vector<float> rest((size - first + sizeof(float) - 1) / sizeof(float));
  if (!rest.empty()) std::memcpy(rest.data(), message.data() + first, size - first);
  for (int peer = 1; peer < comm_.world(); ++peer) {
    if (Error e = comm_.send(frame_.data(), kFrameFloats, peer)) return e;
    if (!rest.empty())
      if (Error e = comm_.send(rest.data(), rest.size(), peer)) return e;
  }
  return Error::success();
}

Expected<std::string> PointToPointLink::receive() {
  frame_.resize(kFrameFloats);
  if (Error e = comm_.recv(frame_.data(), kFrameFloats, 0)) return e;
  uint64_t size = 0;
  std::memcpy(&size, frame_.data(), sizeof size);
  if (size > (uint64_t{1} << 34)) return makeError("iteration message of ", size, " bytes");
  const size_t first = std::min<size_t>(size, kFrameBytes);
  std::string message(reinterpret_cast<const char*>(frame_.data()) + sizeof size, first);
  if (size > first) {
    std::vector<float> rest((size - first + sizeof(float) - 1) / sizeof(float));
    if (Error e = comm_.recv(rest.data(), rest.size(), 0)) return e;
    message.append(reinterpret_cast<const char*>(rest.data()), size - first);
  }
  return message;
}

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
