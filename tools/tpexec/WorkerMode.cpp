// A worker node: `tpexec --join HOST:PORT`. Gets plan, ranks and (without a matching
// checkpoint) weights from the head, runs its ranks, and feeds them what the head broadcasts:
// requests, or the engine's iterations. Workers never schedule.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <tuple>

#include "executor/WeightLoader.h"
#include "executor/WeightSlices.h"
#include "executor/engine/Iteration.h"
#include "executor/process/NodeRun.h"
#include "net/Worker.h"
#include "tools/common/Args.h"
#include "tools/tpexec/MultiNode.h"

namespace tpc::tpexec {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void log(const std::string& line) { std::fprintf(stderr, "worker: %s\n", line.c_str()); }

GenerationRequest fromWire(const net::WireRequest& w) {
  GenerationRequest r;
  r.promptIds = w.promptIds;
  r.maxNewTokens = w.maxNewTokens;
  r.sampling = {w.temperature, w.topK, w.topP};
  r.seed = w.seed;
  r.eosIds = w.eosIds;
  r.keepLogits = w.keepLogits;
  return r;
}

struct WorkerFlags {
  std::string join, planPath, modelDir, backend = "cpu", curveKeys;
  int64_t localWorld = 0, workerId = -1, rankTimeoutMs = 3000, joinTimeoutMs = 30000;
};

class Worker {
 public:
  explicit Worker(const WorkerFlags& f) : f_(f) {}

