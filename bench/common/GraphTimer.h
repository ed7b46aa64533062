// What the kernel benchmarks (tpc_moe_bench, tpc_gemv_bench) share: a CUDA check that exits
// with the failing call named, device allocation, and timing a sequence of launches captured
// into one CUDA Graph and replayed (launch overhead as a decode step's graph has it).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <functional>

#define BENCH_CHECK(call)                                                          \
  do {                                                                             \
    cudaError_t status_ = (call);                                                  \
    if (status_ != cudaSuccess) {                                                  \
      std::fprintf(stderr, "error: %s: %s\n", #call, cudaGetErrorString(status_)); \
      std::exit(1);                                                                \
    }                                                                              \
  } while (0)

namespace tpc::bench {

inline void* deviceAlloc(size_t bytes) {
  void* p = nullptr;
  BENCH_CHECK(cudaMalloc(&p, bytes));
  return p;
}

// Microseconds per call of `enqueue(stream, call)`, captured `calls` times into one graph that
// is replayed `replays` times after one warm-up replay.
inline double timeGraph(const std::function<void(cudaStream_t, int)>& enqueue, int calls,
                        int replays, cudaStream_t stream) {
  cudaGraph_t graph = nullptr;
  BENCH_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int c = 0; c < calls; ++c) enqueue(stream, c);
  BENCH_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  BENCH_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  BENCH_CHECK(cudaGraphLaunch(exec, stream));  // warm-up
  cudaEvent_t begin, end;
  BENCH_CHECK(cudaEventCreate(&begin));
  BENCH_CHECK(cudaEventCreate(&end));
  BENCH_CHECK(cudaEventRecord(begin, stream));
  for (int r = 0; r < replays; ++r) BENCH_CHECK(cudaGraphLaunch(exec, stream));
  BENCH_CHECK(cudaEventRecord(end, stream));
  BENCH_CHECK(cudaEventSynchronize(end));
  float ms = 0;
  BENCH_CHECK(cudaEventElapsedTime(&ms, begin, end));
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return 1000.0 * ms / (calls * replays);
}

}  // namespace tpc::bench
