// Communicator over Gloo's TCP transport. Gloo reports failures by throwing from deep inside;
// everything is caught here and becomes one Error line naming this rank, the collective and,
// when Gloo's connection state tells us, the peer rank that went away.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <type_traits>

#include "executor/comm/Communicator.h"
#include "executor/comm/GlooPeerSockets.h"
#include "executor/comm/StoreClient.h"
#include "executor/comm/StoreServer.h"

namespace tpc {
namespace {

// Gloo prefixes messages with "[file:line] " and sometimes spans lines; an Error is one line.
std::string oneLine(const char* what) {
  std::string text = what ? what : "unknown error";
  if (!text.empty() && text[0] == '[') {
    size_t end = text.find("] ");
    if (end != std::string::npos) text.erase(0, end + 2);
  }
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

// Passes Gloo's rendezvous through to the store and keeps what each rank published under its
// rank number: the pair addresses that GlooPeerSockets matches to sockets.
class RecordingStore final : public gloo::rendezvous::Store {
 public:
  RecordingStore(StoreClient& store, int rank) : store_(store), rank_(rank) {}

  void set(const std::string& key, const std::vector<char>& data) override {
    if (key == std::to_string(rank_)) published_[rank_] = data;
    store_.set(key, data);
  }
  std::vector<char> get(const std::string& key) override {
    std::vector<char> value = nameMissingRank(key, [&] { return store_.get(key); });
    if (int peer = rankKey(key); peer >= 0) published_[peer] = value;
    return value;
  }
  void wait(const std::vector<std::string>& keys) override {
    nameMissingRank(keys.empty() ? "" : keys[0], [&] {
      store_.wait(keys);
      return 0;
    });
  }
  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    nameMissingRank(keys.empty() ? "" : keys[0], [&] {
      store_.wait(keys, timeout);
      return 0;
    });
  }

  const std::map<int, std::vector<char>>& published() const { return published_; }

 private:
  // Gloo's full-mesh rendezvous keys each rank's addresses by its bare rank number.
  static int rankKey(const std::string& key) {
    if (key.empty() || key.size() > 6 || !std::all_of(key.begin(), key.end(), ::isdigit)) {
      return -1;
    }
    return std::stoi(key);
  }

  // A store failure while waiting for a rank's addresses means that rank never showed up.
  template <class F>
  auto nameMissingRank(const std::string& key, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const std::exception& e) {
      int peer = rankKey(key);
      if (peer < 0) throw;
      throw gloo::IoException("rank " + std::to_string(peer) + " did not join: " + e.what());
    }
  }

  StoreClient& store_;
  int rank_;
  std::map<int, std::vector<char>> published_;
};

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(int rank, int world, std::shared_ptr<gloo::rendezvous::Context> context,
                   GlooPeerSockets sockets)
      : rank_(rank), world_(world), context_(std::move(context)), sockets_(std::move(sockets)) {}

  int rank() const override { return rank_; }
  int world() const override { return world_; }

  Error allReduceSum(float* data, size_t count) override {
    if (count == 0) return guard("allReduceSum");
    return run("allReduceSum", [&](uint32_t tag) {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(data, count);
      opts.setReduceFunction(
          static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      opts.setTag(tag);
      gloo::allreduce(opts);
    });
  }

  Error allGather(const float* in, size_t countPerRank, float* out) override {
    if (countPerRank == 0) return guard("allGather");
    return run("allGather", [&](uint32_t tag) {
      gloo::AllgatherOptions opts(context_);
      // Gloo copies the input into this rank's slot; when it already is that slot, it must not.
      if (in != out + static_cast<size_t>(rank_) * countPerRank) {
        opts.setInput(const_cast<float*>(in), countPerRank);
      }
      opts.setOutput(out, countPerRank * static_cast<size_t>(world_));
      opts.setTag(tag);
      gloo::allgather(opts);
    });
  }

  Error barrier() override {
    return run("barrier", [&](uint32_t tag) {
      gloo::BarrierOptions opts(context_);
      opts.setTag(tag);
      gloo::barrier(opts);
    });
  }

  Error broadcast(std::string& bytes, int root) override {
    uint64_t size = bytes.size();
    if (Error e = run("broadcast", [&](uint32_t tag) {
          gloo::BroadcastOptions opts(context_);
          opts.setOutput(&size, 1);
          opts.setRoot(root);
          opts.setTag(tag);
          gloo::broadcast(opts);
        }))
      return e;
    bytes.resize(size);
    if (size == 0) return Error::success();
    return run("broadcast", [&](uint32_t tag) {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size());
      opts.setRoot(root);
      opts.setTag(tag);
      gloo::broadcast(opts);
    });
  }

  // Pipeline stages: one unbound buffer per message on a slot of our own, apart from the
  // collectives' tags, which must advance alike on every rank (only two ranks take part here).
  Error send(const float* data, size_t count, int peer) override {
    if (Error e = checkPeer("send", peer)) return e;
    if (count == 0) return Error::success();
    return run("send", [&] {
      auto buffer = context_->createUnboundBuffer(const_cast<float*>(data), count * sizeof(float));
      buffer->send(peer, kPointToPointSlot);
      buffer->waitSend(context_->getTimeout());
    });
  }

