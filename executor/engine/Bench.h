// `tpexec bench`: prefill throughput and decode latency of a plan at world 1, with the figures a
// memory-bound decode is judged by (bytes read per step, achieved bandwidth and its fraction of
// the device's measured copy bandwidth) and a compute-bound prefill by (TFLOP/s against the
// measured GEMM ceiling).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "codegen/PlanReader.h"
#include "executor/Backend.h"
#include "executor/engine/Generation.h"

namespace tpc {

struct BenchOptions {
  int64_t batch = 1;  // sequences decoded together
  int64_t promptLength = 512;
  int64_t generate = 128;  // timed decode steps
  BackendOptions backend;
  // llava: with patches, the image is encoded (timed on its own) and every prompt holds its
  // image tokens right after the first token, their rows the image's features.
  PromptImage image;
  std::function<void(const std::string&)> onStage;  // progress lines ("prefill", "decode", ...)
};

struct BenchReport {
  std::string backend;
  int64_t batch = 0, promptLength = 0, generate = 0;
  double prefillMs = 0, prefillTokensPerSecond = 0, prefillTflops = 0;
  double decodeMsPerStep = 0, decodeTokensPerSecond = 0;
  int64_t imageTokens = 0;        // 0: no image
  double imageEncodeMs = 0;       // the vision tower and projector on one image, mean of a few runs
  uint64_t weightBytes = 0;       // resident on the rank
  uint64_t bytesReadPerStep = 0;  // weights a decode step reads + its average KV-cache reads
  // MoE: experts a decode step reads per layer, E * (1 - (1 - k/E)^batch), the expected distinct
  // experts under uniform routing (k at batch 1); 0 for dense plans.
  double expertsReadPerLayer = 0;
  double achievedBytesPerSecond = 0;
  double copyBytesPerSecond = 0;  // measured device copy bandwidth (0 when not measured)
  double readBytesPerSecond = 0;  // measured by a kernel that only reads (0 when not measured)
  double gemmFlopsPerSecond = 0;  // measured large bf16 GEMM rate (0 when not measured)
};

Expected<BenchReport> runBench(const LoadedPlan& plan, const BenchOptions& options);

}  // namespace tpc
