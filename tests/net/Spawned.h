// A tool started in the background, for tests that need several processes at once (a head and
// its workers): output goes to a log file, and the test can wait for a line, signal it, and
// wait for its exit with a time limit. The destructor kills whatever is left.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <sys/types.h>

namespace tpc::test {

class Spawned {
 public:
  // Runs `command` through /bin/sh (`exec` is prepended, so pid() is the tool itself);
  // stdout goes to `logPath`, stderr to `errPath` (the same file when empty).
  Spawned(const std::string& command, const std::string& logPath, const std::string& errPath = {});
  ~Spawned();
  Spawned(const Spawned&) = delete;
  Spawned& operator=(const Spawned&) = delete;

  pid_t pid() const { return pid_; }
  std::string log() const;
  std::string err() const;
  // Waits until stderr contains `text`; false after `timeout` or when the process ended.
  bool waitForText(const std::string& text, std::chrono::milliseconds timeout);
  // The exit code (128+N for signal N), or -1 when it is still running after `timeout`.
  int waitExit(std::chrono::milliseconds timeout);
  void signal(int sig) const;
  bool running();

 private:
  pid_t pid_ = -1;
  std::string logPath_, errPath_;
  int exitCode_ = -1;
  bool reaped_ = false;
};

// Direct children of `pid` (its ranks).
std::vector<pid_t> childrenOf(pid_t pid);
// Whether `pid` exists and is not a zombie.
bool isAlive(pid_t pid);
// The port in the head's "listening on tcp://HOST:PORT" line, or -1.
int headPort(const std::string& headLog);

}  // namespace tpc::test
