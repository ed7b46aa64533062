// `tpexec PLAN --requests FILE.jsonl` on one node: every request goes to the engine at once,
// which batches them; one JSON line per request is printed in input order once all are done.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "executor/engine/EngineRun.h"
#include "tools/tpexec/MultiNode.h"
#include "tools/tpexec/RequestsMode.h"

namespace tpc::tpexec {
namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  std::vector<int32_t> ids;
  nlohmann::ordered_json logprobs = nlohmann::json::array();
  std::string finish, error;
  int64_t cachedPromptTokens = 0;
  bool ended = false;
};

struct Shared {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<Result> results;
  size_t ended = 0;
};

void record(Shared& shared, size_t i, bool logprobs, const EngineEvent& e) {
  std::lock_guard<std::mutex> lock(shared.mutex);
  Result& r = shared.results[i];
  if (e.kind == EngineEvent::Kind::Token) {
    r.ids.push_back(e.token);
    if (logprobs) {
      nlohmann::ordered_json top = nlohmann::json::array();
      for (const TokenLogprob& t : e.top) top.push_back({{"id", t.id}, {"logprob", t.logprob}});
      r.logprobs.push_back({{"id", e.token}, {"logprob", e.logprob}, {"top", top}});
    }
    return;
  }
  r.finish = e.kind == EngineEvent::Kind::Failed ? "" : e.finishReason;
  r.error = e.error;
  r.cachedPromptTokens = e.cachedPromptTokens;
  r.ended = true;
  ++shared.ended;
  shared.changed.notify_all();
}

// Submits everything, cancels what asked for it on time, waits for every request to end.
Error drive(Engine& engine, const std::vector<NamedRequest>& requests, Shared& shared) {
  // Sent once every rank (of every node) has its weights, so that cancel_after_ms counts from
  // when the request can run. The Engine interface has no wait for that; a short poll is cheap
  // next to loading weights.
  while (engine.state() == EngineState::Loading)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto start = Clock::now();
  std::vector<std::pair<Clock::time_point, EngineRequestId>> cancels;
  for (size_t i = 0; i < requests.size(); ++i) {
    Expected<EngineRequestId> id = engine.submit(
        requests[i].engine, [&shared, i, logprobs = requests[i].engine.topLogprobs >= 0](
                                const EngineEvent& e) { record(shared, i, logprobs, e); });
    if (!id) {
      std::lock_guard<std::mutex> lock(shared.mutex);
      shared.results[i].error = id.errorMessage();
      shared.results[i].ended = true;
      ++shared.ended;
      continue;
    }
    if (requests[i].cancelAfterMs >= 0)
      cancels.emplace_back(start + std::chrono::milliseconds(requests[i].cancelAfterMs), *id);
  }
  std::unique_lock<std::mutex> lock(shared.mutex);
  while (shared.ended < requests.size()) {
    auto next = Clock::time_point::max();
    for (auto it = cancels.begin(); it != cancels.end();) {
      if (it->first <= Clock::now()) {
        engine.cancel(it->second);
        it = cancels.erase(it);
      } else {
        next = std::min(next, it->first);
        ++it;
      }
    }
    // Bounded waits: a cancel deadline, or a look at whether the engine failed.
    auto until = std::min(next, Clock::now() + std::chrono::milliseconds(500));
    shared.changed.wait_until(lock, until);
    if (engine.state() == EngineState::Failed && shared.ended < requests.size()) {
      // Every open request gets its Failed event from the engine thread; wait for them.
      shared.changed.wait_for(lock, std::chrono::seconds(5),
                              [&] { return shared.ended == requests.size(); });
      break;
    }
  }
  return Error::success();
}

}  // namespace

Error driveRequests(Engine& engine, const std::vector<NamedRequest>& requests) {
  Shared shared;
  shared.results.resize(requests.size());
  if (Error e = drive(engine, requests, shared)) return e;
  // The run failed as a whole: its cause is the one line to print, not every request's.
  if (engine.state() == EngineState::Failed) return makeError(engine.failure());
  std::lock_guard<std::mutex> lock(shared.mutex);
  size_t failed = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const Result& r = shared.results[i];
    nlohmann::ordered_json j;
    j["id"] = requests[i].id;
    j["prompt_ids"] = requests[i].engine.promptIds;
    if (!r.ended || !r.error.empty()) {
      ++failed;
      j["error"] = r.ended ? r.error : "the engine ended before the request did";
      std::fprintf(stderr, "error: request %s: %s\n", requests[i].id.c_str(),
                   j["error"].get<std::string>().c_str());
    } else {
      j["generated_ids"] = r.ids;
      j["finish_reason"] = r.finish;
      j["cached_prompt_tokens"] = r.cachedPromptTokens;
      if (requests[i].engine.topLogprobs >= 0) j["logprobs"] = r.logprobs;
    }
    std::printf("%s\n", j.dump().c_str());
  }
  std::fflush(stdout);
  if (failed) return makeError(failed, " of ", requests.size(), " requests failed");
  return Error::success();
}

Error runRequests(const LoadedPlan& plan, const std::vector<NamedRequest>& requests,
                  const EngineRunOptions& options) {
  return runEngineLocally(plan, options,
                          [&](Engine& engine) { return driveRequests(engine, requests); });
}

}  // namespace tpc::tpexec
