// The head: serves plan, communicator id and weights to the workers, runs ranks 0..K-1
// itself, and broadcasts every request to every rank; global rank 0 prints the results.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "codegen/PlanFormat.h"
#include "executor/Npy.h"
#include "executor/WeightLoader.h"
#include "executor/WeightSlices.h"
#include "executor/comm/StoreServer.h"
#include "executor/process/NodeRun.h"
#include "net/Head.h"
#include "tools/common/Args.h"
#include "tools/tpexec/MultiNode.h"

namespace tpc::tpexec {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct HeadFlags {
  std::string planPath, listen, promptIds, requestsPath, backend = "cpu", modelDir, logitsOut,
                                                         curveKeys;
  int64_t workers = 0, localWorld = 0, maxNew = 16, topK = 0, seed = 0, rankTimeoutMs = 3000,
          nodeTimeoutMs = 2000;
  double joinTimeoutS = 300;
  double temperature = 0.0, topP = 1.0;
  bool json = false, ignoreEos = false;
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

// Runs in global rank 0's process: one result, printed as the local tpexec prints it, or as
// one JSON line per request with --requests.
Error printResult(const HeadFlags& f, const NamedRequest& r, const GenerationResult& g,
                  const NodeRunInfo& info) {
  if (!f.logitsOut.empty()) {
    int64_t vocab = static_cast<int64_t>(g.logits.size() / g.generatedIds.size());
    if (Error e = writeNpyF32(f.logitsOut, {static_cast<int64_t>(g.generatedIds.size()), vocab},
                              g.logits.data()))
      return e;
  }
  nlohmann::ordered_json j;
  if (!f.requestsPath.empty()) j["id"] = r.id;
  j["prompt_ids"] = r.request.promptIds;
  j["generated_ids"] = g.generatedIds;
  j["stop_reason"] = g.stopReason;
  j["world"] = info.world;
  j["backend"] = info.backend;
  j["timings"] = {{"prefill_ms", g.prefillMs}, {"decode_ms_per_token", g.decodeMsPerToken}};
  if (f.json || !f.requestsPath.empty()) {
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
                      "Runs a plan over several nodes: this head runs ranks 0..K-1, serves the\n"
                      "plan, communicator id and weights to `tpexec --join` workers, and sends\n"
                      "every request to every rank. Global rank 0 prints the results.");
  args.positional("PLAN", &f.planPath, "a plan written by tpc compile");
  args.option("--listen", &f.listen, "HOST:PORT", "where workers join (env TPC_MN_HEAD_PORT)");
  args.option("--workers", &f.workers, "W",
              "worker nodes to wait for (env TPC_MN_HEAD_NUM_WORKERS)");
  args.option("--local-world", &f.localWorld, "K",
              "ranks on the head (env TPC_MN_LOCAL_WORLD_SIZE; default world / (W + 1))");
  args.option("--prompt-ids", &f.promptIds, "IDS", "one request: prompt token ids (1,2,3)");
  args.option("--requests", &f.requestsPath, "FILE.jsonl",
              "one JSON request a line; prints one JSON result a line, in order");
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
  if (Error e = args.parse(argc, argv)) return e;
  help = args.helpRequested();
  helpText = args.help();
  if (f.listen.empty() && !envOr("TPC_MN_HEAD_PORT").empty())
    f.listen = "0.0.0.0:" + envOr("TPC_MN_HEAD_PORT");
  if (!args.seen("--workers") && !envOr("TPC_MN_HEAD_NUM_WORKERS").empty())
    f.workers = std::atoll(envOr("TPC_MN_HEAD_NUM_WORKERS").c_str());
  if (!args.seen("--local-world") && !envOr("TPC_MN_LOCAL_WORLD_SIZE").empty())
    f.localWorld = std::atoll(envOr("TPC_MN_LOCAL_WORLD_SIZE").c_str());
  return Error::success();
}

class Head {
 public:
  Head(const HeadFlags& f, const LoadedPlan& plan) : f_(f), plan_(plan) {}

