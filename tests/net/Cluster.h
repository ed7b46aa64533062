// A head and its workers on loopback, started as a user would start them, for the multi-node
// tests: the head prints the port it listens on, the workers join it.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/net/Spawned.h"
#include "tests/support/TestSupport.h"

namespace tpc::test {

struct Cluster {
  std::unique_ptr<Spawned> head;
  std::vector<std::unique_ptr<Spawned>> workers;
  int port = -1;
};

inline std::string tpexecPath() { return binPath("tpexec"); }

// Starts `tpexec PLAN --listen 127.0.0.1:0 --workers W <headFlags>`; returns once it listens.
inline Cluster startHead(const TempDir& dir, const std::string& plan, int workers,
                         const std::string& headFlags) {
  Cluster c;
  c.head =
      std::make_unique<Spawned>(tpexecPath() + " " + plan + " --listen 127.0.0.1:0 --workers " +
                                    std::to_string(workers) + " " + headFlags,
                                dir.file("head.out"), dir.file("head.err"));
  if (c.head->waitForText("listening on", std::chrono::seconds(20)))
    c.port = headPort(c.head->err());
  return c;
}

inline std::string joinAddress(const Cluster& c) { return "127.0.0.1:" + std::to_string(c.port); }

// Starts `tpexec --join 127.0.0.1:PORT <flags>`, logging to worker<i>.log.
inline Spawned& startWorker(Cluster& c, const TempDir& dir, const std::string& flags) {
  std::string log = dir.file("worker" + std::to_string(c.workers.size()) + ".log");
  c.workers.push_back(
      std::make_unique<Spawned>(tpexecPath() + " --join " + joinAddress(c) + " " + flags, log));
  return *c.workers.back();
}

}  // namespace tpc::test
