#include "executor/Backend.h"

#include "codegen/PlanFormat.h"

#include "kernels/cpu/Kernels.h"

#ifdef TPC_HAVE_CUDA
#include <cuda_runtime_api.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#endif

namespace tpc {

#ifdef TPC_HAVE_CUDA
Expected<std::unique_ptr<Backend>> createCudaBackend(const LoadedPlan& plan, uint32_t rank,
                                                     Communicator& comm,
                                                     const BackendOptions& options);
bool haveCudaBackend() { return true; }
// Asked in a forked child: a process that has initialised CUDA cannot use it in the children
// it forks afterwards ("initialization error"), and the local runs fork their ranks after
// asking. The first answer is kept, so a process that later initialises CUDA itself still gets
// it without forking again.
int cudaDeviceCount() {
  static const int count = [] {
    int fds[2];
    if (::pipe(fds) != 0) return 0;
    const pid_t child = ::fork();
    if (child < 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      return 0;
    }
    if (child == 0) {
      ::close(fds[0]);
      int n = 0;
      if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
      ssize_t written = ::write(fds[1], &n, sizeof n);
      ::_exit(written == static_cast<ssize_t>(sizeof n) ? 0 : 1);
    }
    ::close(fds[1]);
    int n = 0;
    ssize_t got = 0;
    // A driver that never answers counts as no GPU rather than a hang.
    pollfd ready{fds[0], POLLIN, 0};
    int polled = 0;
    do {
      polled = ::poll(&ready, 1, 20000);
    } while (polled < 0 && errno == EINTR);
    if (polled > 0) {
      do {
        got = ::read(fds[0], &n, sizeof n);
      } while (got < 0 && errno == EINTR);
    } else {
      ::kill(child, SIGKILL);
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    return got == static_cast<ssize_t>(sizeof n) ? n : 0;
  }();
  return count;
}
Expected<double> measureCopyBandwidth(int device);
Expected<double> measureGemmFlops(int device);
Expected<double> measureReadBandwidth(int device);
Expected<double> deviceCopyBandwidth(int device) { return measureCopyBandwidth(device); }
Expected<double> deviceReadBandwidth(int device) { return measureReadBandwidth(device); }
Expected<double> deviceGemmFlops(int device) { return measureGemmFlops(device); }
#else
bool haveCudaBackend() { return false; }
int cudaDeviceCount() { return 0; }
Expected<double> deviceCopyBandwidth(int) { return makeError("this build has no CUDA backend"); }
Expected<double> deviceReadBandwidth(int) { return makeError("this build has no CUDA backend"); }
Expected<double> deviceGemmFlops(int) { return makeError("this build has no CUDA backend"); }
Expected<std::string> newNcclUniqueId() {
  return makeError("this build has no CUDA backend (configure with the CUDA toolkit and NCCL)");
}
Expected<std::unique_ptr<Communicator>> createNcclCommunicator(int, int, const std::string&, int,
                                                               std::chrono::milliseconds) {
  return makeError("this build has no CUDA backend (configure with the CUDA toolkit and NCCL)");
}
Expected<std::unique_ptr<Communicator>> createIpcCommunicator(std::unique_ptr<Communicator>, int,
                                                              std::chrono::milliseconds) {
  return makeError("this build has no CUDA backend (configure with the CUDA toolkit)");
}
#endif

namespace {

// A device map names each stage's device; the ranks run one backend, so every stage must be
// on its kind (mixed CUDA and CPU stages in one run are not supported).
Error checkStageDevice(const plan::Plan& p, uint32_t rank, const std::string& kind) {
  const plan::Attr* a = findPlanAttr(p.model(), "stage_devices");
  if (!a || !a->string_value()) return Error::success();
  const std::string devices = a->string_value()->str();
  const int64_t pp = planIntAttr(p.model(), "pp", 1);
  const int64_t stage = static_cast<int64_t>(rank) / (static_cast<int64_t>(p.world()) / pp);
  size_t start = 0;
  for (int64_t s = 0; s < stage && start != std::string::npos; ++s) {
    start = devices.find(',', start);
    if (start != std::string::npos) ++start;
  }
  if (start == std::string::npos)
    return makeError("the plan's stage_devices names no device for stage ", stage);
  std::string device = devices.substr(start, devices.find(',', start) - start);
  const bool cpu = device == "cpu";
  if (cpu == (kind == "cpu")) return Error::success();
  return makeError("stage ", stage, " of the plan is placed on ", device, " but --backend is ",
                   kind,
                   " (one backend runs every stage; mixed CUDA and CPU stages are not "
                   "supported)");
}

}  // namespace

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
  if (Error e = checkStageDevice(p, rank, options.kind)) return e;
  if (options.kind != "cpu" && planIntAttr(p.model(), "pp", 1) > 1)
    return makeError("the plan has ", planIntAttr(p.model(), "pp", 1),
                     " pipeline stages, which only the CPU backend runs (use --backend cpu)");
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
