// The three CUDA attention kernels reading and writing K/V through block tables, against their
// CPU twin cpu::pagedAttention on the same pool: sequence s owns a shuffled set of the pool's
// blocks. The pool's blocks that no table names stay NaN, as do the rows past each sequence's
// history, so a kernel that reads or writes outside a token's blocks poisons its output or the
// pool (compared whole after every call). Block sizes 16 and 32;
// generic calls mix decode tokens with prompt chunks; prefill chunks continue a cached prefix.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/Kernels.h"
#include "kernels/cuda/AttentionPrefill.h"
#include "kernels/cuda/DecodeAttention.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

struct PagedCase {
  ElementType type;
  int64_t heads, kvHeads, headDim, sequences, maxContext, blockSize;
};

std::string describe(const PagedCase& c) {
  return std::string(typeName(c.type)) + " heads " + std::to_string(c.heads) + "/" +
         std::to_string(c.kvHeads) + " headDim " + std::to_string(c.headDim) + " maxContext " +
         std::to_string(c.maxContext) + " block " + std::to_string(c.blockSize);
}

// As in AttentionTest (f32: summation order over long contexts; the tensor-core kernels also
// round the softmax weights to the storage type).
double tolerance(ElementType type, bool tensorCores) {
  if (type == ElementType::F32) return 1e-4;
  return tensorCores ? tensorCoreAttentionTolerance(type) : storageTolerance(type);
}

