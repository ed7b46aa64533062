// `tpexec serve PLAN|MODEL_DIR`: the engine on this host's ranks and the OpenAI-compatible
// HTTP server (net/http) on rank 0. A checkpoint folder is compiled in memory first, for as
// many ranks as there are GPUs (the largest power of 2 the model allows). With --listen and
// --workers the ranks spread over this head and `tpexec --join` workers; the engine and the
// server stay on the head's rank 0.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "codegen/PlanFormat.h"
#include "codegen/PlanReader.h"
#include "executor/VisionInput.h"
#include "executor/engine/EngineRun.h"
#include "net/Channel.h"
#include "net/Message.h"
#include "net/http/Server.h"
#include "tools/common/Args.h"
#include "tools/tpexec/EngineFlags.h"
#include "tools/tpexec/FolderPlan.h"
#include "tools/tpexec/HeadRun.h"

namespace {

int serveFail(const std::string& message, int code = 1) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return code;
}

// A llava plan's image input for the server: the tower's sizes and the checkpoint's
// preprocessor_config.json. Null (images refused, said once) when the plan has no tower or its
// preprocessing settings cannot be read.
std::shared_ptr<const tpc::http::ServedImages> servedImagesOf(const tpc::LoadedPlan& plan,
                                                              const std::string& modelDir,
                                                              int64_t maxBytes, int64_t maxPixels) {
  using namespace tpc;
  if (!plan.plan().vision_tower()) return nullptr;
  Expected<VisionInput> vision = visionInputWithPreprocessing(plan.plan(), modelDir);
  if (!vision) {
    std::fprintf(stderr, "tpexec serve: image parts are refused: %s\n",
                 vision.errorMessage().c_str());
    return nullptr;
  }
  auto served = std::make_shared<http::ServedImages>();
  served->tokenIndex = vision->tokenIndex;
  served->seqLength = vision->seqLength;
  served->maxBytes = static_cast<uint64_t>(maxBytes);
  served->maxPixels = maxPixels;
  served->prepare = [v = *vision](const RgbImage& image) {
    EngineImage out;
    out.patches = patchesOfImage(v, image);
    out.rows = v.rows;
    return out;
  };
  return served;
}

std::string modelFolderOf(const tpc::LoadedPlan& plan, const std::string& modelDir) {
  if (!modelDir.empty()) return modelDir;
  return plan.plan().model_dir() ? plan.plan().model_dir()->str() : std::string();
}

}  // namespace

