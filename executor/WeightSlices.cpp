#include "executor/WeightSlices.h"

#include <algorithm>
#include <cstring>

#include "codegen/WeightSliceLayout.h"
#include "ir/Float16.h"

namespace tpc {
namespace {

float toF32(const uint8_t* p, DType dtype) {
  if (dtype == DType::F32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return dtype == DType::BF16 ? bf16ToF32(h) : f16ToF32(h);
}

Expected<const plan::Weight*> weightOf(const plan::Plan& plan, uint32_t rank, uint32_t weight) {
  if (rank >= plan.ranks()->size())
    return makeError("rank ", rank, " is outside the plan's world of ", plan.ranks()->size());
  const plan::RankProgram* program = plan.ranks()->Get(rank);
  if (weight >= program->weights()->size())
    return makeError("rank ", rank, " has no weight ", weight);
  return program->weights()->Get(weight);
}

}  // namespace

Expected<std::vector<uint8_t>> readPackedSlice(const plan::Plan& plan, const Checkpoint& checkpoint,
                                               uint32_t rank, uint32_t weight, uint32_t slice,
                                               uint64_t offset, uint32_t length) {
  Expected<const plan::Weight*> w = weightOf(plan, rank, weight);
  if (!w) return w.takeError();
  if (slice >= (*w)->slices()->size())
    return makeError("weight ", (*w)->name()->str(), " has no slice ", slice);
  const plan::WeightSlice& s = *(*w)->slices()->Get(slice);
  SliceLayout l = sliceLayout(s);
  if (offset > l.packedBytes() || length > l.packedBytes() - offset)
    return makeError("bytes ", offset, "+", length, " are outside slice ", slice, " of weight ",
                     (*w)->name()->str(), " (", l.packedBytes(), " bytes)");
  const Checkpoint::Entry* entry = checkpoint.find(s.tensor()->string_view());
  if (!entry) return makeError("tensor \"", s.tensor()->str(), "\" is not in the checkpoint");
  const TensorInfo& info = *entry->info;
  std::vector<int64_t> planShape(s.shape()->begin(), s.shape()->end());
  if (static_cast<uint8_t>(info.dtype) != s.dtype() || info.shape != planShape)
    return makeError("tensor \"", info.name, "\" differs from the plan's record of it");
  std::span<const uint8_t> bytes = checkpoint.files()[entry->file].bytes(info);
  std::vector<uint8_t> out(length);
  uint64_t rowBytes = static_cast<uint64_t>(l.colCount * l.width);
  for (uint64_t done = 0; done < length;) {
    uint64_t at = offset + done;
    uint64_t row = at / rowBytes, inRow = at % rowBytes;
    uint64_t n = std::min<uint64_t>(rowBytes - inRow, length - done);
    uint64_t src = ((l.rowBegin + row) * l.srcCols + l.colBegin) * l.width + inRow;
    std::memcpy(out.data() + done, bytes.data() + src, n);
    done += n;
  }
  return out;
}

Expected<std::vector<float>> weightFromPackedSlices(
    const plan::Plan& plan, uint32_t rank, uint32_t weight,
    const std::vector<std::vector<uint8_t>>& slices) {
  Expected<const plan::Weight*> found = weightOf(plan, rank, weight);
  if (!found) return found.takeError();
  const plan::Weight& w = **found;
  int64_t rows = w.shape()->Get(0), cols = 1;
  for (uint32_t i = 1; i < w.shape()->size(); ++i) cols *= w.shape()->Get(i);
  if (slices.size() != w.slices()->size())
    return makeError("weight ", w.name()->str(), ": got ", slices.size(), " slices, expected ",
                     w.slices()->size());
  std::vector<float> data(static_cast<size_t>(rows * cols), 0.0f);
  for (uint32_t i = 0; i < w.slices()->size(); ++i) {
    const plan::WeightSlice& s = *w.slices()->Get(i);
    SliceLayout l = sliceLayout(s);
    DType dtype = static_cast<DType>(s.dtype());
    if (!isComputeDType(dtype))
      return makeError("tensor \"", s.tensor()->str(), "\" is not f32, f16 or bf16");
    if (slices[i].size() != l.packedBytes())
      return makeError("slice ", i, " of weight ", w.name()->str(), " has ", slices[i].size(),
                       " bytes, expected ", l.packedBytes());
    if (s.dest_offset() + l.rowCount > rows || l.colCount > cols)
      return makeError("weight ", w.name()->str(), ": slice of ", s.tensor()->str(),
                       " does not fit");
    for (int64_t r = 0; r < l.rowCount; ++r) {
      const uint8_t* src = slices[i].data() + r * l.colCount * l.width;
      float* dst = data.data() + (s.dest_offset() + r) * cols;
      for (int64_t c = 0; c < l.colCount; ++c) dst[c] = toF32(src + c * l.width, dtype);
    }
  }
  return data;
}

}  // namespace tpc
