// Communicator set-up that the local runs (LocalRun, EngineRun) share: the one-rank
// communicator, and NCCL beside a host mesh that carries rank 0's unique id.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "executor/comm/Communicator.h"
#include "ir/Error.h"

namespace tpc {

// World 1: the local communicator on cpu; on cuda a one-rank NCCL communicator on `device`, so
// a single GPU takes the same path as many.
Expected<std::unique_ptr<Communicator>> oneRankCommunicator(const std::string& backendKind,
                                                            int device,
                                                            std::chrono::milliseconds timeout);

// Rank 0 makes an NCCL unique id and broadcasts it over `mesh`; every rank then joins NCCL.
Expected<std::unique_ptr<Communicator>> ncclBesideMesh(Communicator& mesh, int rank, int world,
                                                       std::chrono::milliseconds timeout);

}  // namespace tpc
