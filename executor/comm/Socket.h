// Small blocking-with-deadline TCP helpers shared by the store server and client: nothing here
// waits without a deadline, and every failure names the address it concerns.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "ir/Error.h"

namespace tpc {

using Deadline = std::chrono::steady_clock::time_point;

inline Deadline deadlineAfter(std::chrono::milliseconds timeout) {
  return std::chrono::steady_clock::now() + timeout;
}

// Owns one file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A listening TCP socket on host:port (port 0: the kernel picks one; read it with localPort).
Expected<UniqueFd> listenTcp(const std::string& host, int port);
// The port a bound socket has, or -1.
int localPort(int fd);
// Connects to host:port, retrying refused connections until the deadline, because the server
// (rank 0) may start after its clients.
Expected<UniqueFd> connectTcp(const std::string& host, int port, Deadline deadline);

// Send or receive exactly `size` bytes before the deadline. `what` names the peer in errors.
Error sendAll(int fd, const void* data, size_t size, Deadline deadline, const std::string& what);
Error recvAll(int fd, void* data, size_t size, Deadline deadline, const std::string& what);

}  // namespace tpc
