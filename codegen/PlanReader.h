// Reading a plan: nothing uses a plan before it has passed the FlatBuffers verifier and the
// semantic checks here (identifier, schema version, world, every index, offset and size in
// range), so a truncated or corrupted file is an error, never a crash.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codegen/plan_generated.h"
#include "ir/Error.h"

namespace tpc {

class LoadedPlan {
 public:
  static Expected<LoadedPlan> fromBytes(std::vector<uint8_t> bytes, const std::string& source);
  static Expected<LoadedPlan> readFile(const std::string& path);

  const plan::Plan& plan() const { return *plan::GetPlan(bytes_.data()); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }
  const std::string& source() const { return source_; }

 private:
  std::vector<uint8_t> bytes_;
  std::string source_;
};

}  // namespace tpc
