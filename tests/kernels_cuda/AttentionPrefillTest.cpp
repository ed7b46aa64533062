// Tensor-core prefill attention against cpu::attention: bf16 and f16, head sizes 64 and 128, GQA
// ratios 1, 4 and 8, chunk lengths that are not multiples of the 64-row tiles, a first chunk at
// position 0 and a second chunk after it (tile-aligned and not), in a slot other than 0 next to
// a decoy prompt in slot 0. Both caches start as NaN everywhere, so a row read from the wrong
// slot, the wrong KV head or past the visible positions poisons the output; after every chunk
// the whole GPU cache must equal the CPU's (the chunk's k and v rows, NaN elsewhere).
#include "kernels/cuda/AttentionPrefill.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

struct PrefillShape {
  ElementType type;
  int64_t heads, kvHeads, headDim;
};

std::string describe(const PrefillShape& s) {
  return std::string(typeName(s.type)) + " heads " + std::to_string(s.heads) + "/" +
         std::to_string(s.kvHeads) + " headDim " + std::to_string(s.headDim);
}

// Output tolerance, relative (allClose adds a tenth of the largest output to each element's
// magnitude): tensorCoreAttentionTolerance.
double prefillTolerance(ElementType type) { return tensorCoreAttentionTolerance(type); }

