// Reading and writing well-formed files: round trips, byte-exact agreement with the reference
// writer, and the promise that opening never pages in tensor data.
#include "frontends/Safetensors.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "frontends/SafetensorsWriter.h"
#include "tests/frontends/SafetensorsTestUtil.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

using test::rawSafetensors;
using test::TempDir;

// A byte pattern that differs per tensor, so swapped or shifted data shows.
std::function<void(uint8_t*, uint64_t)> pattern(uint8_t seed) {
  return [seed](uint8_t* dst, uint64_t bytes) {
    for (uint64_t i = 0; i < bytes; ++i) dst[i] = static_cast<uint8_t>(seed + i * 7);
  };
}

std::vector<uint8_t> expectedPattern(uint8_t seed, uint64_t bytes) {
  std::vector<uint8_t> out(bytes);
  pattern(seed)(out.data(), bytes);
  return out;
}

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(Safetensors, WriteThenReadRoundTrip) {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  std::vector<TensorToWrite> tensors = {
      {"model.embed_tokens.weight", DType::BF16, {5, 3}, pattern(1)},
      {"model.norm.weight", DType::F32, {3}, pattern(2)},
      {"packed.f4", DType::F4, {2, 3}, pattern(3)},  // 6 nibbles: 3 bytes
      {"empty", DType::U8, {0, 7}, pattern(4)},
      {"scalar", DType::I64, {}, pattern(5)},
      {"half", DType::F16, {2}, pattern(6)},
      {"flag", DType::Bool, {3}, pattern(7)},
  };
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "é \"quoted\""}};
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  ASSERT_FALSE(writeSafetensors(path, tensors, metadata, [&](uint64_t done, uint64_t total) {
    progress.emplace_back(done, total);
  }));
  EXPECT_EQ(listDir(dir.path()), std::vector<std::string>{"model.safetensors"});

  Expected<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file) << file.errorMessage();
  EXPECT_EQ(file->path(), path);
  EXPECT_EQ(file->fileSize(), std::filesystem::file_size(path));
  EXPECT_EQ(file->dataOffset() % 8, 0u) << "header padded to 8 bytes";
  EXPECT_EQ(file->metadata(), metadata);
  ASSERT_EQ(file->tensors().size(), tensors.size());

  uint64_t expectedBegin = 0;
  for (const TensorInfo& t : file->tensors()) {
    EXPECT_EQ(t.dataBegin, expectedBegin) << t.name;
    expectedBegin = t.dataEnd;
    // Wide types come first, so each tensor is aligned to its element size in the file.
    unsigned elementBytes = std::max(1u, bitWidth(t.dtype) / 8);
    EXPECT_EQ((file->dataOffset() + t.dataBegin) % elementBytes, 0u) << t.name;
  }
  EXPECT_EQ(file->dataOffset() + expectedBegin, file->fileSize());

  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorInfo* t = file->find(tensors[i].name);
    ASSERT_NE(t, nullptr) << tensors[i].name;
    EXPECT_EQ(t->name, tensors[i].name);
    EXPECT_EQ(t->dtype, tensors[i].dtype);
    EXPECT_EQ(t->shape, tensors[i].shape);
    std::span<const uint8_t> bytes = file->bytes(*t);
    EXPECT_EQ(bytes.size(), t->byteLength());
    EXPECT_EQ(std::vector<uint8_t>(bytes.begin(), bytes.end()),
              expectedPattern(static_cast<uint8_t>(i + 1), t->byteLength()))
        << t->name;
  }
  EXPECT_EQ(file->find("model.embed_tokens.weight")->numElements(), 15u);
  EXPECT_EQ(file->find("packed.f4")->byteLength(), 3u);
  EXPECT_EQ(file->find("empty")->byteLength(), 0u);
  EXPECT_EQ(file->find("scalar")->numElements(), 1u);
  EXPECT_EQ(file->find("scalar")->byteLength(), 8u);
  EXPECT_EQ(file->find("missing"), nullptr);
  EXPECT_EQ(file->find(""), nullptr);

  ASSERT_FALSE(progress.empty());
  uint64_t total = file->fileSize() - file->dataOffset();
  EXPECT_EQ(progress.front(), std::make_pair(uint64_t{0}, total));
  EXPECT_EQ(progress.back(), std::make_pair(total, total));
  for (size_t i = 1; i < progress.size(); ++i) EXPECT_GE(progress[i].first, progress[i - 1].first);

  std::string raw = test::readFile(path);
  EXPECT_EQ(file->headerHash(), test::referenceFnv1a(raw.substr(0, file->dataOffset())));
}

