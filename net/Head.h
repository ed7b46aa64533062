// The head's side of the control plane: admits worker nodes (checking protocol version, plan
// hash, local world and worker id), serves them the plan and, to nodes without the
// checkpoint, exactly their ranks' weight slices; assigns ranks; then broadcasts requests.
// Heartbeats go both ways; a node that fails, dies or freezes ends the run with an Error
// naming it and its ranks. Peers that send garbage or are refused do not disturb the others.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ir/Error.h"
#include "net/Channel.h"

namespace tpc::net {

struct HeadOptions {
  std::string listen;           // HOST:PORT
  int workers = 1;              // worker nodes to wait for
  uint32_t world = 1;           // the plan's
  uint32_t localWorld = 1;      // ranks the head runs itself (ranks 0..localWorld-1)
  std::string backend = "cpu";  // every node must run the same
  std::chrono::milliseconds heartbeat{200}, timeout{2000};
  CurveKeys keys;
  EnginePool pool;  // sent with Assign
};

using WeightReader = std::function<Expected<std::vector<uint8_t>>(
    uint32_t rank, uint32_t weight, uint32_t slice, uint64_t offset, uint32_t length)>;
using LogLine = std::function<void(const std::string&)>;

class HeadServer {
 public:
  static Expected<std::unique_ptr<HeadServer>> listen(std::vector<uint8_t> planBytes,
                                                      HeadOptions options, WeightReader weights,
                                                      LogLine log);
  ~HeadServer();
  int port() const { return channel_->port(); }
  std::string endpoint() const { return channel_->endpoint(); }

  // Handles the first message that arrives within `wait`, sends due heartbeats and checks
  // every node's. An Error means the run has to end; it names the node and its ranks. The
  // wait also ends when `wakeFd` (when given) is readable.
  Error pump(std::chrono::milliseconds wait, int wakeFd = -1);

  bool allJoined() const;  // every worker accepted and holding the plan
  // Who the head is still waiting for, for the --join-timeout error: "2 of 3 workers joined
  // (worker 0 (10.0.0.2:5000, no ranks yet) still fetching the plan); 1 never connected".
  std::string missing() const;
  // Orders the nodes (by worker id, then arrival), gives each its ranks, and sends Assign.
  void assign(uint32_t storePort, const std::string& storePrefix,
              const std::vector<uint8_t>& commId);
  bool allLoaded() const;  // every worker has its weights (or a checkpoint)
  void startAll();         // Start: fork the ranks
  bool allReady() const;   // every worker's ranks are up
  void broadcast(const Message& m);
  bool allDone() const;
  void abortAll(const std::string& reason);
  // "worker 0 (127.0.0.1:5501) ranks 2-3; ..." for the log.
  std::string describeNodes() const;

 private:
  struct Node;
  HeadServer() = default;
  void handle(Incoming& in);
  void refuse(const std::string& peer, const std::string& address, const std::string& why);
  Error welcome(const std::string& peer, const std::string& address, const Message& hello);
  Error serve(Node& node, const Message& m);
  std::string nameOf(const Node& node) const;
  Node* find(const std::string& peer);
  template <class Pred>
  bool every(Pred pred) const;

  HeadOptions options_;
  std::vector<uint8_t> plan_;
  uint64_t planHash_ = 0;
  WeightReader weights_;
  LogLine log_;
  std::unique_ptr<Channel> channel_;
  std::vector<std::unique_ptr<Node>> nodes_;
  Error failure_ = Error::success();
  std::chrono::steady_clock::time_point lastBeat_{};
};

}  // namespace tpc::net
