#include "ir/DType.h"

#include <gtest/gtest.h>

namespace tpc {
namespace {

TEST(DType, EverySafetensorsNameRoundTrips) {
  const char* names[] = {"BOOL",    "F4",      "F6_E2M3", "F6_E3M2", "U8",  "I8",   "F8_E5M2",
                         "F8_E4M3", "F8_E8M0", "I16",     "U16",     "F16", "BF16", "I32",
                         "U32",     "F32",     "C64",     "F64",     "I64", "U64"};
  for (const char* name : names) {
    auto t = parseSafetensorsDType(name);
    ASSERT_TRUE(t.has_value()) << name;
    EXPECT_EQ(safetensorsName(*t), name);
    EXPECT_EQ(parseIrDType(irName(*t)), t);
  }
  EXPECT_FALSE(parseSafetensorsDType("bf16").has_value());  // header names are upper case
  EXPECT_FALSE(parseSafetensorsDType("F128").has_value());
}

TEST(DType, SizesAndComputeTypes) {
  EXPECT_EQ(byteSize(DType::BF16, 3), 6u);
  EXPECT_EQ(byteSize(DType::F32, 5), 20u);
  EXPECT_EQ(byteSize(DType::F4, 4), 2u);
  EXPECT_FALSE(byteSize(DType::F4, 3).has_value());  // 12 bits is not whole bytes
  EXPECT_FALSE(byteSize(DType::F64, UINT64_MAX / 2).has_value());
  EXPECT_TRUE(isComputeDType(DType::BF16));
  EXPECT_TRUE(isComputeDType(DType::F16));
  EXPECT_TRUE(isComputeDType(DType::F32));
  EXPECT_FALSE(isComputeDType(DType::F8_E4M3));
  EXPECT_FALSE(isComputeDType(DType::I32));
}

}  // namespace
}  // namespace tpc
