// A test double of the Engine interface, for testing the HTTP server without a model: it
// "generates" by echoing each request's prompt, cyclically (token i is prompt[i % n]), with
// a seeded shift when sampling, so every expected output follows from the request alone.
// Iterations run on a thread of its own, one token per running request each, like the real
// engine's decode steps; KV blocks are counted as a paged cache would hold them. pause()
// holds every request where it is, fail() kills the "ranks".
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "executor/engine/Engine.h"

namespace tpc::test {

class EchoEngine : public Engine {
 public:
  struct Options {
    int64_t maxContext = 256;
    int64_t vocab = 128256;
    int64_t maxSeqs = 256;
    std::vector<int64_t> eos = {};
    EngineState initial = EngineState::Ready;
  };
  explicit EchoEngine(Options options);
  ~EchoEngine() override;

  // The token that `request` generates at position `i` (0: the first generated token).
  static int32_t tokenAt(const EngineRequest& request, int64_t i, int64_t vocab);

  Expected<EngineRequestId> submit(EngineRequest request, EngineEventSink sink) override;
  void cancel(EngineRequestId id) override;
  EngineCounters counters() const override;
  EngineState state() const override;
  std::string failure() const override;
  int64_t maxContext() const override { return options_.maxContext; }
  int64_t vocabSize() const override { return options_.vocab; }
  std::vector<int64_t> eosIds() const override { return options_.eos; }

  void pause(bool paused);
  void step(int iterations);  // while paused: run this many iterations more
  void setReady();
  void fail(const std::string& why);
  int64_t cancelled() const;

 private:
  struct Sequence {
    EngineRequest request;
    EngineEventSink sink;
    int64_t generated = 0;
    bool cancelled = false;
    std::chrono::steady_clock::time_point submitted;
    double queueMs = 0;
  };
  void loop();
  void iterate(std::unique_lock<std::mutex>& lock);
  int64_t blocksOf(const Sequence& s) const;

  Options options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::map<EngineRequestId, Sequence> running_;
  std::deque<std::pair<EngineRequestId, Sequence>> waiting_;
  EngineRequestId next_ = 1;
  EngineState state_;
  std::string failure_;
  bool paused_ = false, stopping_ = false;
  int stepsAllowed_ = 0;
  int64_t cancelled_ = 0, promptTokens_ = 0, generationTokens_ = 0, iterations_ = 0, finished_ = 0;
  std::thread thread_;
};

}  // namespace tpc::test
