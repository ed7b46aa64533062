#include "executor/comm/StoreServer.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <unordered_map>
#include <vector>

#include "executor/comm/StoreProtocol.h"

namespace tpc {
namespace {

using Clock = std::chrono::steady_clock;

// Bounds on what clients can make the server hold; rendezvous needs a few KB in all.
constexpr size_t kMaxConnections = 256;
constexpr size_t kMaxStoredBytes = size_t(1) << 30;
// Reads at most this much per wake-up so one big upload cannot starve the other clients.
constexpr size_t kReadChunk = 1 << 20;
constexpr auto kDrainTime = std::chrono::milliseconds(500);
constexpr size_t kMaxDrainBytes = 1 << 20;

struct Connection {
  UniqueFd fd;
  std::vector<char> in;  // the frame being received: header, then key and value
  size_t need = store::kRequestHeaderBytes;
  bool haveHeader = false;
  store::RequestHeader header{};
  std::string out;  // the response being sent
  size_t outSent = 0;
  bool closeAfterWrite = false;
  // After a refusal: our side is shut down and we discard what the client still sends, so
  // the close is a clean end-of-stream that leaves the client able to read the reason, not a
  // reset (closing a socket with unread input resets it).
  bool draining = false;
  Clock::time_point drainUntil{};
  size_t drained = 0;
  bool closed = false;
};

class Service {
 public:
  explicit Service(std::atomic<size_t>& refused) : refused_(refused) {}

  // Reads what is available; false when the connection must be dropped now.
  bool onReadable(Connection& c) {
    while (c.out.empty() && !c.closeAfterWrite) {
      size_t have = c.in.size();
      size_t want = std::min(c.need - have, kReadChunk);
      c.in.resize(have + want);
      ssize_t n = ::recv(c.fd.get(), c.in.data() + have, want, MSG_DONTWAIT);
      if (n <= 0) {
        c.in.resize(have);
        if (n < 0 && errno == EINTR) continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
      }
      c.in.resize(have + static_cast<size_t>(n));
      if (c.in.size() < c.need) {
        if (static_cast<size_t>(n) < want) return true;  // drained for now
        continue;
      }
      if (!c.haveHeader) {
        std::string problem = store::parseRequestHeader(c.in.data(), c.header);
        if (!problem.empty()) {
          refuse(c, problem);
          return true;
        }
        c.haveHeader = true;
        c.need = store::kRequestHeaderBytes + c.header.keyLength + c.header.valueLength;
        if (c.in.size() < c.need) continue;
      }
      handleFrame(c);
    }
    return true;
  }

  // Sends what the socket takes; false when the connection must be dropped now.
  bool onWritable(Connection& c) {
    while (c.outSent < c.out.size()) {
      ssize_t n = ::send(c.fd.get(), c.out.data() + c.outSent, c.out.size() - c.outSent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n <= 0) return false;
      c.outSent += static_cast<size_t>(n);
    }
    c.out.clear();
    c.outSent = 0;
    if (c.closeAfterWrite && !c.draining) {
      ::shutdown(c.fd.get(), SHUT_WR);
      c.draining = true;
      c.drainUntil = Clock::now() + kDrainTime;
    }
    return true;
  }

  // Discards input of a refused connection; false once it should be closed.
  static bool onDrainable(Connection& c) {
    char scratch[16384];
    for (;;) {
      ssize_t n = ::recv(c.fd.get(), scratch, sizeof(scratch), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) return false;
      c.drained += static_cast<size_t>(n);
      if (c.drained > kMaxDrainBytes) return false;
    }
    return Clock::now() < c.drainUntil;
  }

 private:
  void refuse(Connection& c, const std::string& reason) {
    ++refused_;
    respond(c, store::Status::kBadRequest, reason.data(), reason.size());
    c.closeAfterWrite = true;
  }

  void respond(Connection& c, store::Status status, const char* value, size_t size) {
    c.out = store::encodeResponseHeader(status, size);
    c.out.append(value, size);
    c.outSent = 0;
  }