  Error recv(float* data, size_t count, int peer) override {
    if (Error e = checkPeer("recv", peer)) return e;
    if (count == 0) return Error::success();
    return run("recv", [&] {
      auto buffer = context_->createUnboundBuffer(data, count * sizeof(float));
      buffer->recv(peer, kPointToPointSlot);
      buffer->waitRecv(context_->getTimeout());
    });
  }

  void abort() override {
    aborted_ = true;
    sockets_.shutdownAll();
  }

 private:
  // The error a collective gets without running: after abort() or an earlier failure, Gloo's
  // connections are in an unknown state and must not be used again.
  Error guard(const char* op) {
    if (aborted_) return makeError("rank ", rank_, ": ", op, " after the communicator was aborted");
    std::lock_guard<std::mutex> lock(brokenMutex_);
    if (broken_) {
      return makeError("rank ", rank_, ": ", op, " on a communicator broken earlier: ", *broken_);
    }
    return Error::success();
  }

  static constexpr uint64_t kPointToPointSlot = uint64_t{0x7e} << 56;

  Error checkPeer(const char* op, int peer) {
    if (Error e = guard(op)) return e;
    if (peer < 0 || peer >= world_ || peer == rank_)
      return makeError("rank ", rank_, ": ", op, " with rank ", peer, ", not another rank of ",
                       world_);
    return Error::success();
  }

  template <class Body>
  Error run(const char* op, Body&& body) {
    if (Error e = guard(op)) return e;
    std::string why;
    try {
      // Distinct tags keep a late message of one collective from matching the next one; a
      // point-to-point message takes none.
      if constexpr (std::is_invocable_v<Body, uint32_t>)
        body(nextTag_++);
      else
        body();
      return Error::success();
    } catch (const std::exception& e) {
      why = oneLine(e.what());
    } catch (...) {
      why = "unknown exception";
    }
    std::ostringstream os;
    os << "rank " << rank_ << ": " << op << " failed";
    if (aborted_) os << " (communicator aborted)";
    std::vector<int> peers = sockets_.peersNamedIn(why);
    if (!peers.empty()) {
      os << (peers.size() == 1 ? " (peer rank " : " (peer ranks ");
      for (size_t i = 0; i < peers.size(); ++i) os << (i ? ", " : "") << peers[i];
      os << ")";
    }
    os << ": " << why;
    std::lock_guard<std::mutex> lock(brokenMutex_);
    broken_ = os.str();
    return Error::failure(os.str());
  }

  const int rank_;
  const int world_;
  std::shared_ptr<gloo::rendezvous::Context> context_;
  const GlooPeerSockets sockets_;
  std::atomic<bool> aborted_{false};
  std::mutex brokenMutex_;
  std::optional<std::string> broken_;
  uint32_t nextTag_ = 1;
};

// Serves a copy of the caller's listening socket, so the caller keeps (and closes) its own.
Expected<std::unique_ptr<StoreServer>> adoptDuplicate(int listenFd) {
  UniqueFd copy(::fcntl(listenFd, F_DUPFD_CLOEXEC, 0));
  if (!copy.valid()) return makeError("cannot duplicate the store socket: ", strerror(errno));
  return StoreServer::adopt(std::move(copy));
}

}  // namespace

Expected<std::unique_ptr<Communicator>> createGlooCommunicator(int rank, int world,
                                                               const GlooOptions& options) {
  if (world < 1 || rank < 0 || rank >= world) {
    return makeError("rank ", rank, ": not a rank of a world of ", world);
  }
  if (world == 1) return createLocalCommunicator();
  if (options.timeout.count() <= 0) {
    return makeError("rank ", rank, ": the Gloo timeout must be positive, got ",
                     options.timeout.count(), " ms");
  }
  std::unique_ptr<StoreServer> server;
  int storePort = options.storePort;
  if (rank == 0 && options.serveStore) {
    auto started = options.storeListenFd >= 0
                       ? adoptDuplicate(options.storeListenFd)
                       : StoreServer::start(options.storeHost, options.storePort);
    if (!started) return started.takeError().withContext("rank 0: ");
    server = std::move(*started);
    storePort = server->port();
  } else if (storePort <= 0) {
    return makeError("rank ", rank, ": no store port given and this rank does not serve the store");
  }
  std::string context = "rank " + std::to_string(rank) + ": ";
  auto client = StoreClient::connect(options.storeHost, storePort, options.timeout,
                                     options.prefix + "/gloo/");
  if (!client) return client.takeError().withContext(context);

  auto glooContext = std::make_shared<gloo::rendezvous::Context>(rank, world);
  RecordingStore recording(**client, rank);
  GlooPeerSockets sockets;
  std::string step = "rendezvous";
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = options.deviceHost;
    auto device = gloo::transport::tcp::CreateDevice(attr);
    glooContext->setTimeout(options.timeout);
    glooContext->connectFullMesh(recording, device);
    sockets = GlooPeerSockets::discover(rank, world, recording.published());
    // Rank 0's store must outlive every rank's rendezvous; a barrier proves they are all done.
    step = "barrier after rendezvous";
    gloo::BarrierOptions barrier(glooContext);
    gloo::barrier(barrier);
  } catch (const std::exception& e) {
    return makeError(context, step, " failed: ", oneLine(e.what()));
  } catch (...) {
    return makeError(context, step, " failed: unknown exception");
  }
  return std::unique_ptr<Communicator>(
      std::make_unique<GlooCommunicator>(rank, world, std::move(glooContext), std::move(sockets)));
}

}  // namespace tpc
