// One hand-made bad file per rule the reader enforces. Each error must say what is wrong, in
// which file, and (where there is one) for which tensor, so a user can fix the checkpoint.
#include <gtest/gtest.h>

#include "frontends/Safetensors.h"
#include "tests/frontends/SafetensorsTestUtil.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using test::rawSafetensors;

class SafetensorsRules : public ::testing::Test {
 protected:
  // Writes `bytes` and opens it, expecting failure; returns the message.
  std::string openError(const std::string& bytes) {
    test::writeFile(path_, bytes);
    Expected<SafetensorsFile> file = SafetensorsFile::open(path_);
    if (file) {
      ADD_FAILURE() << "opened a bad file";
      return {};
    }
    std::string message = file.errorMessage();
    EXPECT_NE(message.find(path_), std::string::npos) << "names the file: " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
    return message;
  }
  void expectOpens(const std::string& bytes) {
    test::writeFile(path_, bytes);
    Expected<SafetensorsFile> file = SafetensorsFile::open(path_);
    EXPECT_TRUE(file) << file.errorMessage();
  }
  // A header with one entry `name`, as JSON text.
  static std::string entry(const std::string& name, const std::string& body) {
    return "\"" + name + "\":" + body;
  }

  test::TempDir dir_;
  std::string path_ = dir_.file("model.safetensors");
};

#define EXPECT_HAS(message, part)                    \
  EXPECT_NE((message).find(part), std::string::npos) \
      << "expected \"" << (part) << "\" in: " << (message)

TEST_F(SafetensorsRules, ValidEdgeCases) {
  expectOpens(rawSafetensors("{}"));
  expectOpens(rawSafetensors("{}      "));
  expectOpens(rawSafetensors(R"({"z":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})"));
  expectOpens(rawSafetensors(R"({"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}})", 8));
  expectOpens(rawSafetensors(R"({"n":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}})", 2));
  expectOpens(rawSafetensors(
      R"({"__metadata__":{},"e":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", 8));
}

TEST_F(SafetensorsRules, FileShorterThanEightBytes) {
  std::string m = openError("");
  EXPECT_HAS(m, "shorter than 8 bytes (0 bytes)");
  m = openError(std::string("\x02\0\0\0\0", 5));
  EXPECT_HAS(m, "shorter than 8 bytes (5 bytes)");
}

TEST_F(SafetensorsRules, HeaderLengthTooLargeOrPastEnd) {
  std::string m = openError(test::littleEndian64(100'000'001) + "{}");
  EXPECT_HAS(m, "header length 100000001 is over the 100000000-byte limit");
  m = openError(test::littleEndian64(UINT64_MAX) + "{}");
  EXPECT_HAS(m, "is over the 100000000-byte limit");
  m = openError(test::littleEndian64(50) + "{}");
  EXPECT_HAS(m, "header length 50 runs past the end of the file (10 bytes)");
}

TEST_F(SafetensorsRules, HeaderNotUtf8NotJsonOrNotAnObject) {
  std::string m = openError(rawSafetensors("{\"a\xff\":1}"));
  EXPECT_HAS(m, "header is not valid UTF-8 (bad byte at header offset 3)");
  m = openError(rawSafetensors("{\"\xed\xa0\x80\":1}"));  // an encoded UTF-16 surrogate
  EXPECT_HAS(m, "not valid UTF-8");
  m = openError(rawSafetensors(" {}"));
  EXPECT_HAS(m, "header does not start with '{'");
  m = openError(rawSafetensors("[]"));
  EXPECT_HAS(m, "header does not start with '{'");
  m = openError(rawSafetensors(""));
  EXPECT_HAS(m, "header does not start with '{'");
  m = openError(rawSafetensors(R"({"a":)"));
  EXPECT_HAS(m, "header is not valid JSON");
  m = openError(rawSafetensors("{} x"));
  EXPECT_HAS(m, "header is not valid JSON");
  m = openError(rawSafetensors("{}/* comment */"));
  EXPECT_HAS(m, "header is not valid JSON");
  m = openError(rawSafetensors("{\"x\":" + std::string(1000, '[') + std::string(1000, ']') + "}"));
  EXPECT_HAS(m, "header nests deeper than 128 levels");
}