// The reference writer's output for the same tensors (its own unit tests pin these bytes), so
// Python and Rust readers see our files exactly as they see their own.
TEST(Safetensors, WriterMatchesReferenceBytes) {
  TempDir dir;
  std::string path = dir.file("a.safetensors");
  float values[] = {0, 1, 2, 3, 4, 5};
  auto fill = [&](uint8_t* dst, uint64_t bytes) { std::memcpy(dst, values, bytes); };
  ASSERT_FALSE(writeSafetensors(path, {{"attn.0", DType::F32, {1, 2, 3}, fill}}));
  std::string header = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  EXPECT_EQ(header.size(), 64u);
  EXPECT_EQ(test::readFile(path),
            rawSafetensors(header) + std::string(reinterpret_cast<char*>(values), 24));

  ASSERT_FALSE(writeSafetensors(path, {{"attn0", DType::F32, {1, 1, 2, 3}, fill}}));
  EXPECT_EQ(test::readFile(path).substr(0, 80),
            rawSafetensors(R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" +
                           std::string(7, ' ')));

  ASSERT_FALSE(writeSafetensors(path, {}));
  EXPECT_EQ(test::readFile(path), rawSafetensors("{}      "));
  ASSERT_FALSE(writeSafetensors(path, {}, {{"framework", "pt"}}));
  EXPECT_EQ(test::readFile(path),
            rawSafetensors(R"({"__metadata__":{"framework":"pt"}})" + std::string(5, ' ')));
  Expected<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file) << file.errorMessage();
  EXPECT_TRUE(file->tensors().empty());
  EXPECT_EQ(file->metadata().at("framework"), "pt");
}

TEST(Safetensors, ReadsHeadersWrittenInAnyOrder) {
  TempDir dir;
  std::string path = dir.file("x.safetensors");
  // Entries out of data order, an unknown extra field (ignored, as the reference does),
  // zero-size tensors sharing an offset, and tab/newline padding.
  test::writeFile(path, rawSafetensors(R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},
    "z":{"shape":[0],"dtype":"F32","data_offsets":[4,4],"extra":[1,{"x":null}]},
    "a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},
    "y":{"dtype":"BF16","shape":[3,0],"data_offsets":[6,6]}}  	
)",
                                       6));
  Expected<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file) << file.errorMessage();
  std::vector<std::string> order;
  for (const TensorInfo& t : file->tensors()) order.push_back(t.name);
  EXPECT_EQ(order, (std::vector<std::string>{"a", "z", "b", "y"}));
  EXPECT_EQ(file->find("y")->numElements(), 0u);
  EXPECT_TRUE(file->bytes(*file->find("y")).empty());
}

TEST(Safetensors, HeaderHashIsStableAndSensitive) {
  TempDir dir;
  std::string a = dir.file("a.safetensors"), b = dir.file("b.safetensors");
  ASSERT_FALSE(writeSafetensors(a, {{"w", DType::F32, {2}, pattern(1)}}));
  ASSERT_FALSE(writeSafetensors(b, {{"w", DType::F32, {2}, pattern(9)}}));
  auto fa = SafetensorsFile::open(a), fb = SafetensorsFile::open(b);
  ASSERT_TRUE(fa && fb);
  EXPECT_EQ(fa->headerHash(), fb->headerHash()) << "tensor bytes are not hashed";
  ASSERT_FALSE(writeSafetensors(b, {{"w", DType::F32, {1, 2}, pattern(1)}}));
  auto fc = SafetensorsFile::open(b);
  ASSERT_TRUE(fc);
  EXPECT_NE(fa->headerHash(), fc->headerHash());
}

TEST(Safetensors, MovedFileKeepsTensorPointers) {
  TempDir dir;
  std::string path = dir.file("m.safetensors");
  ASSERT_FALSE(writeSafetensors(path, {{"w", DType::U8, {4}, pattern(3)}}));
  Expected<SafetensorsFile> opened = SafetensorsFile::open(path);
  ASSERT_TRUE(opened);
  const TensorInfo* info = opened->find("w");
  SafetensorsFile moved = std::move(*opened);
  EXPECT_EQ(moved.find("w"), info);
  EXPECT_EQ(moved.bytes(*info)[0], 3);
  SafetensorsFile assigned = std::move(moved);
  EXPECT_EQ(assigned.bytes(*info)[1], 10);
}