  Error run() {
    auto started = Clock::now();
    std::vector<uint8_t> ownPlan;
    if (!f_.planPath.empty()) {
      Expected<LoadedPlan> own = LoadedPlan::readFile(f_.planPath);
      if (!own) return own.takeError();
      ownPlan = own->bytes();
    }
    net::WorkerOptions o;
    o.head = f_.join;
    o.workerId = f_.workerId;
    o.localWorld = static_cast<uint32_t>(f_.localWorld);
    o.backend = f_.backend;
    o.ownPlan = f_.planPath.empty() ? nullptr : &ownPlan;
    o.joinTimeout = milliseconds(f_.joinTimeoutMs);
    if (!f_.curveKeys.empty()) {
      Expected<net::CurveKeys> keys = net::readCurveKeys(f_.curveKeys, false);
      if (!keys) return keys.takeError();
      o.keys = std::move(*keys);
    }
    Expected<std::unique_ptr<net::WorkerClient>> client = net::WorkerClient::connect(o);
    if (!client) return client.takeError();
    client_ = std::move(*client);
    Expected<std::vector<uint8_t>> bytes = client_->join();
    if (!bytes) return bytes.takeError();
    Expected<LoadedPlan> plan =
        LoadedPlan::fromBytes(std::move(*bytes), "the plan from " + f_.join);
    if (!plan) return tell(plan.takeError());
    plan_ = std::make_unique<LoadedPlan>(std::move(*plan));  // outlives the ranks' thread
    const plan::Plan& p = plan_->plan();

    Expected<Checkpoint> checkpoint = openPlanCheckpoint(p, f_.modelDir);
    bool stream = !checkpoint;
    if (stream)
      log("no matching checkpoint here (" + checkpoint.errorMessage() +
          "); the head streams this node's weight slices");
    if (Error e = client_->send(net::MsgType::PlanReady)) return e;
    Expected<net::Message> assign = client_->waitForAssignment();
    if (!assign) return assign.takeError();
    if (assign->world != p.world() || assign->localWorld != o.localWorld ||
        assign->firstRank + assign->localWorld > p.world())
      return tell(makeError("the head assigned ranks ", assign->firstRank, "+", assign->localWorld,
                            " of world ", assign->world, ", which do not fit this node's plan"));
    if (assign->pool.engine && (assign->pool.kvBlockSize < 1 || assign->pool.kvBlockSize > 1024))
      return tell(makeError("the head asked for KV blocks of ", assign->pool.kvBlockSize,
                            " tokens (1..1024)"));
    if (stream) {
      auto sink = [this](uint32_t rank, uint32_t weight, uint32_t slice, std::vector<uint8_t> b) {
        auto& slices = slices_[{rank, weight}];
        if (slices.size() <= slice) slices.resize(slice + 1);
        slices[slice] = std::move(b);
      };
      if (Error e = client_->fetchWeights(p, assign->firstRank, assign->localWorld, sink)) return e;
      log("received the weight slices of ranks " + std::to_string(assign->firstRank) + "-" +
          std::to_string(assign->firstRank + assign->localWorld - 1));
    }
    if (Error e = client_->send(net::MsgType::Loaded)) return e;
    if (Expected<net::Message> go = client_->waitFor(net::MsgType::Start); !go)
      return go.takeError();

    Expected<std::pair<std::string, int>> head = net::splitHostPort(f_.join, "--join");
    if (!head) return head.takeError();
    NodeRunOptions n;
    n.firstRank = assign->firstRank;
    n.localWorld = assign->localWorld;
    n.backend.kind = f_.backend;
    n.backend.modelDir = f_.modelDir;
    n.gloo.storeHost = head->first;
    n.gloo.storePort = static_cast<int>(assign->storePort);
    n.gloo.prefix = assign->storePrefix;
    n.gloo.deviceHost = net::localAddressToward(head->first);
    n.ncclId.assign(assign->commId.begin(), assign->commId.end());
    n.rankTimeout = milliseconds(f_.rankTimeoutMs);
    // The engine's followers size their KV pools as the head's ranks do.
    n.runsEngine = assign->pool.engine;
    n.engine.kvBlockSize = assign->pool.kvBlockSize;
    n.engine.kvCacheBytes = assign->pool.kvCacheBytes;
    n.engine.gpuMemoryUtilization = assign->pool.gpuMemoryUtilization;
    if (stream) {
      const plan::Plan* planPtr = &p;
      n.weightSourceFor = [this, planPtr](uint32_t rank) -> WeightSource {
        return [this, planPtr, rank](uint32_t weight) -> Expected<std::vector<float>> {
          return weightFromPackedSlices(*planPtr, rank, weight, slices_[{rank, weight}]);
        };
      };
    }
    Expected<std::unique_ptr<NodeRanks>> local = NodeRanks::start(*plan_, n);
    if (!local) return tell(local.takeError());
    local_ = std::move(*local);

    bool ready = false, ended = false;
    double cpuAtReady = 0;
    Clock::time_point readyAt;
    while (true) {
      Expected<std::optional<net::Message>> m = client_->poll(milliseconds(50));
      if (!m) return m.takeError();
      if (*m) {
        const net::Message& msg = **m;
        if (msg.type == net::MsgType::Iteration && !ended) {
          // The engine's next step, for every rank here; after Stop they return on their own.
          std::string bytes(msg.data.begin(), msg.data.end());
          local_->forward(bytes);
          ended = Iteration::isStop(bytes);
        } else if (msg.type == net::MsgType::Request && !ended)
          local_->submit(msg.request.seq, fromWire(msg.request));
        else if (msg.type == net::MsgType::End)
          ended = true, local_->end();
        else
          return tell(makeError("unexpected ", net::msgTypeName(msg.type), " from the head"));
      }
      local_->pump();
      if (!ready && local_->readyRanks() == n.localWorld) {
        ready = true;
        cpuAtReady = controlPlaneCpuMs();
        readyAt = Clock::now();
        if (Error e = client_->send(net::MsgType::Ready)) return e;
        log("ready: ranks " + std::to_string(n.firstRank) + "-" +
            std::to_string(n.firstRank + n.localWorld - 1) + " " +
            std::to_string(
                std::chrono::duration_cast<milliseconds>(Clock::now() - started).count()) +
            " ms after joining");
      }
      if (local_->finished()) {
        if (local_->failure()) return tell(makeError(local_->failure()->message));
        if (!ended) return tell(makeError("this node's ranks exited before the end"));
        log("control plane: " + std::to_string(controlPlaneCpuMs() - cpuAtReady) +
            " ms of CPU while serving for " +
            std::to_string(
                std::chrono::duration_cast<milliseconds>(Clock::now() - readyAt).count()) +
            " ms");
        return client_->send(net::MsgType::Done);
      }
    }
  }

