#include "tools/tpexec/HeadRun.h"

#include <chrono>
#include <cstdio>
#include <random>

#include "executor/WeightLoader.h"
#include "executor/WeightSlices.h"
#include "executor/comm/StoreServer.h"
#include "executor/engine/Iteration.h"
#include "net/Head.h"

namespace tpc::tpexec {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

class Head {
 public:
  Head(const HeadRunOptions& o, const LoadedPlan& plan) : o_(o), plan_(plan) {}

  Error run(NodeRunOptions n, const std::vector<NamedRequest>& requests) {
    const plan::Plan& p = plan_.plan();
    auto started = Clock::now();
    Expected<Checkpoint> checkpoint = openPlanCheckpoint(p, o_.modelDir);
    if (!checkpoint) return checkpoint.takeError();
    checkpoint_ = std::make_unique<Checkpoint>(std::move(*checkpoint));
    Expected<std::pair<std::string, int>> where = net::splitHostPort(o_.listen, "--listen");
    if (!where) return where.takeError();
    std::string host = where->first == "*" ? "0.0.0.0" : where->first;
    net::HeadOptions h;
    h.listen = o_.listen;
    h.workers = static_cast<int>(o_.workers);
    h.world = p.world();
    h.localWorld = static_cast<uint32_t>(o_.localWorld);
    h.backend = o_.backend;
    h.timeout = milliseconds(o_.nodeTimeoutMs);
    h.heartbeat = std::max(milliseconds(10), h.timeout / 10);
    h.pool.engine = n.runsEngine;
    h.pool.kvBlockSize = n.engine.kvBlockSize;
    h.pool.kvCacheBytes = n.engine.kvCacheBytes;
    h.pool.gpuMemoryUtilization = static_cast<float>(n.engine.gpuMemoryUtilization);
    if (!o_.curveKeys.empty()) {
      Expected<net::CurveKeys> keys = net::readCurveKeys(o_.curveKeys, true);
      if (!keys) return keys.takeError();
      h.keys = std::move(*keys);
    }
    std::vector<uint8_t> commId;
    std::unique_ptr<StoreServer> store;
    if (o_.backend == "cuda") {
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
        plan_.bytes(), h, reader, [](const std::string& line) { log(line); });
    if (!head) return head.takeError();
    head_ = std::move(*head);
    log("listening on " + head_->endpoint() + " for " + std::to_string(o_.workers) +
        " worker(s); world " + std::to_string(p.world()) + ", " + std::to_string(o_.localWorld) +
        " rank(s) here");

    const std::string prefix = "run" + std::to_string(std::random_device{}()) + "/";
    n.firstRank = 0;
    n.localWorld = static_cast<uint32_t>(o_.localWorld);
    n.backend.kind = o_.backend;
    n.backend.modelDir = o_.modelDir;
    n.gloo.storeHost = host == "0.0.0.0" ? "127.0.0.1" : host;
    n.gloo.storePort = store ? store->port() : 0;
    n.gloo.prefix = prefix;
    n.gloo.deviceHost = host == "0.0.0.0" ? net::localAddressToward("192.0.2.1") : host;
    n.ncclId.assign(commId.begin(), commId.end());
    n.rankTimeout = milliseconds(o_.rankTimeoutMs);
    n.agentTimeout = h.timeout;
    engine_ = n.runsEngine;
    // The engine's ranks start now and wait for the workers: its driver (the server) answers
    // from the start, not Ready until every rank of every node has its weights.
    n.waitForGo = engine_;
    if (engine_)
      if (Error e = startLocalRanks(n)) return e;

    // Workers that never come must not keep the head waiting forever.
    const auto joinBy = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(o_.joinTimeoutS));
    if (Error e = until([&] {
          if (!head_->allJoined() && Clock::now() > joinBy) joinTimedOut_ = true;
          return head_->allJoined() || joinTimedOut_;
        }))
      return e;
    if (joinTimedOut_)
      return makeError("--join-timeout: after ", o_.joinTimeoutS, " s, ", head_->missing());
    head_->assign(store ? static_cast<uint32_t>(store->port()) : 0, prefix, commId);
    if (Error e = until([&] { return head_->allLoaded(); })) return e;
    head_->startAll();
    if (engine_)
      local_->go();
    else if (Error e = startLocalRanks(n))
      return e;
    if (Error e = until([&] { return head_->allReady() && local_->readyRanks() == n.localWorld; }))
      return e;
    log("ready: world " + std::to_string(p.world()) + " on " + std::to_string(o_.workers + 1) +
        " nodes in " + std::to_string(msSince(started)) + " ms; " + head_->describeNodes());

