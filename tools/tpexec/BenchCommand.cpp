// `tpexec bench PLAN`: prefill and decode speed of a plan, with the rooflines they are judged by.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include <sys/mman.h>

#include "codegen/PlanSummary.h"
#include "executor/engine/Bench.h"
#include "executor/engine/EngineBench.h"
#include "executor/engine/EngineRanks.h"
#include "tools/common/Args.h"
#include "tools/tpexec/EngineFlags.h"
#include "tools/tpexec/ImageInput.h"

namespace {

int benchFail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return code;
}

int printEngineReport(const std::string& planPath, const tpc::EngineBenchReport& r, bool json) {
  if (json) {
    nlohmann::ordered_json j;
    j["plan"] = planPath;
    j["mode"] = "engine";
    j["backend"] = r.backend;
    j["world"] = r.world;
    j["requests"] = r.requests;
    j["input_len"] = r.inputLength;
    j["output_len"] = r.outputLength;
    j["concurrency"] = r.concurrency;
    j["micro_batches"] = r.microBatches;
    j["seconds"] = r.seconds;
    j["requests_per_s"] = r.requestsPerSecond;
    j["output_tokens_per_s"] = r.outputTokensPerSecond;
    j["total_tokens_per_s"] = r.totalTokensPerSecond;
    j["iterations"] = r.iterations;
    j["mean_iteration_ms"] = r.meanIterationMs;
    j["p99_iteration_ms"] = r.p99IterationMs;
    j["prefill_token_share"] = r.prefillTokenShare;
    j["prefill_time_share"] = r.prefillTimeShare;
    j["decode_time_share"] = r.decodeTimeShare;
    j["prefix_cache_hit_tokens"] = r.prefixCacheHitTokens;
    j["preemptions"] = r.preemptions;
    j["decode_iterations"] = r.decodeIterations;
    j["mean_decode_iteration_ms"] = r.meanDecodeIterationMs;
    j["mean_decode_batch"] = r.meanDecodeBatch;
    j["mean_decode_bytes_read"] = r.meanDecodeBytesRead;
    if (r.readBytesPerSecond > 0)
      j["decode_memory_roofline_ms"] = 1e3 * r.meanDecodeBytesRead / r.readBytesPerSecond;
    j["linear_flops"] = r.linearFlops;
    j["bytes_read"] = r.bytesRead;
    j["gemm_ceiling_tflops"] = r.gemmFlopsPerSecond / 1e12;
    j["read_gb_per_s"] = r.readBytesPerSecond / 1e9;
    j["compute_roofline_s"] = r.computeRooflineSeconds;
    j["memory_roofline_s"] = r.memoryRooflineSeconds;
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf(
      "%s: %s world %lld, %lld requests x %lld in / %lld out, %lld in flight, %lld "
      "micro-batches\n",
      planPath.c_str(), r.backend.c_str(), (long long)r.world, (long long)r.requests,
      (long long)r.inputLength, (long long)r.outputLength, (long long)r.concurrency,
      (long long)r.microBatches);
  std::printf("%.2f s: %.2f requests/s, %.1f output tokens/s, %.1f total tokens/s\n", r.seconds,
              r.requestsPerSecond, r.outputTokensPerSecond, r.totalTokensPerSecond);
  std::printf(
      "%lld iterations: mean %.3f ms, p99 %.3f ms; prefill %.0f%% of tokens, %.0f%% of time\n",
      (long long)r.iterations, r.meanIterationMs, r.p99IterationMs, 100 * r.prefillTokenShare,
      100 * r.prefillTimeShare);
  if (r.gemmFlopsPerSecond > 0) {
    const double bound = std::max(r.computeRooflineSeconds, r.memoryRooflineSeconds);
    std::printf(
        "rooflines: compute %.3f s (%.1f TFLOP at %.0f TFLOP/s), memory %.3f s (%.1f GB at %.0f "
        "GB/s); the run took %.2fx the larger\n",
        r.computeRooflineSeconds, r.linearFlops / 1e12, r.gemmFlopsPerSecond / 1e12,
        r.memoryRooflineSeconds, r.bytesRead / 1e9, r.readBytesPerSecond / 1e9,
        bound > 0 ? r.seconds / bound : 0.0);
  }
  return 0;
}

}  // namespace