  Error run(const std::vector<NamedRequest>& requests) {
    const plan::Plan& p = plan_.plan();
    auto started = Clock::now();
    Expected<Checkpoint> checkpoint = openPlanCheckpoint(p, f_.modelDir);
    if (!checkpoint) return checkpoint.takeError();
    checkpoint_ = std::make_unique<Checkpoint>(std::move(*checkpoint));
    Expected<std::pair<std::string, int>> where = net::splitHostPort(f_.listen, "--listen");
    if (!where) return where.takeError();
    std::string host = where->first == "*" ? "0.0.0.0" : where->first;
    net::HeadOptions o;
    o.listen = f_.listen;
    o.workers = static_cast<int>(f_.workers);
    o.world = p.world();
    o.localWorld = static_cast<uint32_t>(f_.localWorld);
    o.backend = f_.backend;
    o.timeout = milliseconds(f_.nodeTimeoutMs);
    o.heartbeat = std::max(milliseconds(10), o.timeout / 10);
    if (!f_.curveKeys.empty()) {
      Expected<net::CurveKeys> keys = net::readCurveKeys(f_.curveKeys, true);
      if (!keys) return keys.takeError();
      o.keys = std::move(*keys);
    }
    std::vector<uint8_t> commId;
    std::unique_ptr<StoreServer> store;
    if (f_.backend == "cuda") {
      Expected<std::string> id = newNcclUniqueId();
      if (!id) return id.takeError();
      commId.assign(id->begin(), id->end());
    } else {
      Expected<std::unique_ptr<StoreServer>> s = StoreServer::start(host, 0);
      if (!s) return s.takeError();
      store = std::move(*s);
    }
    auto reader = [this, &p](uint32_t rank, uint32_t weight, uint32_t slice, uint64_t offset,
                             uint32_t length) {
      return readPackedSlice(p, *checkpoint_, rank, weight, slice, offset, length);
    };
    Expected<std::unique_ptr<net::HeadServer>> head = net::HeadServer::listen(
        plan_.bytes(), o, reader, [](const std::string& line) { log(line); });
    if (!head) return head.takeError();
    head_ = std::move(*head);
    log("listening on " + head_->endpoint() + " for " + std::to_string(f_.workers) +
        " worker(s); world " + std::to_string(p.world()) + ", " + std::to_string(f_.localWorld) +
        " rank(s) here");

    // Workers that never come must not keep the head waiting forever.
    const auto joinBy = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(f_.joinTimeoutS));
    if (Error e = until([&] {
          if (!head_->allJoined() && Clock::now() > joinBy) joinTimedOut_ = true;
          return head_->allJoined() || joinTimedOut_;
        }))
      return e;
    if (joinTimedOut_)
      return makeError("--join-timeout: after ", f_.joinTimeoutS, " s, ", head_->missing());
    std::string prefix = "run" + std::to_string(std::random_device{}()) + "/";
    head_->assign(store ? static_cast<uint32_t>(store->port()) : 0, prefix, commId);
    if (Error e = until([&] { return head_->allLoaded(); })) return e;
    head_->startAll();

    NodeRunOptions n;
    n.firstRank = 0;
    n.localWorld = static_cast<uint32_t>(f_.localWorld);
    n.backend.kind = f_.backend;
    n.backend.modelDir = f_.modelDir;
    n.gloo.storeHost = host == "0.0.0.0" ? "127.0.0.1" : host;
    n.gloo.storePort = store ? store->port() : 0;
    n.gloo.prefix = prefix;
    n.gloo.deviceHost = host == "0.0.0.0" ? net::localAddressToward("192.0.2.1") : host;
    n.ncclId.assign(commId.begin(), commId.end());
    n.rankTimeout = milliseconds(f_.rankTimeoutMs);
    n.agentTimeout = o.timeout;
    n.report = [&](uint64_t seq, const GenerationRequest&, const GenerationResult& g,
                   const NodeRunInfo& info) { return printResult(f_, requests[seq], g, info); };
    Expected<std::unique_ptr<NodeRanks>> local = NodeRanks::start(plan_, n);
    if (!local) return local.takeError();
    local_ = std::move(*local);
    if (Error e = until([&] { return head_->allReady() && local_->readyRanks() == n.localWorld; }))
      return e;
    log("ready: world " + std::to_string(p.world()) + " on " + std::to_string(f_.workers + 1) +
        " nodes in " + std::to_string(msSince(started)) + " ms; " + head_->describeNodes());

    auto serving = Clock::now();
    double cpuBefore = controlPlaneCpuMs();
    for (size_t i = 0; i < requests.size(); ++i) {
      net::Message m;
      m.type = net::MsgType::Request;
      toWire(i, requests[i].request, m.request);
      head_->broadcast(m);
      local_->submit(i, requests[i].request);
      if (requests[i].cancelAfterMs >= 0)
        cancels_.emplace_back(Clock::now() + milliseconds(requests[i].cancelAfterMs), i);
    }
    net::Message end;
    end.type = net::MsgType::End;
    head_->broadcast(end);
    local_->end();
    ended_ = true;
    if (Error e = until([&] { return local_->finished() && head_->allDone(); })) return e;
    log("control plane: " + std::to_string(controlPlaneCpuMs() - cpuBefore) +
        " ms of CPU while serving for " + std::to_string(msSince(serving)) + " ms");
    return Error::success();
  }

  // Ends the run everywhere after `e`: workers are told, local ranks abort and are reaped.
  void abort(const std::string& reason) {
    if (head_) head_->abortAll(reason);
    if (local_) local_->abort(reason);
    local_.reset();
  }

