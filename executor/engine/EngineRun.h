// Hosting the engine on this host: one process per rank (in-process for world 1), the engine
// on rank 0, and the caller's driver (tpexec --requests, the HTTP server, a test) on a thread
// of rank 0's process, started right away with the engine Loading. When the driver returns the
// engine stops and every rank exits; a rank that dies or hangs ends the run within the rank
// timeout, naming it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "codegen/PlanReader.h"
#include "executor/Backend.h"
#include "executor/engine/Engine.h"
#include "executor/engine/EngineCore.h"

namespace tpc {

struct EngineRunOptions {
  int64_t localWorld = 0;  // 0: the plan's world
  // The pool's block size and bytes come from `engine` (kvBlockSize, kvCacheBytes,
  // gpuMemoryUtilization), whatever `backend` says.
  BackendOptions backend;
  EngineConfig engine;
  std::chrono::milliseconds rankTimeout{5000};  // a rank silent this long counts as hung
  // The CUDA ranks' communicator: auto (ipc when ranks share a GPU, else nccl), nccl or ipc; CPU
  // ranks talk over shared memory.
  std::string comm = "auto";
  // Called in rank 0's process, on the engine thread, after every iteration.
  std::function<void(const IterationStats&)> onIteration;
};

// The driver's Error, or the failure of a rank. The driver must return once the engine is
// Failed (its open requests get Failed events then).
Error runEngineLocally(const LoadedPlan& plan, const EngineRunOptions& options,
                       const std::function<Error(Engine&)>& driver);

}  // namespace tpc
