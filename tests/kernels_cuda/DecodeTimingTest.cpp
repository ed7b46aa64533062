// Timings of the kernels one Llama-3-8B decode step runs (bf16, batch 1), for tuning; disabled by
// default because it asserts nothing. Run on a GPU with
//   tpc_kernels_cuda_tests --gtest_also_run_disabled_tests --gtest_filter='*DecodeTiming*'
// Each line: microseconds per call (mean of 200 back-to-back launches, CUDA events) and, where
// it means something, the bandwidth implied by the bytes the kernel must move.
#include <cstdio>
#include <functional>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

double microsecondsPerCall(const std::function<cudaError_t()>& launch) {
  for (int i = 0; i < 10; ++i) EXPECT_EQ(launch(), cudaSuccess);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  const int calls = 200;
  cudaEventRecord(start);
  for (int i = 0; i < calls; ++i) launch();
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0.0f;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  return 1000.0 * ms / calls;
}

void report(const char* what, double us, double bytes = 0.0) {
  if (bytes > 0)
    std::printf("%-44s %9.2f us  %7.1f GB/s\n", what, us, bytes / (us * 1e3));
  else
    std::printf("%-44s %9.2f us\n", what, us);
}

TEST(CudaTiming, DISABLED_DecodeTiming) {
  TPC_REQUIRE_GPU();
  const ElementType type = ElementType::BF16;
  const int64_t hidden = 4096, heads = 32, kvHeads = 8, headDim = 128, intermediate = 14336;
  const int64_t vocab = 128256, maxContext = 8192;
  DeviceBuffer x = upload(type, randomFloats(hidden, 1)),
               residual = upload(type, randomFloats(hidden, 2));
  DeviceBuffer weight = upload(type, randomFloats(hidden, 3, 0.5f, 1.5f));
  DeviceBuffer out(hidden * 2), sum(hidden * 2);
  report("rmsNorm 4096", microsecondsPerCall([&] {
           return rmsNorm(type, x.get(), weight.get(), 1, hidden, 1e-5f, out.get(), nullptr);
         }),
         3.0 * hidden * 2);
  report("addRmsNorm 4096", microsecondsPerCall([&] {
           return addRmsNorm(type, x.get(), residual.get(), weight.get(), 1, hidden, 1e-5f,
                             sum.get(), out.get(), nullptr);
         }),
         5.0 * hidden * 2);
  DeviceBuffer gate = upload(type, randomFloats(intermediate, 4));
  DeviceBuffer up = upload(type, randomFloats(intermediate, 5));
  DeviceBuffer act(intermediate * 2);
  report("swiglu 14336", microsecondsPerCall([&] {
           return swiglu(type, gate.get(), up.get(), intermediate, act.get(), nullptr);
         }),
         3.0 * intermediate * 2);

  cpu::RopeParams p;
  p.type = "llama3";
  p.theta = 500000.0;
  p.factor = 8.0;
  p.originalMaxPosition = 8192;
  p.headDim = headDim;
  float scaling = 1.0f;
  DeviceBuffer inverse = uploadRaw(cpu::ropeInverseFrequencies(p, &scaling));
  DeviceBuffer q = upload(type, randomFloats(heads * headDim, 6));
  DeviceBuffer k = upload(type, randomFloats(kvHeads * headDim, 7));
  DeviceBuffer v = upload(type, randomFloats(kvHeads * headDim, 8));
  DeviceBuffer slot = uploadRaw(std::vector<int32_t>{0});
  report("rope q (32 heads)", microsecondsPerCall([&] {
           return rope(type, q.get(), slot.as<int32_t>(), 1, heads, headDim, inverse.as<float>(),
                       scaling, q.get(), nullptr);
         }));

  DeviceBuffer cacheK(maxContext * kvHeads * headDim * 2),
      cacheV(maxContext * kvHeads * headDim * 2);
  TPC_CUDA_OK(fillUniform(type, cacheK.get(), maxContext * kvHeads * headDim, 1.0f, 9, nullptr));
  TPC_CUDA_OK(fillUniform(type, cacheV.get(), maxContext * kvHeads * headDim, 1.0f, 10, nullptr));
  const KvCacheView cache{cacheK.get(), cacheV.get(), 1, maxContext, kvHeads, headDim};
  DeviceBuffer workspace(attentionWorkspaceBytes(1, heads, headDim, maxContext));
  DeviceBuffer attnOut(heads * headDim * 2);
  for (int32_t context : {128, 512, 2048, 8192}) {
    DeviceBuffer position = uploadRaw(std::vector<int32_t>{context - 1});
    const std::string name = "attention decode, context " + std::to_string(context);
    report(name.c_str(), microsecondsPerCall([&] {
             return attention(type, q.get(), k.get(), v.get(), position.as<int32_t>(),
                              slot.as<int32_t>(), 1, heads, 0.088f, cache, workspace.get(),
                              attnOut.get(), nullptr);
           }),
           2.0 * context * kvHeads * headDim * 2);
  }

  DeviceBuffer logits(vocab * sizeof(float)), token(sizeof(int32_t));
  TPC_CUDA_OK(fillUniform(ElementType::F32, logits.get(), vocab, 8.0f, 11, nullptr));
  DeviceBuffer draw = uploadRaw(std::vector<double>{0.37});
  report("argmax 128256", microsecondsPerCall([&] {
           return argmax(logits.as<float>(), 1, vocab, token.as<int32_t>(), nullptr);
         }),
         vocab * 4.0);
  const struct {
    const char* name;
    float temperature;
    int64_t topK;
    float topP;
  } samplers[] = {{"sample temperature 128256", 0.7f, 0, 1.0f},
                  {"sample top-k 50 128256", 0.7f, 50, 1.0f},
                  {"sample top-k 50 top-p 0.9 128256", 0.6f, 50, 0.9f},
                  // Flat logits put the nucleus far past the 2048 highest: the bisection path.
                  {"sample top-p 0.9 128256 flat (bisection)", 0.6f, 0, 0.9f}};
  for (const auto& s : samplers)
    report(s.name, microsecondsPerCall([&] {
             return sample(logits.as<float>(), 1, vocab, s.temperature, s.topK, s.topP,
                           draw.as<double>(), nullptr, token.as<int32_t>(), nullptr);
           }));
  // Logits over [-30, 30): the nucleus lies within the 2048 highest, as with a real model.
  DeviceBuffer peaked(vocab * sizeof(float));
  TPC_CUDA_OK(fillUniform(ElementType::F32, peaked.get(), vocab, 30.0f, 12, nullptr));
  report("sample top-p 0.9 128256 peaked", microsecondsPerCall([&] {
           return sample(peaked.as<float>(), 1, vocab, 0.6f, 0, 0.9f, draw.as<double>(), nullptr,
                         token.as<int32_t>(), nullptr);
         }));
}

}  // namespace
}  // namespace tpc::cuda::test
