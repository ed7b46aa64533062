// tpexec: runs a plan written by `tpc compile`. One process per rank on this host; rank 0
// drives generation and prints the result.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>

#include "codegen/PlanFormat.h"
#include "codegen/PlanReader.h"
#include "executor/Npy.h"
#include "executor/process/LocalRun.h"
#include "tools/common/Args.h"
#include "tools/common/Progress.h"
#include "tools/tpexec/EngineFlags.h"
#include "tools/tpexec/FolderPlan.h"
#include "tools/tpexec/ImageInput.h"
#include "tools/tpexec/MultiNode.h"
#include "tools/tpexec/RequestsMode.h"
#include "tools/tpexec/TextMode.h"

namespace {

int fail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return code;
}

// Ranks sharing a GPU run concurrently only under the MPS daemon; without it their contexts
// time-slice and every exchange between them waits a slice (milliseconds). One line says how.
void noteMpsIfRanksShareAGpu(int64_t world, const std::string& comm) {
  int gpus = tpc::cudaDeviceCount();
  if (gpus == 0 || world <= gpus || comm == "nccl") return;
  const char* dir = std::getenv("CUDA_MPS_PIPE_DIRECTORY");
  std::string control = std::string(dir && *dir ? dir : "/tmp/nvidia-mps") + "/control";
  if (access(control.c_str(), F_OK) == 0) return;  // a daemon is running: the ranks join it
  std::fprintf(stderr,
               "note: %lld ranks share %d GPU(s); for speed start the MPS daemon first: "
               "nvidia-cuda-mps-control -d\n",
               static_cast<long long>(world), gpus);
}

std::vector<int64_t> eosOf(const tpc::plan::Plan& p) {
  const tpc::plan::Attr* eos = tpc::findPlanAttr(p.model(), "eos_token_ids");
  if (eos && eos->ints()) return {eos->ints()->begin(), eos->ints()->end()};
  return {};
}

}  // namespace

int runBenchCommand(int argc, char** argv);
int runServeCommand(int argc, char** argv);
int runServeBench(int argc, char** argv);

