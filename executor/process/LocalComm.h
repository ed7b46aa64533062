// How the ranks of one host reach each other's GPUs, shared by the plain local run and the
// engine's: which communicator a run uses, and, in each rank, the device communicator built on
// the rank's shared-memory communicator to the others.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "executor/comm/Communicator.h"

namespace tpc {

// The communicator `requested` resolves to for `backendKind` at `world` with `gpus` visible, or
// why it cannot run. cpu: auto (shm), shm, gloo; cuda: auto, nccl, ipc (auto: ipc when ranks
// share a GPU, which NCCL refuses, else nccl). With `noNccl` (TPC_NO_NCCL) cuda ranks take ipc,
// and a single one the local communicator.
Expected<std::string> chooseLocalCommunicator(const std::string& backendKind,
                                              const std::string& requested, int world, int gpus,
                                              bool noNccl = false);

// The ranks of a plan with pipeline stages, whatever their backends (a device map mixes CPU and
// GPU stages), talk through host memory: auto (shm), shm or gloo; a CUDA stage copies what
// crosses a boundary to the host and back.
Expected<std::string> chooseStagedCommunicator(const std::string& requested);

// The GPU of local rank `rank`: `requested` when given (>= 0), else rank mod the visible GPUs,
// as the CUDA backend picks it.
int localRankDevice(int requested, int rank, int gpus);

// World 1: the local communicator on cpu; on cuda a one-rank NCCL communicator on `device`, so
// a single GPU takes the same path as many (the local one with `noNccl`).
Expected<std::unique_ptr<Communicator>> oneRankCommunicator(const std::string& backendKind,
                                                            int device,
                                                            std::chrono::milliseconds timeout,
                                                            bool noNccl = false);

// A CUDA rank's communicator: "ipc" wraps `host` (which then carries the memory handles and the
// host-value collectives); "nccl" only ships rank 0's unique id over `host`.
Expected<std::unique_ptr<Communicator>> connectLocalGpus(const std::string& commName,
                                                         std::unique_ptr<Communicator> host,
                                                         int device,
                                                         std::chrono::milliseconds timeout);

}  // namespace tpc
