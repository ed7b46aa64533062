// The rendezvous store: a key-value map served over TCP by one thread, so ranks on different
// hosts can exchange their Gloo addresses without a shared filesystem. Rank 0 runs it for now;
// the control plane later runs it on the head node.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>

#include "executor/comm/Socket.h"
#include "ir/Error.h"

namespace tpc {

class StoreServer {
 public:
  // Listens on host:port (port 0: an ephemeral port, see port()).
  static Expected<std::unique_ptr<StoreServer>> start(const std::string& host, int port);
  // Serves a socket that already listens; takes ownership of it.
  static Expected<std::unique_ptr<StoreServer>> adopt(UniqueFd listening);

  // Stops the thread and closes every connection.
  ~StoreServer();
  StoreServer(const StoreServer&) = delete;
  StoreServer& operator=(const StoreServer&) = delete;

  int port() const { return port_; }
  // Connections closed because they sent a malformed or oversized frame.
  size_t refusedFrames() const { return refusedFrames_.load(); }

 private:
  StoreServer(UniqueFd listening, UniqueFd wake);
  void serve();

  UniqueFd listening_;
  UniqueFd wake_;  // an eventfd: written once to stop the thread
  int port_ = -1;
  std::atomic<size_t> refusedFrames_{0};
  std::thread thread_;
};

}  // namespace tpc