TEST_F(SafetensorsRules, UnknownDtype) {
  std::string m =
      openError(rawSafetensors(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,1]}})", 1));
  EXPECT_HAS(m, "tensor \"w\": unknown dtype \"Q4\"");
  m = openError(rawSafetensors(R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4));
  EXPECT_HAS(m, "unknown dtype \"f32\"");
}

TEST_F(SafetensorsRules, DuplicateNames) {
  std::string t = R"({"dtype":"U8","shape":[1],"data_offsets":[0,1]})";
  std::string m = openError(rawSafetensors("{" + entry("w", t) + "," + entry("w", t) + "}", 1));
  EXPECT_HAS(m, "duplicate tensor \"w\"");
  m = openError(
      rawSafetensors(R"({"w":{"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]}})", 1));
  EXPECT_HAS(m, "tensor \"w\": duplicate field \"dtype\"");
  m = openError(rawSafetensors(R"({"__metadata__":{"k":"a","k":"b"}})"));
  EXPECT_HAS(m, "duplicate key \"k\" in \"__metadata__\"");
  m = openError(rawSafetensors(R"({"__metadata__":{},"__metadata__":{}})"));
  EXPECT_HAS(m, "\"__metadata__\" twice");
}

TEST_F(SafetensorsRules, ShapeOverflow) {
  std::string m = openError(rawSafetensors(
      R"({"w":{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,0]}})"));
  EXPECT_HAS(m, "tensor \"w\": element count of shape [4294967296, 4294967296, 2] overflows");
  m = openError(rawSafetensors(
      R"({"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})"));
  EXPECT_HAS(m, "tensor \"w\": bit size of 2305843009213693952 F64 elements overflows 64 bits");
  m = openError(
      rawSafetensors(R"({"w":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,0]}})"));
  EXPECT_HAS(m, "tensor \"w\": dimension 9223372036854775808 in \"shape\" overflows");
}

TEST_F(SafetensorsRules, ByteLengthMustMatchDtypeAndShape) {
  std::string m =
      openError(rawSafetensors(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4));
  EXPECT_HAS(m, "tensor \"w\": data_offsets [0, 4] hold 4 bytes but F32 shape [2] needs 8 bytes");
  m = openError(rawSafetensors(R"({"n":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", 2));
  EXPECT_HAS(m, "tensor \"n\": 3 F4 elements of 4 bits are not a whole number of bytes");
  m = openError(rawSafetensors(R"({"n":{"dtype":"F6_E2M3","shape":[2],"data_offsets":[0,2]}})", 2));
  EXPECT_HAS(m, "tensor \"n\": 2 F6_E2M3 elements of 6 bits are not a whole number of bytes");
}

