// Weights for a node without the checkpoint: the head reads exactly a rank's slices, packed
// and in the checkpoint dtype (what travels on the wire), and the node turns them into the
// f32 layout loadWeightsF32 produces.
#pragma once

#include <cstdint>
#include <vector>

#include "codegen/PlanReader.h"
#include "frontends/Checkpoint.h"

namespace tpc {

// Bytes [offset, offset + length) of the packed slice (rows of the slice one after another).
// Every index and range is checked: the request may come from a misbehaving peer.
Expected<std::vector<uint8_t>> readPackedSlice(const plan::Plan& plan, const Checkpoint& checkpoint,
                                               uint32_t rank, uint32_t weight, uint32_t slice,
                                               uint64_t offset, uint32_t length);

// Weight `weight` of `rank` as f32 (rows of the local shape, zero padding included), from its
// packed slices in slice order.
Expected<std::vector<float>> weightFromPackedSlices(
    const plan::Plan& plan, uint32_t rank, uint32_t weight,
    const std::vector<std::vector<uint8_t>>& slices);

}  // namespace tpc