 private:
  static void log(const std::string& line) { std::fprintf(stderr, "head: %s\n", line.c_str()); }
  static long long msSince(Clock::time_point t) {
    return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
  }
  static void toWire(uint64_t seq, const GenerationRequest& r, net::WireRequest& w) {
    w.seq = seq;
    w.promptIds = r.promptIds;
    w.maxNewTokens = r.maxNewTokens;
    w.temperature = r.sampling.temperature;
    w.topK = r.sampling.topK;
    w.topP = r.sampling.topP;
    w.seed = r.seed;
    w.eosIds = r.eosIds;
    w.keepLogits = r.keepLogits;
  }

  // Serves the control plane until `done`; fails when a node or a local rank does.
  template <class Done>
  Error until(Done done) {
    while (!done()) {
      if (Error e = head_->pump(milliseconds(50))) return e;
      if (!local_) continue;
      fireDueCancels();
      local_->pump();
      if (local_->finished() && (local_->failure() || !ended_)) return localFailure();
    }
    return Error::success();
  }

  // Cancellation goes to every rank like a request; the ranks agree on the step to stop at.
  void fireDueCancels() {
    auto now = Clock::now();
    for (auto it = cancels_.begin(); it != cancels_.end();) {
      if (it->first > now) {
        ++it;
        continue;
      }
      net::Message m;
      m.type = net::MsgType::Cancel;
      m.request.seq = it->second;
      head_->broadcast(m);
      local_->cancel(it->second);
      it = cancels_.erase(it);
    }
  }

  // The head's own ranks stopped. When a worker died, they only noticed its absence first
  // (a broken connection beats a missed heartbeat): listen for the workers' news a little
  // longer, so the error names the node at fault.
  Error localFailure() {
    auto deadline = Clock::now() + milliseconds(f_.nodeTimeoutMs) + milliseconds(500);
    while (Clock::now() < deadline)
      if (Error e = head_->pump(milliseconds(20))) return e;
    std::string why = local_->failure() ? local_->failure()->message : "they exited early";
    return makeError("the head's ranks stopped: ", why);
  }

  const HeadFlags& f_;
  const LoadedPlan& plan_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<net::HeadServer> head_;
  std::unique_ptr<NodeRanks> local_;
  std::vector<std::pair<Clock::time_point, uint64_t>> cancels_;  // due time, request
  bool ended_ = false;  // after End, local ranks finishing is the plan, not a failure
  bool joinTimedOut_ = false;
};

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
  if (f.localWorld == 0) {
    if (world % (f.workers + 1) != 0)
      return printError("world " + std::to_string(world) + " does not split evenly over " +
                            std::to_string(f.workers + 1) + " nodes; give --local-world",
                        2);
    f.localWorld = world / (f.workers + 1);
  }
  if (f.localWorld < 1 || f.localWorld + f.workers > world)
    return printError("--local-world " + std::to_string(f.localWorld) + " with " +
                          std::to_string(f.workers) +
                          " worker(s) does not fit the plan's world of " + std::to_string(world),
                      2);

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
    NamedRequest one{"0", defaults};
    for (int64_t id : *ids) {
      if (id < 0 || id > INT32_MAX)
        return printError("--prompt-ids: token id " + std::to_string(id) + " is out of range", 2);
      one.request.promptIds.push_back(static_cast<int32_t>(id));
    }
    one.request.keepLogits = !f.logitsOut.empty();
    requests.push_back(std::move(one));
  }
  // Checked here, before any node starts: a bad request must not take the run down midway.
  const int64_t vocab = planIntAttr(p.model(), "vocab_size");
  const int64_t maxContext = p.limits()->max_context();
  for (const NamedRequest& r : requests) {
    std::string where = f.requestsPath.empty() ? "" : "request " + r.id + ": ";
    if (!r.engineOnlyFields.empty())
      return printError(where + "\"" + r.engineOnlyFields[0] +
                        "\" is not supported across nodes yet (run on a single node)");
    if (r.request.maxNewTokens < 1) return printError(where + "max_new_tokens must be at least 1");
    if (r.request.promptIds.size() > net::kMaxPromptTokens)
      return printError(where + "the prompt has more than " +
                        std::to_string(net::kMaxPromptTokens) + " tokens");
    if (static_cast<int64_t>(r.request.promptIds.size()) >= maxContext)
      return printError(where + "the prompt has " + std::to_string(r.request.promptIds.size()) +
                        " tokens but the plan's max context is " + std::to_string(maxContext));
    for (int32_t id : r.request.promptIds)
      if (id >= vocab)
        return printError(where + "prompt token id " + std::to_string(id) +
                          " is outside the vocab of " + std::to_string(vocab));
  }

  Head head(f, *plan);
  if (Error e = head.run(requests)) {
    head.abort(e.message());
    return printError(e.message());
  }
  return 0;
}

}  // namespace tpc::tpexec
