#include "executor/cuda/Gemm.h"

#include <algorithm>
#include <cstdlib>

#include "executor/cuda/CudaCheck.h"
#include "kernels/cuda/Gemv.h"

namespace tpc {
namespace {

cudaDataType_t dataType(cuda::ElementType t) {
  switch (t) {
    case cuda::ElementType::BF16:
      return CUDA_R_16BF;
    case cuda::ElementType::F16:
      return CUDA_R_16F;
    default:
      return CUDA_R_32F;
  }
}

}  // namespace

Expected<std::unique_ptr<GemmRunner>> GemmRunner::create(size_t workspaceBytes) {
  auto runner = std::unique_ptr<GemmRunner>(new GemmRunner());
  TPC_CUDA_TRY(cublasLtCreate(&runner->handle_));
  TPC_CUDA_TRY(cudaMalloc(&runner->workspace_, workspaceBytes));
  runner->workspaceBytes_ = workspaceBytes;
  return runner;
}

GemmRunner::~GemmRunner() {
  for (auto& [shape, p] : prepared_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.desc);
  }
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

// cuBLASLt is column-major: row-major y[tokens, out] is column-major [out, tokens], and
// row-major w[out, in] is column-major [in, out], so y = op_T(w) * x with m = out, n = tokens.
Expected<GemmRunner::Prepared*> GemmRunner::prepare(const Shape& s) {
  auto found = prepared_.find(s);
  if (found != prepared_.end()) return &found->second;
  Prepared p;
  // f32 stays true f32 (no TF32): the f32 path is compared against transformers at 1e-4.
  TPC_CUDA_TRY(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t transA = CUBLAS_OP_T, transB = CUBLAS_OP_N;
  TPC_CUDA_TRY(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &transA, sizeof transA));
  TPC_CUDA_TRY(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &transB, sizeof transB));
  if (s.bias) {
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    TPC_CUDA_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                sizeof epilogue));
    cudaDataType_t biasType = dataType(s.output);
    TPC_CUDA_TRY(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                &biasType, sizeof biasType));
  }
  cudaDataType_t in = dataType(s.input), out = dataType(s.output);
  TPC_CUDA_TRY(cublasLtMatrixLayoutCreate(&p.a, in, static_cast<uint64_t>(s.in),
                                          static_cast<uint64_t>(s.out), s.in));
  TPC_CUDA_TRY(cublasLtMatrixLayoutCreate(&p.b, in, static_cast<uint64_t>(s.in),
                                          static_cast<uint64_t>(s.tokens), s.in));
  TPC_CUDA_TRY(cublasLtMatrixLayoutCreate(&p.c, out, static_cast<uint64_t>(s.out),
                                          static_cast<uint64_t>(s.tokens), s.out));
  cublasLtMatmulPreference_t preference = nullptr;
  TPC_CUDA_TRY(cublasLtMatmulPreferenceCreate(&preference));
  TPC_CUDA_TRY(cublasLtMatmulPreferenceSetAttribute(preference,
                                                    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &workspaceBytes_, sizeof workspaceBytes_));
  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int found_count = 0;
  cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      handle_, p.desc, p.a, p.b, p.c, p.c, preference, kCandidates, results, &found_count);
  cublasLtMatmulPreferenceDestroy(preference);
  if (status != CUBLAS_STATUS_SUCCESS || found_count == 0)
    return makeError("cuBLASLt has no algorithm for a ", s.tokens, "x", s.in, " @ ", s.in, "x",
                     s.out, " GEMM", s.bias ? " with bias" : "");
  for (int i = 0; i < found_count; ++i) p.algos.push_back(results[i].algo);
  return &prepared_.emplace(s, p).first->second;
}

bool GemmRunner::gemvEnabled() {
  static const bool enabled = !cuda::environmentFlag("TPC_NO_GEMV");
  return enabled;
}

