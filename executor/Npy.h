// Writing and reading float32 .npy arrays (NumPy format 1.0), the exchange format for logits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/Error.h"

namespace tpc {

// Writes a C-order float32 array of `shape` atomically.
Error writeNpyF32(const std::string& path, const std::vector<int64_t>& shape, const float* data);

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};
// Reads a little-endian float32 C-order .npy; anything else is an error naming the file.
Expected<NpyArray> readNpyF32(const std::string& path);

}  // namespace tpc
