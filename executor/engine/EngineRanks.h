// What every rank of an engine run does, wherever its ranks live (one host, or several nodes):
// rank 0 hosts the engine and its driver, every other rank follows the iterations it is sent.
// How the ranks are started and how iteration messages travel is the caller's (EngineRun on one
// host, NodeRun across nodes).
#pragma once

#include <cstdint>
#include <functional>

#include "codegen/PlanReader.h"
#include "executor/Backend.h"
#include "executor/engine/Engine.h"
#include "executor/engine/EngineCore.h"
#include "executor/engine/RankRunners.h"

namespace tpc {

struct EngineRankOptions {
  // The pool's block size and bytes come from `engine`, whatever `backend` says; rank 0 alone
  // calls backend.onProgress.
  BackendOptions backend;
  EngineConfig engine;
  // Rank 0, on the engine thread, after every iteration.
  std::function<void(const IterationStats&)> onIteration;
  // Every other rank takes iteration messages as soon as rank 0 sends them (a QueuedLink), so
  // pipeline micro-batches may be in flight together; otherwise they run one at a time.
  bool followersQueueMessages = false;
};

EngineModel engineModelOf(const plan::Plan& plan);
// The micro-batches `config` asks for, resolved against the plan's stages (0: as many as
// stages), or why they do not fit the plan.
Expected<int64_t> microBatchesOf(const plan::Plan& plan, const EngineConfig& config);

// The rank's communicator, made when the rank may join its peers (it may wait for that).
using ConnectRank = std::function<Expected<Communicator*>()>;

// Rank 0: starts `driver` on a thread of its own right away (the engine Loading), connects,
// loads the weights, waits in `allLoaded` until every rank has them, then runs the engine on
// this thread until the driver returns. The driver's Error, or the failure of the run.
Error hostEngine(const LoadedPlan& plan, const ConnectRank& connect, IterationLink& link,
                 const std::function<Error()>& allLoaded, const EngineRankOptions& options,
                 const std::function<Error(Engine&)>& driver,
                 const std::function<void()>& heartbeat);

// Every other rank: connects, loads its weights, waits in `allLoaded`, then runs what rank 0
// sends.
Error followEngine(const LoadedPlan& plan, uint32_t rank, const ConnectRank& connect,
                   IterationLink& link, const std::function<Error()>& allLoaded,
                   const EngineRankOptions& options, const std::function<void()>& heartbeat);

}  // namespace tpc
