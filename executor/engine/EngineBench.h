// `tpexec bench PLAN --requests N`: offline throughput through the engine. N synthetic
// requests of a fixed prompt and output length, at most `concurrency` in flight, batched by the
// scheduler as any other load; the report has the run's throughput, its iteration times and,
// on a GPU, the rooflines it is judged by.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "codegen/PlanReader.h"
#include "executor/engine/EngineRun.h"

namespace tpc {

struct EngineBenchOptions {
  int64_t requests = 64, inputLength = 128, outputLength = 32;
  int64_t concurrency = 0;  // requests in flight at once; 0: all of them
  EngineRunOptions run;
};

struct EngineBenchReport {
  std::string backend;
  int64_t world = 1, requests = 0, inputLength = 0, outputLength = 0, concurrency = 0;
  int64_t microBatches = 1;  // pipeline micro-batches asked for
  double seconds = 0;
  double requestsPerSecond = 0, outputTokensPerSecond = 0, totalTokensPerSecond = 0;
  int64_t iterations = 0;
  double meanIterationMs = 0, p99IterationMs = 0;
  // Shares of the computed tokens and of the iteration time: iterations with any prompt chunk
  // count as prefill time, the others as decode time.
  double prefillTokenShare = 0, prefillTimeShare = 0, decodeTimeShare = 0;
  int64_t prefixCacheHitTokens = 0, preemptions = 0;
  // Iterations that only decode: how many, their mean time and batch, and the bytes each reads
  // on average (weights plus the KV its sequences attend over).
  int64_t decodeIterations = 0;
  double meanDecodeIterationMs = 0, meanDecodeBatch = 0, meanDecodeBytesRead = 0;
  // Rooflines of the whole run (0 when the device's ceilings were not measured): the linear
  // layers' FLOPs at the GEMM ceiling, and the weights read once per iteration plus the KV read
  // at the measured read bandwidth; the run is bounded by the larger.
  double linearFlops = 0, bytesRead = 0;
  double gemmFlopsPerSecond = 0, readBytesPerSecond = 0;
  double computeRooflineSeconds = 0, memoryRooflineSeconds = 0;
};

// `report` runs in rank 0's process when the run is done.
Error runEngineBench(const LoadedPlan& plan, const EngineBenchOptions& options,
                     const std::function<Error(const EngineBenchReport&)>& report);

}  // namespace tpc
