// The Engine on rank 0: requests queue in submit(), and run() turns them into iterations on the
// calling thread (the rank's own) until shutdown(): schedule, hand the iteration to every rank
// through an IterationRunner, pick each sampling row's token, send the events.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "executor/engine/Engine.h"
#include "executor/engine/Iteration.h"
#include "executor/engine/KvBlockPool.h"
#include "executor/engine/PrefixCache.h"
#include "executor/engine/Scheduler.h"

namespace tpc {

// Runs an iteration on every rank; rank 0's side.
class IterationRunner {
 public:
  virtual ~IterationRunner() = default;
  // Forward: the logit rows' logits, [rows, vocab]; valid until the next call.
  virtual Expected<const float*> forward(const Iteration& it) = 0;
  // Sample: the logit rows' tokens.
  virtual Expected<std::vector<int32_t>> sample(const Iteration& it) = 0;
  // Nothing to run for a while: keep the other ranks and the process group informed.
  virtual Error idle() = 0;
  // Pipeline micro-batches (Backend::beginForward): begin hands `it` to every rank and runs
  // rank 0's part up to where the logits come back; finish completes the oldest begun
  // iteration, `it` again, and returns its logit rows' logits, valid until the next call.
  virtual Error begin(const Iteration& it) {
    (void)it;
    return makeError("this runner keeps no micro-batch in flight");
  }
  virtual Expected<const float*> finish(const Iteration& it) {
    (void)it;
    return makeError("this runner keeps no micro-batch in flight");
  }
  // The most tokens an iteration may have to begin while another is in flight; 0: none may,
  // so micro-batches run one at a time.
  virtual int64_t inFlightTokens() const { return 0; }
};

// What one iteration computed and how long it took (benchmarks).
struct IterationStats {
  int64_t sequences = 0;
  int64_t prefillTokens = 0;  // tokens of prompt chunks (recomputed ones included)
  int64_t decodeTokens = 0;   // one per sequence that was already fully computed
  int64_t kvTokensRead = 0;   // positions whose K/V the attention reads, over all sequences
  int64_t alongside = 0;      // pipeline micro-batches already in flight when it began
  double ms = 0;              // from its start until its tokens were known
};

struct EngineModel {
  int64_t maxContext = 0, vocabSize = 0;
  int64_t maxBatch = 8;  // the plan's max batch: the default of EngineConfig::maxSeqs
  int64_t stages = 1;    // pipeline stages: the default of EngineConfig::microBatches
  std::vector<int64_t> eosIds;
  // llava (imageTokenIndex >= 0): the tower's rows per image, the first feature row that
  // replaces an image token (1 when the class row is dropped), and its patch row's width.
  int32_t imageTokenIndex = -1;
  int64_t imageRows = 0, imageFirstRow = 0, imagePatchWidth = 0;
};

class EngineCore final : public Engine {
 public:
  EngineCore(EngineModel model, EngineConfig config);
  ~EngineCore() override = default;

  Expected<EngineRequestId> submit(EngineRequest request, EngineEventSink sink) override;
  void cancel(EngineRequestId id) override;
  EngineCounters counters() const override;
  EngineState state() const override;
  std::string failure() const override;
  int64_t maxContext() const override { return model_.maxContext; }
  int64_t vocabSize() const override { return model_.vocabSize; }
  std::vector<int64_t> eosIds() const override { return model_.eosIds; }

  // Iterations until shutdown() (Ok) or a failed iteration (its Error, after every open
  // request got a Failed event). `kvBlocks`: the pool every rank holds.
  Error run(IterationRunner& runner, int64_t kvBlocks);
  // Thread-safe: run() returns after the current iteration; open requests fail with "the
  // engine stopped".
  void shutdown();
  // The ranks could not start (e.g. a weight failed to load): Failed, open requests failed.
  void fail(const std::string& why);
  // Called on the engine thread after every iteration; set before run().
  void onIteration(std::function<void(const IterationStats&)> f) { onIteration_ = std::move(f); }
  // Whether the ranks' backend runs the vision tower; set before run(). Requests with an image
  // are refused while it is false.
  void acceptImages(bool accept) { acceptImages_ = accept; }
  // Micro-batches kept in flight, once run() has started (1: one iteration at a time).
  int64_t microBatches() const { return microBatches_; }

 private:
  Error validate(const EngineRequest& r) const;
  Error validateImage(const EngineRequest& r) const;
  void addImages(const ScheduledChunk& c, Iteration& it) const;
  void takeInbox(std::vector<std::unique_ptr<Sequence>>& fresh,
                 std::vector<EngineRequestId>& cancels, bool& stop);
  // One iteration; with micro-batches, one more begun (nothing to begin: the oldest finished).
  Error runIteration(IterationRunner& runner);
  // The iteration the scheduler chose, from building it to its tokens.
  struct Scheduled {
    std::vector<ScheduledChunk> chunks;
    std::vector<Sequence*> sampling;
    bool host = false;
    Iteration it;
    IterationStats stats;
    std::chrono::steady_clock::time_point started;
    const float* logits = nullptr;  // host sampling
    std::vector<int32_t> picked;    // otherwise
  };
  Error finishOldest(IterationRunner& runner);
  Error complete(Scheduled& s);
  void emitToken(Sequence& seq, int32_t token, const float* logits);
  void finish(Sequence& seq, const std::string& reason);
  void failAll(const std::string& why);
  void publishCounters();

  const EngineModel model_;
  const EngineConfig config_;

  mutable std::mutex mutex_;  // guards everything below up to the engine thread's own state
  std::condition_variable wake_;
  EngineState state_ = EngineState::Loading;
  std::string failure_;
  EngineCounters counters_;
  std::vector<std::unique_ptr<Sequence>> inbox_;
  std::vector<EngineRequestId> cancels_;
  bool stopRequested_ = false;
  EngineRequestId nextId_ = 1;
  int64_t poolBlocks_ = 0;
  std::atomic<bool> acceptImages_{false};

  // The engine thread's own.
  std::unique_ptr<KvBlockPool> pool_;
  std::unique_ptr<PrefixCache> prefix_;
  std::unique_ptr<Scheduler> scheduler_;
  std::map<EngineRequestId, std::unique_ptr<Sequence>> sequences_;
  int64_t promptTokens_ = 0, generationTokens_ = 0, iterations_ = 0, finished_ = 0;
  std::vector<float> rowScratch_;
  int64_t microBatches_ = 1;
  std::deque<Scheduled> inFlight_;  // begun micro-batches, oldest first
  std::function<void(const IterationStats&)> onIteration_;
};

}  // namespace tpc
