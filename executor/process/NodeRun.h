// The ranks of one node in a multi-node run: one forked process per local rank, Gloo (or NCCL)
// collectives across every node, and what the node's control-plane agent (the parent) feeds to
// all of them in the same order. Two ways to run:
//  - the engine (a driver is set): global rank 0 hosts it and the driver; each iteration's
//    message goes up a pipe to the head's agent, which hands it to its other ranks and over the
//    control plane to every worker's agent, which hands it to its ranks (forward());
//  - one request at a time (no driver): every rank gets the stream of requests and generates.
// The agent stays single-purpose: it forwards, the ranks compute, global rank 0 reports.
//
// A rank aborts its communicator and exits when the agent tells it to, when the agent goes
// silent (frozen or dead), or when a collective fails; the process group kills the rest.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "executor/Backend.h"
#include "executor/comm/Communicator.h"
#include "executor/engine/Engine.h"
#include "executor/engine/Generation.h"
#include "executor/process/ProcessGroup.h"

namespace tpc {

struct NodeRunInfo {
  int64_t world = 1;
  std::string backend;
  std::vector<uint64_t> weightBytesPerRank;
};

using WeightSource = std::function<Expected<std::vector<float>>(uint32_t weight)>;

struct NodeRunOptions {
  uint32_t firstRank = 0, localWorld = 1;
  BackendOptions backend;  // kind, device, modelDir; onProgress and weightSource are set here
  GlooOptions gloo;        // cpu: where the store runs (serveStore is forced off)
  std::string ncclId;      // cuda: the id the head made
  // When set, the weights of global rank r come from weightSourceFor(r), not the checkpoint.
  std::function<WeightSource(uint32_t rank)> weightSourceFor;
  std::chrono::milliseconds rankTimeout{4000};  // a silent rank counts as hung
  // A rank whose agent sends nothing (not even keep-alives) this long aborts and exits.
  std::chrono::milliseconds agentTimeout{2000};
  // Ranks started before the other nodes are there (the head's, so that the server answers
  // while workers join) wait for go() before they meet their peers.
  bool waitForGo = false;
  // The engine: every rank runs it (each node the same `engine` pool sizes); global rank 0
  // hosts it with `driver` on a thread of its process, and the run ends when the driver
  // returns (or the engine fails).
  bool runsEngine = false;
  std::function<Error(Engine&)> driver;
  EngineConfig engine;
  // One request at a time: runs in global rank 0's process after each request, in stream order.
  std::function<Error(uint64_t seq, const GenerationRequest&, const GenerationResult&,
                      const NodeRunInfo&)>
      report;
};

class NodeRanks {
 public:
  // Forks the ranks (from a thread of its own that lives as long as they do).
  static Expected<std::unique_ptr<NodeRanks>> start(const LoadedPlan& plan, NodeRunOptions options);
  // Aborts ranks still running and waits for all of them.
  ~NodeRanks();
  NodeRanks(const NodeRanks&) = delete;
  NodeRanks& operator=(const NodeRanks&) = delete;

  void submit(uint64_t seq, const GenerationRequest& request);
  // The engine, on a worker: one iteration message from the head, for every local rank.
  void forward(const std::string& iteration);
  // The engine, on the head: the iteration messages global rank 0 sent since the last call,
  // already handed to this node's other ranks; the caller sends them to the workers.
  std::vector<std::string> takeIterations();
  // Readable when global rank 0 has sent something (the head's agent waits on it too); -1 when
  // this node does not hold rank 0's engine.
  int iterationFd() const { return upRead_; }
  // With waitForGo: every node is there, the ranks may connect.
  void go();
  // No more requests: ranks exit once they have served the ones they have.
  void end();
  void abort(const std::string& reason);
  // Call often from the agent's loop: flushes queued messages, sends keep-alives, and counts
  // the ranks that reported ready. Never blocks.
  void pump();
  uint32_t readyRanks() const { return ready_; }
  bool finished() const { return finished_.load(); }
  // After finished(): the root cause when the ranks failed.
  const std::optional<RankFailure>& failure() const { return result_.failure; }
  const std::vector<pid_t>& pids() const { return result_.pids; }

 private:
  NodeRanks() = default;
  void queue(const std::string& frame, bool skipLocalRankZero = false);
  void readIterations();
  void flush();  // writes what each rank's pipe takes now
  int rankBody(const LoadedPlan& plan, int localRank, RankContext& ctx);

  NodeRunOptions options_;
  std::vector<int> toRank_, fromAgent_;  // per local rank: write end (agent), read end (rank)
  std::vector<std::string> pending_;     // bytes not yet written to each rank's pipe
  int readyRead_ = -1, readyWrite_ = -1;
  int upRead_ = -1, upWrite_ = -1;  // global rank 0 -> agent: iteration frames (the engine)
  std::string upBuffer_;            // bytes read from upRead_, not yet a whole frame
  std::vector<std::string> iterations_;
  uint32_t ready_ = 0;
  bool ended_ = false;
  std::chrono::steady_clock::time_point lastKeepAlive_{};
  std::atomic<bool> finished_{false};
  ProcessGroupResult result_;
  std::thread thread_;
};

}  // namespace tpc
