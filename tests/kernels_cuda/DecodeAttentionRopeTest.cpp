// The decode attention kernel with the layer's rope folded in (kernels/cuda/DecodeAttention.h)
// against the rope kernel on q and k then the same attention: the outputs and both caches must be
// the same bits (the fold repeats the rope kernel's arithmetic and rounding), for several tokens
// of different slots at positions on both sides of a chunk edge, over a partly filled cache. The
// same with Qwen3's per-head q/k norms folded in too, against the head norm kernel first; and
// the same again with q, k and v read from one qkv buffer's rows.
#include <cmath>
#include <vector>

#include "kernels/cuda/DecodeAttention.h"
#include "tests/kernels_cuda/CudaTestUtil.h"

namespace tpc::cuda::test {
namespace {

TEST(CudaDecodeAttentionRope, FoldedRopeGivesExactlyTheRopeKernelThenAttention) {
  TPC_REQUIRE_GPU();
  struct Case {
    ElementType type;
    int64_t heads, kvHeads, headDim;
    bool normed;  // the head norms folded in too
  };
  for (Case c :
       {Case{ElementType::BF16, 32, 8, 128, false}, Case{ElementType::F16, 16, 4, 64, false},
        Case{ElementType::BF16, 8, 8, 64, false}, Case{ElementType::BF16, 32, 4, 128, true},
        Case{ElementType::F16, 16, 2, 64, true}, Case{ElementType::BF16, 8, 8, 128, true}}) {
    SCOPED_TRACE(std::string(typeName(c.type)) + " heads " + std::to_string(c.heads) + "/" +
                 std::to_string(c.kvHeads) + " head_dim " + std::to_string(c.headDim) +
                 (c.normed ? " with head norms" : ""));
    const int64_t slots = 4, maxContext = 1024, row = c.kvHeads * c.headDim;
    const std::vector<int32_t> positions = {63, 64, 0, 700};
    const std::vector<int32_t> slotIds = {0, 1, 2, 3};
    const auto tokens = static_cast<int64_t>(positions.size());
    // History below each position, the rest of the cache zero.
    std::vector<float> keys(slots * maxContext * row, 0.0f), values = keys;
    const std::vector<float> history = randomFloats(keys.size(), 5);
    const std::vector<float> historyValues = randomFloats(keys.size(), 6);
    for (int64_t s = 0; s < slots; ++s)
      for (int64_t p = 0; p < positions[s]; ++p)
        for (int64_t e = 0; e < row; ++e) {
          const int64_t i = (s * maxContext + p) * row + e;
          keys[i] = history[i];
          values[i] = historyValues[i];
        }
    DeviceBuffer k1 = upload(c.type, keys), v1 = upload(c.type, values);
    DeviceBuffer k2 = upload(c.type, keys), v2 = upload(c.type, values);
    const std::vector<float> q = randomFloats(tokens * c.heads * c.headDim, 7, -3.0f, 3.0f);
    const std::vector<float> k = randomFloats(tokens * row, 8);
    const std::vector<float> v = randomFloats(tokens * row, 9);
    DeviceBuffer dQ = upload(c.type, q), dK = upload(c.type, k), dV = upload(c.type, v);
    DeviceBuffer dQRotated = upload(c.type, q), dKRotated = upload(c.type, k);
    std::vector<float> inverse(static_cast<size_t>(c.headDim / 2));
    for (size_t i = 0; i < inverse.size(); ++i)
      inverse[i] =
          std::pow(500000.0f, -2.0f * static_cast<float>(i) / static_cast<float>(c.headDim));
    DeviceBuffer dInverse = uploadRaw(inverse), dPositions = uploadRaw(positions);
    DeviceBuffer dSlots = uploadRaw(slotIds);
    const float scaling = 1.1f, scale = 1.0f / std::sqrt(static_cast<float>(c.headDim));
    const size_t workspaceBytes =
        decodeAttentionWorkspaceBytes(tokens, c.heads, c.kvHeads, c.headDim, maxContext);
    DeviceBuffer w1(workspaceBytes), w2(workspaceBytes);
    w1.fill(0);
    w2.fill(0);
    DeviceBuffer out1(q.size() * elementBytes(c.type)), out2(q.size() * elementBytes(c.type));
    const auto* pos = dPositions.as<int32_t>();
    const auto* inv = static_cast<const float*>(dInverse.get());

    // Norm weights around 1 and different for q and k; eps large enough to matter for small rows.
    DeviceBuffer qNorm =
        upload(c.type, randomFloats(static_cast<size_t>(c.headDim), 10, 0.5f, 1.5f));
    DeviceBuffer kNorm =
        upload(c.type, randomFloats(static_cast<size_t>(c.headDim), 11, 0.5f, 1.5f));
    const float qEps = 1e-6f, kEps = 1e-2f;
    if (c.normed) {
      TPC_CUDA_OK(headRmsNorm(c.type, dQ.get(), qNorm.get(), tokens, c.heads, c.headDim, qEps,
                              dQRotated.get(), nullptr));
      TPC_CUDA_OK(headRmsNorm(c.type, dK.get(), kNorm.get(), tokens, c.kvHeads, c.headDim, kEps,
                              dKRotated.get(), nullptr));
    }
    TPC_CUDA_OK(rope(c.type, dQRotated.get(), pos, tokens, c.heads, c.headDim, inv, scaling,
                     dQRotated.get(), nullptr));
    TPC_CUDA_OK(rope(c.type, dKRotated.get(), pos, tokens, c.kvHeads, c.headDim, inv, scaling,
                     dKRotated.get(), nullptr));
    const KvCacheView cache1{k1.get(), v1.get(), slots, maxContext, c.kvHeads, c.headDim};
    TPC_CUDA_OK(decodeAttention(c.type, dQRotated.get(), dKRotated.get(), dV.get(), pos,
                                dSlots.as<int32_t>(), tokens, c.heads, scale, cache1, w1.get(),
                                out1.get(), nullptr));
    const KvCacheView cache2{k2.get(), v2.get(), slots, maxContext, c.kvHeads, c.headDim};
    const DecodeRope folded{
        inv, scaling,
        c.normed ? DecodeHeadNorms{qNorm.get(), kNorm.get(), qEps, kEps} : DecodeHeadNorms{}};
    TPC_CUDA_OK(decodeAttention(c.type, dQ.get(), dK.get(), dV.get(), pos, dSlots.as<int32_t>(),
                                tokens, c.heads, scale, cache2, w2.get(), out2.get(), nullptr,
                                &folded));
    const size_t cacheBytes = keys.size() * elementBytes(c.type);
    EXPECT_EQ(downloadRaw<uint8_t>(out2, q.size() * elementBytes(c.type)),
              downloadRaw<uint8_t>(out1, q.size() * elementBytes(c.type)));
    EXPECT_EQ(downloadRaw<uint8_t>(k2, cacheBytes), downloadRaw<uint8_t>(k1, cacheBytes));
    EXPECT_EQ(downloadRaw<uint8_t>(v2, cacheBytes), downloadRaw<uint8_t>(v1, cacheBytes));

    // The same inputs as column ranges of one qkv buffer (a qkv linear's rows, its split
    // skipped), rows a padded width apart: the same bits again.
    const int64_t qWidth = c.heads * c.headDim, stride = qWidth + 2 * row + 8;
    std::vector<float> qkv(static_cast<size_t>(tokens * stride), 99.0f);
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t e = 0; e < stride; ++e) {
        float& x = qkv[t * stride + e];
        if (e < qWidth)
          x = q[t * qWidth + e];
        else if (e < qWidth + row)
          x = k[t * row + e - qWidth];
        else if (e < qWidth + 2 * row)
          x = v[t * row + e - qWidth - row];
      }
    DeviceBuffer dQkv = upload(c.type, qkv);
    DeviceBuffer k3 = upload(c.type, keys), v3 = upload(c.type, values), w3(workspaceBytes);
    w3.fill(0);
    DeviceBuffer out3(q.size() * elementBytes(c.type));
    const KvCacheView cache3{k3.get(), v3.get(), slots, maxContext, c.kvHeads, c.headDim};
    const auto* base = static_cast<const char*>(dQkv.get());
    const auto elt = static_cast<int64_t>(elementBytes(c.type));
    TPC_CUDA_OK(decodeAttention(c.type, base, base + qWidth * elt, base + (qWidth + row) * elt, pos,
                                dSlots.as<int32_t>(), tokens, c.heads, scale, cache3, w3.get(),
                                out3.get(), nullptr, &folded, stride));
    EXPECT_EQ(downloadRaw<uint8_t>(out3, q.size() * elementBytes(c.type)),
              downloadRaw<uint8_t>(out2, q.size() * elementBytes(c.type)));
    EXPECT_EQ(downloadRaw<uint8_t>(k3, cacheBytes), downloadRaw<uint8_t>(k2, cacheBytes));
    EXPECT_EQ(downloadRaw<uint8_t>(v3, cacheBytes), downloadRaw<uint8_t>(v2, cacheBytes));
    // A stride narrower than q, k and v together is refused.
    EXPECT_EQ(decodeAttention(c.type, base, base + qWidth * elt, base + (qWidth + row) * elt, pos,
                              dSlots.as<int32_t>(), tokens, c.heads, scale, cache3, w3.get(),
                              out3.get(), nullptr, &folded, qWidth + row),
              cudaErrorInvalidValue);
  }
}

}  // namespace
}  // namespace tpc::cuda::test
