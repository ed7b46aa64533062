// Validation of a safetensors JSON header, apart from the file around it so it can be tested
// and fuzzed on strings. Internal to tpc_frontends.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "frontends/Safetensors.h"

namespace tpc {

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in file order
  std::map<std::string, std::string> metadata;
};

// Checks the header text (the bytes after the length prefix) and the tensors' layout in a data
// section of `dataSize` bytes. Messages start with `path`.
Expected<SafetensorsHeader> parseSafetensorsHeader(std::string_view text, uint64_t dataSize,
                                                   const std::string& path);

// "[2, 3]", for messages.
std::string formatShape(const std::vector<int64_t>& shape);

}  // namespace tpc
