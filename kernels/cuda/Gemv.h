// Small-batch linear for decode: y[tokens, out] = x[tokens, in] @ w[out, in]^T (+ bias), for
// 1 to kMaxGemvTokens tokens. At these sizes a linear step only streams its weight matrix, so
// the kernel is built to keep enough 16-byte loads in flight to run at memory bandwidth; larger
// steps go to cuBLASLt. Host-compilable like CudaKernels.h.
#pragma once

#include "kernels/cuda/CudaKernels.h"

namespace tpc::cuda {

constexpr int64_t kMaxGemvTokens = 8;

// Whether gemv takes this shape: 1..kMaxGemvTokens tokens, rows a multiple of 16 bytes, and
// 16-byte aligned x, w and y.
bool gemvSupports(ElementType input, int64_t tokens, int64_t in, const void* x, const void* w);

// x and w in `input`; y and bias (may be null) in `output`, which is `input` or F32.
cudaError_t gemv(ElementType input, ElementType output, const void* x, const void* w,
                 const void* bias, int64_t tokens, int64_t in, int64_t out, void* y,
                 cudaStream_t stream);

// One token through a gate-and-up weight [2 * half, in] (gate rows first) straight to
// y[half] = silu(gate) * up: the linear, split and swiglu steps of an MLP in one pass, with the
// same roundings. gemvSupports(type, 1, in, x, w) must hold.
cudaError_t gemvSwiglu(ElementType type, const void* x, const void* w, const void* bias, int64_t in,
                       int64_t half, void* y, cudaStream_t stream);

}  // namespace tpc::cuda