int runServeCommand(int argc, char** argv) {
  using namespace tpc;
  std::string target, modelDir, tokenizerPath;
  std::string backend = cudaDeviceCount() > 0 ? "cuda" : "cpu";
  int64_t port = 8000, maxQueued = 1024, maxBodyBytes = int64_t{4} << 20;
  int64_t world = 0, localWorld = 0, maxContext = 0, maxBatch = 8, rankTimeoutMs = 5000;
  int64_t maxImageBytes = int64_t{20} << 20, maxImagePixels = int64_t{4096} * 4096;
  bool eager = false, syntheticWeights = false, noNccl = false;
  tpexec::EngineFlags engineFlags;
  tpexec::HeadRunOptions head;
  head.workers = 0;
  http::ServerOptions server;
  cli::ArgParser args("tpexec serve",
                      "Serves a plan (or a checkpoint folder, compiled in memory) with OpenAI's\n"
                      "HTTP API: /v1/completions, /v1/chat/completions, /v1/models, /health,\n"
                      "/metrics, /tokenize, /detokenize. Requests are batched continuously by the\n"
                      "engine on every rank of this host.");
  args.positional("PLAN|MODEL_DIR", &target, "a plan from tpc compile, or a checkpoint folder");
  args.option("--host", &server.host, "ADDR", "address to listen on (default 127.0.0.1)");
  args.option("--port", &port, "N", "port to listen on; 0 picks a free one (default 8000)");
  args.choice("--backend", &backend, {"cpu", "cuda"},
              "where to run (default cuda when a GPU is visible)");
  args.option("--served-model-name", &server.modelName, "NAME",
              "the model's name in the API (default: the checkpoint folder's name)");
  args.option("--api-key", &server.apiKey, "KEY", "require Authorization: Bearer KEY on /v1");
  args.option("--max-queued", &maxQueued, "N",
              "requests waiting for their first token at most; past it, 429 (default 1024)");
  args.option("--max-body-bytes", &maxBodyBytes, "N", "largest request body (default 4 MiB)");
  args.option("--max-image-bytes", &maxImageBytes, "N",
              "llava: largest image (JPEG or PNG bytes) in a request (default 20 MiB)");
  args.option("--max-image-pixels", &maxImagePixels, "N",
              "llava: largest image in pixels, width x height (default 4096 x 4096)");
  args.option("--world", &world, "N",
              "MODEL_DIR: compile for N ranks (default: the GPUs visible, 1 without a GPU)");
  args.option("--max-context", &maxContext, "N", "MODEL_DIR: longest sequence (as tpc compile)");
  args.option("--max-batch", &maxBatch, "N", "MODEL_DIR: most sequences per step (default 8)");
  args.option("--local-world", &localWorld, "N",
              "ranks on this host (default: the plan's world; with --workers, an even share)");
  args.option("--listen", &head.listen, "HOST:PORT",
              "run over several nodes: where `tpexec --join` workers join");
  args.option("--workers", &head.workers, "W", "with --listen: worker nodes to wait for");
  args.option("--join-timeout", &head.joinTimeoutS, "S",
              "with --listen: give up when the workers have not all joined within S seconds "
              "(default 300)");
  args.option("--node-timeout-ms", &head.nodeTimeoutMs, "MS",
              "with --listen: a node silent this long counts as dead (default 2000)");
  args.option("--curve-keys", &head.curveKeys, "DIR",
              "with --listen: CURVE-encrypt the control plane, admit only authorized nodes");
  args.option("--model-dir", &modelDir, "DIR",
              "checkpoint folder (default: where the plan was compiled from)");
  args.option("--tokenizer", &tokenizerPath, "PATH",
              "tokenizer.json or its folder (default: the checkpoint folder's; without one,\n"
              "only prompts of token ids are served)");
  tpexec::addEngineFlags(args, engineFlags);
  args.flag("--no-nccl", &noNccl,
            "leave NCCL out (as TPC_NO_NCCL=1): a MODEL_DIR gets a device map over the GPUs\n"
            "and the CPU instead of tensor parallelism");
  args.flag("--eager", &eager, "cuda: never use CUDA Graphs");
  args.flag("--synthetic-weights", &syntheticWeights,
            "random weights (made on the GPU on cuda), for load tests of a shape without its\n"
            "checkpoint (prompts of token ids only)");
  args.option("--rank-timeout-ms", &rankTimeoutMs, "MS",
              "a rank silent this long counts as hung (default 5000)");
  args.epilog(
      "example:\n  tpexec serve models/llama3-8b --port 8000\n"
      "  curl localhost:8000/v1/completions -d '{\"prompt\": \"Hello\", \"max_tokens\": 16}'");
  if (Error e = args.parse(argc, argv, 2)) return serveFail(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  if (port < 0 || port > 65535) return serveFail("--port must be in 0..65535", 2);
  if (maxQueued < 1) return serveFail("--max-queued must be at least 1", 2);
  if (maxBodyBytes < 1024) return serveFail("--max-body-bytes must be at least 1024", 2);
  if (maxImageBytes < 1) return serveFail("--max-image-bytes must be at least 1", 2);
  if (maxImagePixels < 1) return serveFail("--max-image-pixels must be at least 1", 2);
  if (world < 0 || (world & (world - 1)) != 0) return serveFail("--world must be a power of 2", 2);
  Expected<EngineConfig> engineConfig = tpexec::engineConfigOf(engineFlags);
  if (!engineConfig) return serveFail(engineConfig.errorMessage(), 2);
  if (rankTimeoutMs < 100) return serveFail("--rank-timeout-ms must be at least 100", 2);
  if (backend == "cuda" && !haveCudaBackend())
    return serveFail("--backend cuda: this build has no CUDA backend (use --backend cpu)", 2);
  const bool multiNode = !head.listen.empty();
  if (multiNode && syntheticWeights)
    return serveFail("--synthetic-weights serves one node only (workers load the head's weights)",
                     2);
  if (multiNode) {
    if (Expected<std::pair<std::string, int>> hp = net::splitHostPort(head.listen, "--listen"); !hp)
      return serveFail(hp.errorMessage(), 2);
    if (head.workers < 1) return serveFail("--workers must be at least 1 with --listen", 2);
    if (head.nodeTimeoutMs < 100) return serveFail("--node-timeout-ms must be at least 100", 2);
    if (!(head.joinTimeoutS > 0)) return serveFail("--join-timeout must be above 0 seconds", 2);
  } else if (args.seen("--workers") || args.seen("--join-timeout") ||
             args.seen("--node-timeout-ms") || args.seen("--curve-keys")) {
    return serveFail(
        "--workers, --join-timeout, --node-timeout-ms and --curve-keys go with "
        "--listen",
        2);
  }
  server.port = static_cast<int>(port);
  server.maxQueued = maxQueued;
  server.maxBodyBytes = static_cast<uint64_t>(maxBodyBytes);
  server.stopOnSignals = true;

  if (noNccl) ::setenv("TPC_NO_NCCL", "1", 1);  // for this process and every rank it starts
  tpexec::FolderPlanOptions folderOptions;
  folderOptions.tool = "tpexec serve";
  folderOptions.world = world;
  folderOptions.maxContext = maxContext;
  folderOptions.maxBatch = maxBatch;
  folderOptions.cuda = backend == "cuda";
  folderOptions.gpuMemoryUtilization = engineConfig->gpuMemoryUtilization;
  Expected<LoadedPlan> plan = tpexec::planToRun(target, folderOptions);
  if (!plan) return serveFail(plan.errorMessage());
  std::string folder = modelFolderOf(*plan, modelDir);
  if (server.modelName.empty())
    server.modelName = std::filesystem::path(folder.empty() ? target : folder)
                           .lexically_normal()
                           .filename()
                           .string();
  if (server.modelName.empty()) server.modelName = "model";
  server.images = servedImagesOf(*plan, modelDir, maxImageBytes, maxImagePixels);
  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizerAt = tokenizerPath.empty() ? folder : tokenizerPath;
  bool haveTokenizerFile =
      !tokenizerAt.empty() &&
      (std::filesystem::is_regular_file(tokenizerAt) ||
       std::filesystem::exists(std::filesystem::path(tokenizerAt) / "tokenizer.json"));
  if (haveTokenizerFile || !tokenizerPath.empty()) {
    Expected<std::unique_ptr<Tokenizer>> loaded = Tokenizer::load(tokenizerAt);
    if (!loaded) return serveFail(loaded.errorMessage());
    tokenizer = std::move(*loaded);
  } else {
    std::fprintf(stderr,
                 "tpexec serve: no tokenizer.json beside the model: serving prompts of token ids "
                 "only\n");
  }

  const int64_t planWorld = plan->plan().world();
  auto serve = [&](Engine& engine) -> Error {
    Expected<std::unique_ptr<http::HttpServer>> s =
        http::HttpServer::create(engine, tokenizer.get(), server);
    if (!s) return s.takeError();
    std::printf("tpexec serve: listening on http://%s:%d (model %s, world %lld, %s)\n",
                server.host.c_str(), (*s)->port(), server.modelName.c_str(),
                static_cast<long long>(planWorld), backend.c_str());
    std::fflush(stdout);
    return (*s)->run();
  };
  Error e = Error::success();
  if (multiNode) {
    Expected<int64_t> local = tpexec::headLocalWorld(planWorld, head.workers, localWorld);
    if (!local) return serveFail(local.errorMessage(), 2);
    head.localWorld = *local;
    head.backend = backend;
    head.modelDir = modelDir;
    head.rankTimeoutMs = rankTimeoutMs;
    // A rank or node that died must not take the head with it when the head writes to it.
    signal(SIGPIPE, SIG_IGN);
    NodeRunOptions ranks;
    ranks.backend.eager = eager;
    ranks.runsEngine = true;
    ranks.engine = *engineConfig;
    // An iteration crosses to the workers in one control-plane frame; half of it is left to
    // the images, the rest to the token arrays and block tables.
    ranks.engine.maxImageBytesPerIteration = net::kChunkBytes / 2;
    ranks.driver = serve;
    e = tpexec::runHead(*plan, head, std::move(ranks), {});
  } else {
    EngineRunOptions run;
    run.localWorld = localWorld;
    run.backend.kind = backend;
    run.backend.eager = eager;
    run.backend.syntheticWeights = syntheticWeights;
    run.backend.modelDir = modelDir;
    run.engine = *engineConfig;
    run.rankTimeout = std::chrono::milliseconds(rankTimeoutMs);
    e = runEngineLocally(*plan, run, serve);
  }
  if (e) return serveFail(e.message());
  return 0;
}
