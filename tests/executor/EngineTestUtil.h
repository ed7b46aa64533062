// Driving an Engine from a test: submit requests, wait (bounded) for every one to end, and
// compare outcomes. Drivers may run in a forked rank 0, so they report through Error values.
#pragma once

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "executor/engine/Engine.h"
#include "ir/Error.h"

namespace tpc::test {

struct Outcome {
  std::vector<int32_t> ids;
  std::vector<std::vector<float>> logits;  // when the request asked for them
  std::string finish;                      // finish reason, "failed" or "rejected"
  std::string error;                       // why it failed or was rejected
  int64_t cachedPromptTokens = 0;
};

// Submits every request at once and waits for all of them to end (at most `limit`).
inline Expected<std::vector<Outcome>> runTogether(
    Engine& engine, const std::vector<EngineRequest>& requests,
    std::chrono::seconds limit = std::chrono::seconds(120)) {
  struct Shared {
    std::mutex mutex;
    std::condition_variable done;
    size_t ended = 0;
    std::vector<Outcome> outcomes;
  };
  auto shared = std::make_shared<Shared>();
  shared->outcomes.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    Expected<EngineRequestId> id = engine.submit(requests[i], [shared, i](const EngineEvent& e) {
      std::lock_guard<std::mutex> lock(shared->mutex);
      Outcome& o = shared->outcomes[i];
      if (e.kind == EngineEvent::Kind::Token) {
        o.ids.push_back(e.token);
        if (!e.logits.empty()) o.logits.push_back(e.logits);
        return;
      }
      o.finish = e.kind == EngineEvent::Kind::Failed ? "failed" : e.finishReason;
      o.error = e.error;
      o.cachedPromptTokens = e.cachedPromptTokens;
      ++shared->ended;
      shared->done.notify_all();
    });
    if (!id) {
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->outcomes[i].finish = "rejected";
      shared->outcomes[i].error = id.errorMessage();
      ++shared->ended;
    }
  }
  std::unique_lock<std::mutex> lock(shared->mutex);
  if (!shared->done.wait_for(lock, limit, [&] { return shared->ended == requests.size(); }))
    return makeError("timed out: ", shared->ended, " of ", requests.size(), " requests ended");
  return shared->outcomes;
}

// ||a - b|| / ||b||.
inline double relativeError(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

inline std::string joined(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

// The same ids (and logits within `tolerance` relative, row by row) as the reference outcomes,
// or an Error naming the first request that differs.
inline Error sameOutcomes(const std::vector<Outcome>& got, const std::vector<Outcome>& want,
                          double tolerance, const std::string& what) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i].finish == "failed" || got[i].finish == "rejected")
      return makeError(what, ": request ", i, " failed: ", got[i].error);
    if (got[i].ids != want[i].ids)
      return makeError(what, ": request ", i, " generated ", joined(got[i].ids), " instead of ",
                       joined(want[i].ids));
    if (got[i].logits.size() != want[i].logits.size())
      return makeError(what, ": request ", i, " returned ", got[i].logits.size(),
                       " logits rows instead of ", want[i].logits.size());
    for (size_t r = 0; r < want[i].logits.size(); ++r) {
      const double e = relativeError(got[i].logits[r], want[i].logits[r]);
      if (!(e <= tolerance))
        return makeError(what, ": request ", i, " token ", r, ": logits differ by ", e,
                         " relative");
    }
  }
  return Error::success();
}

}  // namespace tpc::test
