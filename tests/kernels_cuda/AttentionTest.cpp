// Split-context attention against cpu::attention: batched decode over long, non-uniform contexts
// in several slots, causal prefill (including calls long enough to use a single chunk), mixed
// calls, GQA ratios 1..16 and head sizes 16..256. Both sides start from the same cache: history
// below each slot's first position is synthetic (written straight into both caches), everything
// else is NaN, so a kernel reading a row it should not see poisons its output.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/AttentionPlan.h"
#include "kernels/cuda/DecodeAttention.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

struct AttentionCase {
  ElementType type;
  int64_t heads, kvHeads, headDim, slots, maxContext;
};

std::string describe(const AttentionCase& c) {
  return std::string(typeName(c.type)) + " heads " + std::to_string(c.heads) + "/" +
         std::to_string(c.kvHeads) + " headDim " + std::to_string(c.headDim) + " maxContext " +
         std::to_string(c.maxContext);
}

// Output tolerance: f32 differs from the CPU only in summation order and expf over up to 4096
// terms whose weighted sum cancels to ~1/sqrt(context) of the values' scale, hence 1e-4 rather
// than 1e-5 (allClose also allows a tenth of the largest output). bf16/f16 outputs are rounded once
// from f32 (inputs and cache are already rounded on both sides): storageTolerance; the decode
// kernel runs on tensor cores and rounds the softmax weights too (tensorCoreAttentionTolerance).
double attentionTolerance(ElementType type, bool tensorCores) {
  if (type == ElementType::F32) return 1e-4;
  return tensorCores ? tensorCoreAttentionTolerance(type) : storageTolerance(type);
}

