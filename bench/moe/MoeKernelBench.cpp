// tpc_moe_bench: one MoE layer's kernels at real shapes (Qwen3-30B-A3B and Mixtral-8x7B, bf16 or
// f16, synthetic weights in distinct memory per expert), each variant captured `--calls` times
// into one CUDA Graph that is replayed `--replays` times: microseconds per call and the bandwidth
// that makes of the bytes the call must read (the chosen experts' weights, counted from the
// routing the router made; the router's gate). Variants: the first kernels (cuda::moeRouter and
// cuda::moeExperts after a memset, as the backend runs them) against the streaming ones
// (kernels/cuda/MoeStreaming.h), direct and grouped, and the grouped path's tensor-core gate/up
// and down kernels alone (MoeStreamingMma.h) on the grouping of one grouped call, each against
// its own weight bytes. --grouped-only times only the grouped variants.
//   tpc_moe_bench [--tokens 1,8,64,256] [--calls 20] [--replays 10] [--type bf16|f16]
//                 [--grouped-only]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "bench/common/BenchFlags.h"
#include "bench/common/GraphTimer.h"
#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/MoeStreaming.h"
#include "kernels/cuda/MoeStreamingMma.h"

namespace {

using namespace tpc::cuda;
using tpc::bench::deviceAlloc;

// Microseconds per call of `enqueue`, captured `calls` times into one graph.
double timeGraph(const std::function<void(cudaStream_t)>& enqueue, int calls, int replays,
                 cudaStream_t stream) {
  return tpc::bench::timeGraph([&](cudaStream_t s, int) { enqueue(s); }, calls, replays, stream);
}

struct Shape {
  const char* name;
  int64_t hidden, intermediate, experts, topK;
  bool norm;
};
const Shape kShapes[] = {{"qwen3-30b-a3b", 2048, 768, 128, 8, true},
                         {"mixtral-8x7b", 4096, 14336, 8, 2, true}};

struct Options {
  std::vector<int64_t> tokens{1, 8, 64, 256};
  tpc::bench::TimingFlags timing{20, 10};
  ElementType type = ElementType::BF16;
  bool groupedOnly = false;
};

void benchShape(const Shape& s, const Options& o, cudaStream_t stream) {
  const ElementType type = o.type;
  const int calls = o.timing.calls, replays = o.timing.replays;
  const size_t element = elementBytes(type);
  const int64_t h = s.hidden, inter = s.intermediate;
  const size_t expertBytes = static_cast<size_t>(3 * inter * h) * element;
  // Every expert in its own memory, as a checkpoint's are.
  std::vector<const void*> pointers(static_cast<size_t>(3 * s.experts));
  for (int64_t e = 0; e < s.experts; ++e) {
    for (int part = 0; part < 3; ++part) {
      void* p = deviceAlloc(static_cast<size_t>(inter * h) * element);
      BENCH_CHECK(
          fillUniform(type, p, inter * h, 0.02f, static_cast<uint64_t>(10 + 3 * e + part), stream));
      pointers[static_cast<size_t>(part * s.experts + e)] = p;
    }
  }
  auto* table = static_cast<const void**>(deviceAlloc(pointers.size() * sizeof(void*)));
  BENCH_CHECK(
      cudaMemcpy(table, pointers.data(), pointers.size() * sizeof(void*), cudaMemcpyHostToDevice));
  const void* const* gateUp = table;
  const void* const* up = table + s.experts;
  const void* const* down = table + 2 * s.experts;
  void* gate = deviceAlloc(static_cast<size_t>(s.experts * h) * element);
  BENCH_CHECK(fillUniform(type, gate, s.experts * h, 0.05f, 7, stream));
  std::printf("%s: hidden %lld, intermediate %lld, %lld experts, top-%lld (%s)\n", s.name,
              static_cast<long long>(h), static_cast<long long>(inter),
              static_cast<long long>(s.experts), static_cast<long long>(s.topK),
              type == ElementType::F16 ? "f16" : "bf16");
  for (int64_t tokens : o.tokens) {
    const int64_t a = tokens * s.topK;
    void* x = deviceAlloc(static_cast<size_t>(tokens * h) * element);
    BENCH_CHECK(
        fillUniform(type, x, tokens * h, 1.0f, static_cast<uint64_t>(100 + tokens), stream));
    auto* weights = static_cast<float*>(deviceAlloc(static_cast<size_t>(a) * sizeof(float)));
    auto* experts = static_cast<int32_t*>(deviceAlloc(static_cast<size_t>(a) * sizeof(int32_t)));
    const size_t workspaceBytes =
        std::max({moeWorkspaceBytes(tokens, s.topK, inter),
                  moeRouterStreamingWorkspaceBytes(tokens, s.experts),
                  moeExpertsStreamingWorkspaceBytes(type, tokens, s.topK, h, inter, s.experts)});
    void* workspace = deviceAlloc(workspaceBytes);
    void* out = deviceAlloc(static_cast<size_t>(tokens * h) * element);
    // The tensor-core kernels alone read the grouping of one grouped call (the workspace's
    // start) and write buffers of their own.
    void* grouped =
        deviceAlloc(moeExpertsStreamingWorkspaceBytes(type, tokens, s.topK, h, inter, s.experts));
    void* activations = deviceAlloc(static_cast<size_t>(a * inter) * element);
    auto* downRows = static_cast<float*>(deviceAlloc(static_cast<size_t>(a * h) * sizeof(float)));
    BENCH_CHECK(moeRouterStreaming(type, x, gate, tokens, h, s.experts, s.topK, s.norm, workspace,
                                   weights, experts, stream));
    std::vector<int32_t> chosen(static_cast<size_t>(a));
    BENCH_CHECK(cudaMemcpyAsync(chosen.data(), experts, chosen.size() * sizeof(int32_t),
                                cudaMemcpyDeviceToHost, stream));
    BENCH_CHECK(cudaStreamSynchronize(stream));
    const std::set<int32_t> distinct(chosen.begin(), chosen.end());
    const double expertGB = static_cast<double>(distinct.size() * expertBytes) / 1e9;
    const double upGB = expertGB * 2 / 3, downGB = expertGB / 3;
    BENCH_CHECK(moeExpertsStreaming(type, x, weights, experts, tokens, h, inter, s.topK, s.experts,
                                    gateUp, up, down, 0, false, grouped, out, stream));
    BENCH_CHECK(cudaStreamSynchronize(stream));
    const auto* groups = static_cast<const int32_t*>(grouped);
    const double gateGB = static_cast<double>(s.experts * h) * element / 1e9;

    const auto oldRouter = [&](cudaStream_t st) {
      BENCH_CHECK(
          moeRouter(type, x, gate, tokens, h, s.experts, s.topK, s.norm, weights, experts, st));
    };
    const auto newRouter = [&](cudaStream_t st) {
      BENCH_CHECK(moeRouterStreaming(type, x, gate, tokens, h, s.experts, s.topK, s.norm, workspace,
                                     weights, experts, st));
    };
    const auto oldExperts = [&](cudaStream_t st) {
      BENCH_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(tokens * h) * element, st));
      BENCH_CHECK(moeExperts(type, x, weights, experts, tokens, h, inter, s.topK, gateUp, up, down,
                             workspace, out, st));
    };
    const auto newExperts = [&](int64_t directMaxTokens) {
      return [&, directMaxTokens](cudaStream_t st) {
        BENCH_CHECK(moeExpertsStreaming(type, x, weights, experts, tokens, h, inter, s.topK,
                                        s.experts, gateUp, up, down, directMaxTokens, false,
                                        workspace, out, st));
      };
    };
    struct Variant {
      const char* name;
      std::function<void(cudaStream_t)> run;
      double gigabytes;
    };
    std::vector<Variant> variants;
    if (!o.groupedOnly) {
      variants.push_back({"router, first kernel", oldRouter, gateGB});
      variants.push_back({"router, streaming", newRouter, gateGB});
      variants.push_back({"experts, first kernels (+ memset)", oldExperts, expertGB});
    }
    variants.push_back({"experts, streaming grouped", newExperts(0), expertGB});
    variants.push_back({"grouped gate/up alone (tensor cores)",
                        [&](cudaStream_t st) {
                          BENCH_CHECK(moeGroupedUpMma(type, x, groups, tokens, s.topK, s.experts, h,
                                                      inter, gateUp, up, activations, st));
                        },
                        upGB});
    variants.push_back({"grouped down alone (tensor cores)",
                        [&](cudaStream_t st) {
                          BENCH_CHECK(moeGroupedDownMma(type, groups, tokens, s.topK, s.experts, h,
                                                        inter, down, activations, downRows, st));
                        },
                        downGB});
    if (!o.groupedOnly) {
      if (a <= 64) variants.push_back({"experts, streaming direct", newExperts(tokens), expertGB});
      variants.push_back({"layer, first kernels",
                          [&](cudaStream_t st) {
                            oldRouter(st);
                            oldExperts(st);
                          },
                          gateGB + expertGB});
      variants.push_back({"layer, streaming (backend's choice)",
                          [&](cudaStream_t st) {
                            newRouter(st);
                            newExperts(moeDirectMaxTokens())(st);
                          },
                          gateGB + expertGB});
    }
    const MoeMmaTiling tiling = moeMmaTiling(tokens, s.topK, s.experts, h, inter);
    std::printf("  %lld tokens: %zu distinct experts, %.1f MB of expert weights\n",
                static_cast<long long>(tokens), distinct.size(), expertGB * 1e3);
    std::printf(
        "    tiling: %d tokens a pass, %d weight tiles a warp, splits %d/%d, grids up %ux%u down "
        "%ux%u\n",
        8 * tiling.tokenTiles, tiling.weightTiles, tiling.upSplits, tiling.downSplits,
        tiling.upBlocks, tiling.slots, tiling.downBlocks, tiling.slots);
    for (const Variant& v : variants) {
      const double us = timeGraph(v.run, calls, replays, stream);
      std::printf("    %-38s %9.2f us  %7.0f GB/s\n", v.name, us, v.gigabytes / (us * 1e-6));
    }
    for (void* p : {x, static_cast<void*>(weights), static_cast<void*>(experts), workspace, out,
                    grouped, activations, static_cast<void*>(downRows)})
      cudaFree(p);
  }
  for (const void* p : pointers) cudaFree(const_cast<void*>(p));
  cudaFree(table);
  cudaFree(gate);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (o.timing.take(argc, argv, i)) continue;
    if (arg == "--tokens" && i + 1 < argc) {
      o.tokens = tpc::bench::parseCounts(argv[++i], 1, INT32_MAX);
    } else if (arg == "--type" && i + 1 < argc &&
               (std::string(argv[i + 1]) == "bf16" || std::string(argv[i + 1]) == "f16")) {
      o.type = std::string(argv[++i]) == "f16" ? ElementType::F16 : ElementType::BF16;
    } else if (arg == "--grouped-only") {
      o.groupedOnly = true;
    } else {
      std::fprintf(stderr,
                   "usage: tpc_moe_bench [--tokens 1,8,64,256] [--calls N] [--replays N] "
                   "[--type bf16|f16] [--grouped-only]\n");
      return 2;
    }
  }
  if (o.tokens.empty() || !o.timing.valid()) {
    std::fprintf(stderr, "error: --tokens, --calls and --replays need positive numbers\n");
    return 2;
  }
  cudaStream_t stream = nullptr;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (const Shape& s : kShapes) benchShape(s, o, stream);
  cudaStreamDestroy(stream);
  return 0;
}