  void handleFrame(Connection& c) {
    const char* key = c.in.data() + store::kRequestHeaderBytes;
    std::string name(key, c.header.keyLength);
    if (c.header.op == store::Op::kSet) {
      const char* value = key + c.header.keyLength;
      auto it = values_.find(name);
      size_t replaced = it == values_.end() ? 0 : it->second.size();
      if (storedBytes_ - replaced + c.header.valueLength > kMaxStoredBytes) {
        refuse(c, "store full");
        return;
      }
      storedBytes_ = storedBytes_ - replaced + c.header.valueLength;
      values_[name].assign(value, value + c.header.valueLength);
      respond(c, store::Status::kOk, nullptr, 0);
    } else {
      auto it = values_.find(name);
      if (it == values_.end()) {
        respond(c, store::Status::kNotFound, nullptr, 0);
      } else {
        respond(c, store::Status::kOk, it->second.data(), it->second.size());
      }
    }
    c.in.clear();
    c.in.shrink_to_fit();  // a 64 MB upload should not stay reserved per connection
    c.need = store::kRequestHeaderBytes;
    c.haveHeader = false;
  }

  std::atomic<size_t>& refused_;
  std::unordered_map<std::string, std::vector<char>> values_;
  size_t storedBytes_ = 0;
};

}  // namespace

Expected<std::unique_ptr<StoreServer>> StoreServer::start(const std::string& host, int port) {
  auto listening = listenTcp(host, port);
  if (!listening) return listening.takeError().withContext("store server: ");
  return adopt(std::move(*listening));
}

Expected<std::unique_ptr<StoreServer>> StoreServer::adopt(UniqueFd listening) {
  int port = localPort(listening.get());
  if (port < 0) return makeError("store server: the socket given to serve is not bound");
  // Accepting must never block the loop, whatever the caller did to the socket.
  if (::fcntl(listening.get(), F_SETFL, ::fcntl(listening.get(), F_GETFL) | O_NONBLOCK) != 0) {
    return makeError("store server: fcntl on the listening socket: ", strerror(errno));
  }
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return makeError("store server: eventfd: ", strerror(errno));
  std::unique_ptr<StoreServer> server(new StoreServer(std::move(listening), std::move(wake)));
  server->port_ = port;
  server->thread_ = std::thread([s = server.get()] { s->serve(); });
  return server;
}

StoreServer::StoreServer(UniqueFd listening, UniqueFd wake)
    : listening_(std::move(listening)), wake_(std::move(wake)) {}

StoreServer::~StoreServer() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

void StoreServer::serve() {
  Service service(refusedFrames_);
  std::list<Connection> connections;
  std::vector<pollfd> fds;
  std::vector<Connection*> polled;
  for (;;) {
    fds.clear();
    polled.clear();
    fds.push_back({wake_.get(), POLLIN, 0});
    // At the connection cap, new clients wait in the backlog until a slot frees up.
    short acceptEvents = connections.size() < kMaxConnections ? POLLIN : 0;
    fds.push_back({listening_.get(), acceptEvents, 0});
    bool anyDraining = false;
    for (Connection& c : connections) {
      short events = c.draining ? POLLIN : c.out.empty() ? POLLIN : POLLOUT;
      anyDraining = anyDraining || c.draining;
      fds.push_back({c.fd.get(), events, 0});
      polled.push_back(&c);
    }
    // The stop signal needs no timeout; only draining connections have a deadline.
    int timeoutMs = anyDraining ? 50 : -1;
    if (::poll(fds.data(), fds.size(), timeoutMs) < 0) {
      if (errno == EINTR) continue;
      return;  // cannot happen with valid descriptors; the clients see the server go away
    }
    if (fds[0].revents) return;
    for (size_t i = 0; i < polled.size(); ++i) {
      Connection& c = *polled[i];
      short revents = fds[i + 2].revents;
      if (c.draining) {
        c.closed = !(revents ? Service::onDrainable(c) : Clock::now() < c.drainUntil);
        continue;
      }
      if (!revents) continue;
      bool keep = true;
      if (revents & POLLOUT) keep = service.onWritable(c);
      if (keep && !c.draining && (revents & (POLLIN | POLLHUP | POLLERR))) {
        keep = service.onReadable(c);
      }
      // A refusal queued its reply; try to send it right away.
      if (keep && !c.out.empty()) keep = service.onWritable(c);
      c.closed = !keep;
    }
    connections.remove_if([](const Connection& c) { return c.closed; });
    if (fds[1].revents & POLLIN) {
      while (connections.size() < kMaxConnections) {
        int fd = ::accept4(listening_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        connections.emplace_back().fd.reset(fd);
      }
    }
  }
}

}  // namespace tpc