bool sameValues(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

enum class Kernel { Generic, Decode, Prefill };

class PagedHarness {
 public:
  // history[s]: positions [0, history[s]) of sequence s hold synthetic rows.
  PagedHarness(const PagedCase& c, const std::vector<int32_t>& history, uint32_t seed) : c_(c) {
    row_ = c.kvHeads * c.headDim;
    perSequence_ = c.maxContext / c.blockSize;
    // Three spare blocks no table names.
    poolBlocks_ = c.sequences * perSequence_ + 3;
    std::vector<int32_t> order(static_cast<size_t>(poolBlocks_));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(seed));
    table_.assign(order.begin(), order.begin() + c.sequences * perSequence_);

    const size_t size = static_cast<size_t>(c.sequences * c.maxContext * row_);
    k_.assign(size, std::numeric_limits<float>::quiet_NaN());
    v_ = k_;
    for (int64_t s = 0; s < c.sequences; ++s) {
      const int64_t filled = history[static_cast<size_t>(s)];
      const std::vector<float> keys = roundTo(c.type, randomFloats(filled * row_, seed + s));
      const std::vector<float> values = roundTo(c.type, randomFloats(filled * row_, seed + 50 + s));
      std::copy(keys.begin(), keys.end(), k_.begin() + s * c.maxContext * row_);
      std::copy(values.begin(), values.end(), v_.begin() + s * c.maxContext * row_);
    }
    poolK_ = toPool(k_);
    poolV_ = toPool(v_);
    cpuPool_ = {poolK_.data(), poolV_.data(), poolBlocks_, c.blockSize, c.kvHeads, c.headDim};
    dK_ = std::make_unique<DeviceBuffer>(upload(c.type, poolK_));
    dV_ = std::make_unique<DeviceBuffer>(upload(c.type, poolV_));
    dTable_ = std::make_unique<DeviceBuffer>(uploadRaw(table_));
    decodeWorkspace_ = std::make_unique<DeviceBuffer>(
        decodeAttentionWorkspaceBytes(16, c.heads, c.kvHeads, c.headDim, c.maxContext));
    decodeWorkspace_->fill(0);
  }

  // One call on both sides; compares the outputs and the whole pool. Prefill takes one
  // sequence's consecutive positions.
  void step(const std::vector<int32_t>& positions, const std::vector<int32_t>& sequences,
            uint32_t seed, Kernel kernel) {
    const auto tokens = static_cast<int64_t>(positions.size());
    SCOPED_TRACE(describe(c_) + " tokens " + std::to_string(tokens) + " kernel " +
                 std::to_string(static_cast<int>(kernel)));
    const float scale = 1.0f / std::sqrt(static_cast<float>(c_.headDim));
    const std::vector<float> q =
        roundTo(c_.type, randomFloats(tokens * c_.heads * c_.headDim, seed, -3.0f, 3.0f));
    const std::vector<float> k = roundTo(c_.type, randomFloats(tokens * row_, seed + 1));
    const std::vector<float> v = roundTo(c_.type, randomFloats(tokens * row_, seed + 2));
    // The CPU twin's form: tokens grouped into runs of one sequence, each with its table row
    // and every token's KV slot.
    std::vector<int32_t> starts = {0}, tables, kvSlots;
    for (int64_t t = 0; t < tokens; ++t) {
      const int32_t s = sequences[static_cast<size_t>(t)];
      if (t > 0 && s != sequences[static_cast<size_t>(t - 1)])
        starts.push_back(static_cast<int32_t>(t));
      if (t == 0 || s != sequences[static_cast<size_t>(t - 1)])
        tables.insert(tables.end(), table_.begin() + s * perSequence_,
                      table_.begin() + (s + 1) * perSequence_);
      const int32_t p = positions[static_cast<size_t>(t)];
      kvSlots.push_back(static_cast<int32_t>(
          table_[static_cast<size_t>(s * perSequence_ + p / c_.blockSize)] * c_.blockSize +
          p % c_.blockSize));
    }
    starts.push_back(static_cast<int32_t>(tokens));
    cpu::PagedBatch batch;
    batch.positions = positions.data();
    batch.kvSlots = kvSlots.data();
    batch.tokens = tokens;
    batch.sequences = static_cast<int64_t>(starts.size()) - 1;
    batch.seqStarts = starts.data();
    batch.blockTables = tables.data();
    batch.blockTableStride = perSequence_;
    std::vector<float> expected(q.size());
    cpu::pagedAttention(q.data(), k.data(), v.data(), batch, c_.heads, scale, cpuPool_,
                        expected.data());

    DeviceBuffer dQ = upload(c_.type, q), dKIn = upload(c_.type, k), dVIn = upload(c_.type, v);
    DeviceBuffer dPos = uploadRaw(positions), dSeq = uploadRaw(sequences);
    DeviceBuffer dOut(q.size() * elementBytes(c_.type));
    KvCacheView cache{dK_->get(), dV_->get(), c_.sequences, c_.maxContext, c_.kvHeads, c_.headDim};
    cache.blockTable = dTable_->as<int32_t>();
    cache.blockSize = c_.blockSize;
    if (kernel == Kernel::Decode) {
      TPC_CUDA_OK(decodeAttention(c_.type, dQ.get(), dKIn.get(), dVIn.get(), dPos.as<int32_t>(),
                                  dSeq.as<int32_t>(), tokens, c_.heads, scale, cache,
                                  decodeWorkspace_->get(), dOut.get(), nullptr));
    } else if (kernel == Kernel::Prefill) {
      TPC_CUDA_OK(prefillAttention(c_.type, dQ.get(), dKIn.get(), dVIn.get(), tokens, c_.heads,
                                   positions[0], sequences[0], scale, cache, dOut.get(), nullptr));
    } else {
      const size_t bytes = attentionWorkspaceBytes(tokens, c_.heads, c_.headDim, c_.maxContext);
      DeviceBuffer workspace(bytes);
      workspace.fill(0xff);
      TPC_CUDA_OK(attention(c_.type, dQ.get(), dKIn.get(), dVIn.get(), dPos.as<int32_t>(),
                            dSeq.as<int32_t>(), tokens, c_.heads, scale, cache,
                            bytes ? workspace.get() : nullptr, dOut.get(), nullptr));
    }
    EXPECT_TRUE(allClose(download(c_.type, dOut, q.size()), toDouble(expected),
                         tolerance(c_.type, kernel != Kernel::Generic)));
    const size_t poolSize = static_cast<size_t>(poolBlocks_ * c_.blockSize * row_);
    EXPECT_TRUE(sameValues(download(c_.type, *dK_, poolSize), poolK_)) << "key pool differs";
    EXPECT_TRUE(sameValues(download(c_.type, *dV_, poolSize), poolV_)) << "value pool differs";
  }

 private:
  // The contiguous cache scattered into pool blocks through the table; unnamed blocks NaN.
  std::vector<float> toPool(const std::vector<float>& contiguous) const {
    const int64_t blockElements = c_.blockSize * row_;
    std::vector<float> pool(static_cast<size_t>(poolBlocks_ * blockElements),
                            std::numeric_limits<float>::quiet_NaN());
    for (int64_t s = 0; s < c_.sequences; ++s)
      for (int64_t b = 0; b < perSequence_; ++b) {
        const int64_t physical = table_[static_cast<size_t>(s * perSequence_ + b)];
        std::copy_n(contiguous.begin() + (s * perSequence_ + b) * blockElements, blockElements,
                    pool.begin() + physical * blockElements);
      }
    return pool;
  }

  PagedCase c_;
  int64_t row_ = 0, perSequence_ = 0, poolBlocks_ = 0;
  std::vector<int32_t> table_;
  std::vector<float> k_, v_;  // the history, contiguous per sequence
  std::vector<float> poolK_, poolV_;
  cpu::KvPool cpuPool_;
  std::unique_ptr<DeviceBuffer> dK_, dV_, dTable_, decodeWorkspace_;
};

