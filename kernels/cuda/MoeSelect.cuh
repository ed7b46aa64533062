// The router's softmax and top-k for one token, by one warp, shared by the router kernels of
// Moe.cu and MoeStreamingRouter.cu so both keep the CPU twin's rules in one place: ties go to
// the lower expert, a NaN probability ranks below every number and above an expert already
// chosen, and the chosen weights are renormalised when the model asks.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/DeviceMath.cuh"

namespace tpc::cuda::detail {

// Where a NaN probability ranks in expert selection: below every probability, above the -1 that
// marks an expert already chosen, as the CPU twin ranks it.
constexpr float kRouterRankOfNan = -0.5f;

// probs[0:numExperts) holds the token's logits (memory the warp may overwrite: shared memory
// in both callers); every lane of the warp calls this. weights and experts are the token's rows
// of topK entries.
__device__ inline void warpSoftmaxTopK(float* probs, int64_t numExperts, int64_t topK,
                                       bool normTopkProb, float* weights, int32_t* experts) {
  const int lane = threadIdx.x % kWarpSize;
  float maximum = -INFINITY;
  for (int64_t e = lane; e < numExperts; e += kWarpSize) maximum = fmaxf(maximum, probs[e]);
  maximum = warpMax(maximum);
  float total = 0.0f;
  for (int64_t e = lane; e < numExperts; e += kWarpSize) {
    const float value = expf(probs[e] - maximum);
    probs[e] = value;
    total += value;
  }
  const float inverse = 1.0f / warpSum(total);
  for (int64_t e = lane; e < numExperts; e += kWarpSize) probs[e] *= inverse;
  __syncwarp();
  float chosenSum = 0.0f;
  for (int64_t j = 0; j < topK; ++j) {
    // Each lane's best (largest, then lowest index), then the warp's. Every expert's rank is at
    // least -1 (a NaN ranks as kRouterRankOfNan), above the -inf start, so a lane that holds an
    // expert always names one: a non-finite hidden state never makes an out-of-range index.
    float best = -INFINITY;
    int32_t bestIndex = INT32_MAX;
    for (int64_t e = lane; e < numExperts; e += kWarpSize) {
      const float rank = isnan(probs[e]) ? kRouterRankOfNan : probs[e];
      if (rank > best) {  // lanes visit ascending indices: strict keeps the lower one
        best = rank;
        bestIndex = static_cast<int32_t>(e);
      }
    }
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
      const float otherBest = __shfl_xor_sync(kFullMask, best, offset);
      const int32_t otherIndex = __shfl_xor_sync(kFullMask, bestIndex, offset);
      if (otherBest > best || (otherBest == best && otherIndex < bestIndex)) {
        best = otherBest;
        bestIndex = otherIndex;
      }
    }
    const float chosen = probs[bestIndex];  // the probability itself, NaN included
    __syncwarp();                           // every lane has read it before lane 0 marks it chosen
    chosenSum += chosen;
    if (lane == 0) {
      weights[j] = chosen;
      experts[j] = bestIndex;
      probs[bestIndex] = -1.0f;  // below any probability, as the CPU twin marks it
    }
    __syncwarp();
  }
  // chosenSum is the same in every lane (the butterfly leaves every lane with the same winner);
  // lane 0's writes above are visible within the warp after the __syncwarp.
  if (normTopkProb)
    for (int64_t j = lane; j < topK; j += kWarpSize) weights[j] /= chosenSum;
}

}  // namespace tpc::cuda::detail