int runTpexec(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "bench") return runBenchCommand(argc, argv);
  if (argc > 1 && std::string_view(argv[1]) == "serve") return runServeCommand(argc, argv);
  if (argc > 1 && std::string_view(argv[1]) == "serve-bench") return runServeBench(argc, argv);
  using namespace tpc;
  // Multi-node roles have flags of their own (tools/tpexec/HeadMode.cpp, WorkerMode.cpp).
  if (tpexec::wantsWorkerMode(argc, argv)) return tpexec::runWorkerMode(argc, argv);
  if (tpexec::wantsHeadMode(argc, argv)) return tpexec::runHeadMode(argc, argv);
  if (tpexec::wantsCurveKeygen(argc, argv)) return tpexec::runCurveKeygen(argc, argv);
  std::string planPath, promptIds, logitsOut, modelDir, requestsPath, comm = "auto";
  std::string imagePath, pixelValuesPath;
  std::string backend = cudaDeviceCount() > 0 ? "cuda" : "cpu";
  tpexec::EngineFlags engineFlags;
  int64_t maxNew = 16, topK = 0, seed = 0, localWorld = 0, rankTimeoutMs = 5000;
  double temperature = 0.0, topP = 1.0;
  bool json = false, ignoreEos = false, eager = false, noNccl = false, syntheticWeights = false;
  cli::TextOptions textOptions;
  cli::ArgParser args(
      "tpexec",
      "Runs a plan: prefill the prompt, then decode with a KV cache, on every rank of the\n"
      "plan's world (one process each). Rank 0 prints the generated ids.");
  args.positional("PLAN|MODEL_DIR", &planPath,
                  "a plan written by tpc compile, or a checkpoint folder (compiled in memory)");
  args.option("--prompt-ids", &promptIds, "IDS", "prompt token ids, comma-separated (e.g. 1,2,3)");
  args.option("--requests", &requestsPath, "FILE.jsonl",
              "run every request of the file concurrently through the engine; one JSON line\n"
              "per request, in input order (fields: id, prompt_ids, max_new_tokens,\n"
              "temperature, top_k, top_p, min_p, seed, ignore_eos, stop_token_ids,\n"
              "presence_penalty, frequency_penalty, repetition_penalty, logprobs,\n"
              "cancel_after_ms)");
  args.option("--prompt", &textOptions.prompt, "TEXT",
              "prompt text; the output is streamed as text while it is generated");
  args.flag("--chat", &textOptions.chat, "wrap --prompt in the tokenizer's chat template");
  args.option("--system", &textOptions.system, "TEXT", "a system message for --chat");
  args.flag("--raw", &textOptions.raw,
            "send --prompt as it is: no template, no special tokens added");
  args.option("--tokenizer", &textOptions.tokenizer, "PATH",
              "tokenizer.json or its folder (default: the checkpoint folder's)");
  args.option("--image", &imagePath, "PATH",
              "llava: a JPEG or PNG for the prompt's image token (in --prompt-ids the token\n"
              "once, expanded to image_seq_length copies; in --prompt, <image>)");
  args.option("--pixel-values", &pixelValuesPath, "FILE.npy",
              "llava: the image as preprocessed pixel values, float32 [1, 3, size, size]");
  args.option("--max-new-tokens", &maxNew, "N", "tokens to generate at most (default 16)");
  args.option("--temperature", &temperature, "T", "sampling temperature; 0 is greedy (default 0)");
  args.option("--top-k", &topK, "K", "sample among the K most likely tokens (default 0: all)");
  args.option("--top-p", &topP, "P",
              "sample from the smallest set with probability >= P (default 1)");
  args.option("--seed", &seed, "S", "sampling seed (default 0)");
  args.flag("--ignore-eos", &ignoreEos, "keep generating past end-of-sequence tokens");
  args.choice("--backend", &backend, {"cpu", "cuda"},
              "where to run (default cuda when a GPU is visible)");
  args.choice("--comm", &comm, {"auto", "shm", "gloo", "nccl", "ipc"},
              "how the ranks talk: cpu shm or gloo; cuda nccl or ipc (one node, ranks may share "
              "a GPU). Default auto: shm on cpu; on cuda ipc when ranks share a GPU, else nccl");
  args.flag("--eager", &eager, "cuda: run every step eagerly, without CUDA Graphs");
  args.flag("--no-nccl", &noNccl,
            "leave NCCL out (as TPC_NO_NCCL=1): a MODEL_DIR gets a device map over the GPUs\n"
            "and the CPU instead of tensor parallelism");
  args.flag("--synthetic-weights", &syntheticWeights,
            "random weights instead of the checkpoint's, for timing a shape (token ids only)");
  args.option("--local-world", &localWorld, "N", "ranks on this host (default: the plan's world)");
  args.option("--model-dir", &modelDir, "DIR",
              "checkpoint folder (default: where the plan was compiled from)");
  args.option("--logits-out", &logitsOut, "FILE.npy",
              "write every step's logits, float32 [steps, vocab]");
  args.option("--rank-timeout-ms", &rankTimeoutMs, "MS",
              "a rank silent this long counts as hung (default 5000)");
  args.flag("--json", &json, "print one JSON object instead of text");
  tpexec::addEngineFlags(args, engineFlags);
  args.epilog(
      "example:\n  tpexec tiny.w8.fb --prompt-ids 1,17,42 --max-new-tokens 8\n"
      "benchmark:\n  tpexec bench PLAN --help\n"
      "server:\n  tpexec serve PLAN|MODEL_DIR --help");
  if (Error e = args.parse(argc, argv)) return fail(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  const bool textMode = args.seen("--prompt");
  if (!requestsPath.empty()) {
    if (!promptIds.empty() || textMode)
      return fail("give either --requests or --prompt-ids/--prompt", 2);
    if (!logitsOut.empty()) return fail("--logits-out goes with --prompt-ids, not --requests", 2);
  }
  if (Error e = cli::checkTextFlags(args, promptIds.empty() && requestsPath.empty(), textOptions))
    return fail(e.message(), 2);
  Expected<EngineConfig> engineConfig = tpexec::engineConfigOf(engineFlags);
  if (!engineConfig) return fail(engineConfig.errorMessage(), 2);
  Expected<std::vector<int64_t>> ids = textMode || !requestsPath.empty()
                                           ? std::vector<int64_t>{}
                                           : cli::parseIntList(promptIds, "--prompt-ids");
  if (!ids) return fail(ids.errorMessage(), 2);
  if (maxNew < 1) return fail("--max-new-tokens must be at least 1", 2);
  if (topK < 0) return fail("--top-k must not be negative", 2);
  if (!(topP > 0.0 && topP <= 1.0)) return fail("--top-p must be in (0, 1]", 2);
  if (temperature < 0) return fail("--temperature must not be negative", 2);
  if (rankTimeoutMs < 100) return fail("--rank-timeout-ms must be at least 100", 2);
  if (backend == "cuda" && !haveCudaBackend())
    return fail(
        "--backend cuda: this build has no CUDA backend (configure with the CUDA toolkit and "
        "NCCL; use --backend cpu)",
        2);

  if (noNccl) ::setenv("TPC_NO_NCCL", "1", 1);  // for this process and every rank it starts
  tpexec::FolderPlanOptions folderOptions;
  folderOptions.cuda = backend == "cuda";
  folderOptions.gpuMemoryUtilization = engineConfig->gpuMemoryUtilization;
  Expected<LoadedPlan> plan = tpexec::planToRun(planPath, folderOptions);
  if (!plan) return fail(plan.errorMessage());
  if (backend == "cuda" && !findPlanAttr(plan->plan().model(), "stage_devices"))
    noteMpsIfRanksShareAGpu(plan->plan().world(), comm);
  LocalRunOptions options;
  options.localWorld = localWorld;
  options.backend.kind = backend;
  options.comm = comm;
  options.backend.eager = eager;
  options.backend.syntheticWeights = syntheticWeights;
  options.backend.modelDir = modelDir;
  options.rankTimeout = std::chrono::milliseconds(rankTimeoutMs);
  for (int64_t id : *ids) {
    if (id < 0 || id > INT32_MAX)
      return fail("--prompt-ids: token id " + std::to_string(id) + " is out of range", 2);
    options.request.promptIds.push_back(static_cast<int32_t>(id));
  }
  // A bar while rank 0 loads its weights (every rank loads alike); small models load too fast
  // to need one.
  const auto* weights = plan->plan().ranks()->Get(0)->weights();
  uint64_t weightBytes = 0;
  for (const plan::Weight* w : *weights) weightBytes += w->bytes();
  auto bar = std::make_shared<cli::Progress>("loading weights", weightBytes,
                                             !json && weightBytes > (uint64_t{256} << 20));
  options.backend.onProgress = [bar, weights, loaded = uint32_t{0}, done = uint64_t{0}]() mutable {
    if (loaded >= weights->size()) return;
    done += weights->Get(loaded++)->bytes();
    bar->update(done);
    if (loaded == weights->size()) bar->finish();
  };
  options.request.maxNewTokens = maxNew;
  options.request.sampling = {static_cast<float>(temperature), topK, static_cast<float>(topP)};
  options.request.seed = static_cast<uint64_t>(seed);
  if (!ignoreEos) options.request.eosIds = eosOf(plan->plan());
  options.request.keepLogits = !logitsOut.empty();
  if (!requestsPath.empty()) {
    GenerationRequest defaults = options.request;
    Expected<std::vector<tpexec::NamedRequest>> requests =
        tpexec::readRequestsFile(requestsPath, defaults, eosOf(plan->plan()));
    if (!requests) return fail(requests.errorMessage(), 2);
    EngineRunOptions run;
    run.localWorld = localWorld;
    run.backend = options.backend;
    run.engine = *engineConfig;
    run.rankTimeout = options.rankTimeout;
    run.comm = comm;
    if (Error e = tpexec::runRequests(*plan, *requests, run)) return fail(e.message());
    return 0;
  }
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<cli::TextStreamer> streamer;
  if (textMode || args.seen("--tokenizer")) {
    Expected<std::unique_ptr<Tokenizer>> loaded =
        cli::loadRunTokenizer(textOptions.tokenizer, modelDir, *plan);
    if (!loaded) return fail(loaded.errorMessage());
    tokenizer = std::move(*loaded);
  }
  if (textMode) {
    Expected<std::vector<int32_t>> prompt = cli::encodePrompt(*tokenizer, textOptions);
    if (!prompt) return fail(prompt.errorMessage());
    options.request.promptIds = std::move(*prompt);
    // Chat models end their turn with the tokenizer's end token (<|im_end|>, <|eot_id|>).
    std::optional<int32_t> eos = tokenizer->tokenId(tokenizer->settings().eosToken);
    if (!ignoreEos && eos) options.request.eosIds.push_back(*eos);
    if (!json) {
      streamer = std::make_unique<cli::TextStreamer>(*tokenizer);
      options.request.onToken = [&](int32_t id) { streamer->onToken(id); };
    }
  }

  if (!imagePath.empty() || !pixelValuesPath.empty()) {
    if (!imagePath.empty() && !pixelValuesPath.empty())
      return fail("give either --image or --pixel-values, not both", 2);
    if (!requestsPath.empty()) return fail("--image goes with --prompt-ids or --prompt", 2);
    Expected<PromptImage> image =
        tpexec::loadPromptImage(plan->plan(), pixelValuesPath, imagePath, modelDir);
    if (!image) return fail(image.errorMessage());
    options.request.image = std::move(*image);
    tpexec::expandImageToken(plan->plan(), options.request.promptIds);
  }

  Error e = runPlanLocally(*plan, options, [&](const RunReport& r) -> Error {
    const GenerationResult& g = r.result;
    if (!logitsOut.empty()) {
      int64_t vocab = static_cast<int64_t>(g.logits.size() / g.generatedIds.size());
      if (Error w = writeNpyF32(logitsOut, {static_cast<int64_t>(g.generatedIds.size()), vocab},
                                g.logits.data()))
        return w;
    }
    if (json) {
      nlohmann::ordered_json j;
      j["prompt_ids"] = options.request.promptIds;
      j["generated_ids"] = g.generatedIds;
      j["stop_reason"] = g.stopReason;
      j["world"] = r.world;
      j["backend"] = r.backend;
      j["communicator"] = r.communicator;
      j["timings"] = {{"prefill_ms", g.prefillMs}, {"decode_ms_per_token", g.decodeMsPerToken}};
      if (!options.request.image.patches.empty()) j["timings"]["image_encode_ms"] = g.imageEncodeMs;
      j["weight_bytes_per_rank"] = r.weightBytesPerRank;
      if (tokenizer) {
        Error failed = Error::success();
        j["text"] = cli::decodeOutput(*tokenizer, g.generatedIds, failed);
        if (failed) return failed;
      }
      std::printf("%s\n", j.dump().c_str());
    } else if (streamer) {
      streamer->finish();
      if (streamer->error()) return streamer->error();
      std::fprintf(stderr,
                   "world %lld (%s, %s): prefill %zu tokens in %.2f ms, decode %.2f ms/token, %zu "
                   "tokens, stopped by %s\n",
                   (long long)r.world, r.backend.c_str(), r.communicator.c_str(),
                   options.request.promptIds.size(), g.prefillMs, g.decodeMsPerToken,
                   g.generatedIds.size(), g.stopReason.c_str());
    } else {
      std::string text;
      for (int32_t id : g.generatedIds) text += (text.empty() ? "" : ",") + std::to_string(id);
      std::printf("generated: %s\n", text.c_str());
      std::printf(
          "world %lld (%s, %s): prefill %zu tokens in %.2f ms, decode %.2f ms/token, stopped by "
          "%s\n",
          (long long)r.world, r.backend.c_str(), r.communicator.c_str(),
          options.request.promptIds.size(), g.prefillMs, g.decodeMsPerToken, g.stopReason.c_str());
    }
    std::fflush(stdout);
    return Error::success();
  });
  if (e) return fail(e.message());
  return 0;
}

int main(int argc, char** argv) {
  // Library code reports failures as values; anything thrown is a bug or out-of-memory, and
  // still ends with one line and a non-zero exit rather than an abort.
  try {
    return runTpexec(argc, argv);
  } catch (const std::exception& e) {
    return fail(std::string("internal: ") + e.what());
  } catch (...) {
    return fail("internal: unknown exception");
  }
}
