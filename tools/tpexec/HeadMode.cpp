// The head's command line: `tpexec PLAN --listen H:P --workers W` with --requests (every request
// at once through the engine, whose scheduler runs in global rank 0) or --prompt-ids (one
// request, generated on every rank); global rank 0 prints the results.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "codegen/PlanFormat.h"
#include "executor/Npy.h"
#include "executor/process/NodeRun.h"
#include "net/Channel.h"
#include "net/Message.h"
#include "tools/common/Args.h"
#include "tools/tpexec/EngineFlags.h"
#include "tools/tpexec/HeadRun.h"
#include "tools/tpexec/MultiNode.h"
#include "tools/tpexec/RequestsMode.h"

namespace tpc::tpexec {
namespace {

struct HeadFlags {
  std::string planPath, listen, promptIds, requestsPath, backend = "cpu", modelDir, logitsOut,
                                                         curveKeys;
  int64_t workers = 0, localWorld = 0, maxNew = 16, topK = 0, seed = 0, rankTimeoutMs = 3000,
          nodeTimeoutMs = 2000;
  double joinTimeoutS = 300;
  double temperature = 0.0, topP = 1.0;
  bool json = false, ignoreEos = false;
  EngineFlags engine;
  std::string engineFlagSeen;  // the first engine flag given, if any
};

std::vector<int64_t> eosOf(const plan::Plan& p) {
  const plan::Attr* eos = findPlanAttr(p.model(), "eos_token_ids");
  if (eos && eos->ints()) return {eos->ints()->begin(), eos->ints()->end()};
  return {};
}

std::string joinIds(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

// Runs in global rank 0's process: the --prompt-ids result, printed as the local tpexec prints
// it.
Error printResult(const HeadFlags& f, const NamedRequest& r, const GenerationResult& g,
                  const NodeRunInfo& info) {
  if (!f.logitsOut.empty()) {
    int64_t vocab = static_cast<int64_t>(g.logits.size() / g.generatedIds.size());
    if (Error e = writeNpyF32(f.logitsOut, {static_cast<int64_t>(g.generatedIds.size()), vocab},
                              g.logits.data()))
      return e;
  }
  nlohmann::ordered_json j;
  j["prompt_ids"] = r.request.promptIds;
  j["generated_ids"] = g.generatedIds;
  j["stop_reason"] = g.stopReason;
  j["world"] = info.world;
  j["backend"] = info.backend;
  j["timings"] = {{"prefill_ms", g.prefillMs}, {"decode_ms_per_token", g.decodeMsPerToken}};
  if (f.json) {
    j["weight_bytes_per_rank"] = info.weightBytesPerRank;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("generated: %s\n", joinIds(g.generatedIds).c_str());
    std::printf(
        "world %lld (%s): prefill %zu tokens in %.2f ms, decode %.2f ms/token, stopped by %s\n",
        static_cast<long long>(info.world), info.backend.c_str(), r.request.promptIds.size(),
        g.prefillMs, g.decodeMsPerToken, g.stopReason.c_str());
  }
  std::fflush(stdout);
  return Error::success();
}

Error parseFlags(int argc, char** argv, HeadFlags& f, bool& help, std::string& helpText) {
  cli::ArgParser args("tpexec (head)",
                      "Runs a plan over several nodes: this head runs ranks 0..K-1 and serves the\n"
                      "plan, communicator id and weights to `tpexec --join` workers. --requests\n"
                      "run concurrently through the engine (its scheduler here, every iteration\n"
                      "sent to every rank); global rank 0 prints the results.");
  args.positional("PLAN", &f.planPath, "a plan written by tpc compile");
  args.option("--listen", &f.listen, "HOST:PORT", "where workers join (env TPC_MN_HEAD_PORT)");
  args.option("--workers", &f.workers, "W",
              "worker nodes to wait for (env TPC_MN_HEAD_NUM_WORKERS)");
  args.option("--local-world", &f.localWorld, "K",
              "ranks on the head (env TPC_MN_LOCAL_WORLD_SIZE; default world / (W + 1))");
  args.option("--prompt-ids", &f.promptIds, "IDS", "one request: prompt token ids (1,2,3)");
  args.option("--requests", &f.requestsPath, "FILE.jsonl",
              "one JSON request a line, all run concurrently through the engine; prints one\n"
              "JSON result a line, in order (as tpexec PLAN --requests on one node)");
  args.option("--max-new-tokens", &f.maxNew, "N", "tokens to generate at most (default 16)");
  args.option("--temperature", &f.temperature, "T", "sampling temperature (default 0: greedy)");
  args.option("--top-k", &f.topK, "K", "sample among the K most likely tokens (default 0: all)");
  args.option("--top-p", &f.topP, "P", "nucleus sampling threshold (default 1)");
  args.option("--seed", &f.seed, "S", "sampling seed (default 0)");
  args.flag("--ignore-eos", &f.ignoreEos, "keep generating past end-of-sequence tokens");
  args.choice("--backend", &f.backend, {"cpu", "cuda"}, "where to run (default cpu)");
  args.option("--model-dir", &f.modelDir, "DIR",
              "checkpoint folder (default: where the plan was compiled from)");
  args.option("--logits-out", &f.logitsOut, "FILE.npy", "with --prompt-ids: every step's logits");
  args.option("--rank-timeout-ms", &f.rankTimeoutMs, "MS",
              "a rank silent this long counts as hung (default 3000)");
  args.option("--join-timeout", &f.joinTimeoutS, "S",
              "give up when the workers have not all joined within S seconds (default 300)");
  args.option("--node-timeout-ms", &f.nodeTimeoutMs, "MS",
              "a node silent this long counts as dead (default 2000)");
  args.option("--curve-keys", &f.curveKeys, "DIR",
              "CURVE-encrypt the control plane and admit only nodes with an authorized key");
  args.flag("--json", &f.json, "print one JSON object instead of text");
  addEngineFlags(args, f.engine);
  if (Error e = args.parse(argc, argv)) return e;
  help = args.helpRequested();
  for (const char* flag : {"--max-seqs", "--max-batched-tokens", "--kv-block-size",
                           "--kv-cache-memory", "--gpu-memory-utilization", "--no-prefix-caching"})
    if (f.engineFlagSeen.empty() && args.seen(flag)) f.engineFlagSeen = flag;
  helpText = args.help();
  if (f.listen.empty() && !envOr("TPC_MN_HEAD_PORT").empty())
    f.listen = "0.0.0.0:" + envOr("TPC_MN_HEAD_PORT");
  if (!args.seen("--workers") && !envOr("TPC_MN_HEAD_NUM_WORKERS").empty())
    f.workers = std::atoll(envOr("TPC_MN_HEAD_NUM_WORKERS").c_str());
  if (!args.seen("--local-world") && !envOr("TPC_MN_LOCAL_WORLD_SIZE").empty())
    f.localWorld = std::atoll(envOr("TPC_MN_LOCAL_WORLD_SIZE").c_str());
  return Error::success();
}

}  // namespace

bool wantsHeadMode(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--listen" || std::string(argv[i]).rfind("--listen=", 0) == 0)
      return true;
  return !envOr("TPC_MN_HEAD_NUM_WORKERS").empty();
}

int runHeadMode(int argc, char** argv) {
  // A rank that died must not take the head with it when the head writes to it.
  signal(SIGPIPE, SIG_IGN);
  HeadFlags f;
  bool help = false;
  std::string helpText;
  if (Error e = parseFlags(argc, argv, f, help, helpText)) return printError(e.message(), 2);
  if (help) return std::fputs(helpText.c_str(), stdout), 0;
  if (f.listen.empty()) return printError("--listen HOST:PORT is required on the head", 2);
  if (Expected<std::pair<std::string, int>> hp = net::splitHostPort(f.listen, "--listen"); !hp)
    return printError(hp.errorMessage(), 2);
  if (f.workers < 1) return printError("--workers must be at least 1", 2);
  if (f.promptIds.empty() == f.requestsPath.empty())
    return printError("give either --prompt-ids or --requests", 2);
  if (!f.logitsOut.empty() && !f.requestsPath.empty())
    return printError("--logits-out goes with --prompt-ids, not --requests", 2);
  if (!f.engineFlagSeen.empty() && f.requestsPath.empty())
    return printError(f.engineFlagSeen + " goes with --requests (--prompt-ids runs step by step)",
                      2);
  if (f.maxNew < 1) return printError("--max-new-tokens must be at least 1", 2);
  if (f.topK < 0) return printError("--top-k must not be negative", 2);
  if (!(f.topP > 0.0 && f.topP <= 1.0)) return printError("--top-p must be in (0, 1]", 2);
  if (f.temperature < 0) return printError("--temperature must not be negative", 2);
  if (f.rankTimeoutMs < 100) return printError("--rank-timeout-ms must be at least 100", 2);
  if (f.nodeTimeoutMs < 100) return printError("--node-timeout-ms must be at least 100", 2);
  if (!(f.joinTimeoutS > 0)) return printError("--join-timeout must be above 0 seconds", 2);
  if (f.backend == "cuda" && !haveCudaBackend())
    return printError("--backend cuda: this build has no CUDA backend (use --backend cpu)", 2);

  Expected<LoadedPlan> plan = LoadedPlan::readFile(f.planPath);
  if (!plan) return printError(plan.errorMessage());
  const plan::Plan& p = plan->plan();
  int64_t world = p.world();
  std::string globalWorld = envOr("TPC_MN_GLOBAL_WORLD_SIZE");
  if (!globalWorld.empty() && std::atoll(globalWorld.c_str()) != world)
    return printError("TPC_MN_GLOBAL_WORLD_SIZE=" + globalWorld + " but the plan's world is " +
                      std::to_string(world));
  Expected<int64_t> local = headLocalWorld(world, f.workers, f.localWorld);
  if (!local) return printError(local.errorMessage(), 2);
  f.localWorld = *local;

  GenerationRequest defaults;
  defaults.maxNewTokens = f.maxNew;
  defaults.sampling = {static_cast<float>(f.temperature), f.topK, static_cast<float>(f.topP)};
  defaults.seed = static_cast<uint64_t>(f.seed);
  defaults.eosIds = f.ignoreEos ? std::vector<int64_t>{} : eosOf(p);
  std::vector<NamedRequest> requests;
  if (!f.requestsPath.empty()) {
    Expected<std::vector<NamedRequest>> r = readRequestsFile(f.requestsPath, defaults, eosOf(p));
    if (!r) return printError(r.errorMessage());
    requests = std::move(*r);
  } else {
    Expected<std::vector<int64_t>> ids = cli::parseIntList(f.promptIds, "--prompt-ids");
    if (!ids) return printError(ids.errorMessage(), 2);
    NamedRequest one;
    one.id = "0";
    one.request = defaults;
    for (int64_t id : *ids) {
      if (id < 0 || id > INT32_MAX)
        return printError("--prompt-ids: token id " + std::to_string(id) + " is out of range", 2);
      one.request.promptIds.push_back(static_cast<int32_t>(id));
    }
    one.request.keepLogits = !f.logitsOut.empty();
    requests.push_back(std::move(one));
  }
  HeadRunOptions head;
  head.listen = f.listen;
  head.backend = f.backend;
  head.modelDir = f.modelDir;
  head.curveKeys = f.curveKeys;
  head.workers = f.workers;
  head.localWorld = f.localWorld;
  head.rankTimeoutMs = f.rankTimeoutMs;
  head.nodeTimeoutMs = f.nodeTimeoutMs;
  head.joinTimeoutS = f.joinTimeoutS;
  NodeRunOptions ranks;
  if (!f.requestsPath.empty()) {
    // The engine judges each request (a bad one fails alone), as on one node.
    Expected<EngineConfig> engine = engineConfigOf(f.engine);
    if (!engine) return printError(engine.errorMessage(), 2);
    ranks.runsEngine = true;
    ranks.engine = *engine;
    ranks.driver = [&requests](Engine& e) { return driveRequests(e, requests); };
  } else {
    // Checked here, before any node starts: a bad request must not take the run down midway.
    const int64_t vocab = planIntAttr(p.model(), "vocab_size");
    const int64_t maxContext = p.limits()->max_context();
    const GenerationRequest& r = requests[0].request;
    if (r.promptIds.size() > net::kMaxPromptTokens)
      return printError("the prompt has more than " + std::to_string(net::kMaxPromptTokens) +
                        " tokens");
    if (static_cast<int64_t>(r.promptIds.size()) >= maxContext)
      return printError("the prompt has " + std::to_string(r.promptIds.size()) +
                        " tokens but the plan's max context is " + std::to_string(maxContext));
    for (int32_t id : r.promptIds)
      if (id >= vocab)
        return printError("prompt token id " + std::to_string(id) + " is outside the vocab of " +
                          std::to_string(vocab));
    ranks.report = [&](uint64_t seq, const GenerationRequest&, const GenerationResult& g,
                       const NodeRunInfo& info) { return printResult(f, requests[seq], g, info); };
  }
  if (Error e = runHead(*plan, head, std::move(ranks), requests)) return printError(e.message());
  return 0;
}

}  // namespace tpc::tpexec
