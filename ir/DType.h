// Element types. Every dtype name a safetensors file may carry is known, so an unsupported one
// is rejected by name rather than as "unknown"; compute happens in f32, f16 or bf16.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tpc {

enum class DType : uint8_t {
  Bool,
  F4,
  F6_E2M3,
  F6_E3M2,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  F8_E8M0,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  C64,
  F64,
  I64,
  U64,
};

// Name as written in a safetensors header ("BF16").
std::string_view safetensorsName(DType t);
std::optional<DType> parseSafetensorsDType(std::string_view name);

// Name as written in IR text and on the command line ("bf16").
std::string_view irName(DType t);
std::optional<DType> parseIrDType(std::string_view name);

// Storage size in bits (4 and 6 for the packed sub-byte float formats).
unsigned bitWidth(DType t);
// Byte count of `elements` values, or nullopt when it is not a whole number of bytes.
std::optional<uint64_t> byteSize(DType t, uint64_t elements);

// f32, f16 and bf16: the types weights may have and activations are computed in.
bool isComputeDType(DType t);
bool isIntegerDType(DType t);

}  // namespace tpc