    auto serving = Clock::now();
    double cpuBefore = controlPlaneCpuMs();
    if (!engine_) sendRequests(requests);
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
  Error startLocalRanks(const NodeRunOptions& n) {
    Expected<std::unique_ptr<NodeRanks>> local = NodeRanks::start(plan_, n);
    if (!local) return local.takeError();
    local_ = std::move(*local);
    return Error::success();
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

  void sendRequests(const std::vector<NamedRequest>& requests) {
    for (size_t i = 0; i < requests.size(); ++i) {
      net::Message m;
      m.type = net::MsgType::Request;
      toWire(i, requests[i].request, m.request);
      head_->broadcast(m);
      local_->submit(i, requests[i].request);
    }
    endStream();
  }

  void endStream() {
    net::Message end;
    end.type = net::MsgType::End;
    head_->broadcast(end);
    local_->end();
    ended_ = true;
  }

  // Global rank 0's iterations, as it sent them, to every worker; after the last one (Stop)
  // the stream ends as a stream of requests does.
  Error forwardIterations() {
    for (std::string& bytes : local_->takeIterations()) {
      if (bytes.size() > net::kChunkBytes)
        return makeError("an iteration message of ", bytes.size(),
                         " bytes is over the control plane's frame of ", net::kChunkBytes,
                         " (give a smaller --max-batched-tokens)");
      net::Message m;
      m.type = net::MsgType::Iteration;
      m.data.assign(bytes.begin(), bytes.end());
      head_->broadcast(m);
      if (Iteration::isStop(bytes)) endStream();
    }
    return Error::success();
  }

  // Serves the control plane until `done`; fails when a node or a local rank does.
  template <class Done>
  Error until(Done done) {
    while (!done()) {
      if (Error e = head_->pump(milliseconds(50), local_ ? local_->iterationFd() : -1)) return e;
      if (!local_) continue;
      local_->pump();
      if (engine_)
        if (Error e = forwardIterations()) return e;
      if (local_->finished() && (local_->failure() || !ended_)) return localFailure();
    }
    return Error::success();
  }

  // The head's own ranks stopped. When a worker died, they only noticed its absence first
  // (a broken connection beats a missed heartbeat): listen for the workers' news a little
  // longer, so the error names the node at fault.
  Error localFailure() {
    auto deadline = Clock::now() + milliseconds(o_.nodeTimeoutMs) + milliseconds(500);
    while (Clock::now() < deadline)
      if (Error e = head_->pump(milliseconds(20))) return e;
    std::string why = local_->failure() ? local_->failure()->message : "they exited early";
    return makeError("the head's ranks stopped: ", why);
  }

  const HeadRunOptions& o_;
  const LoadedPlan& plan_;
  std::unique_ptr<Checkpoint> checkpoint_;
  std::unique_ptr<net::HeadServer> head_;
  std::unique_ptr<NodeRanks> local_;
  bool ended_ = false;   // after End, local ranks finishing is the plan, not a failure
  bool engine_ = false;  // the ranks run the engine: its iterations go to the workers
  bool joinTimedOut_ = false;
};

}  // namespace

Expected<int64_t> headLocalWorld(int64_t world, int64_t workers, int64_t localWorld) {
  if (localWorld == 0) {
    if (world % (workers + 1) != 0)
      return makeError("world ", world, " does not split evenly over ", workers + 1,
                       " nodes; give --local-world");
    localWorld = world / (workers + 1);
  }
  if (localWorld < 1 || localWorld + workers > world)
    return makeError("--local-world ", localWorld, " with ", workers,
                     " worker(s) does not fit the plan's world of ", world);
  return localWorld;
}

Error runHead(const LoadedPlan& plan, const HeadRunOptions& options, NodeRunOptions ranks,
              const std::vector<NamedRequest>& requests) {
  Head head(options, plan);
  if (Error e = head.run(std::move(ranks), requests)) {
    head.abort(e.message());
    return e;
  }
  return Error::success();
}

}  // namespace tpc::tpexec
