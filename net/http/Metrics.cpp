#include "net/http/Metrics.h"

#include <cstdio>
#include <ctime>

namespace tpc::http {

namespace {

std::string number(double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.9g", v);
  return buffer;
}

void metric(std::string& out, const char* type, const std::string& name, const std::string& help,
            const std::string& labels, double value) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  out += name + labels + " " + number(value) + "\n";
}

}  // namespace

void Histogram::observe(double seconds) {
  size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) ++i;
  if (i < counts_.size()) ++counts_[i];
  ++count_;
  sum_ += seconds;
}

void Histogram::render(const std::string& name, const std::string& help, std::string& out) const {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " histogram\n";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + number(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  out += name + "_sum " + number(sum_) + "\n";
  out += name + "_count " + std::to_string(count_) + "\n";
}

// Buckets in seconds, as vLLM's: fine below a second for token latencies, coarse for requests.
ServerMetrics::ServerMetrics()
    : timeToFirstToken({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                        5.0, 7.5, 10.0, 20.0, 40.0, 80.0}),
      interTokenLatency({0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
                         0.075, 0.1,    0.15,  0.2,  0.3,   0.4,  0.5,   0.75, 1.0,  2.5}),
      endToEndLatency({0.01, 0.05, 0.1,  0.3,  0.5,  0.8,  1.0,  1.5,  2.0,   2.5,
                       5.0,  10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0}),
      queueTime({0.001, 0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0}) {}

std::string ServerMetrics::render(const EngineCounters& e, const std::string& modelName) const {
  std::string out;
  std::string model = "{model_name=\"" + modelName + "\"}";
  metric(out, "gauge", "tpc:num_requests_running", "Requests in the engine's running batch.", model,
         static_cast<double>(e.running));
  metric(out, "gauge", "tpc:num_requests_waiting", "Requests waiting to be scheduled.", model,
         static_cast<double>(e.waiting));
  metric(out, "gauge", "tpc:kv_blocks_used", "KV cache blocks held by sequences.", model,
         static_cast<double>(e.kvBlocksUsed));
  metric(out, "gauge", "tpc:kv_blocks_total", "KV cache blocks in the pool.", model,
         static_cast<double>(e.kvBlocksTotal));
  metric(out, "gauge", "tpc:kv_cache_usage_perc", "Share of the KV cache blocks in use.", model,
         e.kvBlocksTotal > 0 ? static_cast<double>(e.kvBlocksUsed) / e.kvBlocksTotal : 0.0);
  metric(out, "counter", "tpc:prefix_cache_queries_total",
         "Prompt tokens looked up in the prefix cache.", model,
         static_cast<double>(e.prefixCacheQueriedTokens));
  metric(out, "counter", "tpc:prefix_cache_hits_total", "Prompt tokens found in the prefix cache.",
         model, static_cast<double>(e.prefixCacheHitTokens));
  metric(out, "counter", "tpc:num_preemptions_total", "Sequences preempted for want of blocks.",
         model, static_cast<double>(e.preemptions));
  metric(out, "counter", "tpc:prompt_tokens_total", "Prompt tokens computed.", model,
         static_cast<double>(e.promptTokens));
  metric(out, "counter", "tpc:generation_tokens_total", "Tokens generated.", model,
         static_cast<double>(e.generationTokens));
  metric(out, "counter", "tpc:iterations_total", "Engine iterations run.", model,
         static_cast<double>(e.iterations));
  // render() runs on the I/O thread, so this is the HTTP side's own CPU time.
  timespec cpu{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
  metric(out, "counter", "tpc:http_cpu_seconds_total",
         "CPU time of the server's I/O thread (HTTP, JSON, detokenization).", model,
         static_cast<double>(cpu.tv_sec) + cpu.tv_nsec * 1e-9);
  metric(out, "counter", "tpc:request_rejected_total", "Requests refused with 429 (queue full).",
         model, static_cast<double>(rejectedQueueFull));
  out +=
      "# HELP tpc:request_success_total Requests finished, by finish reason.\n"
      "# TYPE tpc:request_success_total counter\n";
  for (const auto& [reason, count] : finished) {
    out += "tpc:request_success_total{model_name=\"";
    out += modelName;
    out += "\",finished_reason=\"";
    out += reason;
    out += "\"} ";
    out += std::to_string(count);
    out += "\n";
  }
  timeToFirstToken.render("tpc:time_to_first_token_seconds", "Time to first token.", out);
  interTokenLatency.render("tpc:inter_token_latency_seconds", "Time between two tokens.", out);
  endToEndLatency.render("tpc:e2e_request_latency_seconds", "Request latency, end to end.", out);
  queueTime.render("tpc:request_queue_time_seconds", "Time from submit to first scheduling.", out);
  return out;
}

}  // namespace tpc::http
