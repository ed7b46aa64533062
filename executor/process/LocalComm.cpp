#include "executor/process/LocalComm.h"

namespace tpc {

Expected<std::string> chooseLocalCommunicator(const std::string& backendKind,
                                              const std::string& requested, int world, int gpus,
                                              bool noNccl) {
  const bool cuda = backendKind == "cuda";
  if (cuda) {
    if (requested != "auto" && requested != "nccl" && requested != "ipc")
      return makeError("--comm ", requested,
                       ": the CUDA backend's ranks talk through nccl or ipc (shm and gloo are for "
                       "cpu)");
    if (noNccl) {
      if (requested == "nccl") return makeError("--comm nccl: NCCL is off (TPC_NO_NCCL)");
      return std::string(world == 1 ? "local" : "ipc");
    }
    if (world == 1) return std::string("nccl");  // one rank: the same path as a multi-GPU run
    if (requested == "nccl" && world > gpus)
      return makeError("--comm nccl: ", world, " ranks on ", gpus,
                       " GPU(s) share a GPU, which NCCL refuses; use --comm ipc");
    if (requested == "auto") return std::string(world > gpus ? "ipc" : "nccl");
    return requested;
  }
  if (requested != "auto" && requested != "shm" && requested != "gloo")
    return makeError("--comm ", requested,
                     ": the CPU backend's ranks talk through shm or gloo (nccl is for cuda)");
  if (world == 1) return std::string("local");
  return requested == "auto" ? std::string("shm") : requested;
}

Expected<std::string> chooseStagedCommunicator(const std::string& requested) {
  if (requested != "auto" && requested != "shm" && requested != "gloo")
    return makeError("--comm ", requested,
                     ": the ranks of a plan with pipeline stages talk through host memory (shm or "
                     "gloo)");
  return requested == "auto" ? std::string("shm") : requested;
}

int localRankDevice(int requested, int rank, int gpus) {
  return requested >= 0 ? requested : gpus > 0 ? rank % gpus : 0;
}

Expected<std::unique_ptr<Communicator>> connectLocalGpus(const std::string& commName,
                                                         std::unique_ptr<Communicator> host,
                                                         int device,
                                                         std::chrono::milliseconds timeout) {
  if (commName == "ipc") return createIpcCommunicator(std::move(host), device, timeout);
  if (commName != "nccl") return makeError("no GPU communicator is called ", commName);
  const int rank = host->rank(), world = host->world();
  std::string id;
  if (rank == 0) {
    Expected<std::string> made = newNcclUniqueId();
    if (!made) {
      host->abort();
      return made.takeError();
    }
    id = *made;
  }
  if (Error e = host->broadcast(id, 0)) return e;
  return createNcclCommunicator(rank, world, id, -1, timeout);
}

Expected<std::unique_ptr<Communicator>> oneRankCommunicator(const std::string& backendKind,
                                                            int device,
                                                            std::chrono::milliseconds timeout,
                                                            bool noNccl) {
  if (backendKind != "cuda" || noNccl) return createLocalCommunicator();
  Expected<std::string> id = newNcclUniqueId();
  if (!id) return id.takeError();
  return createNcclCommunicator(0, 1, *id, device, timeout);
}

}  // namespace tpc
