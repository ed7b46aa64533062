#include <cblas.h>

#include <cassert>
#include <climits>
#include <cstring>

#include "kernels/cpu/Kernels.h"

namespace tpc::cpu {

void linear(const float* x, const float* w, const float* bias, int64_t tokens, int64_t in,
            int64_t out, float* y) {
  if (tokens == 0 || out == 0) return;
  assert(tokens <= INT_MAX && in <= INT_MAX && out <= INT_MAX && "cblas takes int dimensions");
  // Like torch's addmm: start from the bias and let the GEMM accumulate onto it (beta = 1).
  float beta = 0.0f;
  if (bias) {
    for (int64_t t = 0; t < tokens; ++t) std::memcpy(y + t * out, bias, sizeof(float) * out);
    beta = 1.0f;
  }
  if (in == 0) {
    if (!bias) std::memset(y, 0, sizeof(float) * tokens * out);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(tokens),
              static_cast<int>(out), static_cast<int>(in), 1.0f, x, static_cast<int>(in), w,
              static_cast<int>(in), beta, y, static_cast<int>(out));
}

}  // namespace tpc::cpu
