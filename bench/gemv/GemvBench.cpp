// tpc_gemv_bench: the one-token GEMV (kernels/cuda/Gemv.h) at the Llama-3-8B, Llama-3.2-1B and
// Qwen3-30B-A3B (attention, lm_head) decode shapes (bf16), every variant, with the read bandwidth
// of a read-only kernel measured in the same run as the ceiling. Each timing rotates over enough
// copies of the weight that no call finds it in the 60 MB L2, in one CUDA Graph of dependent
// launches as a decode step runs them. The gate/up pair (gemvSwiglu) the same way, every variant
// and the first pair kernel ("legacy"). Also the norm folded into the GEMV against the norm kernel
// then the GEMV (the gate/up pair takes no folded norm), and the table's choice per shape. Prints
// the best variants as a TPC_GEMV_VARIANT value.
//   tpc_gemv_bench [--calls 40] [--replays 10]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/common/BenchFlags.h"
#include "bench/common/GraphTimer.h"
#include "bench/common/ReadCeiling.h"
#include "bench/gemv/DecodeLinears.h"
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

const GemvVariant kVariants[] = {{0, 1}, {2, 1}, {2, 2}, {2, 4}, {4, 1},
                                 {4, 2}, {4, 4}, {8, 1}, {8, 2}, {8, 4}};

}  // namespace

int main(int argc, char** argv) {
  tpc::bench::TimingFlags timing;
  for (int i = 1; i < argc; ++i) {
    if (!timing.take(argc, argv, i)) {
      std::fprintf(stderr, "usage: tpc_gemv_bench [--calls N] [--replays N]\n");
      return 2;
    }
  }
  if (!timing.validOrSay()) return 2;
  const int calls = timing.calls, replays = timing.replays;
  cudaStream_t stream = nullptr;
  BENCH_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const double ceiling = readCeilingGBs(stream);
  std::printf("read ceiling (read-only kernel over 2 GiB): %.0f GB/s\n", ceiling);
  const ElementType type = ElementType::BF16;
  std::string best;
  for (const LinearShape& s : kDecodeLinears) {
    const RotatedWeights w(type, s, stream);
    const size_t weightBytes = w.bytes();
    void* x = deviceAlloc(static_cast<size_t>(s.in) * 2);
    void* residual = deviceAlloc(static_cast<size_t>(s.in) * 2);
    void* gamma = deviceAlloc(static_cast<size_t>(s.in) * 2);
    void* sum = deviceAlloc(static_cast<size_t>(s.in) * 2);
    void* normed = deviceAlloc(static_cast<size_t>(s.in) * 2);
    void* y = deviceAlloc(static_cast<size_t>(s.out) * 4);
    BENCH_CHECK(fillUniform(type, x, s.in, 1.0f, 91, stream));
    BENCH_CHECK(fillUniform(type, residual, s.in, 1.0f, 92, stream));
    BENCH_CHECK(fillUniform(type, gamma, s.in, 1.0f, 93, stream));
    BENCH_CHECK(fillUniform(type, normed, s.in, 1.0f, 94, stream));
    GemvNorm norm;
    norm.x = x;
    norm.residual = residual;
    norm.weight = gamma;
    norm.sum = sum;
    const bool foldable = gemvNormSupports(type, s.in, norm);
    const double gb = static_cast<double>(weightBytes) / 1e9;
    const auto report = [&](const std::string& what, double us) {
      const double gbs = gb / (us * 1e-6);
      std::printf("  %-11s %-8s %5lldx%-6lld %-22s %8.2f us %6.0f GB/s %5.1f%%\n", s.model, s.name,
                  static_cast<long long>(s.in), static_cast<long long>(s.out), what.c_str(), us,
                  gbs, 100.0 * gbs / ceiling);
      return us;
    };
    if (s.swiglu) {
      double bestUs = 1e30;
      GemvVariant bestVariant;
      for (GemvVariant v : kVariants) {
        const double us = report("pair " + gemvVariantName(v),
                                 timeGraph(
                                     [&](cudaStream_t st, int c) {
                                       BENCH_CHECK(gemvSwigluWithVariant(
                                           v, type, normed, w(c), nullptr, s.in, s.out / 2, y, st));
                                     },
                                     calls, replays, stream));
        if (us < bestUs) bestUs = us, bestVariant = v;
      }
      std::printf("  %-11s %-8s best %s, the table runs %s\n", s.model, s.name,
                  gemvVariantName(bestVariant).c_str(),
                  gemvVariantName(gemvSwigluVariantFor(s.in, s.out / 2)).c_str());
      best += std::string(best.empty() ? "" : ",") + "swiglu:" + std::to_string(s.in) + "x" +
              std::to_string(s.out) + "=" + gemvVariantName(bestVariant);
    } else {
      const ElementType out = std::string(s.name) == "lm_head" ? ElementType::F32 : type;
      double bestUs = 1e30;
      GemvVariant bestVariant;
      for (GemvVariant v : kVariants) {
        const double us = report(gemvVariantName(v),
                                 timeGraph(
                                     [&](cudaStream_t st, int c) {
                                       BENCH_CHECK(gemvWithVariant(v, type, out, normed, w(c),
                                                                   nullptr, s.in, s.out, y, st));
                                     },
                                     calls, replays, stream));
        if (us < bestUs) bestUs = us, bestVariant = v;
      }
      const GemvVariant chosen = gemvVariantFor(s.in, s.out);
      std::printf("  %-11s %-8s best %s, the table runs %s\n", s.model, s.name,
                  gemvVariantName(bestVariant).c_str(), gemvVariantName(chosen).c_str());
      best += (best.empty() ? "" : ",") + std::to_string(s.in) + "x" + std::to_string(s.out) + "=" +
              gemvVariantName(bestVariant);
      // With a folded norm the backend runs the table's unroll with one warp per row (gemv()).
      const GemvVariant folded{chosen.unroll, 1};
      if (foldable && out == type && chosen.unroll > 0) {
        report("norm kernel + " + gemvVariantName(folded),
               timeGraph(
                   [&](cudaStream_t st, int c) {
                     BENCH_CHECK(
                         addRmsNorm(type, x, residual, gamma, 1, s.in, 1e-5f, sum, normed, st));
                     BENCH_CHECK(gemvWithVariant(folded, type, out, normed, w(c), nullptr, s.in,
                                                 s.out, y, st));
                   },
                   calls, replays, stream));
        report("norm folded, " + gemvVariantName(folded),
               timeGraph(
                   [&](cudaStream_t st, int c) {
                     BENCH_CHECK(gemvWithVariant(folded, type, out, nullptr, w(c), nullptr, s.in,
                                                 s.out, y, st, &norm));
                   },
                   calls, replays, stream));
      }
    }
    for (void* p : {x, residual, gamma, sum, normed, y}) cudaFree(p);
  }
  std::printf("best: TPC_GEMV_VARIANT=%s\n", best.c_str());
  cudaStreamDestroy(stream);
  return 0;
}
