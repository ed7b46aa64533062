#include "executor/comm/Socket.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>

namespace tpc {
namespace {

int remainingMs(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<long long>(left.count(), 1 << 30));
}

struct AddrInfoDeleter {
  void operator()(addrinfo* info) const { freeaddrinfo(info); }
};
using AddrInfoPtr = std::unique_ptr<addrinfo, AddrInfoDeleter>;

Expected<AddrInfoPtr> resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* result = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0) {
    return makeError("cannot resolve '", host, "': ", gai_strerror(rc));
  }
  return AddrInfoPtr(result);
}

// Waits until fd is ready for `events` or the deadline passes; EINTR restarts the wait.
Error waitReady(int fd, short events, Deadline deadline, const std::string& what,
                const char* doing) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, remainingMs(deadline));
    if (rc > 0) return Error::success();
    if (rc == 0) return makeError("timed out ", doing, " ", what);
    if (errno != EINTR) return makeError("poll while ", doing, " ", what, ": ", strerror(errno));
  }
}

}  // namespace

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Expected<UniqueFd> listenTcp(const std::string& host, int port) {
  std::string where = host + ":" + std::to_string(port);
  if (port < 0 || port > 65535) return makeError("bad port in ", where);
  auto info = resolve(host, port, /*passive=*/true);
  if (!info) return info.takeError();
  std::string lastError = "no address";
  for (addrinfo* a = info->get(); a; a = a->ai_next) {
    UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) {
      lastError = strerror(errno);
      continue;
    }
    int on = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
      lastError = strerror(errno);
      continue;
    }
    return fd;
  }
  return makeError("cannot listen on ", where, ": ", lastError);
}

int localPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return -1;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return -1;
}

Expected<UniqueFd> connectTcp(const std::string& host, int port, Deadline deadline) {
  std::string where = host + ":" + std::to_string(port);
  if (port <= 0 || port > 65535) return makeError("bad port in ", where);
  auto info = resolve(host, port, /*passive=*/false);
  if (!info) return info.takeError();
  std::string lastError = "no address";
  auto retryDelay = std::chrono::milliseconds(5);
  for (;;) {
    for (addrinfo* a = info->get(); a; a = a->ai_next) {
      UniqueFd fd(
          ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
      if (!fd.valid()) {
        lastError = strerror(errno);
        continue;
      }
      int rc = ::connect(fd.get(), a->ai_addr, a->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        if (Error e = waitReady(fd.get(), POLLOUT, deadline, where, "connecting to")) {
          return e;
        }
        int soError = 0;
        socklen_t len = sizeof(soError);
        getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soError, &len);
        rc = soError == 0 ? 0 : -1;
        errno = soError;
      }
      if (rc != 0) {
        lastError = strerror(errno);
        continue;
      }
      int on = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
      return fd;
    }
    if (std::chrono::steady_clock::now() + retryDelay >= deadline) break;
    std::this_thread::sleep_for(retryDelay);
    retryDelay = std::min(retryDelay * 2, std::chrono::milliseconds(100));
  }
  return makeError("cannot connect to ", where, ": ", lastError);
}

Error sendAll(int fd, const void* data, size_t size, Deadline deadline, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (Error e = waitReady(fd, POLLOUT, deadline, what, "sending to")) return e;
      continue;
    }
    return makeError("cannot send to ", what, ": ", strerror(errno));
  }
  return Error::success();
}

Error recvAll(int fd, void* data, size_t size, Deadline deadline, const std::string& what) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::recv(fd, p, size, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return makeError(what, " closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (Error e = waitReady(fd, POLLIN, deadline, what, "receiving from")) return e;
      continue;
    }
    return makeError("cannot receive from ", what, ": ", strerror(errno));
  }
  return Error::success();
}

}  // namespace tpc
