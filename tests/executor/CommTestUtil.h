// Shared by the executor suites: a store port reserved before the ranks are forked, and the
// Gloo options every rank of a test uses.
#pragma once

#include <gtest/gtest.h>

#include <chrono>

#include "executor/comm/Communicator.h"
#include "executor/comm/Socket.h"
#include "executor/process/ProcessGroup.h"

namespace tpc::test {

// Bound and listening before fork, so every rank knows the port and rank 0 serves it.
struct ReservedStore {
  UniqueFd fd;
  int port = -1;

  static ReservedStore make() {
    ReservedStore store;
    auto fd = listenTcp("127.0.0.1", 0);
    EXPECT_TRUE(fd) << (fd ? "" : fd.errorMessage());
    if (fd) {
      store.port = localPort(fd->get());
      store.fd = std::move(*fd);
    }
    return store;
  }

  GlooOptions options(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) const {
    GlooOptions o;
    o.storePort = port;
    o.storeListenFd = fd.get();
    o.timeout = timeout;
    return o;
  }
};

inline double secondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace tpc::test
