#include "executor/engine/EngineBench.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "executor/engine/EngineRanks.h"
#include "executor/engine/Traffic.h"

namespace tpc {
namespace {

using Clock = std::chrono::steady_clock;

struct Progress {
  std::mutex mutex;
  std::condition_variable changed;
  int64_t finished = 0, failed = 0, inFlight = 0;
  std::string firstError;
};

// Synthetic prompts: a different one per request, so the prefix cache finds nothing to share.
EngineRequest benchRequest(int64_t index, const EngineBenchOptions& o, int64_t vocab) {
  EngineRequest r;
  for (int64_t t = 0; t < o.inputLength; ++t)
    r.promptIds.push_back(static_cast<int32_t>((index * 104729 + t * 7919 + 11) % vocab));
  r.maxTokens = o.outputLength;
  r.ignoreEos = true;
  return r;
}

}  // namespace

Error runEngineBench(const LoadedPlan& plan, const EngineBenchOptions& o,
                     const std::function<Error(const EngineBenchReport&)>& report) {
  if (o.requests < 1 || o.inputLength < 1 || o.outputLength < 1)
    return makeError("--requests, --input-len and --output-len must be at least 1");
  if (o.concurrency < 0) return makeError("--concurrency must not be negative");
  const plan::Plan& p = plan.plan();
  if (o.inputLength + o.outputLength > p.limits()->max_context())
    return makeError("--input-len ", o.inputLength, " + --output-len ", o.outputLength,
                     " does not fit the plan's max context of ", p.limits()->max_context());
  Expected<int64_t> microBatches = microBatchesOf(p, o.run.engine);
  if (!microBatches) return microBatches.takeError();
  std::vector<IterationStats> iterations;
  EngineRunOptions run = o.run;
  run.onIteration = [&iterations](const IterationStats& s) { iterations.push_back(s); };
  const int64_t concurrency = o.concurrency > 0 ? std::min(o.concurrency, o.requests) : o.requests;
  return runEngineLocally(plan, run, [&](Engine& engine) -> Error {
    auto progress = std::make_shared<Progress>();
    // Waits until the engine is loaded: the clock measures serving, not loading.
    while (engine.state() == EngineState::Loading)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const auto start = Clock::now();
    int64_t submitted = 0;
    std::unique_lock<std::mutex> lock(progress->mutex);
    while (progress->finished + progress->failed < o.requests) {
      while (submitted < o.requests && progress->inFlight < concurrency) {
        ++progress->inFlight;
        lock.unlock();
        Expected<EngineRequestId> id = engine.submit(
            benchRequest(submitted, o, engine.vocabSize()), [progress](const EngineEvent& e) {
              if (e.kind == EngineEvent::Kind::Token) return;
              std::lock_guard<std::mutex> l(progress->mutex);
              --progress->inFlight;
              if (e.kind == EngineEvent::Kind::Failed) {
                ++progress->failed;
                if (progress->firstError.empty()) progress->firstError = e.error;
              } else {
                ++progress->finished;
              }
              progress->changed.notify_all();
            });
        lock.lock();
        ++submitted;
        if (!id) return makeError("benchmark request: ", id.errorMessage());
      }
      if (!progress->changed.wait_for(lock, std::chrono::minutes(10), [&] {
            // Room for another request, or the end: waking for room with nothing left to
            // submit would spin while holding the lock the requests' events need.
            return (submitted < o.requests && progress->inFlight < concurrency) ||
                   progress->finished + progress->failed == o.requests;
          }))
        return makeError("the benchmark made no progress for 10 minutes");
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (progress->failed) return makeError("benchmark request failed: ", progress->firstError);
    lock.unlock();

    EngineBenchReport r;
    r.backend = o.run.backend.kind;
    r.world = p.world();
    r.requests = o.requests;
    r.inputLength = o.inputLength;
    r.outputLength = o.outputLength;
    r.concurrency = concurrency;
    r.microBatches = *microBatches;
    r.seconds = seconds;
    r.requestsPerSecond = static_cast<double>(o.requests) / seconds;
    r.outputTokensPerSecond = static_cast<double>(o.requests * o.outputLength) / seconds;
    r.totalTokensPerSecond =
        static_cast<double>(o.requests * (o.inputLength + o.outputLength)) / seconds;
    const EngineCounters counters = engine.counters();
    r.prefixCacheHitTokens = counters.prefixCacheHitTokens;
    r.preemptions = counters.preemptions;
    // The engine thread has finished every iteration of these requests: its records are final.
    std::vector<double> ms;
    double prefillMs = 0, totalMs = 0;
    int64_t prefillTokens = 0, tokens = 0;
    // Dense plans read the same weights every iteration; a MoE iteration reads the experts its
    // tokens chose, so its weight bytes depend on the iteration's token count.
    std::map<int64_t, StepTraffic> trafficByTokens;
    for (const IterationStats& s : iterations) {
      const int64_t stepTokens = std::max<int64_t>(1, s.prefillTokens + s.decodeTokens);
      auto found = trafficByTokens.find(stepTokens);
      if (found == trafficByTokens.end())
        found = trafficByTokens.emplace(stepTokens, trafficOf(p, stepTokens)).first;
      const StepTraffic& traffic = found->second;
      ms.push_back(s.ms);
      totalMs += s.ms;
      if (s.prefillTokens > 0) prefillMs += s.ms;
      prefillTokens += s.prefillTokens;
      tokens += s.prefillTokens + s.decodeTokens;
      r.linearFlops += 2.0 * static_cast<double>(traffic.linearMacsPerToken) *
                       static_cast<double>(s.prefillTokens + s.decodeTokens);
      const double bytes =
          static_cast<double>(traffic.weightBytes) +
          static_cast<double>(traffic.kvBytesPerPosition) * static_cast<double>(s.kvTokensRead);
      r.bytesRead += bytes;
      if (s.prefillTokens == 0 && s.decodeTokens > 0) {
        ++r.decodeIterations;
        r.meanDecodeIterationMs += s.ms;
        r.meanDecodeBatch += static_cast<double>(s.decodeTokens);
        r.meanDecodeBytesRead += bytes;
      }
    }
    if (r.decodeIterations > 0) {
      const auto n = static_cast<double>(r.decodeIterations);
      r.meanDecodeIterationMs /= n;
      r.meanDecodeBatch /= n;
      r.meanDecodeBytesRead /= n;
    }
    r.iterations = static_cast<int64_t>(ms.size());
    if (!ms.empty()) {
      r.meanIterationMs = totalMs / static_cast<double>(ms.size());
      std::sort(ms.begin(), ms.end());
      r.p99IterationMs = ms[std::min(ms.size() - 1, static_cast<size_t>(0.99 * ms.size()))];
    }
    if (tokens) r.prefillTokenShare = static_cast<double>(prefillTokens) / tokens;
    if (totalMs > 0) {
      r.prefillTimeShare = prefillMs / totalMs;
      r.decodeTimeShare = 1.0 - r.prefillTimeShare;
    }
    if (o.run.backend.kind == "cuda") {
      const int device = o.run.backend.device >= 0 ? o.run.backend.device : 0;
      Expected<double> gemm = deviceGemmFlops(device);
      if (!gemm) return gemm.takeError();
      // Decode reads: the ceiling is the higher of a read-only kernel and a device copy.
      Expected<double> read = deviceReadBandwidth(device);
      if (!read) return read.takeError();
      Expected<double> copy = deviceCopyBandwidth(device);
      if (!copy) return copy.takeError();
      r.gemmFlopsPerSecond = *gemm;
      r.readBytesPerSecond = std::max(*read, *copy);
      r.computeRooflineSeconds = r.linearFlops / r.gemmFlopsPerSecond;
      r.memoryRooflineSeconds = r.bytesRead / r.readBytesPerSecond;
    }
    return report(r);
  });
}

}  // namespace tpc
