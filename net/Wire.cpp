#include "net/Wire.h"

namespace tpc::net {

uint64_t fnv1a64(const uint8_t* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string ByteReader::str(size_t maxSize) {
  uint32_t n = u32();
  if (!ok_ || n > maxSize || n > remaining()) {
    ok_ = false;
    return {};
  }
  std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
  pos_ += n;
  return s;
}

std::vector<uint8_t> ByteReader::blob(size_t maxSize) {
  uint32_t n = u32();
  if (!ok_ || n > maxSize || n > remaining()) {
    ok_ = false;
    return {};
  }
  std::vector<uint8_t> b(data_ + pos_, data_ + pos_ + n);
  pos_ += n;
  return b;
}

}  // namespace tpc::net
