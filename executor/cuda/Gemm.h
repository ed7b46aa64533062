// The plan's linear steps through cuBLASLt: y[tokens, out] = x[tokens, in] @ w[out, in]^T
// (+ bias[out]), f32 accumulation, with one workspace. The algorithm for each shape is chosen by
// cuBLASLt's heuristic the first time the shape is seen and then reused, so a replayed CUDA
// Graph and an eager step run the very same kernels.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "ir/Error.h"
#include "kernels/cuda/CudaKernels.h"

namespace tpc {

class GemmRunner {
 public:
  static Expected<std::unique_ptr<GemmRunner>> create(size_t workspaceBytes);
  ~GemmRunner();

  // Whether small linears may run our GEMV (TPC_NO_GEMV=1 sends everything to cuBLASLt).
  static bool gemvEnabled();
  // The most tokens a linear of this shape runs through our GEMV rather than cuBLASLt.
  static int64_t gemvMaxTokens(int64_t in, int64_t out);

  // x and w share `inputType`; y may differ (logits are f32); bias has y's type.
  Error linear(cuda::ElementType inputType, cuda::ElementType outputType, const void* x,
               const void* w, const void* bias, int64_t tokens, int64_t in, int64_t out, void* y,
               cudaStream_t stream);
  // The same through cuBLASLt whatever the size (tpc_linear_bench compares the two), with the
  // heuristic's `candidate`-th algorithm for the shape (0: its first choice, what linear runs).
  Error cublasLinear(cuda::ElementType inputType, cuda::ElementType outputType, const void* x,
                     const void* w, const void* bias, int64_t tokens, int64_t in, int64_t out,
                     void* y, cudaStream_t stream, int candidate = 0);
  // How many algorithms cuBLASLt's heuristic offers for the shape (at most kCandidates).
  static constexpr int kCandidates = 8;
  Expected<int> candidates(cuda::ElementType inputType, cuda::ElementType outputType, bool bias,
                           int64_t tokens, int64_t in, int64_t out);

 private:
  struct Shape {
    cuda::ElementType input, output;
    bool bias;
    int64_t tokens, in, out;
    auto key() const { return std::tie(input, output, bias, tokens, in, out); }
    bool operator<(const Shape& o) const { return key() < o.key(); }
  };
  struct Prepared {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    std::vector<cublasLtMatmulAlgo_t> algos;  // the heuristic's choices, best first
  };
  Expected<Prepared*> prepare(const Shape& shape);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspaceBytes_ = 0;
  std::map<Shape, Prepared> prepared_;
};

}  // namespace tpc
