// The counter-based hash behind cuda::fillUniform, shared with host code so a test (or a CPU run
// of the same synthetic model) can reproduce every value: element `index` of seed `seed` is
// splitmix64 of their mix, its top 24 bits mapped to [-scale, scale).
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define TPC_HOST_DEVICE __host__ __device__
#else
#define TPC_HOST_DEVICE
#endif

namespace tpc::cuda {

TPC_HOST_DEVICE inline float fillUniformValue(uint64_t seed, uint64_t index, float scale) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ULL + (index + 1) * 0xd1b54a32d192ed03ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  // 24 bits are exact in f32: unit is in [0, 1) and 2 * unit - 1 in [-1, 1).
  const float unit = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
  return (2.0f * unit - 1.0f) * scale;
}

}  // namespace tpc::cuda
