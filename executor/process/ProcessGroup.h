// Runs the ranks of one node as forked processes and guarantees the run ends: when any rank
// fails, dies or stops making progress, every other rank is killed and the result names the
// rank at fault. No rank outlives the call, and none outlives the parent.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ir/Error.h"

namespace tpc {

// What a rank's body uses to talk to the parent: progress and its reason for failing.
class RankContext {
 public:
  RankContext(int rank, int world, int reportFd, std::chrono::milliseconds heartbeatEvery);
  int rank() const { return rank_; }
  int world() const { return world_; }
  // Tells the parent this rank makes progress. Call it between steps (not from a timer
  // thread: a rank stuck in a collective must go quiet). Cheap to call often.
  void heartbeat();
  // Sends the one-line reason this rank fails (the parent quotes the last one) and returns 1,
  // so a body can `return ctx.fail(error.message());`.
  int fail(const std::string& message);

 private:
  void send(const std::string& line);

  int rank_;
  int world_;
  int reportFd_;
  std::chrono::milliseconds heartbeatEvery_;
  std::chrono::steady_clock::time_point lastBeat_{};
};

struct RankFailure {
  int rank;
  std::string message;  // "rank 2 exited with code 1: <its line>", "rank 3 was killed by signal 9"
};

struct ProcessGroupOptions {
  // Between SIGTERM and SIGKILL when the other ranks are stopped.
  std::chrono::milliseconds killGrace{2000};
  // A rank silent for this long counts as hung. Zero turns hang detection off.
  std::chrono::milliseconds heartbeatTimeout{10000};
};

struct ProcessGroupResult {
  std::vector<pid_t> pids;  // rank order; all reaped by the time the result is returned
  // The root cause when the run failed: a rank killed by a signal (not by us) or found
  // stopped first, then the earliest rank to report failure, then a silent rank.
  std::optional<RankFailure> failure;
  std::vector<RankFailure> otherFailures;  // ranks that failed on their own after it
};

// Forks `world` processes; rank r runs body(r, context) and exits with its return value.
// Returns when all of them have exited or been killed and reaped. Call it from a thread
// that lives until it returns (children die with it), before the process starts threads
// other ranks could need: a forked child has only the calling thread.
ProcessGroupResult runLocalRanksDetailed(int world,
                                         const std::function<int(int rank, RankContext&)>& body,
                                         const ProcessGroupOptions& options = {});

// The same, with the root cause as the Error.
Error runLocalRanks(int world, const std::function<int(int rank, RankContext&)>& body,
                    const ProcessGroupOptions& options = {});

}  // namespace tpc
