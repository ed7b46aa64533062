// Bounds-checked little-endian encoding for control-plane messages: a reader never reads past
// the frame it was given, so a truncated or hostile frame becomes an Error, not a crash.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "ir/Error.h"

namespace tpc::net {

// FNV-1a 64: the plan hash a worker checks its received (or own) plan against.
uint64_t fnv1a64(const uint8_t* data, size_t size);

class ByteWriter {
 public:
  void u8(uint8_t v) { bytes_.push_back(v); }
  void u16(uint16_t v) { raw(&v, 2); }
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void i64(int64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void str(const std::string& s) {
    u32(static_cast<uint32_t>(s.size()));
    raw(s.data(), s.size());
  }
  void blob(const std::vector<uint8_t>& b) {
    u32(static_cast<uint32_t>(b.size()));
    raw(b.data(), b.size());
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  std::vector<uint8_t> bytes_;
};

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  // Each getter fails once the frame is exhausted; the first failure sticks, so a decoder
  // reads every field and checks ok() once.
  uint8_t u8() { return get<uint8_t>(); }
  uint16_t u16() { return get<uint16_t>(); }
  uint32_t u32() { return get<uint32_t>(); }
  uint64_t u64() { return get<uint64_t>(); }
  int64_t i64() { return get<int64_t>(); }
  float f32() { return get<float>(); }
  std::string str(size_t maxSize);
  std::vector<uint8_t> blob(size_t maxSize);
  bool ok() const { return ok_; }
  bool atEnd() const { return pos_ == size_; }
  size_t remaining() const { return size_ - pos_; }

 private:
  template <class T>
  T get() {
    T v{};
    if (!ok_ || size_ - pos_ < sizeof(T)) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace tpc::net
