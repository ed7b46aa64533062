// Small-batch linear for decode: y[tokens, out] = x[tokens, in] @ w[out, in]^T (+ bias), for
// 1 to kMaxGemvTokens tokens. At these sizes a linear step only streams its weight matrix, so
// the kernel is built to keep enough 16-byte loads in flight to run at memory bandwidth; larger
// steps go to cuBLASLt. Host-compilable like CudaKernels.h.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda {

constexpr int64_t kMaxGemvTokens = 8;

// How a one-token GEMV walks its weight: `unroll` 16-byte loads per lane per stage (the next
// stage is in flight while one is summed), `split` warps per output row (each sums an
// interleaved share of the row; their partial sums meet in shared memory). Short rows and few
// rows want more warps per row to keep the SMs' load queues full; the best choice per shape is
// measured (tpc_gemv_bench) and tabled in gemvVariantFor.
struct GemvVariant {
  // 2, 4 or 8; 0: "legacy", the first kernel (no stages in flight while summing); -1: "cublas",
  // the shape is left to cuBLASLt (GemmRunner), for comparison.
  int unroll = 4;
  int split = 1;  // 1, 2 or 4
  bool operator==(const GemvVariant& o) const { return unroll == o.unroll && split == o.split; }
};

// "u4s2" and the like, "legacy" or "cublas"; false for anything else.
bool parseGemvVariant(const std::string& text, GemvVariant* variant);
std::string gemvVariantName(const GemvVariant& variant);
// The variant a one-token GEMV of this shape runs: TPC_GEMV_VARIANT (a list such as
// "4096x4096=u4s2,14336x4096=u2s4", in x out) when it names the shape, else the measured table.
GemvVariant gemvVariantFor(int64_t in, int64_t out);
// The same for the gate/up pair (gemvSwiglu), named "swiglu:INxOUT" in TPC_GEMV_VARIANT with OUT
// = 2 x half (the pair's weight rows); "legacy" is the first pair kernel, the default for shapes
// the table does not list, and "cublas" does not apply.
GemvVariant gemvSwigluVariantFor(int64_t in, int64_t half);

// An RMSNorm folded into a one-token GEMV's input: every block computes the norm of the row
// (rms_norm, or add_rms_norm with `residual`) with the norm kernel's exact arithmetic, so the
// GEMV reads what the norm step would have written, and one block stores add_rms_norm's sum.
// The norm's own launch - a single block at batch 1, bound by latency - disappears.
struct GemvNorm {
  const void* x = nullptr;         // the norm's input row (add_rms_norm: its first operand)
  const void* residual = nullptr;  // add_rms_norm's second operand; null for rms_norm
  const void* weight = nullptr;    // the norm's scale, `in` elements
  float eps = 1e-6f;
  void* sum = nullptr;  // where add_rms_norm stores x + residual; null for rms_norm
};

// Whether gemv takes this shape: 1..kMaxGemvTokens tokens, rows a multiple of 16 bytes, and
// 16-byte aligned x, w and y.
bool gemvSupports(ElementType input, int64_t tokens, int64_t in, const void* x, const void* w);
// Whether a GemvNorm over rows of `in` elements can be folded in: the norm kernel's one-block
// register path (more than 1024 elements, at most 1024 16-byte vectors), 16-byte aligned
// operands, and a sum exactly when there is a residual.
bool gemvNormSupports(ElementType input, int64_t in, const GemvNorm& norm);

// x and w in `input`; y and bias (may be null) in `output`, which is `input` or F32. With `norm`
// (one token, output == input), x is ignored and the normed row is the input; the table's
// variant then runs with one warp per row (each block computes the norm: fewest blocks), a
// variant named in TPC_GEMV_VARIANT as named.
cudaError_t gemv(ElementType input, ElementType output, const void* x, const void* w,
                 const void* bias, int64_t tokens, int64_t in, int64_t out, void* y,
                 cudaStream_t stream, const GemvNorm* norm = nullptr);
// The same with the variant given (tokens == 1), for the benchmark and the tests.
cudaError_t gemvWithVariant(GemvVariant variant, ElementType input, ElementType output,
                            const void* x, const void* w, const void* bias, int64_t in, int64_t out,
                            void* y, cudaStream_t stream, const GemvNorm* norm = nullptr);

// One token through a gate-and-up weight [2 * half, in] (gate rows first) straight to
// y[half] = silu(gate) * up: the linear, split and swiglu steps of an MLP in one pass, with the
// same roundings. gemvSupports(type, 1, in, x, w) must hold.
cudaError_t gemvSwiglu(ElementType type, const void* x, const void* w, const void* bias, int64_t in,
                       int64_t half, void* y, cudaStream_t stream);
// The same with the variant given: the pipelined kernel's unroll and split (each of gate and up
// gets `split` warps), or "legacy".
cudaError_t gemvSwigluWithVariant(GemvVariant variant, ElementType type, const void* x,
                                  const void* w, const void* bias, int64_t in, int64_t half,
                                  void* y, cudaStream_t stream);

}  // namespace tpc::cuda
