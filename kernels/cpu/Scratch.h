// Per-thread scratch buffers for the kernels that need working memory. They grow to the largest
// request seen and are then reused, so a steady decode loop stops allocating after its first
// step, and kernels called from several threads never share a buffer.
#pragma once

#include <cstddef>
#include <vector>

namespace tpc::cpu::detail {

// `slot` tells apart buffers one kernel needs at the same time.
template <typename T, int slot = 0>
T* scratch(size_t count) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

}  // namespace tpc::cpu::detail
