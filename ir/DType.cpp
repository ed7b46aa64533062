#include "ir/DType.h"

#include <array>

namespace tpc {
namespace {

struct DTypeInfo {
  DType type;
  std::string_view safetensors;
  std::string_view ir;
  unsigned bits;
};

constexpr std::array<DTypeInfo, 20> kInfo = {{
    {DType::Bool, "BOOL", "bool", 8},
    {DType::F4, "F4", "f4", 4},
    {DType::F6_E2M3, "F6_E2M3", "f6_e2m3", 6},
    {DType::F6_E3M2, "F6_E3M2", "f6_e3m2", 6},
    {DType::U8, "U8", "u8", 8},
    {DType::I8, "I8", "i8", 8},
    {DType::F8_E5M2, "F8_E5M2", "f8_e5m2", 8},
    {DType::F8_E4M3, "F8_E4M3", "f8_e4m3", 8},
    {DType::F8_E8M0, "F8_E8M0", "f8_e8m0", 8},
    {DType::I16, "I16", "i16", 16},
    {DType::U16, "U16", "u16", 16},
    {DType::F16, "F16", "f16", 16},
    {DType::BF16, "BF16", "bf16", 16},
    {DType::I32, "I32", "i32", 32},
    {DType::U32, "U32", "u32", 32},
    {DType::F32, "F32", "f32", 32},
    {DType::C64, "C64", "c64", 64},
    {DType::F64, "F64", "f64", 64},
    {DType::I64, "I64", "i64", 64},
    {DType::U64, "U64", "u64", 64},
}};

const DTypeInfo& info(DType t) { return kInfo[static_cast<size_t>(t)]; }

}  // namespace

std::string_view safetensorsName(DType t) { return info(t).safetensors; }
std::string_view irName(DType t) { return info(t).ir; }
unsigned bitWidth(DType t) { return info(t).bits; }

std::optional<DType> parseSafetensorsDType(std::string_view name) {
  for (const auto& i : kInfo)
    if (i.safetensors == name) return i.type;
  return std::nullopt;
}

std::optional<DType> parseIrDType(std::string_view name) {
  for (const auto& i : kInfo)
    if (i.ir == name) return i.type;
  return std::nullopt;
}

std::optional<uint64_t> byteSize(DType t, uint64_t elements) {
  uint64_t bits = info(t).bits;
  if (elements != 0 && bits > UINT64_MAX / elements) return std::nullopt;
  uint64_t total = bits * elements;
  if (total % 8 != 0) return std::nullopt;
  return total / 8;
}

bool isComputeDType(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

bool isIntegerDType(DType t) {
  switch (t) {
    case DType::U8:
    case DType::I8:
    case DType::I16:
    case DType::U16:
    case DType::I32:
    case DType::U32:
    case DType::I64:
    case DType::U64:
      return true;
    default:
      return false;
  }
}

}  // namespace tpc
