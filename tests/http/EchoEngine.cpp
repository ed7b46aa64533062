#include "tests/http/EchoEngine.h"

namespace tpc::test {

EchoEngine::EchoEngine(Options options) : options_(std::move(options)), state_(options_.initial) {
  thread_ = std::thread([this] { loop(); });
}

EchoEngine::~EchoEngine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

int32_t EchoEngine::tokenAt(const EngineRequest& request, int64_t i, int64_t vocab) {
  const std::vector<int32_t>& p = request.promptIds;
  int64_t token = p[static_cast<size_t>(i) % p.size()];
  if (request.temperature > 0)
    token = (token + static_cast<int64_t>((request.seed.value_or(0) * 7919 + i * 31) % 5)) % vocab;
  return static_cast<int32_t>(token);
}

Expected<EngineRequestId> EchoEngine::submit(EngineRequest request, EngineEventSink sink) {
  if (request.promptIds.empty()) return makeError("the prompt is empty");
  if (request.maxTokens < 1) return makeError("max tokens must be at least 1");
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ == EngineState::Failed) return makeError("the engine failed: ", failure_);
  EngineRequestId id = next_++;
  Sequence s{std::move(request), std::move(sink)};
  s.submitted = std::chrono::steady_clock::now();
  waiting_.emplace_back(id, std::move(s));
  wake_.notify_all();
  return id;
}

void EchoEngine::cancel(EngineRequestId id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = running_.find(id); it != running_.end()) it->second.cancelled = true;
  for (auto& [wid, s] : waiting_)
    if (wid == id) s.cancelled = true;
  wake_.notify_all();
}

int64_t EchoEngine::blocksOf(const Sequence& s) const {
  return (static_cast<int64_t>(s.request.promptIds.size()) + s.generated + 15) / 16;
}

EngineCounters EchoEngine::counters() const {
  std::lock_guard<std::mutex> lock(mutex_);
  EngineCounters c;
  c.running = static_cast<int64_t>(running_.size());
  c.waiting = static_cast<int64_t>(waiting_.size());
  c.kvBlockSize = 16;
  c.kvBlocksTotal = 4096;
  for (const auto& [id, s] : running_) c.kvBlocksUsed += blocksOf(s);
  c.promptTokens = promptTokens_;
  c.generationTokens = generationTokens_;
  c.iterations = iterations_;
  c.requestsFinished = finished_;
  return c;
}

EngineState EchoEngine::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

std::string EchoEngine::failure() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

void EchoEngine::pause(bool paused) {
  std::lock_guard<std::mutex> lock(mutex_);
  paused_ = paused;
  wake_.notify_all();
}

void EchoEngine::step(int iterations) {
  std::lock_guard<std::mutex> lock(mutex_);
  stepsAllowed_ += iterations;
  wake_.notify_all();
}

void EchoEngine::setReady() {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = EngineState::Ready;
  wake_.notify_all();
}

void EchoEngine::fail(const std::string& why) {
  std::lock_guard<std::mutex> lock(mutex_);
  state_ = EngineState::Failed;
  failure_ = why;
  wake_.notify_all();
}

int64_t EchoEngine::cancelled() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cancelled_;
}

void EchoEngine::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    if (state_ == EngineState::Failed) {
      // Every open request gets its Failed event, as the real engine does when a rank dies.
      EngineEvent failed;
      failed.kind = EngineEvent::Kind::Failed;
      failed.error = failure_;
      for (auto& [id, s] : running_) s.sink(failed);
      for (auto& [id, s] : waiting_) s.sink(failed);
      running_.clear();
      waiting_.clear();
    }
    bool work = state_ == EngineState::Ready && (!paused_ || stepsAllowed_ > 0) &&
                (!running_.empty() || !waiting_.empty());
    if (!work) {
      wake_.wait(lock);
      continue;
    }
    if (paused_) --stepsAllowed_;
    iterate(lock);
    // One iteration a millisecond: a pace like a small model's, so that streams interleave.
    wake_.wait_for(lock, std::chrono::milliseconds(1));
  }
}

void EchoEngine::iterate(std::unique_lock<std::mutex>&) {
  ++iterations_;
  auto now = std::chrono::steady_clock::now();
  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < options_.maxSeqs) {
    auto [id, s] = std::move(waiting_.front());
    waiting_.pop_front();
    s.queueMs = std::chrono::duration<double, std::milli>(now - s.submitted).count();
    promptTokens_ += static_cast<int64_t>(s.request.promptIds.size());
    running_.emplace(id, std::move(s));
  }
  for (auto it = running_.begin(); it != running_.end();) {
    Sequence& s = it->second;
    EngineEvent end;
    end.kind = EngineEvent::Kind::Finished;
    end.promptTokens = static_cast<int64_t>(s.request.promptIds.size());
    end.queueMs = s.queueMs;
    if (!s.cancelled) {
      EngineEvent token;
      token.token = tokenAt(s.request, s.generated, options_.vocab);
      if (s.request.topLogprobs >= 0) {
        token.logprob = -0.5f;
        for (int k = 0; k < s.request.topLogprobs; ++k)
          token.top.push_back({(token.token + k) % static_cast<int32_t>(options_.vocab),
                               -0.5f - static_cast<float>(k)});
      }
      ++s.generated;
      ++generationTokens_;
      s.sink(token);
      bool stop = false;
      for (int32_t id : s.request.stopTokenIds) stop |= id == token.token;
      if (!s.request.ignoreEos)
        for (int64_t id : options_.eos) stop |= id == token.token;
      const int64_t length = end.promptTokens + s.generated;
      if (stop)
        end.finishReason = "stop";
      else if (s.generated >= s.request.maxTokens || length >= options_.maxContext)
        end.finishReason = "length";
    } else {
      end.finishReason = "cancelled";
      ++cancelled_;
    }
    if (end.finishReason.empty()) {
      ++it;
      continue;
    }
    end.completionTokens = s.generated;
    ++finished_;
    s.sink(end);
    it = running_.erase(it);
  }
  // Requests cancelled while waiting end without running.
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (!it->second.cancelled) {
      ++it;
      continue;
    }
    EngineEvent end;
    end.kind = EngineEvent::Kind::Finished;
    end.finishReason = "cancelled";
    ++cancelled_;
    it->second.sink(end);
    it = waiting_.erase(it);
  }
}

}  // namespace tpc::test
