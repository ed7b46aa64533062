// tpc_ipc_bench: latency of the one-node IPC collectives inside a CUDA Graph, the ranks sharing
// the GPUs there are (on one GPU: run it under the MPS daemon, or the contexts time-slice). For
// each world and size: the one-shot and two-shot all-reduce, the fused all-reduce + add +
// RMSNorm and the all-gather, each captured `--calls` times into one graph that is replayed
// `--replays` times; a cell is the slowest rank's mean time per call, in microseconds.
//   tpc_ipc_bench [--worlds 2,4,8] [--sizes-kb 8,16,32,64] [--width 4096] [--dtype bf16]
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "executor/comm/ShmCommunicator.h"
#include "executor/cuda/IpcCommunicator.h"
#include "executor/process/ProcessGroup.h"

namespace {

using namespace tpc;

struct Options {
  std::vector<int64_t> worlds{2, 4, 8}, sizesKb{8, 16, 32, 64};
  int64_t width = 4096, calls = 50, replays = 20;
  cuda::ElementType type = cuda::ElementType::BF16;
};

const char* kColumns[] = {"one-shot", "two-shot", "fused", "all-gather"};
constexpr int kKinds = 4;

std::vector<int64_t> parseList(const char* text) {
  std::vector<int64_t> out;
  for (const char* p = text; *p;) {
    char* end = nullptr;
    out.push_back(std::strtoll(p, &end, 10));
    if (end == p) return {};
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

#define BENCH_TRY(call)                                                                     \
  do {                                                                                      \
    cudaError_t status_ = (call);                                                           \
    if (status_ != cudaSuccess) return makeError(#call, ": ", cudaGetErrorString(status_)); \
  } while (0)

// Microseconds per call of collective `kind` over rows × width, on this rank.
Expected<double> timeOne(IpcCommunicator& comm, const Options& o, int kind, int64_t rows, void* in,
                         void* residual, void* weight, void* sum, void* out, cudaStream_t stream) {
  // One-shot and the fused kernel never take the two-shot path here; two-shot always does.
  comm.setTwoShotBytes(kind == 1 ? 0 : std::numeric_limits<size_t>::max());
  const auto enqueue = [&]() -> Error {
    if (kind <= 1) return comm.allReduceDevice(o.type, in, rows, o.width, out, stream);
    if (kind == 2)
      return comm.allReduceAddRmsNormDevice(o.type, in, residual, weight, rows, o.width, 1e-5f, sum,
                                            out, stream);
    return comm.allGatherDevice(o.type, in, rows, o.width / comm.world(), out, stream);
  };
  cudaGraph_t graph = nullptr;
  BENCH_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  Error captured = Error::success();
  for (int64_t c = 0; c < o.calls && !captured; ++c) captured = enqueue();
  cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (captured) return captured;
  BENCH_TRY(ended);
  cudaGraphExec_t exec = nullptr;
  cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  BENCH_TRY(made);
  cudaEvent_t start, stop;
  BENCH_TRY(cudaEventCreate(&start));
  BENCH_TRY(cudaEventCreate(&stop));
  BENCH_TRY(cudaGraphLaunch(exec, stream));  // warm-up
  if (Error e = comm.waitFor(stream, "warm-up")) return e;
  if (Error e = comm.barrier()) return e;  // every rank starts timing together
  BENCH_TRY(cudaEventRecord(start, stream));
  for (int64_t r = 0; r < o.replays; ++r) BENCH_TRY(cudaGraphLaunch(exec, stream));
  BENCH_TRY(cudaEventRecord(stop, stream));
  if (Error e = comm.waitFor(stream, "the timed replays")) return e;
  float ms = 0;
  BENCH_TRY(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaGraphExecDestroy(exec);
  return 1e3 * ms / static_cast<double>(o.calls * o.replays);
}

Error benchRank(IpcCommunicator& comm, const Options& o, int world) {
  const size_t elt = cuda::elementBytes(o.type);
  int64_t maxRows = 1;
  for (int64_t kb : o.sizesKb) maxRows = std::max(maxRows, kb * 1024 / (o.width * int64_t(elt)));
  const size_t bytes = static_cast<size_t>(maxRows * o.width) * elt;
  void *in, *residual, *weight, *sum, *out;
  BENCH_TRY(cudaMalloc(&in, bytes));
  BENCH_TRY(cudaMalloc(&residual, bytes));
  BENCH_TRY(cudaMalloc(&weight, o.width * elt));
  BENCH_TRY(cudaMalloc(&sum, bytes));
  BENCH_TRY(cudaMalloc(&out, bytes));
  for (void* p : {in, residual, sum, out}) BENCH_TRY(cudaMemset(p, 0, bytes));
  BENCH_TRY(cudaMemset(weight, 0, o.width * elt));
  cudaStream_t stream;
  BENCH_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (int64_t kb : o.sizesKb) {
    const int64_t rows = std::max<int64_t>(1, kb * 1024 / (o.width * int64_t(elt)));
    float worst[kKinds];
    for (int kind = 0; kind < kKinds; ++kind) {
      Expected<double> us = timeOne(comm, o, kind, rows, in, residual, weight, sum, out, stream);
      if (!us) return us.takeError();
      worst[kind] = static_cast<float>(*us);
    }
    std::vector<float> all(static_cast<size_t>(kKinds * world));
    if (Error e = comm.allGather(worst, kKinds, all.data())) return e;
    if (comm.rank() != 0) continue;
    std::printf("%5d %8lld %5lld", world, static_cast<long long>(kb), static_cast<long long>(rows));
    for (int kind = 0; kind < kKinds; ++kind) {
      float slowest = 0;
      for (int r = 0; r < world; ++r) slowest = std::max(slowest, all[r * kKinds + kind]);
      std::printf(" %11.2f", slowest);
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  return Error::success();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    std::vector<int64_t>* list = a == "--worlds"     ? &o.worlds
                                 : a == "--sizes-kb" ? &o.sizesKb
                                                     : nullptr;
    int64_t* number = a == "--width"     ? &o.width
                      : a == "--calls"   ? &o.calls
                      : a == "--replays" ? &o.replays
                                         : nullptr;
    if (list) {
      *list = parseList(v);
    } else if (number) {
      *number = std::atoll(v);
    } else if (a == "--dtype" && (std::string(v) == "f32" || std::string(v) == "bf16")) {
      o.type = std::string(v) == "f32" ? cuda::ElementType::F32 : cuda::ElementType::BF16;
    } else {
      std::fprintf(stderr,
                   "error: unknown argument %s (see the comment atop IpcAllReduceBench.cpp)\n",
                   a.c_str());
      return 2;
    }
    ++i;
  }
  if (o.worlds.empty() || o.sizesKb.empty() || o.width <= 0 || o.calls <= 0 || o.replays <= 0) {
    std::fprintf(
        stderr,
        "error: --worlds, --sizes-kb, --width, --calls and --replays need positive values\n");
    return 2;
  }
  std::printf("IPC collectives in a CUDA graph, %s rows of %lld, us per call (slowest rank)\n",
              o.type == cuda::ElementType::BF16 ? "bf16" : "f32", static_cast<long long>(o.width));
  std::printf("world  size_kb  rows %11s %11s %11s %11s\n", kColumns[0], kColumns[1], kColumns[2],
              kColumns[3]);
  std::fflush(stdout);
  for (int64_t w : o.worlds) {
    const int world = static_cast<int>(w);
    Expected<std::shared_ptr<ShmSegment>> segment = ShmSegment::create(world);
    if (!segment) return std::fprintf(stderr, "error: %s\n", segment.errorMessage().c_str()), 1;
    ProcessGroupOptions group;
    group.heartbeatTimeout = std::chrono::milliseconds(0);
    Error e = runLocalRanks(
        world,
        [&](int rank, RankContext& ctx) {
          int gpus = 0;
          if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus == 0) return ctx.fail("no GPU");
          Expected<std::unique_ptr<Communicator>> host =
              createShmCommunicator(rank, *segment, ShmOptions{});
          if (!host) return ctx.fail(host.errorMessage());
          auto comm = IpcCommunicator::create(std::move(*host), rank % gpus,
                                              std::chrono::milliseconds(5000));
          if (!comm) return ctx.fail(comm.errorMessage());
          if (Error failed = benchRank(**comm, o, world)) {
            (*comm)->abort();
            return ctx.fail(failed.message());
          }
          return 0;
        },
        group);
    if (e) return std::fprintf(stderr, "error: world %d: %s\n", world, e.message().c_str()), 1;
  }
  return 0;
}
