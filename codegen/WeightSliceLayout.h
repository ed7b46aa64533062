// Where one WeightSlice sits in its checkpoint tensor, and how many bytes it is when packed
// (its rows one after another, in the checkpoint dtype). The weight loader, the head that
// streams slices to nodes without the checkpoint, and those nodes all agree through this.
#pragma once

#include <cstdint>

#include "codegen/PlanReader.h"
#include "ir/DType.h"

namespace tpc {

struct SliceLayout {
  int64_t rowBegin = 0, rowCount = 0, colBegin = 0, colCount = 0;
  int64_t srcCols = 0;  // columns of the whole checkpoint tensor (dims after the first, flattened)
  int64_t width = 0;    // bytes per element
  uint64_t packedBytes() const { return static_cast<uint64_t>(rowCount * colCount * width); }
};

inline SliceLayout sliceLayout(const plan::WeightSlice& s) {
  SliceLayout l;
  const auto& shape = *s.shape();
  int64_t rows = shape.size() ? shape.Get(0) : 1, cols = 1;
  for (uint32_t i = 1; i < shape.size(); ++i) cols *= shape.Get(i);
  l.srcCols = cols;
  l.rowCount = rows;
  l.colCount = cols;
  if (s.dim() == 0) {
    l.rowBegin = s.start();
    l.rowCount = s.length();
  } else if (s.dim() == 1) {
    l.colBegin = s.start();
    l.colCount = s.length();
  }
  l.width = bitWidth(static_cast<DType>(s.dtype())) / 8;
  return l;
}

}  // namespace tpc
