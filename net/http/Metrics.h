// /metrics in Prometheus' text format, names under tpc:. Gauges and token counters come from
// the engine's counters at scrape time; latency histograms are observed by the server as each
// request's events arrive (all on the I/O thread, so no locking).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "executor/engine/Engine.h"

namespace tpc::http {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size()) {}
  void observe(double seconds);
  void render(const std::string& name, const std::string& help, std::string& out) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

struct ServerMetrics {
  ServerMetrics();
  Histogram timeToFirstToken, interTokenLatency, endToEndLatency, queueTime;
  std::map<std::string, uint64_t> finished;  // by finish reason (stop, length, abort, error)
  uint64_t rejectedQueueFull = 0;
  uint64_t httpRequests = 0;

  std::string render(const EngineCounters& engine, const std::string& modelName) const;
};

}  // namespace tpc::http
