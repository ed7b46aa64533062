// tpc_linear_bench: the linear of a 1-to-64-token step (bf16, the Llama-3-8B, Llama-3.2-1B
// and Qwen3-30B-A3B shapes) through cuBLASLt (GemmRunner::cublasLinear: the heuristic's first
// algorithm, as the backend runs it, and the fastest of the others it offers) and through our GEMV
// (up to its kMaxGemvTokens tokens), side by side, with the read bandwidth of a read-only kernel
// measured in the same run as the ceiling: at these sizes a linear only streams its weight. Each
// timing rotates over enough copies of the weight that no call finds it in the 60 MB L2, in one
// CUDA Graph of launches as a decode step runs them.
//   tpc_linear_bench [--calls 40] [--replays 10] [--tokens 1,2,4,8,16,32,64]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench/common/BenchFlags.h"
#include "bench/common/GraphTimer.h"
#include "bench/common/ReadCeiling.h"
#include "bench/gemv/DecodeLinears.h"
#include "executor/cuda/Gemm.h"
#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/Gemv.h"

namespace {

using namespace tpc::cuda;
using tpc::bench::deviceAlloc;
using tpc::bench::kDecodeLinears;
using tpc::bench::LinearShape;
using tpc::bench::readCeilingGBs;
using tpc::bench::RotatedWeights;
using tpc::bench::timeGraph;

constexpr int64_t kMaxTokens = 64;

int run(int argc, char** argv) {
  tpc::bench::TimingFlags timing;
  std::vector<int64_t> tokenCounts = {1, 2, 4, 8, 16, 32, 64};
  for (int i = 1; i < argc; ++i) {
    if (timing.take(argc, argv, i)) continue;
    if (std::string(argv[i]) == "--tokens" && i + 1 < argc) {
      tokenCounts = tpc::bench::parseCounts(argv[++i], 1, kMaxTokens);
      if (tokenCounts.empty()) {
        std::fprintf(stderr, "error: --tokens needs a list of counts from 1 to %lld\n",
                     static_cast<long long>(kMaxTokens));
        return 2;
      }
    } else {
      std::fprintf(stderr, "usage: tpc_linear_bench [--calls N] [--replays N] [--tokens LIST]\n");
      return 2;
    }
  }
  if (!timing.validOrSay()) return 2;
  const int calls = timing.calls, replays = timing.replays;
  cudaStream_t stream = nullptr;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto runner = tpc::GemmRunner::create(32u << 20);
  if (!runner) {
    std::fprintf(stderr, "error: %s\n", runner.errorMessage().c_str());
    return 1;
  }
  const double ceiling = readCeilingGBs(stream);
  std::printf("read ceiling (read-only kernel over 2 GiB): %.0f GB/s\n", ceiling);
  std::printf("  %-11s %-8s %12s %6s %22s %32s %22s %7s\n", "model", "linear", "in x out", "tokens",
              "cuBLASLt (heuristic)", "cuBLASLt (best measured)", "our GEMV", "fastest");
  const ElementType type = ElementType::BF16;
  tpc::GemmRunner& gemm = **runner;
  for (const LinearShape& s : kDecodeLinears) {
    const ElementType outType = std::string(s.name) == "lm_head" ? ElementType::F32 : type;
    const RotatedWeights w(type, s, stream);
    void* x = deviceAlloc(static_cast<size_t>(kMaxTokens * s.in) * 2);
    void* y = deviceAlloc(static_cast<size_t>(kMaxTokens * s.out) * 4);
    BENCH_CHECK(fillUniform(type, x, kMaxTokens * s.in, 1.0f, 91, stream));
    const double gb = static_cast<double>(w.bytes()) / 1e9;
    for (int64_t tokens : tokenCounts) {
      // Every algorithm cuBLASLt's heuristic offers for the shape (prepared here, outside the
      // capture), its first choice - what the backend runs - first.
      tpc::Expected<int> offered = gemm.candidates(type, outType, false, tokens, s.in, s.out);
      if (!offered) {
        std::fprintf(stderr, "error: %s\n", offered.errorMessage().c_str());
        return 1;
      }
      std::vector<double> algorithmUs(static_cast<size_t>(*offered));
      for (int a = 0; a < *offered; ++a)
        algorithmUs[static_cast<size_t>(a)] = timeGraph(
            [&](cudaStream_t st, int c) {
              if (tpc::Error e = gemm.cublasLinear(type, outType, x, w(c), nullptr, tokens, s.in,
                                                   s.out, y, st, a)) {
                std::fprintf(stderr, "error: %s\n", e.message().c_str());
                std::exit(1);
              }
            },
            calls, replays, stream);
      const double cublasUs = algorithmUs[0];
      const auto fastest = std::min_element(algorithmUs.begin(), algorithmUs.end());
      const double bestAlgoUs = *fastest;
      const auto bestAlgo = static_cast<int>(fastest - algorithmUs.begin());
      // Our GEMV where it takes the call (up to kMaxGemvTokens tokens; the backend runs it at one).
      double gemvUs = 0;
      if (tokens <= kMaxGemvTokens && gemvVariantFor(s.in, s.out).unroll >= 0)
        gemvUs = timeGraph(
            [&](cudaStream_t st, int c) {
              BENCH_CHECK(gemv(type, outType, x, w(c), nullptr, tokens, s.in, s.out, y, st));
            },
            calls, replays, stream);
      const auto column = [&](double us) {
        if (us <= 0) return std::string("-");
        char text[64];
        std::snprintf(text, sizeof text, "%8.2f us %5.1f%%", us,
                      100.0 * gb / (us * 1e-6) / ceiling);
        return std::string(text);
      };
      const std::string bestOf = column(bestAlgoUs) + " (#" + std::to_string(bestAlgo) + " of " +
                                 std::to_string(*offered) + ")";
      std::printf("  %-11s %-8s %5lldx%-6lld %6lld %22s %32s %22s %7s\n", s.model, s.name,
                  static_cast<long long>(s.in), static_cast<long long>(s.out),
                  static_cast<long long>(tokens), column(cublasUs).c_str(), bestOf.c_str(),
                  column(gemvUs).c_str(), gemvUs > 0 && gemvUs < bestAlgoUs ? "GEMV" : "cuBLASLt");
    }
    cudaFree(x);
    cudaFree(y);
  }
  cudaStreamDestroy(stream);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // std::bad_alloc from the tables, say
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