// Opening a 16 GB checkpoint must read its header only: the file is sparse, so paging in its
// data would show as resident memory (and take seconds); neither may happen.
TEST(Safetensors, OpeningDoesNotTouchTensorData) {
  TempDir dir;
  std::string path = dir.file("big.safetensors");
  constexpr uint64_t kRows = 4, kCols = uint64_t{1} << 30;  // 4 Gi F32 = 16 GiB
  std::string header =
      R"({"w":{"dtype":"F32","shape":[4,1073741824],"data_offsets":[0,17179869184]}})";
  test::writeFile(path, rawSafetensors(header));
  ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(8 + header.size() + kRows * kCols * 4)), 0);

  auto residentBytes = [] {
    std::ifstream statm("/proc/self/statm");
    uint64_t size = 0, resident = 0;
    statm >> size >> resident;
    return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  };
  uint64_t before = residentBytes();
  Expected<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file) << file.errorMessage();
  std::span<const uint8_t> data = file->bytes(file->tensors().at(0));
  EXPECT_EQ(data.size(), kRows * kCols * 4);
  EXPECT_LT(residentBytes() - std::min(before, residentBytes()), uint64_t{16} << 20);
  EXPECT_EQ(data[data.size() / 2], 0) << "one page read from the middle is fine";
}

// MoE checkpoints hold tens of thousands of tensors; lookups and layout checks must not be
// quadratic in that.
TEST(Safetensors, ManyTensors) {
  TempDir dir;
  std::string path = dir.file("moe.safetensors");
  std::vector<TensorToWrite> tensors;
  tensors.reserve(20000);
  for (int i = 0; i < 20000; ++i)
    tensors.push_back({"layers." + std::to_string(i) + ".w", DType::BF16, {2}, {}});
  ASSERT_FALSE(writeSafetensors(path, tensors));
  Expected<SafetensorsFile> file = SafetensorsFile::open(path);
  ASSERT_TRUE(file) << file.errorMessage();
  ASSERT_EQ(file->tensors().size(), 20000u);
  for (const TensorToWrite& t : tensors) ASSERT_NE(file->find(t.name), nullptr) << t.name;
}

TEST(Safetensors, WriterRejectsBadTensorsAndLeavesNothing) {
  TempDir dir;
  std::string path = dir.file("bad.safetensors");
  struct Case {
    std::vector<TensorToWrite> tensors;
    std::string expected;
  };
  std::vector<Case> cases = {
      {{{"w", DType::F32, {2}, {}}, {"w", DType::F16, {2}, {}}}, "duplicate tensor \"w\""},
      {{{"w", DType::F32, {2, -1}, {}}}, "tensor \"w\": negative dimension -1"},
      {{{"nib", DType::F4, {3}, {}}}, "tensor \"nib\": 3 F4 elements are not a whole number"},
      {{{"__metadata__", DType::U8, {1}, {}}}, "reserved for metadata"},
      {{{"big", DType::U8, {INT64_MAX, INT64_MAX}, {}}}, "tensor \"big\": element count"},
      {{{"bad\xff", DType::U8, {1}, {}}}, "not valid UTF-8"},
  };
  for (const Case& c : cases) {
    Error e = writeSafetensors(path, c.tensors);
    ASSERT_TRUE(e) << c.expected;
    EXPECT_NE(e.message().find(c.expected), std::string::npos) << e.message();
    EXPECT_NE(e.message().find(path), std::string::npos) << e.message();
    EXPECT_TRUE(listDir(dir.path()).empty()) << c.expected;
  }
  Error e = writeSafetensors(path, {}, {{"k", "\xc3"}});
  ASSERT_TRUE(e);
  EXPECT_NE(e.message().find("metadata key \"k\""), std::string::npos) << e.message();
  EXPECT_TRUE(listDir(dir.path()).empty());
}

TEST(Safetensors, FailedWriteKeepsThePreviousFile) {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  ASSERT_FALSE(writeSafetensors(path, {{"old", DType::U8, {1}, {}}}));
  std::string before = test::readFile(path);
  auto throwing = [](uint8_t*, uint64_t) { throw std::runtime_error("generator failed"); };
  EXPECT_THROW((void)writeSafetensors(path, {{"new", DType::U8, {8}, throwing}}),
               std::runtime_error);
  EXPECT_EQ(test::readFile(path), before);
  EXPECT_EQ(listDir(dir.path()), std::vector<std::string>{"model.safetensors"});

  Error e = writeSafetensors(dir.file("no/such/dir/x.safetensors"), {});
  ASSERT_TRUE(e);
  EXPECT_NE(e.message().find("no/such/dir/x.safetensors"), std::string::npos) << e.message();
}

}  // namespace
}  // namespace tpc
