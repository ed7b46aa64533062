// Runs a plan on this host: one process per rank (in-process for world 1), collectives over
// shared memory (or Gloo, with rank 0 serving the rendezvous store), rank 0 reporting. Any rank
// that dies or hangs ends the run with an error naming it; no process is left behind.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "codegen/PlanReader.h"
#include "executor/Backend.h"
#include "executor/engine/Generation.h"
#include "executor/process/LocalComm.h"

namespace tpc {

struct LocalRunOptions {
  int64_t localWorld = 0;  // 0: the plan's world
  BackendOptions backend;
  GenerationRequest request;
  std::chrono::milliseconds rankTimeout{5000};  // a rank silent this long counts as hung
  // The communicator between ranks: cpu: auto (shm), shm, gloo; cuda: auto, nccl, ipc (auto:
  // ipc when ranks share a GPU, which NCCL refuses, else nccl).
  std::string comm = "auto";
};

struct RunReport {
  int64_t world = 1;
  std::string backend;
  std::string communicator;  // local (world 1), shm, gloo, nccl, ipc
  GenerationResult result;
  std::vector<uint64_t> weightBytesPerRank;
};

// `report` runs in rank 0's process once generation is done.
Error runPlanLocally(const LoadedPlan& plan, const LocalRunOptions& options,
                     const std::function<Error(const RunReport&)>& report);

}  // namespace tpc