TEST_F(SafetensorsRules, Offsets) {
  std::string m =
      openError(rawSafetensors(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", 8));
  EXPECT_HAS(m, "first tensor \"w\" begins at byte 4 of the data section, not at 0");

  m = openError(rawSafetensors(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},
                                   "b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})",
                               12));
  EXPECT_HAS(
      m, "tensor \"b\" is not contiguous: it begins at 8 but the previous tensor \"a\" ends at 4");

  m = openError(rawSafetensors(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},
                                   "b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                               8));
  EXPECT_HAS(m, "tensor \"b\" (data_offsets [4, 8]) overlaps tensor \"a\" (data_offsets [0, 8])");

  m = openError(rawSafetensors(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[8,4]}})", 8));
  EXPECT_HAS(m, "tensor \"w\": data_offsets [8, 4]: end is before begin");

  m = openError(rawSafetensors(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", 4));
  EXPECT_HAS(m,
             "tensor \"w\": data_offsets [0, 8] are out of bounds: the data section has 4 bytes");

  m = openError(rawSafetensors(
      R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,0]}})"));
  EXPECT_HAS(m, "tensor \"w\": data_offsets [18446744073709551615, 0]: end is before begin");
}

TEST_F(SafetensorsRules, TrailingBytes) {
  std::string m =
      openError(rawSafetensors(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 6));
  EXPECT_HAS(
      m,
      "2 trailing bytes after the last tensor: tensors end at 4 but the data section has 6 bytes");
  m = openError(rawSafetensors("{}", 3));
  EXPECT_HAS(m, "3 trailing bytes");
}

TEST_F(SafetensorsRules, MetadataMustMapStringsToStrings) {
  std::string m = openError(rawSafetensors(R"({"__metadata__":["a"]})"));
  EXPECT_HAS(m, "\"__metadata__\" must be an object of string values, not an array");
  m = openError(rawSafetensors(R"({"__metadata__":null})"));
  EXPECT_HAS(m, "\"__metadata__\" must be an object of string values, not null");
  m = openError(rawSafetensors(R"({"__metadata__":{"format":"pt","n":3}})"));
  EXPECT_HAS(m, "\"__metadata__\" key \"n\" has a number value; metadata values must be strings");
  m = openError(rawSafetensors(R"({"__metadata__":{"o":{}}})"));
  EXPECT_HAS(m, "key \"o\" has an object value");
}

TEST_F(SafetensorsRules, MalformedEntries) {
  struct Case {
    std::string body;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"5",
       "tensor \"w\": entry must be an object with \"dtype\", \"shape\" and \"data_offsets\", not "
       "a number"},
      {R"({"shape":[1],"data_offsets":[0,1]})", "tensor \"w\": missing \"dtype\""},
      {R"({"dtype":"U8","data_offsets":[0,1]})", "tensor \"w\": missing \"shape\""},
      {R"({"dtype":"U8","shape":[1]})", "tensor \"w\": missing \"data_offsets\""},
      {R"({"dtype":8,"shape":[1],"data_offsets":[0,1]})",
       "tensor \"w\": \"dtype\" must be a string, not a number"},
      {R"({"dtype":"U8","shape":"1","data_offsets":[0,1]})",
       "\"shape\" must be an array of non-negative integers, not a string"},
      {R"({"dtype":"U8","shape":[1.0],"data_offsets":[0,1]})",
       "\"shape\" must be an array of non-negative integers, but holds a non-integer number"},
      {R"({"dtype":"U8","shape":[null],"data_offsets":[0,1]})", "but holds null"},
      {R"({"dtype":"U8","shape":[-1],"data_offsets":[0,1]})",
       "tensor \"w\": negative dimension -1 in \"shape\""},
      {R"({"dtype":"U8","shape":[1e30],"data_offsets":[0,1]})", "but holds a non-integer number"},
      {R"({"dtype":"U8","shape":[1],"data_offsets":[0,1,2]})",
       "tensor \"w\": \"data_offsets\" must be an array of 2 non-negative integers"},
      {R"({"dtype":"U8","shape":[1],"data_offsets":[-1,0]})",
       "\"data_offsets\" must be an array of 2 non-negative integers"},
      {R"({"dtype":"U8","shape":[1],"data_offsets":{"0":0,"1":1}})",
       "\"data_offsets\" must be an array of 2"},
      {R"({"dtype":"U8","shape":[1],"data_offsets":[0,99999999999999999999]})",
       "\"data_offsets\" must be an array of 2"},
  };
  for (const Case& c : cases) {
    std::string m = openError(rawSafetensors("{" + entry("w", c.body) + "}", 1));
    EXPECT_HAS(m, c.expected);
  }
}

TEST_F(SafetensorsRules, NamesInMessagesStayOnOneLine) {
  std::string m = openError(
      rawSafetensors(R"({"a\nb\"c":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", 1));
  EXPECT_HAS(m, R"(tensor "a\x0ab\"c": unknown dtype "Q4")");
  std::string longName(5000, 'n');
  m = openError(rawSafetensors("{" + entry(longName, R"({"dtype":"Q4"})") + "}"));
  EXPECT_LT(m.size(), 400u);
  EXPECT_HAS(m, "...\": missing \"shape\"");
}

TEST_F(SafetensorsRules, NotARegularFile) {
  Expected<SafetensorsFile> file = SafetensorsFile::open(dir_.path());
  ASSERT_FALSE(file);
  EXPECT_HAS(file.errorMessage(), "not a regular file");
  file = SafetensorsFile::open(dir_.file("missing.safetensors"));
  ASSERT_FALSE(file);
  EXPECT_HAS(file.errorMessage(), "missing.safetensors: cannot open: No such file or directory");
  std::string fifo = dir_.file("fifo.safetensors");
  ASSERT_EQ(test::runCommand("mkfifo " + fifo).exitCode, 0);
  file = SafetensorsFile::open(fifo);  // must not block waiting for a writer
  ASSERT_FALSE(file);
  EXPECT_HAS(file.errorMessage(), "not a regular file");
}

}  // namespace
}  // namespace tpc
