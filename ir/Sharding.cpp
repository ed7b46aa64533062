#include "ir/Sharding.h"

#include <algorithm>

namespace tpc {

std::string Sharding::str() const {
  switch (kind) {
    case Kind::Replicated:
      return "replicated";
    case Kind::Split:
      return "split(" + std::to_string(dim) + "," + std::to_string(parts) + ")";
    case Kind::Partial:
      return "partial";
  }
  return "?";
}

SliceRange sliceOf(int64_t size, int64_t parts, int64_t piece) {
  SliceRange r;
  r.extent = (size + parts - 1) / parts;
  r.start = std::min(size, piece * r.extent);
  r.length = std::min(size, r.start + r.extent) - r.start;
  return r;
}

}  // namespace tpc
