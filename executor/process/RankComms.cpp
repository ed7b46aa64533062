#include "executor/process/RankComms.h"

namespace tpc {

Expected<std::unique_ptr<Communicator>> oneRankCommunicator(const std::string& backendKind,
                                                            int device,
                                                            std::chrono::milliseconds timeout) {
  if (backendKind != "cuda") return createLocalCommunicator();
  Expected<std::string> id = newNcclUniqueId();
  if (!id) return id.takeError();
  return createNcclCommunicator(0, 1, *id, device, timeout);
}

Expected<std::unique_ptr<Communicator>> ncclBesideMesh(Communicator& mesh, int rank, int world,
                                                       std::chrono::milliseconds timeout) {
  std::string id;
  if (rank == 0) {
    Expected<std::string> made = newNcclUniqueId();
    if (!made) return made.takeError();
    id = *made;
  }
  if (Error e = mesh.broadcast(id, 0)) return e;
  return createNcclCommunicator(rank, world, id, -1, timeout);
}

}  // namespace tpc
