#include "executor/MoeGroups.h"

#include <algorithm>
#include <numeric>

namespace tpc {
namespace {

constexpr int64_t kBoundary = 256;

int64_t roundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

}  // namespace

std::optional<MoeGroupedLayout> moeGroupedLayout(const MoeShape& s) {
  if (s.tokens <= 0 || s.topK <= 0 || s.numExperts <= 0 || s.hidden <= 0 || s.intermediate <= 0 ||
      s.elementBytes == 0)
    return std::nullopt;
  const auto element = static_cast<int64_t>(s.elementBytes);
  // Row strides of the four row buffers: gathered x, activations, f32 projections (gate and up
  // rows of `intermediate`, down rows of `hidden`).
  const int64_t strides[] = {s.hidden * element, s.intermediate * element, s.intermediate * 4,
                             s.hidden * 4};
  MoeGroupedLayout layout;
  for (int64_t stride : strides) {
    if (stride % 16 != 0) return std::nullopt;
    // Rows per boundary: a power of 2, so the largest is a multiple of every other.
    layout.rowAlign = std::max(layout.rowAlign, kBoundary / std::gcd(kBoundary, stride));
  }
  const int64_t assignments = s.tokens * s.topK;
  // Each expert with tokens pads its rows by less than rowAlign; at most min(experts,
  // assignments) have any.
  const int64_t padding = std::min(s.numExperts, assignments) * (layout.rowAlign - 1);
  layout.rowCapacity = roundUp(assignments + padding, layout.rowAlign);
  size_t next = 0;
  auto region = [&next](int64_t bytes) {
    const size_t at = next;
    next += static_cast<size_t>(roundUp(bytes, kBoundary));
    return at;
  };
  layout.counts = region(s.numExperts * 4);
  layout.firstRows = region(s.numExperts * 4);
  layout.slots = region(assignments * 4);
  layout.rowSources = region(layout.rowCapacity * 4);
  layout.rows = region(layout.rowCapacity * std::max(s.hidden, s.intermediate) * element);
  layout.projections = region(layout.rowCapacity * std::max(2 * s.intermediate, s.hidden) * 4);
  layout.bytes = next;
  return layout;
}

bool moeRunsGrouped(int64_t tokens, int64_t topK, bool capturingGraph) {
  return !capturingGraph && tokens * topK >= kMoeGroupedMinAssignments;
}

std::vector<ExpertGroup> expertGroups(const int32_t* counts, int64_t numExperts, int64_t rowAlign) {
  std::vector<ExpertGroup> groups;
  int64_t next = 0;
  for (int64_t e = 0; e < numExperts; ++e) {
    if (counts[e] <= 0) continue;
    groups.push_back({static_cast<int32_t>(e), next, counts[e]});
    next += roundUp(counts[e], rowAlign);
  }
  return groups;
}

int64_t groupedRowsUsed(const std::vector<ExpertGroup>& groups, int64_t rowAlign) {
  if (groups.empty()) return 0;
  return groups.back().firstRow + roundUp(groups.back().rows, rowAlign);
}

}  // namespace tpc
