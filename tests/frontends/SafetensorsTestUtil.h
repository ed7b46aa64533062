// Hand-built safetensors bytes for the reader tests: the header text is written out literally
// so each test shows exactly which rule it breaks.
#pragma once

#include <cstdint>
#include <string>

namespace tpc::test {

inline std::string littleEndian64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (8 * i));
  return out;
}

// Length prefix, `header` verbatim, then `dataBytes` bytes of `fill`.
inline std::string rawSafetensors(const std::string& header, uint64_t dataBytes = 0,
                                  char fill = 0) {
  return littleEndian64(header.size()) + header + std::string(dataBytes, fill);
}

// FNV-1a 64 written apart from the library, to check headerHash against.
inline uint64_t referenceFnv1a(const std::string& bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace tpc::test
