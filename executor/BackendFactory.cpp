#include "executor/Backend.h"

#include "kernels/cpu/Kernels.h"

#ifdef TPC_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace tpc {

#ifdef TPC_HAVE_CUDA
Expected<std::unique_ptr<Backend>> createCudaBackend(const LoadedPlan& plan, uint32_t rank,
                                                     Communicator& comm,
                                                     const BackendOptions& options);
bool haveCudaBackend() { return true; }
int cudaDeviceCount() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}
Expected<double> measureCopyBandwidth(int device);
Expected<double> measureGemmFlops(int device);
Expected<double> deviceCopyBandwidth(int device) { return measureCopyBandwidth(device); }
Expected<double> deviceGemmFlops(int device) { return measureGemmFlops(device); }
#else
bool haveCudaBackend() { return false; }
int cudaDeviceCount() { return 0; }
Expected<double> deviceCopyBandwidth(int) { return makeError("this build has no CUDA backend"); }
Expected<double> deviceGemmFlops(int) { return makeError("this build has no CUDA backend"); }
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
  // Checked once here for every backend.
  const plan::Plan& p = plan.plan();
  if (rank >= p.world())
    return makeError("rank ", rank, " is outside the plan's world of ", p.world());
  if (static_cast<uint32_t>(comm.world()) != p.world())
    return makeError("the plan is for world ", p.world(), " but ", comm.world(),
                     " ranks are running");
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

namespace tpc {

// The host sampler: the logits come back and each row is picked as cpu::sampleWithDraw would,
// with the row's own draw, so a device sampler and this one agree token for token.
Expected<std::vector<int32_t>> Backend::forwardSample(const StepInput& in, const RowSampling* rows,
                                                      int64_t vocab) {
  Expected<const float*> logits = forward(in);
  if (!logits) return logits.takeError();
  const int64_t count = in.paged() ? in.logitRowCount : in.tokens;
  std::vector<int32_t> picked;
  picked.reserve(static_cast<size_t>(count));
  for (int64_t r = 0; r < count; ++r) {
    cpu::SamplingParams p{rows[r].temperature, rows[r].topK, rows[r].topP};
    p.minP = rows[r].minP;
    picked.push_back(
        static_cast<int32_t>(cpu::sampleWithDraw(*logits + r * vocab, vocab, p, rows[r].uniform)));
  }
  return picked;
}

}  // namespace tpc