int64_t GemmRunner::gemvMaxTokens(int64_t in, int64_t out) {
  // TPC_GEMV_MAX_TOKENS caps the rule below (1: our GEMV for one token only, as before the rule).
  static const int64_t cap = [] {
    const char* text = std::getenv("TPC_GEMV_MAX_TOKENS");
    if (!text || !*text) return cuda::kMaxGemvTokens;
    char* end = nullptr;
    const long long value = std::strtoll(text, &end, 10);
    return *end == '\0' && value >= 1 ? static_cast<int64_t>(value) : cuda::kMaxGemvTokens;
  }();
  // Measured with tpc_linear_bench on the H200 (bf16, Llama-3-8B and Llama-3.2-1B shapes, our
  // GEMV against cuBLASLt's first and best algorithms): ahead at one token everywhere; at two
  // for outputs of up to 8192 rows (qkv, o, down: 14.8 against 15.9 us for the 8B qkv, 10.2
  // against 12.5 for its o); at four only for at most 4096 rows of at most 4096 x 4096 weights
  // (the 8B o, 11.5 against 12.4; the 1B down, 10.6 against 12.9). Wide outputs (gate/up,
  // lm_head) and eight tokens belong to cuBLASLt.
  const int64_t rule = out > 8192 ? 1 : out <= 4096 && in * out <= 4096 * 4096 ? 4 : 2;
  return std::min(rule, cap);
}

Error GemmRunner::linear(cuda::ElementType inputType, cuda::ElementType outputType, const void* x,
                         const void* w, const void* bias, int64_t tokens, int64_t in, int64_t out,
                         void* y, cudaStream_t stream) {
  // A step of a few tokens only streams the weights: our GEMV keeps more loads in flight than
  // cuBLASLt's small-N kernels, but reads its inputs again for every weight vector, so cuBLASLt's
  // tensor-core kernels, which reuse each weight load across the tokens, win as tokens grow.
  if (gemvEnabled() && tokens <= gemvMaxTokens(in, out) &&
      cuda::gemvVariantFor(in, out).unroll >= 0 && cuda::gemvSupports(inputType, tokens, in, x, w))
    return cudacheck::check(
        cuda::gemv(inputType, outputType, x, w, bias, tokens, in, out, y, stream), "gemv");
  return cublasLinear(inputType, outputType, x, w, bias, tokens, in, out, y, stream);
}

Expected<int> GemmRunner::candidates(cuda::ElementType inputType, cuda::ElementType outputType,
                                     bool bias, int64_t tokens, int64_t in, int64_t out) {
  Expected<Prepared*> p = prepare({inputType, outputType, bias, tokens, in, out});
  if (!p) return p.takeError();
  return static_cast<int>((*p)->algos.size());
}

Error GemmRunner::cublasLinear(cuda::ElementType inputType, cuda::ElementType outputType,
                               const void* x, const void* w, const void* bias, int64_t tokens,
                               int64_t in, int64_t out, void* y, cudaStream_t stream,
                               int candidate) {
  Expected<Prepared*> p = prepare({inputType, outputType, bias != nullptr, tokens, in, out});
  if (!p) return p.takeError();
  if (candidate < 0 || candidate >= static_cast<int>((*p)->algos.size()))
    return makeError("cuBLASLt offers ", (*p)->algos.size(), " algorithms for a ", tokens, "x", in,
                     " @ ", in, "x", out, " GEMM, not ", candidate + 1);
  if (bias)
    TPC_CUDA_TRY(cublasLtMatmulDescSetAttribute((*p)->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &bias, sizeof bias));
  const float alpha = 1.0f, beta = 0.0f;
  TPC_CUDA_TRY(cublasLtMatmul(handle_, (*p)->desc, &alpha, w, (*p)->a, x, (*p)->b, &beta, y,
                              (*p)->c, y, (*p)->c, &(*p)->algos[static_cast<size_t>(candidate)],
                              workspace_, workspaceBytes_, stream));
  return Error::success();
}

}  // namespace tpc