bool sameValues(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

class Harness {
 public:
  // history[s]: positions [0, history[s]) of slot s hold synthetic rows.
  Harness(const AttentionCase& c, const std::vector<int32_t>& history, uint32_t seed) : c_(c) {
    const int64_t row = c.kvHeads * c.headDim;
    const size_t size = c.slots * c.maxContext * row;
    k_.assign(size, std::numeric_limits<float>::quiet_NaN());
    v_ = k_;
    for (int64_t s = 0; s < c.slots; ++s) {
      const int64_t filled = history[s];
      const std::vector<float> keys = roundTo(c.type, randomFloats(filled * row, seed + s));
      const std::vector<float> values = roundTo(c.type, randomFloats(filled * row, seed + 100 + s));
      std::copy(keys.begin(), keys.end(), k_.begin() + s * c.maxContext * row);
      std::copy(values.begin(), values.end(), v_.begin() + s * c.maxContext * row);
    }
    view_ = {k_.data(), v_.data(), c.slots, c.maxContext, c.kvHeads, c.headDim};
    dK_ = std::make_unique<DeviceBuffer>(upload(c.type, k_));
    dV_ = std::make_unique<DeviceBuffer>(upload(c.type, v_));
  }

  // One attention call on both sides; compares the outputs and the whole caches.
  // `decode`: through cuda::decodeAttention, whose workspace (and its counters) persists across
  // steps as in the backend.
  void step(const std::vector<int32_t>& positions, const std::vector<int32_t>& slots, uint32_t seed,
            bool decode = false) {
    const auto tokens = static_cast<int64_t>(positions.size());
    SCOPED_TRACE(describe(c_) + " tokens " + std::to_string(tokens));
    const float scale = 1.0f / std::sqrt(static_cast<float>(c_.headDim));
    // Queries over [-3, 3] make the softmax far from uniform.
    const std::vector<float> q =
        roundTo(c_.type, randomFloats(tokens * c_.heads * c_.headDim, seed, -3.0f, 3.0f));
    const std::vector<float> k =
        roundTo(c_.type, randomFloats(tokens * c_.kvHeads * c_.headDim, seed + 1));
    const std::vector<float> v =
        roundTo(c_.type, randomFloats(tokens * c_.kvHeads * c_.headDim, seed + 2));
    std::vector<float> expected(q.size());
    cpu::attention(q.data(), k.data(), v.data(), positions.data(), slots.data(), tokens, c_.heads,
                   scale, view_, expected.data());

    DeviceBuffer dQ = upload(c_.type, q), dKIn = upload(c_.type, k), dVIn = upload(c_.type, v);
    DeviceBuffer dPos = uploadRaw(positions), dSlots = uploadRaw(slots);
    const size_t workspaceBytes =
        attentionWorkspaceBytes(tokens, c_.heads, c_.headDim, c_.maxContext);
    DeviceBuffer workspace(workspaceBytes);
    workspace.fill(0xff);  // NaN: a partial read before it is written shows
    DeviceBuffer dOut(q.size() * elementBytes(c_.type));
    const KvCacheView cache{dK_->get(),    dV_->get(), c_.slots,
                            c_.maxContext, c_.kvHeads, c_.headDim};
    if (decode) {
      if (!decodeWorkspace_) {
        decodeWorkspace_ = std::make_unique<DeviceBuffer>(decodeAttentionWorkspaceBytes(
            c_.slots, c_.heads, c_.kvHeads, c_.headDim, c_.maxContext));
        decodeWorkspace_->fill(0);
      }
      TPC_CUDA_OK(decodeAttention(c_.type, dQ.get(), dKIn.get(), dVIn.get(), dPos.as<int32_t>(),
                                  dSlots.as<int32_t>(), tokens, c_.heads, scale, cache,
                                  decodeWorkspace_->get(), dOut.get(), nullptr));
    } else {
      TPC_CUDA_OK(attention(c_.type, dQ.get(), dKIn.get(), dVIn.get(), dPos.as<int32_t>(),
                            dSlots.as<int32_t>(), tokens, c_.heads, scale, cache,
                            workspaceBytes ? workspace.get() : nullptr, dOut.get(), nullptr));
    }
    EXPECT_TRUE(allClose(download(c_.type, dOut, q.size()), toDouble(expected),
                         attentionTolerance(c_.type, decode)));
    EXPECT_TRUE(sameValues(download(c_.type, *dK_, k_.size()), k_)) << "key cache differs";
    EXPECT_TRUE(sameValues(download(c_.type, *dV_, v_.size()), v_)) << "value cache differs";
  }

 private:
  AttentionCase c_;
  std::vector<float> k_, v_;
  cpu::KvCache view_;
  std::unique_ptr<DeviceBuffer> dK_, dV_, decodeWorkspace_;
};

std::vector<int32_t> range(int32_t first, int32_t count) {
  std::vector<int32_t> values(count);
  for (int32_t i = 0; i < count; ++i) values[i] = first + i;
  return values;
}

const AttentionCase kShapes[] = {
    // GQA ratio 1, 4, 8, 16 (two batches of query heads per block); packed and strided lanes.
    {ElementType::F32, 8, 8, 64, 6, 4096},    {ElementType::BF16, 32, 8, 128, 6, 4096},
    {ElementType::BF16, 32, 4, 128, 6, 4096}, {ElementType::F32, 16, 1, 128, 6, 2048},
    {ElementType::BF16, 8, 1, 256, 6, 1024},  {ElementType::F32, 12, 3, 32, 6, 1000},
    {ElementType::BF16, 16, 4, 16, 6, 4096},  {ElementType::F16, 32, 8, 128, 6, 4096},
    {ElementType::F16, 8, 2, 80, 6, 700},     {ElementType::F32, 64, 8, 256, 6, 640},
};

TEST(CudaAttention, BatchedDecodeOverLongNonUniformContexts) {
  TPC_REQUIRE_GPU();
  for (const AttentionCase& c : kShapes) {
    const int32_t last = static_cast<int32_t>(c.maxContext - 1);
    // Chunk edges (127/128/255/256), a lone first token, the last position of the cache.
    const std::vector<int32_t> positions = {last - 1, 1000 % last, 0, 257 % last, 128, 127};
    std::vector<int32_t> history(positions.begin(), positions.end());
    Harness harness(c, history, 20);
    const std::vector<int32_t> slots = {0, 1, 2, 3, 4, 5};
    harness.step(positions, slots, 30);
    // The next decode step of each slot, in another slot order.
    std::vector<int32_t> next = {positions[3] + 1, positions[0] + 1, positions[5] + 1};
    harness.step(next, {3, 0, 5}, 40);
  }
}

TEST(CudaAttention, CausalPrefillThenDecode) {
  TPC_REQUIRE_GPU();
  for (const AttentionCase& c : kShapes) {
    for (int32_t prompt : {1, 3, 37, 257}) {
      // Slot 1 starts empty, slot 2 continues after 300 positions of history.
      Harness harness(c, {0, 0, 300, 0, 0, 0}, 50);
      harness.step(range(0, prompt), std::vector<int32_t>(prompt, 1), 60);
      harness.step(range(300, prompt), std::vector<int32_t>(prompt, 2), 70);
      harness.step({prompt, 300 + prompt}, {1, 2}, 80);
    }
  }
}

TEST(CudaAttention, LongPrefillUsesOneChunkPerToken) {
  TPC_REQUIRE_GPU();
  // tokens x splits beyond kAttentionMaxTokenSplits: chunks grow until a single one remains.
  const AttentionCase cases[] = {{ElementType::BF16, 8, 2, 64, 2, 1200},
                                 {ElementType::F32, 4, 4, 128, 2, 1200}};
  for (const AttentionCase& c : cases) {
    ASSERT_EQ(attentionSplits(1100, c.maxContext).splits, 1);
    Harness harness(c, {0, 0}, 90);
    harness.step(range(0, 1100), std::vector<int32_t>(1100, 0), 91);
    harness.step({1100}, {0}, 92);
  }
}

TEST(CudaAttention, MixedPrefillAndDecodeInOneCall) {
  TPC_REQUIRE_GPU();
  const AttentionCase c{ElementType::BF16, 32, 8, 128, 4, 2048};
  Harness harness(c, {500, 0, 1999, 3}, 100);
  // A 5-token prompt in slot 1 next to decode tokens of slots 0, 2 and 3.
  std::vector<int32_t> positions = {500, 0, 1, 2, 3, 4, 1999, 3};
  std::vector<int32_t> slots = {0, 1, 1, 1, 1, 1, 2, 3};
  harness.step(positions, slots, 101);
}

// The one-launch decode kernel: every token a different slot, positions on both sides of its
// tile edges (63/64/65), position 0 and the last one; three steps in a row share a workspace,
// so a counter left non-zero by one step would break the next.
TEST(CudaAttention, DecodeKernelMatchesCpu) {
  TPC_REQUIRE_GPU();
  const AttentionCase shapes[] = {
      {ElementType::BF16, 32, 8, 128, 8, 4096}, {ElementType::BF16, 32, 4, 128, 8, 1000},
      {ElementType::F16, 8, 8, 64, 8, 2048},    {ElementType::BF16, 32, 8, 64, 8, 4096},
      {ElementType::F16, 16, 2, 128, 8, 4096},
  };
  for (const AttentionCase& c : shapes) {
    ASSERT_TRUE(decodeAttentionSupports(c.type, c.heads, c.kvHeads, c.headDim));
    const auto last = static_cast<int32_t>(c.maxContext - 1);
    std::vector<int32_t> positions = {63, 64, 0, last, 65, 700, 1, 128};
    Harness harness(c, positions, 50);
    std::vector<int32_t> slots = {0, 1, 2, 3, 4, 5, 6, 7};
    harness.step(positions, slots, 60, true);
    // Next steps: fewer tokens, other slot orders.
    harness.step({positions[4] + 1, positions[0] + 1}, {4, 0}, 70, true);
    harness.step({positions[5] + 1, positions[1] + 1, positions[6] + 1}, {5, 1, 6}, 80, true);
    // One token at the last position (rewriting its row): the most splits a call takes, more
    // than a warp's lanes where the context allows.
    harness.step({last}, {3}, 90, true);
  }
  EXPECT_FALSE(decodeAttentionSupports(ElementType::F32, 32, 8, 128));
  EXPECT_FALSE(decodeAttentionSupports(ElementType::BF16, 32, 8, 256));
  EXPECT_FALSE(decodeAttentionSupports(ElementType::BF16, 32, 2, 128));  // group of 16
}

// A batch as large as the engine's decode steps: the kernel then gives each (token, KV head)
// only a split or two, each a long run of tiles through the double buffer; then a smaller batch
// through the same workspace.
TEST(CudaAttention, DecodeKernelOverALargeBatchMatchesCpu) {
  TPC_REQUIRE_GPU();
  const AttentionCase c{ElementType::BF16, 32, 8, 128, 64, 2048};
  std::vector<int32_t> positions(64), slots(64);
  for (int32_t s = 0; s < 64; ++s) {
    positions[s] = (s * 977 + 31) % 2047;  // all over the context, tile edges included
    slots[s] = (s * 37) % 64;              // every slot once, out of order
  }
  positions[0] = 0;
  positions[1] = 2047;
  positions[2] = 31;
  positions[3] = 32;
  std::vector<int32_t> history(64);
  for (int32_t s = 0; s < 64; ++s) history[slots[s]] = positions[s];
  Harness harness(c, history, 110);
  harness.step(positions, slots, 120, true);
  std::vector<int32_t> next(positions.begin() + 4, positions.begin() + 20);
  for (int32_t& p : next) p += 1;
  harness.step(next, std::vector<int32_t>(slots.begin() + 4, slots.begin() + 20), 130, true);
}

}  // namespace
}  // namespace tpc::cuda::test
