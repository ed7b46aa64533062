#include "executor/Backend.h"

namespace tpc {

#ifdef TPC_HAVE_CUDA
Expected<std::unique_ptr<Backend>> createCudaBackend(const LoadedPlan& plan, uint32_t rank,
                                                     Communicator& comm,
                                                     const BackendOptions& options);
bool haveCudaBackend() { return true; }
#else
bool haveCudaBackend() { return false; }
Expected<std::string> newNcclUniqueId() {
  return makeError("this build has no CUDA backend (configure with the CUDA toolkit and NCCL)");
}
Expected<std::unique_ptr<Communicator>> createNcclCommunicator(int, int, const std::string&, int,
                                                               std::chrono::milliseconds) {
  return makeError("this build has no CUDA backend (configure with the CUDA toolkit and NCCL)");
}
#endif

Expected<std::unique_ptr<Backend>> createBackend(const LoadedPlan& plan, uint32_t rank,
                                                 Communicator& comm,
                                                 const BackendOptions& options) {
  if (options.kind == "cpu") return createCpuBackend(plan, rank, comm, options);
  if (options.kind == "cuda") {
#ifdef TPC_HAVE_CUDA
    return createCudaBackend(plan, rank, comm, options);
#else
    return makeError(
        "--backend cuda: this build has no CUDA backend (configure with the CUDA toolkit and "
        "NCCL; use --backend cpu)");
#endif
  }
  return makeError("unknown backend '", options.kind, "' (cpu or cuda)");
}

}  // namespace tpc
