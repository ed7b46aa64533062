// Wire format of the rendezvous store: one length-prefixed frame per request and per response,
// little-endian. Sizes are checked against the caps before any body byte is buffered, so a
// garbage or hostile header costs the server at most one header read.
//
//   request:  magic u32 | op u8 | keyLength u32 | valueLength u32 | key | value
//   response: status u8 | valueLength u32 | value   (for kBadRequest the value is the reason,
//             and the server closes the connection after sending it)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace tpc::store {

constexpr uint32_t kMagic = 0x53435054;  // "TPCS"
constexpr size_t kMaxKeyBytes = 64 * 1024;
constexpr size_t kMaxValueBytes = 64 * 1024 * 1024;
constexpr size_t kRequestHeaderBytes = 13;
constexpr size_t kResponseHeaderBytes = 5;

enum class Op : uint8_t { kSet = 1, kGet = 2 };
enum class Status : uint8_t { kOk = 0, kNotFound = 1, kBadRequest = 2 };

inline void putU32(char* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
inline uint32_t getU32(const char* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << (8 * i);
  return v;
}

struct RequestHeader {
  Op op;
  uint32_t keyLength;
  uint32_t valueLength;
};

// Empty string when the header is acceptable, else why not (sent back as the kBadRequest value).
inline std::string parseRequestHeader(const char* bytes, RequestHeader& header) {
  if (getU32(bytes) != kMagic) return "bad magic";
  auto op = static_cast<uint8_t>(bytes[4]);
  if (op != static_cast<uint8_t>(Op::kSet) && op != static_cast<uint8_t>(Op::kGet)) {
    return "unknown op " + std::to_string(op);
  }
  header.op = static_cast<Op>(op);
  header.keyLength = getU32(bytes + 5);
  header.valueLength = getU32(bytes + 9);
  if (header.keyLength == 0 || header.keyLength > kMaxKeyBytes) {
    return "key length " + std::to_string(header.keyLength) + " outside 1.." +
           std::to_string(kMaxKeyBytes);
  }
  if (header.valueLength > kMaxValueBytes) {
    return "value length " + std::to_string(header.valueLength) + " over the cap of " +
           std::to_string(kMaxValueBytes);
  }
  if (header.op == Op::kGet && header.valueLength != 0) return "get with a value";
  return {};
}

inline std::string encodeRequestHeader(Op op, size_t keyLength, size_t valueLength) {
  std::string header(kRequestHeaderBytes, '\0');
  putU32(header.data(), kMagic);
  header[4] = static_cast<char>(op);
  putU32(header.data() + 5, static_cast<uint32_t>(keyLength));
  putU32(header.data() + 9, static_cast<uint32_t>(valueLength));
  return header;
}

inline std::string encodeResponseHeader(Status status, size_t valueLength) {
  std::string header(kResponseHeaderBytes, '\0');
  header[0] = static_cast<char>(status);
  putU32(header.data() + 1, static_cast<uint32_t>(valueLength));
  return header;
}

}  // namespace tpc::store
