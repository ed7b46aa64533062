// Random damage to a valid file must produce an Error or a file whose tensors are all in
// bounds, never a crash (CI also runs this under ASan and UBSan). Seeds are fixed so a failure
// reproduces.
#include <gtest/gtest.h>

#include <random>

#include "frontends/Safetensors.h"
#include "frontends/SafetensorsHeader.h"
#include "frontends/SafetensorsWriter.h"
#include "tests/frontends/SafetensorsTestUtil.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using namespace std::string_view_literals;

// Bytes that steer the JSON parser into its interesting paths more often than random ones do.
constexpr std::string_view kInteresting = "{}[]\",:-+.0123456789eE \\u\xff\x80\xc3\x00tfn"sv;

struct Seed {
  std::string bytes;
  size_t headerEnd;  // the data offset
};

Seed validFile(const test::TempDir& dir) {
  std::string path = dir.file("seed.safetensors");
  auto fill = [](uint8_t* dst, uint64_t bytes) {
    for (uint64_t i = 0; i < bytes; ++i) dst[i] = static_cast<uint8_t>(i);
  };
  Error e = writeSafetensors(path,
                             {{"embed", DType::BF16, {4, 3}, fill},
                              {"norm", DType::F32, {3}, fill},
                              {"packed", DType::F4, {4}, fill},
                              {"empty", DType::I8, {0}, fill},
                              {"bias", DType::U8, {5}, fill}},
                             {{"format", "pt"}});
  EXPECT_FALSE(e);
  Expected<SafetensorsFile> file = SafetensorsFile::open(path);
  EXPECT_TRUE(file);
  return {test::readFile(path), static_cast<size_t>(file->dataOffset())};
}

void mutate(std::string& bytes, size_t headerEnd, std::mt19937& random) {
  auto pick = [&](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(random); };
  switch (pick(4)) {
    case 0:  // any byte anywhere in the length prefix or header
      bytes[pick(headerEnd)] = static_cast<char>(pick(256));
      break;
    case 1:
      bytes[pick(headerEnd)] = kInteresting[pick(kInteresting.size())];
      break;
    case 2:  // truncation, including into the length prefix
      bytes.resize(pick(bytes.size() + 1));
      break;
    default:  // a few changes at once, so a damaged header can still parse
      for (int i = 0; i < 3; ++i)
        bytes[8 + pick(headerEnd - 8)] = kInteresting[pick(kInteresting.size())];
      break;
  }
}

// What a successful open promises: every tensor inside the file, laid end to end.
void checkInvariants(const SafetensorsFile& file) {
  uint64_t end = 0;
  uint64_t sum = 0;
  for (const TensorInfo& t : file.tensors()) {
    ASSERT_EQ(t.dataBegin, end);
    ASSERT_LE(t.dataBegin, t.dataEnd);
    end = t.dataEnd;
    for (uint8_t b : file.bytes(t)) sum += b;  // reads every byte: ASan checks the bounds
    ASSERT_EQ(file.find(t.name), &t);
  }
  ASSERT_EQ(file.dataOffset() + end, file.fileSize());
  (void)sum;
}

TEST(SafetensorsFuzz, DamagedFilesNeverCrash) {
  test::TempDir dir;
  const auto [seed, headerEnd] = validFile(dir);
  std::mt19937 random(20261123);
  std::string path = dir.file("fuzz.safetensors");
  int opened = 0, refused = 0;
  for (int i = 0; i < 2000; ++i) {
    std::string bytes = seed;
    mutate(bytes, headerEnd, random);
    test::writeFile(path, bytes);
    Expected<SafetensorsFile> file = SafetensorsFile::open(path);
    if (file) {
      ++opened;
      checkInvariants(*file);
    } else {
      ++refused;
      EXPECT_NE(file.errorMessage().find(path), std::string::npos) << file.errorMessage();
    }
  }
  // Both outcomes must occur, or the mutations are not exercising anything.
  EXPECT_GT(opened, 20);
  EXPECT_GT(refused, 500);
}

// The header parser alone, in memory, so many more cases fit in the time budget.
TEST(SafetensorsFuzz, DamagedHeadersNeverCrash) {
  test::TempDir dir;
  const auto [seed, headerEnd] = validFile(dir);
  const std::string header = seed.substr(8, headerEnd - 8);
  std::mt19937 random(7);
  int parsed = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string text = header;
    int edits = 1 + static_cast<int>(random() % 4);
    for (int e = 0; e < edits; ++e) {
      size_t at = random() % text.size();
      switch (random() % 4) {
        case 0:
          text[at] = static_cast<char>(random());
          break;
        case 1:
          text[at] = kInteresting[random() % kInteresting.size()];
          break;
        case 2:
          text.erase(at, 1 + random() % 8);
          break;
        default:
          text.insert(at, 1, kInteresting[random() % kInteresting.size()]);
          break;
      }
      if (text.empty()) text = "{";
    }
    uint64_t dataSize = seed.size() - headerEnd;
    if (random() % 8 == 0) dataSize += random() % 2 ? 1 : -1;
    Expected<SafetensorsHeader> result = parseSafetensorsHeader(text, dataSize, "h");
    if (result) {
      ++parsed;
      uint64_t end = 0;
      for (const TensorInfo& t : result->tensors) {
        ASSERT_EQ(t.dataBegin, end);
        end = t.dataEnd;
      }
      ASSERT_EQ(end, dataSize);
    }
  }
  EXPECT_GT(parsed, 25);
}

}  // namespace
}  // namespace tpc
