// A worker node's side of the control plane: joins the head, gets the plan (unless it has the
// same one), its ranks, and the weight slices it lacks; then hands on what the head
// broadcasts. Every wait sends heartbeats and gives up once the head has been silent for the
// agreed timeout, so a worker never outlives its head by more than that.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "codegen/PlanReader.h"
#include "ir/Error.h"
#include "net/Channel.h"

namespace tpc::net {

struct WorkerOptions {
  std::string head;  // HOST:PORT
  int64_t workerId = -1;
  uint32_t localWorld = 1;
  std::string backend = "cpu";
  const std::vector<uint8_t>* ownPlan = nullptr;  // a plan file given to the worker too
  std::chrono::milliseconds joinTimeout{30000};   // to reach the head at all
  CurveKeys keys;
};

class WorkerClient {
 public:
  static Expected<std::unique_ptr<WorkerClient>> connect(WorkerOptions options);

  // Hello, then the plan bytes (fetched in chunks and hash-checked, or the worker's own).
  Expected<std::vector<uint8_t>> join();
  // PlanReady, then waits for the rank assignment.
  Expected<Message> waitForAssignment();
  // Fetches the packed slices of every weight of ranks [first, first + count), a window of
  // requests in flight; sink(rank, weight, slice, bytes) gets each slice whole.
  Error fetchWeights(
      const plan::Plan& plan, uint32_t firstRank, uint32_t count,
      const std::function<void(uint32_t, uint32_t, uint32_t, std::vector<uint8_t>)>& sink);
  Error send(MsgType type, const std::string& reason = {});
  // The next message from the head other than a heartbeat, within `wait` (nullopt if none).
  // Fails on a silent head, Refused or Abort, and on a broken frame.
  Expected<std::optional<Message>> poll(std::chrono::milliseconds wait);
  // Waits for a message of `type`, answering heartbeats meanwhile.
  Expected<Message> waitFor(MsgType type);

 private:
  WorkerClient() = default;
  WorkerOptions options_;
  std::unique_ptr<Channel> channel_;
  std::chrono::milliseconds heartbeat_{200}, timeout_{2000};
  bool accepted_ = false;
  std::chrono::steady_clock::time_point lastHeard_, lastSent_;
};

}  // namespace tpc::net