bool sameValues(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

// A CPU and a GPU cache of the same shape, both NaN to start with, advanced chunk by chunk.
class PrefillHarness {
 public:
  PrefillHarness(const PrefillShape& s, int64_t slots, int64_t maxContext)
      : s_(s), slots_(slots), maxContext_(maxContext) {
    k_.assign(slots * maxContext * s.kvHeads * s.headDim, std::numeric_limits<float>::quiet_NaN());
    v_ = k_;
    view_ = {k_.data(), v_.data(), slots, maxContext, s.kvHeads, s.headDim};
    dK_ = std::make_unique<DeviceBuffer>(upload(s.type, k_));
    dV_ = std::make_unique<DeviceBuffer>(upload(s.type, v_));
  }

  // Prefills positions [startPosition, startPosition + tokens) of `slot` on both sides and
  // compares the outputs, the written cache rows and the whole caches.
  void chunk(int64_t tokens, int64_t startPosition, int32_t slot, uint32_t seed) {
    SCOPED_TRACE(describe(s_) + " tokens " + std::to_string(tokens) + " from position " +
                 std::to_string(startPosition) + " in slot " + std::to_string(slot));
    const int64_t kvWidth = s_.kvHeads * s_.headDim;
    const float scale = 1.0f / std::sqrt(static_cast<float>(s_.headDim));
    // Queries over [-3, 3] make the softmax far from uniform.
    const std::vector<float> q =
        roundTo(s_.type, randomFloats(tokens * s_.heads * s_.headDim, seed, -3.0f, 3.0f));
    const std::vector<float> k = roundTo(s_.type, randomFloats(tokens * kvWidth, seed + 1));
    const std::vector<float> v = roundTo(s_.type, randomFloats(tokens * kvWidth, seed + 2));

    std::vector<int32_t> positions(tokens);
    for (int64_t i = 0; i < tokens; ++i) positions[i] = static_cast<int32_t>(startPosition + i);
    const std::vector<int32_t> slots(tokens, slot);
    std::vector<float> expected(q.size());
    cpu::attention(q.data(), k.data(), v.data(), positions.data(), slots.data(), tokens, s_.heads,
                   scale, view_, expected.data());

    DeviceBuffer dQ = upload(s_.type, q), dK = upload(s_.type, k), dV = upload(s_.type, v);
    DeviceBuffer dOut(q.size() * elementBytes(s_.type));
    dOut.fill(0xff);  // NaN: a row the kernel fails to write shows
    const KvCacheView cache{dK_->get(), dV_->get(), slots_, maxContext_, s_.kvHeads, s_.headDim};
    TPC_CUDA_OK(prefillAttention(s_.type, dQ.get(), dK.get(), dV.get(), tokens, s_.heads,
                                 startPosition, slot, scale, cache, dOut.get(), nullptr));
    EXPECT_TRUE(
        allClose(download(s_.type, dOut, q.size()), toDouble(expected), prefillTolerance(s_.type)));

    const std::vector<float> gpuK = download(s_.type, *dK_, k_.size());
    const std::vector<float> gpuV = download(s_.type, *dV_, v_.size());
    const int64_t firstRow = (slot * maxContext_ + startPosition) * kvWidth;
    EXPECT_TRUE(
        sameValues({gpuK.begin() + firstRow, gpuK.begin() + firstRow + tokens * kvWidth}, k))
        << "cache rows differ from the chunk's k";
    EXPECT_TRUE(
        sameValues({gpuV.begin() + firstRow, gpuV.begin() + firstRow + tokens * kvWidth}, v))
        << "cache rows differ from the chunk's v";
    EXPECT_TRUE(sameValues(gpuK, k_)) << "key cache differs";
    EXPECT_TRUE(sameValues(gpuV, v_)) << "value cache differs";
  }

 private:
  PrefillShape s_;
  int64_t slots_, maxContext_;
  std::vector<float> k_, v_;
  cpu::KvCache view_;
  std::unique_ptr<DeviceBuffer> dK_, dV_;
};

// Every supported type and head size with GQA ratios 1, 4 and 8.
std::vector<PrefillShape> supportedShapes() {
  const std::pair<int64_t, int64_t> headsAndKvHeads[] = {{4, 4}, {8, 2}, {16, 2}};
  std::vector<PrefillShape> shapes;
  for (ElementType type : {ElementType::BF16, ElementType::F16})
    for (int64_t headDim : {64, 128})
      for (const auto& [heads, kvHeads] : headsAndKvHeads)
        shapes.push_back({type, heads, kvHeads, headDim});
  return shapes;
}

constexpr int64_t kSlots = 3;
constexpr int32_t kSlot = 2;  // not 0: a kernel ignoring the slot reads the decoy or NaN
// Room for a 200-position first chunk plus a 300-token second one; not a multiple of 64.
constexpr int64_t kMaxContext = 520;
const int64_t kChunkTokens[] = {1, 17, 100, 300};  // 1 row, a partial tile, several, many

TEST(CudaPrefillAttention, SupportsHalfTypesWithHeadSizes64And128Only) {
  EXPECT_TRUE(prefillAttentionSupports(ElementType::BF16, 64));
  EXPECT_TRUE(prefillAttentionSupports(ElementType::BF16, 128));
  EXPECT_TRUE(prefillAttentionSupports(ElementType::F16, 64));
  EXPECT_TRUE(prefillAttentionSupports(ElementType::F16, 128));
  EXPECT_FALSE(prefillAttentionSupports(ElementType::F32, 64));
  EXPECT_FALSE(prefillAttentionSupports(ElementType::F32, 128));
  for (ElementType type : {ElementType::BF16, ElementType::F16})
    for (int64_t headDim : {16, 32, 80, 96, 256}) {
      SCOPED_TRACE(std::string(typeName(type)) + " headDim " + std::to_string(headDim));
      EXPECT_FALSE(prefillAttentionSupports(type, headDim));
    }
}

// Rejected arguments return before anything is enqueued, so no pointer is dereferenced and no
// GPU is needed: the pointers below are host addresses, 16-byte aligned unless a case says not.
TEST(CudaPrefillAttention, RejectsBadArgumentsBeforeEnqueueing) {
  alignas(16) static unsigned char storage[32];
  void* fake = storage;
  void* misaligned = storage + 8;
  const KvCacheView cache{fake, fake, 2, 256, 2, 128};
  auto call = [&](ElementType type, int64_t tokens, int64_t heads, int64_t start, int32_t slot,
                  const KvCacheView& view, void* q) {
    return prefillAttention(type, q, fake, fake, tokens, heads, start, slot, 0.1f, view, fake,
                            nullptr);
  };
  EXPECT_EQ(call(ElementType::F32, 4, 8, 0, 0, cache, fake), cudaErrorInvalidValue);
  KvCacheView headDim96 = cache;
  headDim96.headDim = 96;
  EXPECT_EQ(call(ElementType::BF16, 4, 8, 0, 0, headDim96, fake), cudaErrorInvalidValue);
  EXPECT_EQ(call(ElementType::BF16, 4, 7, 0, 0, cache, fake), cudaErrorInvalidValue);    // 7 % 2
  EXPECT_EQ(call(ElementType::BF16, 4, 8, 253, 0, cache, fake), cudaErrorInvalidValue);  // > 256
  EXPECT_EQ(call(ElementType::BF16, 4, 8, -1, 0, cache, fake), cudaErrorInvalidValue);
  EXPECT_EQ(call(ElementType::BF16, 4, 8, 0, 2, cache, fake), cudaErrorInvalidValue);  // 2 slots
  EXPECT_EQ(call(ElementType::BF16, 4, 8, 0, -1, cache, fake), cudaErrorInvalidValue);
  EXPECT_EQ(call(ElementType::F16, 4, 8, 0, 0, cache, misaligned), cudaErrorInvalidValue);
}

TEST(CudaPrefillAttention, FirstChunkMatchesCpu) {
  TPC_REQUIRE_GPU();
  for (const PrefillShape& shape : supportedShapes()) {
    for (int64_t tokens : kChunkTokens) {
      PrefillHarness harness(shape, kSlots, kMaxContext);
      harness.chunk(300, 0, 0, 10);  // decoy prompt in slot 0
      harness.chunk(tokens, 0, kSlot, 20);
    }
  }
}

TEST(CudaPrefillAttention, SecondChunkSeesTheFirst) {
  TPC_REQUIRE_GPU();
  for (const PrefillShape& shape : supportedShapes()) {
    // 200: the second chunk's first query sits inside a key tile; 128: on a tile boundary.
    for (int64_t firstChunk : {200, 128}) {
      for (int64_t tokens : kChunkTokens) {
        PrefillHarness harness(shape, kSlots, kMaxContext);
        harness.chunk(300, 0, 0, 30);  // decoy prompt in slot 0
        harness.chunk(firstChunk, 0, kSlot, 40);
        harness.chunk(tokens, firstChunk, kSlot, 50);
      }
    }
  }
}

TEST(CudaPrefillAttention, LongPromptInThreeChunksWithLlamaShape) {
  TPC_REQUIRE_GPU();
  // Llama-3-8B's head layout at a quarter of its heads (32/8 would only slow the CPU side).
  const PrefillShape shape{ElementType::BF16, 8, 2, 128};
  PrefillHarness harness(shape, 2, 2100);
  harness.chunk(1000, 0, 1, 60);
  harness.chunk(1, 1000, 1, 61);
  harness.chunk(1047, 1001, 1, 62);  // ends at position 2047
}

// The call is enqueue-only: captured into a graph and replayed it gives the same output (and the
// same cache, as replaying rewrites the same rows).
TEST(CudaPrefillAttention, ReplaysFromACapturedGraph) {
  TPC_REQUIRE_GPU();
  const PrefillShape shape{ElementType::F16, 8, 2, 64};
  const int64_t tokens = 77, maxContext = 128, kvWidth = shape.kvHeads * shape.headDim;
  const float scale = 0.125f;
  const std::vector<float> q =
      roundTo(shape.type, randomFloats(tokens * shape.heads * shape.headDim, 70, -3.0f, 3.0f));
  const std::vector<float> k = roundTo(shape.type, randomFloats(tokens * kvWidth, 71));
  const std::vector<float> v = roundTo(shape.type, randomFloats(tokens * kvWidth, 72));
  std::vector<float> cpuK(maxContext * kvWidth), cpuV(cpuK.size()), expected(q.size());
  cpu::KvCache view{cpuK.data(), cpuV.data(), 1, maxContext, shape.kvHeads, shape.headDim};
  std::vector<int32_t> positions(tokens);
  for (int64_t i = 0; i < tokens; ++i) positions[i] = static_cast<int32_t>(i);
  const std::vector<int32_t> slots(tokens, 0);
  cpu::attention(q.data(), k.data(), v.data(), positions.data(), slots.data(), tokens, shape.heads,
                 scale, view, expected.data());

  DeviceBuffer dQ = upload(shape.type, q), dK = upload(shape.type, k), dV = upload(shape.type, v);
  DeviceBuffer cacheK(cpuK.size() * 2), cacheV(cpuV.size() * 2), dOut(q.size() * 2);
  cacheK.fill(0);  // as the CPU cache starts
  cacheV.fill(0);
  const KvCacheView cache{cacheK.get(), cacheV.get(), 1, maxContext, shape.kvHeads, shape.headDim};
  cudaStream_t stream = nullptr;
  TPC_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  TPC_CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const cudaError_t captured =
      prefillAttention(shape.type, dQ.get(), dK.get(), dV.get(), tokens, shape.heads, 0, 0, scale,
                       cache, dOut.get(), stream);
  TPC_CUDA_OK(cudaStreamEndCapture(stream, &graph));
  TPC_CUDA_OK(captured);
  TPC_CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 2; ++replay) {
    dOut.fill(0xff);  // on the legacy stream, which `stream` does not wait for
    TPC_CUDA_OK(cudaDeviceSynchronize());
    TPC_CUDA_OK(cudaGraphLaunch(exec, stream));
    TPC_CUDA_OK(cudaStreamSynchronize(stream));
    EXPECT_TRUE(allClose(download(shape.type, dOut, q.size()), toDouble(expected),
                         prefillTolerance(shape.type)))
        << "replay " << replay;
  }
  EXPECT_TRUE(sameValues(download(shape.type, cacheK, cpuK.size()), cpuK));
  EXPECT_TRUE(sameValues(download(shape.type, cacheV, cpuV.size()), cpuV));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Llama-3-8B's attention shape at 2048 prompt tokens: the new kernel must agree with the generic
// one (itself checked against the CPU above and in AttentionTest.cpp) and should be much faster.
// Timings are printed, not judged (they depend on the GPU and on what else runs on it).
TEST(CudaPrefillAttention, LlamaShapeAgreesWithAndOutrunsTheGenericKernel) {
  TPC_REQUIRE_GPU();
  const ElementType type = ElementType::BF16;
  const int64_t tokens = 2048, heads = 32, kvHeads = 8, headDim = 128, maxContext = 2048;
  const int64_t kvWidth = kvHeads * headDim, qWidth = heads * headDim;
  const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
  DeviceBuffer dQ(tokens * qWidth * 2), dK(tokens * kvWidth * 2), dV(tokens * kvWidth * 2);
  TPC_CUDA_OK(fillUniform(type, dQ.get(), tokens * qWidth, 3.0f, 80, nullptr));
  TPC_CUDA_OK(fillUniform(type, dK.get(), tokens * kvWidth, 1.0f, 81, nullptr));
  TPC_CUDA_OK(fillUniform(type, dV.get(), tokens * kvWidth, 1.0f, 82, nullptr));
  DeviceBuffer cacheK(maxContext * kvWidth * 2), cacheV(maxContext * kvWidth * 2);
  DeviceBuffer prefillOut(tokens * qWidth * 2), genericOut(tokens * qWidth * 2);
  const KvCacheView cache{cacheK.get(), cacheV.get(), 1, maxContext, kvHeads, headDim};
  std::vector<int32_t> positions(tokens);
  for (int64_t i = 0; i < tokens; ++i) positions[i] = static_cast<int32_t>(i);
  DeviceBuffer dPositions = uploadRaw(positions), dSlots = uploadRaw(std::vector<int32_t>(tokens));
  const size_t workspaceBytes = attentionWorkspaceBytes(tokens, heads, headDim, maxContext);
  DeviceBuffer workspace(workspaceBytes);

  auto runPrefill = [&] {
    return prefillAttention(type, dQ.get(), dK.get(), dV.get(), tokens, heads, 0, 0, scale, cache,
                            prefillOut.get(), nullptr);
  };
  auto runGeneric = [&] {
    return attention(type, dQ.get(), dK.get(), dV.get(), dPositions.as<int32_t>(),
                     dSlots.as<int32_t>(), tokens, heads, scale, cache,
                     workspaceBytes ? workspace.get() : nullptr, genericOut.get(), nullptr);
  };
  TPC_CUDA_OK(runPrefill());
  TPC_CUDA_OK(runGeneric());
  // Both outputs are rounded once from f32 and the prefill kernel also rounds P: the prefill
  // tolerance covers the pair.
  EXPECT_TRUE(allClose(download(type, prefillOut, tokens * qWidth),
                       toDouble(download(type, genericOut, tokens * qWidth)),
                       prefillTolerance(type)));

  // Causal: query i attends to i + 1 positions; 2 GEMMs of 2 * headDim flops per pair and head.
  const double flops = 4.0 * headDim * heads * (tokens * (tokens + 1) / 2.0);
  cudaEvent_t start = nullptr, stop = nullptr;
  TPC_CUDA_OK(cudaEventCreate(&start));
  TPC_CUDA_OK(cudaEventCreate(&stop));
  auto milliseconds = [&](auto&& run) {
    constexpr int kRepeats = 20;
    EXPECT_EQ(cudaEventRecord(start, nullptr), cudaSuccess);
    for (int i = 0; i < kRepeats; ++i) EXPECT_EQ(run(), cudaSuccess);
    EXPECT_EQ(cudaEventRecord(stop, nullptr), cudaSuccess);
    EXPECT_EQ(cudaEventSynchronize(stop), cudaSuccess);
    float total = 0.0f;
    EXPECT_EQ(cudaEventElapsedTime(&total, start, stop), cudaSuccess);
    return total / kRepeats;
  };
  const float prefillMs = milliseconds(runPrefill), genericMs = milliseconds(runGeneric);
  std::printf(
      "[ timing ] %lld tokens, %lld/%lld heads, headDim %lld, bf16: prefill %.3f ms "
      "(%.0f TFLOP/s), generic %.3f ms (%.0f TFLOP/s), cache write included\n",
      static_cast<long long>(tokens), static_cast<long long>(heads),
      static_cast<long long>(kvHeads), static_cast<long long>(headDim), prefillMs,
      flops / prefillMs * 1e-9, genericMs, flops / genericMs * 1e-9);
  RecordProperty("prefill_ms", std::to_string(prefillMs));
  RecordProperty("generic_ms", std::to_string(genericMs));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

}  // namespace
}  // namespace tpc::cuda::test