std::vector<int32_t> range(int32_t first, int32_t count) {
  std::vector<int32_t> values(static_cast<size_t>(count));
  std::iota(values.begin(), values.end(), first);
  return values;
}

const PagedCase kCases[] = {
    {ElementType::BF16, 32, 8, 128, 6, 2048, 16},
    {ElementType::BF16, 32, 8, 128, 6, 2048, 32},
    {ElementType::F16, 16, 2, 64, 6, 1024, 16},
    {ElementType::BF16, 8, 8, 64, 6, 512, 32},
};

TEST(CudaPagedAttention, DecodeKernelThroughBlockTables) {
  TPC_REQUIRE_GPU();
  for (const PagedCase& c : kCases) {
    const auto last = static_cast<int32_t>(c.maxContext - 1);
    // Block edges (15/16/31/32), chunk edges (63/64), position 0 and the last one.
    const std::vector<int32_t> positions = {15, 64, 0, last, 31, 300};
    PagedHarness harness(c, positions, 10);
    harness.step(positions, {0, 1, 2, 3, 4, 5}, 20, Kernel::Decode);
    harness.step({positions[4] + 1, positions[0] + 1, positions[5] + 1}, {4, 0, 5}, 30,
                 Kernel::Decode);
  }
}

TEST(CudaPagedAttention, PrefillKernelContinuesACachedPrefix) {
  TPC_REQUIRE_GPU();
  for (const PagedCase& c : kCases) {
    // Sequence 1 starts empty; sequence 2 has a 48-position cached prefix (three blocks of 16,
    // one and a half of 32); sequence 3 continues in a second chunk of its own prompt.
    PagedHarness harness(c, {0, 0, 48, 0, 0, 0}, 40);
    harness.step(range(0, 100), std::vector<int32_t>(100, 1), 50, Kernel::Prefill);
    harness.step(range(48, 77), std::vector<int32_t>(77, 2), 60, Kernel::Prefill);
    harness.step(range(0, 37), std::vector<int32_t>(37, 3), 70, Kernel::Prefill);
    harness.step(range(37, 200), std::vector<int32_t>(200, 3), 80, Kernel::Prefill);
    harness.step({100, 125, 237}, {1, 2, 3}, 90, Kernel::Decode);
  }
}

TEST(CudaPagedAttention, GenericKernelMixesDecodeAndPromptChunks) {
  TPC_REQUIRE_GPU();
  const PagedCase cases[] = {
      {ElementType::F32, 8, 2, 64, 4, 1024, 16},
      {ElementType::F32, 12, 3, 32, 4, 512, 32},
      {ElementType::BF16, 32, 8, 128, 4, 2048, 16},
  };
  for (const PagedCase& c : cases) {
    PagedHarness harness(c, {500, 0, 40, 3}, 100);
    // A 5-token prompt in sequence 1 and a chunk continuing sequence 2's prefix, beside decode
    // tokens of sequences 0 and 3.
    harness.step({500, 0, 1, 2, 3, 4, 40, 41, 42, 3}, {0, 1, 1, 1, 1, 1, 2, 2, 2, 3}, 101,
                 Kernel::Generic);
    harness.step({501, 5, 43, 4}, {0, 1, 2, 3}, 102, Kernel::Generic);
  }
}

}  // namespace
}  // namespace tpc::cuda::test
