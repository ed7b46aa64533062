// What the linear benchmarks (tpc_gemv_bench, tpc_linear_bench) share: the Llama-3-8B,
// Llama-3.2-1B and Qwen3-30B-A3B linear shapes (the MoE model's dense ones: attention and
// lm_head), and weights in enough copies that, taken in turn, no call finds its weight in the
// 60 MB L2.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "bench/common/GraphTimer.h"
#include "kernels/cuda/CudaKernels.h"

namespace tpc::bench {

struct LinearShape {
  const char* model;
  const char* name;
  int64_t in, out;
  bool swiglu;  // the gate/up pair: out is 2 x its half
};
inline constexpr LinearShape kDecodeLinears[] = {
    {"llama3-8b", "qkv", 4096, 6144, false},       {"llama3-8b", "o", 4096, 4096, false},
    {"llama3-8b", "gate_up", 4096, 28672, true},   {"llama3-8b", "down", 14336, 4096, false},
    {"llama3-8b", "lm_head", 4096, 128256, false}, {"llama3.2-1b", "qkv", 2048, 3072, false},
    {"llama3.2-1b", "o", 2048, 2048, false},       {"llama3.2-1b", "gate_up", 2048, 16384, true},
    {"llama3.2-1b", "down", 8192, 2048, false},    {"llama3.2-1b", "lm_head", 2048, 128256, false},
    {"qwen3-30b", "qkv", 2048, 5120, false},       {"qwen3-30b", "o", 4096, 2048, false},
    {"qwen3-30b", "lm_head", 2048, 151936, false},
};

// Copies of one [out, in] weight filled with small uniform values; call c reads copy c % count.
class RotatedWeights {
 public:
  static constexpr size_t kRotateBytes = 512ull << 20;  // well past the L2: weights from HBM

  RotatedWeights(cuda::ElementType type, const LinearShape& s, cudaStream_t stream)
      : bytes_(static_cast<size_t>(s.in * s.out) * cuda::elementBytes(type)) {
    const size_t copies = std::max<size_t>(1, kRotateBytes / bytes_);
    for (size_t c = 0; c < copies; ++c) {
      copies_.push_back(deviceAlloc(bytes_));
      BENCH_CHECK(cuda::fillUniform(type, copies_.back(), s.in * s.out, 0.02f,
                                    static_cast<uint64_t>(c + 1), stream));
    }
  }
  ~RotatedWeights() {
    for (void* p : copies_) cudaFree(p);
  }
  RotatedWeights(const RotatedWeights&) = delete;
  RotatedWeights& operator=(const RotatedWeights&) = delete;

  void* operator()(int call) const { return copies_[static_cast<size_t>(call) % copies_.size()]; }
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_;
  std::vector<void*> copies_;
};

}  // namespace tpc::bench