  void abort(const std::string& reason) {
    if (local_) local_->abort(reason);
    local_.reset();
  }

 private:
  // Passes a failure on to the head (best effort), so it can name this node.
  Error tell(Error e) {
    if (client_) [[maybe_unused]]
      Error ignored = client_->send(net::MsgType::Failed, e.message());
    return e;
  }

  const WorkerFlags& f_;
  std::unique_ptr<net::WorkerClient> client_;
  std::unique_ptr<LoadedPlan> plan_;
  std::map<std::pair<uint32_t, uint32_t>, std::vector<std::vector<uint8_t>>> slices_;
  std::unique_ptr<NodeRanks> local_;
};

}  // namespace

bool wantsWorkerMode(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--join" || std::string(argv[i]).rfind("--join=", 0) == 0)
      return true;
  return !envOr("TPC_MN_WORKER_SERVER_ADDR").empty();
}

int runWorkerMode(int argc, char** argv) {
  // A rank that died must not take its node's agent with it when the agent writes to it.
  signal(SIGPIPE, SIG_IGN);
  WorkerFlags f;
  cli::ArgParser args("tpexec --join",
                      "Joins a head as a worker node: receives the plan, this node's ranks and,\n"
                      "when it has no matching checkpoint, its weight slices; then runs its ranks\n"
                      "on what the head broadcasts. Needs no plan file.");
  args.option("--join", &f.join, "HOST:PORT", "the head (env TPC_MN_WORKER_SERVER_ADDR)");
  args.option("--local-world", &f.localWorld, "K",
              "ranks on this node (env TPC_MN_LOCAL_WORLD_SIZE; default 1)");
  args.option("--worker-id", &f.workerId, "I",
              "this node's place among the workers, 0..W-1 (env TPC_MN_WORKER_ID; default: order "
              "of joining)");
  args.option("--model-dir", &f.modelDir, "DIR",
              "checkpoint folder; without a matching one the head streams the weights");
  args.choice("--backend", &f.backend, {"cpu", "cuda"}, "where to run (default cpu)");
  args.option("--rank-timeout-ms", &f.rankTimeoutMs, "MS",
              "a rank silent this long counts as hung (default 3000)");
  args.option("--join-timeout-ms", &f.joinTimeoutMs, "MS",
              "give up when no head answers this long (default 30000)");
  args.option("--curve-keys", &f.curveKeys, "DIR",
              "CURVE keys (node.key, node.key_secret, head.key)");
  args.positional("PLAN", &f.planPath,
                  "optional: the same plan as the head's (its hash is checked)", false);
  if (Error e = args.parse(argc, argv)) return printError(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  if (f.join.empty()) f.join = envOr("TPC_MN_WORKER_SERVER_ADDR");
  if (!args.seen("--local-world"))
    f.localWorld = envOr("TPC_MN_LOCAL_WORLD_SIZE").empty()
                       ? 1
                       : std::atoll(envOr("TPC_MN_LOCAL_WORLD_SIZE").c_str());
  if (!args.seen("--worker-id") && !envOr("TPC_MN_WORKER_ID").empty())
    f.workerId = std::atoll(envOr("TPC_MN_WORKER_ID").c_str());
  if (f.join.empty()) return printError("--join HOST:PORT is required", 2);
  if (Expected<std::pair<std::string, int>> hp = net::splitHostPort(f.join, "--join"); !hp)
    return printError(hp.errorMessage(), 2);
  if (f.localWorld < 1 || f.localWorld > 1024)
    return printError("--local-world must be in 1..1024", 2);
  if (f.workerId < -1) return printError("--worker-id must not be negative", 2);
  if (f.rankTimeoutMs < 100) return printError("--rank-timeout-ms must be at least 100", 2);
  if (f.backend == "cuda" && !haveCudaBackend())
    return printError("--backend cuda: this build has no CUDA backend (use --backend cpu)", 2);
  Worker worker(f);
  if (Error e = worker.run()) {
    worker.abort(e.message());
    return printError(e.message());
  }
  return 0;
}

}  // namespace tpc::tpexec