int runBenchCommand(int argc, char** argv) {
  using namespace tpc;
  std::string planPath, modelDir;
  std::string backend = cudaDeviceCount() > 0 ? "cuda" : "cpu";
  BenchOptions options;
  int64_t device = -1;
  bool json = false, eager = false, compareMicroBatches = false;
  EngineBenchOptions engineBench;
  tpexec::EngineFlags engineFlags;
  int64_t localWorld = 0;
  std::string imagePath, pixelValuesPath;
  cli::ArgParser args(
      "tpexec bench",
      "Measures a world-1 plan: prefill of --batch prompts of --prompt-len tokens, then --gen\n"
      "greedy decode steps of the whole batch. Reports prefill tokens/s and TFLOP/s, decode\n"
      "ms/step, bytes read per step and the bandwidth that achieves, against the device's\n"
      "measured read and copy bandwidth (against the higher) and GEMM ceiling.\n"
      "With --requests N: offline throughput through the engine instead, at any world: N\n"
      "requests of --input-len prompt and --output-len generated tokens, --concurrency at\n"
      "once; requests/s, tokens/s, iteration times and (on a GPU) the run's rooflines.");
  args.positional("PLAN", &planPath, "a plan written by tpc compile");
  args.option("--batch", &options.batch, "B", "sequences decoded together (default 1)");
  args.option("--prompt-len", &options.promptLength, "P",
              "prompt tokens per sequence (default 512)");
  args.option("--gen", &options.generate, "G", "timed decode steps (default 128)");
  args.option("--requests", &engineBench.requests, "N",
              "engine mode: requests to serve (default 64 when --requests is given)");
  args.option("--input-len", &engineBench.inputLength, "I",
              "engine mode: prompt tokens per request (default 128)");
  args.option("--output-len", &engineBench.outputLength, "O",
              "engine mode: generated tokens per request (default 32)");
  args.option("--concurrency", &engineBench.concurrency, "C",
              "engine mode: requests in flight at once (default: all)");
  args.option("--local-world", &localWorld, "N",
              "engine mode: ranks on this host (default: the plan's world)");
  tpexec::addEngineFlags(args, engineFlags);
  args.flag("--compare-micro-batches", &compareMicroBatches,
            "engine mode: the same load with one micro-batch first, then with --micro-batches, "
            "and the ratio of their output tokens/s");
  args.flag("--synthetic-weights", &options.backend.syntheticWeights,
            "random weights (made on the GPU on cuda): no checkpoint needed");
  args.choice("--backend", &backend, {"cpu", "cuda"},
              "where to run (default cuda when a GPU is visible)");
  args.option("--device", &device, "N", "GPU to use (default 0)");
  args.option("--model-dir", &modelDir, "DIR",
              "checkpoint folder (default: where the plan was compiled from)");
  args.option("--image", &imagePath, "PATH",
              "llava: also time the vision tower on this JPEG or PNG (preprocessed as the\n"
              "model dir's preprocessor_config.json says); each prompt holds its image tokens");
  args.option("--pixel-values", &pixelValuesPath, "FILE.npy",
              "llava: the same with the image as float32 pixel values [1, 3, size, size]");
  args.flag("--eager", &eager, "never use CUDA Graphs");
  args.flag("--json", &json, "print one JSON object");
  args.epilog(
      "example:\n  tpexec bench llama3-8b.w1.fb --synthetic-weights --batch 1 --prompt-len 512 "
      "--gen 256");
  if (Error e = args.parse(argc, argv, 2)) return benchFail(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  if (backend == "cuda" && !haveCudaBackend())
    return benchFail("--backend cuda: this build has no CUDA backend", 2);
  options.backend.kind = backend;
  options.backend.modelDir = modelDir;
  options.backend.eager = eager;
  options.backend.device = static_cast<int>(device);
  if (!json)
    options.onStage = [](const std::string& s) { std::fprintf(stderr, "%s...\n", s.c_str()); };

  Expected<LoadedPlan> plan = LoadedPlan::readFile(planPath);
  if (!plan) return benchFail(plan.errorMessage());
  if (compareMicroBatches && !args.seen("--requests"))
    return benchFail("--compare-micro-batches goes with --requests (engine mode)", 2);
  if (!imagePath.empty() || !pixelValuesPath.empty()) {
    if (!imagePath.empty() && !pixelValuesPath.empty())
      return benchFail("give either --image or --pixel-values, not both", 2);
    if (args.seen("--requests")) return benchFail("--image goes without --requests", 2);
    Expected<PromptImage> image =
        tpexec::loadPromptImage(plan->plan(), pixelValuesPath, imagePath, modelDir);
    if (!image) return benchFail(image.errorMessage());
    options.image = std::move(*image);
  }
  if (args.seen("--requests")) {
    Expected<EngineConfig> config = tpexec::engineConfigOf(engineFlags);
    if (!config) return benchFail(config.errorMessage(), 2);
    engineBench.run.backend = options.backend;
    engineBench.run.localWorld = localWorld;
    std::vector<EngineConfig> configs = {*config};
    if (compareMicroBatches) configs.insert(configs.begin(), *config)->microBatches = 1;
    // The report runs in rank 0's process, forked at world > 1: each run's tokens/s come back
    // through a shared page.
    void* page = ::mmap(nullptr, 2 * sizeof(double), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return benchFail("cannot map a page for the benchmark's results");
    auto* tokensPerSecond = static_cast<double*>(page);
    int64_t microBatches = 1;
    for (size_t i = 0; i < configs.size(); ++i) {
      engineBench.run.engine = configs[i];
      Error e = runEngineBench(*plan, engineBench, [&](const EngineBenchReport& r) -> Error {
        printEngineReport(planPath, r, json);
        std::fflush(stdout);
        tokensPerSecond[i] = r.outputTokensPerSecond;
        return Error::success();
      });
      if (e) return benchFail(e.message());
      Expected<int64_t> resolved = microBatchesOf(plan->plan(), configs[i]);
      if (resolved) microBatches = *resolved;
    }
    if (configs.size() == 2) {
      const double ratio = tokensPerSecond[1] / tokensPerSecond[0];
      if (json)
        std::printf("%s\n", nlohmann::ordered_json{{"micro_batches", microBatches},
                                                   {"output_tokens_per_s_ratio", ratio}}
                                .dump()
                                .c_str());
      else
        std::printf("%lld micro-batches: %.2fx the output tokens/s of one\n",
                    (long long)microBatches, ratio);
    }
    ::munmap(page, 2 * sizeof(double));
    return 0;
  }
  Expected<BenchReport> r = runBench(*plan, options);
  if (!r) return benchFail(r.errorMessage());
  const double copyFraction =
      r->copyBytesPerSecond > 0 ? r->achievedBytesPerSecond / r->copyBytesPerSecond : 0;
  // Decode is judged against the higher of the two measured bandwidths (on an H200 a copy reads
  // about 10% slower than a read-only kernel).
  const double ceiling = std::max(r->copyBytesPerSecond, r->readBytesPerSecond);
  const double ceilingFraction = ceiling > 0 ? r->achievedBytesPerSecond / ceiling : 0;
  const double gemmFraction =
      r->gemmFlopsPerSecond > 0 ? r->prefillTflops * 1e12 / r->gemmFlopsPerSecond : 0;
  if (json) {
    nlohmann::ordered_json j;
    j["plan"] = planPath;
    j["backend"] = r->backend;
    j["batch"] = r->batch;
    j["prompt_len"] = r->promptLength;
    j["gen"] = r->generate;
    j["prefill_ms"] = r->prefillMs;
    j["prefill_tokens_per_s"] = r->prefillTokensPerSecond;
    j["prefill_tflops"] = r->prefillTflops;
    j["gemm_ceiling_tflops"] = r->gemmFlopsPerSecond / 1e12;
    j["prefill_fraction_of_gemm_ceiling"] = gemmFraction;
    if (r->imageTokens > 0) {
      j["image_tokens"] = r->imageTokens;
      j["image_encode_ms"] = r->imageEncodeMs;
    }
    j["decode_ms_per_step"] = r->decodeMsPerStep;
    j["decode_tokens_per_s"] = r->decodeTokensPerSecond;
    j["weight_bytes"] = r->weightBytes;
    j["bytes_read_per_step"] = r->bytesReadPerStep;
    if (r->expertsReadPerLayer > 0) j["experts_read_per_layer"] = r->expertsReadPerLayer;
    j["achieved_gb_per_s"] = r->achievedBytesPerSecond / 1e9;
    j["copy_gb_per_s"] = r->copyBytesPerSecond / 1e9;
    j["fraction_of_copy_bandwidth"] = copyFraction;
    j["read_gb_per_s"] = r->readBytesPerSecond / 1e9;
    j["bandwidth_ceiling_gb_per_s"] = ceiling / 1e9;
    j["fraction_of_bandwidth_ceiling"] = ceilingFraction;
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s: %s, batch %lld, prompt %lld, %lld decode steps\n", planPath.c_str(),
              r->backend.c_str(), (long long)r->batch, (long long)r->promptLength,
              (long long)r->generate);
  std::printf("prefill: %lld tokens in %.2f ms = %.0f tokens/s, %.1f TFLOP/s",
              static_cast<long long>(r->batch) * r->promptLength, r->prefillMs,
              r->prefillTokensPerSecond, r->prefillTflops);
  if (r->gemmFlopsPerSecond > 0)
    std::printf(" (%.0f%% of the %.0f TFLOP/s GEMM ceiling)", 100 * gemmFraction,
                r->gemmFlopsPerSecond / 1e12);
  if (r->imageTokens > 0)
    std::printf("\nimage: the vision tower and projector in %.2f ms (%lld image tokens)",
                r->imageEncodeMs, static_cast<long long>(r->imageTokens));
  std::printf("\ndecode: %.3f ms/step, %.1f tokens/s; reads %s per step = %.0f GB/s",
              r->decodeMsPerStep, r->decodeTokensPerSecond,
              formatBytes(r->bytesReadPerStep).c_str(), r->achievedBytesPerSecond / 1e9);
  if (ceiling > 0)
    std::printf(" = %.1f%% of the %.0f GB/s ceiling (measured: read %.0f GB/s, copy %.0f GB/s)",
                100 * ceilingFraction, ceiling / 1e9, r->readBytesPerSecond / 1e9,
                r->copyBytesPerSecond / 1e9);
  if (r->expertsReadPerLayer > 0)
    std::printf(
        "\n        of each MoE layer's experts only %.2f: the expected distinct experts "
        "of batch %lld under uniform routing, E * (1 - (1 - k/E)^batch)",
        r->expertsReadPerLayer, static_cast<long long>(r->batch));
  std::printf("\n");
  return 0;
}
