// `tpexec serve` started as a user starts it, for the tests that talk to the real engine.
#pragma once

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

#include <csignal>

#include "tests/http/HttpTestClient.h"
#include "tests/net/Spawned.h"
#include "tests/support/TestSupport.h"

namespace tpc::test {

// `tpexec serve ARGS --port 0` in the background, and the port its one listening line names.
// `starting` runs once the process is up, before the wait for that line (workers join then).
struct Served {
  Served(const TempDir& dir, const std::string& args,
         const std::function<void(Spawned&)>& starting = {})
      : process(binPath("tpexec") + " serve " + args + " --port 0", dir.file("serve.out"),
                dir.file("serve.err")) {
    if (starting) starting(process);
    port = waitForHttpPort(process);
    for (int i = 0; i < 1200 && port > 0 && httpRequest(port, "GET", "/health").status != 200; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // The port of the "listening on http://127.0.0.1:PORT (...)" line; 0 when none came in 60 s.
  static int waitForHttpPort(Spawned& p) {
    const std::string marker = "listening on http://127.0.0.1:";
    for (int i = 0; i < 1200 && p.running(); ++i) {
      std::string out = p.log();
      size_t at = out.find(marker);
      if (at != std::string::npos && out.find(')', at) != std::string::npos)
        return std::atoi(out.c_str() + at + marker.size());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return 0;
  }
  ~Served() {
    process.signal(SIGTERM);
    process.waitExit(std::chrono::seconds(20));
  }
  Spawned process;
  int port = 0;
};

}  // namespace tpc::test
