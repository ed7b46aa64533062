#include "executor/Backend.h"

#include "codegen/PlanFormat.h"

#include "kernels/cpu/Kernels.h"

#ifdef TPC_HAVE_CUDA
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#endif

namespace tpc {

#ifdef TPC_HAVE_CUDA
Expected<std::unique_ptr<Backend>> createCudaBackend(const LoadedPlan& plan, uint32_t rank,
                                                     Communicator& comm,
                                                     const BackendOptions& options);
bool haveCudaBackend() { return true; }
namespace {

// Asked in a forked child: a process that has initialised CUDA cannot use it in the children
// it forks afterwards ("initialization error"), and the local runs fork their ranks after
// asking. The child writes a count then that many values; a driver that never answers gives
// nothing rather than a hang.
std::vector<uint64_t> askInChild(const std::function<std::vector<uint64_t>()>& ask) {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  const pid_t child = ::fork();
  if (child < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return {};
  }
  if (child == 0) {
    ::close(fds[0]);
    std::vector<uint64_t> values = ask();
    values.insert(values.begin(), values.size());
    const auto bytes = static_cast<ssize_t>(values.size() * sizeof(uint64_t));
    ssize_t written = ::write(fds[1], values.data(), static_cast<size_t>(bytes));
    ::_exit(written == bytes ? 0 : 1);
  }
  ::close(fds[1]);
  std::vector<uint64_t> got;
  std::vector<char> buffer;
  char chunk[4096];
  while (true) {
    pollfd ready{fds[0], POLLIN, 0};
    int polled = 0;
    do {
      polled = ::poll(&ready, 1, 20000);
    } while (polled < 0 && errno == EINTR);
    if (polled <= 0) {
      ::kill(child, SIGKILL);
      buffer.clear();
      break;
    }
    ssize_t n = 0;
    do {
      n = ::read(fds[0], chunk, sizeof chunk);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) break;
    buffer.insert(buffer.end(), chunk, chunk + n);
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (buffer.size() < sizeof(uint64_t)) return {};
  uint64_t count = 0;
  std::memcpy(&count, buffer.data(), sizeof count);
  if (buffer.size() != (count + 1) * sizeof(uint64_t)) return {};
  got.resize(count);
  std::memcpy(got.data(), buffer.data() + sizeof count, count * sizeof(uint64_t));
  return got;
}

}  // namespace

// The first answer is kept, so a process that later initialises CUDA itself still gets it
// without forking again.
int cudaDeviceCount() {
  static const int count = [] {
    std::vector<uint64_t> n = askInChild([] {
      int devices = 0;
      if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
      return std::vector<uint64_t>{static_cast<uint64_t>(devices)};
    });
    return n.empty() ? 0 : static_cast<int>(n[0]);
  }();
  return count;
}

std::vector<uint64_t> cudaFreeMemory() {
  return askInChild([] {
    std::vector<uint64_t> free;
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess) return free;
    for (int d = 0; d < devices; ++d) {
      size_t freeBytes = 0, totalBytes = 0;
      if (cudaSetDevice(d) != cudaSuccess || cudaMemGetInfo(&freeBytes, &totalBytes) != cudaSuccess)
        return std::vector<uint64_t>{};
      free.push_back(freeBytes);
    }
    return free;
  });
}
Expected<double> measureCopyBandwidth(int device);
Expected<double> measureGemmFlops(int device);
Expected<double> measureReadBandwidth(int device);
Expected<double> deviceCopyBandwidth(int device) { return measureCopyBandwidth(device); }
Expected<double> deviceReadBandwidth(int device) { return measureReadBandwidth(device); }
Expected<double> deviceGemmFlops(int device) { return measureGemmFlops(device); }
void deviceProfilerRange(bool record) {
  // Errors only mean no profiler is attached or the range is already in that state.
  (void)(record ? cudaProfilerStart() : cudaProfilerStop());
}
#else
bool haveCudaBackend() { return false; }
int cudaDeviceCount() { return 0; }
std::vector<uint64_t> cudaFreeMemory() { return {}; }
Expected<double> deviceCopyBandwidth(int) { return makeError("this build has no CUDA backend"); }
Expected<double> deviceReadBandwidth(int) { return makeError("this build has no CUDA backend"); }
Expected<double> deviceGemmFlops(int) { return makeError("this build has no CUDA backend"); }
void deviceProfilerRange(bool) {}
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

// A device map names each stage's device; a local run gives every rank its stage's backend
// (executor/process/StageDevices.h), a rank started with another kind is refused here.
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
  return makeError("stage ", stage, " of the plan is placed on ", device, " but its rank runs the ",
                   kind, " backend");
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
  return sampleLogitRows(*logits, in.paged() ? in.logitRowCount : in.tokens, rows, vocab);
}

std::vector<int32_t> sampleLogitRows(const float* logits, int64_t count, const RowSampling* rows,
                                     int64_t vocab) {
  std::vector<int32_t> picked;
  picked.reserve(static_cast<size_t>(count));
  for (int64_t r = 0; r < count; ++r) {
    cpu::SamplingParams p{rows[r].temperature, rows[r].topK, rows[r].topP};
    p.minP = rows[r].minP;
    picked.push_back(
        static_cast<int32_t>(cpu::sampleWithDraw(logits + r * vocab, vocab, p, rows[r].uniform)));
  }
  return picked;
}

}  // namespace tpc
