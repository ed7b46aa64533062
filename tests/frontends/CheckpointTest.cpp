// Model directories: one file, or shards tied together by model.safetensors.index.json. The
// index is cross-checked against the shards so each tensor name resolves to one place.
#include "frontends/Checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "frontends/SafetensorsWriter.h"
#include "tests/frontends/SafetensorsTestUtil.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

#define EXPECT_HAS(message, part)                    \
  EXPECT_NE((message).find(part), std::string::npos) \
      << "expected \"" << (part) << "\" in: " << (message)

auto fillWith(uint8_t value) {
  return [value](uint8_t* dst, uint64_t bytes) { std::fill(dst, dst + bytes, value); };
}

class CheckpointDir : public ::testing::Test {
 protected:
  // Shard 1 holds a and b, shard 2 holds c.
  void writeTwoShards() {
    ASSERT_FALSE(writeSafetensors(dir_.file(shard1_), {{"a", DType::F32, {2}, fillWith(1)},
                                                       {"b", DType::BF16, {3}, fillWith(2)}}));
    ASSERT_FALSE(writeSafetensors(dir_.file(shard2_), {{"c", DType::U8, {5}, fillWith(3)}}));
  }
  void writeIndex(const std::string& json) { test::writeFile(indexPath(), json); }
  std::string indexPath() const { return dir_.file(kSafetensorsIndexName); }
  std::string openError(const std::string& path) {
    Expected<Checkpoint> checkpoint = Checkpoint::open(path);
    if (checkpoint) {
      ADD_FAILURE() << "opened a bad checkpoint";
      return {};
    }
    EXPECT_EQ(checkpoint.errorMessage().find('\n'), std::string::npos);
    return checkpoint.errorMessage();
  }

  test::TempDir dir_;
  std::string shard1_ = "model-00001-of-00002.safetensors";
  std::string shard2_ = "model-00002-of-00002.safetensors";
};

TEST_F(CheckpointDir, SingleFile) {
  ASSERT_FALSE(
      writeSafetensors(dir_.file("model.safetensors"),
                       {{"w", DType::F16, {2, 2}, fillWith(9)}, {"v", DType::U8, {1}, {}}}));
  for (const std::string& path : {dir_.path(), dir_.file("model.safetensors")}) {
    Expected<Checkpoint> checkpoint = Checkpoint::open(path);
    ASSERT_TRUE(checkpoint) << checkpoint.errorMessage();
    EXPECT_EQ(checkpoint->directory(), dir_.path());
    ASSERT_EQ(checkpoint->files().size(), 1u);
    EXPECT_EQ(checkpoint->tensorNames(), (std::vector<std::string>{"v", "w"}));
    const Checkpoint::Entry* w = checkpoint->find("w");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->file, 0u);
    EXPECT_EQ(w->info->shape, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(checkpoint->files()[0].bytes(*w->info)[7], 9);
    EXPECT_EQ(checkpoint->find("x"), nullptr);
  }
}

TEST_F(CheckpointDir, TwoShardsThroughTheWrittenIndex) {
  writeTwoShards();
  ASSERT_FALSE(
      writeSafetensorsIndex(dir_.path(), {{"a", shard1_}, {"b", shard1_}, {"c", shard2_}}));
  nlohmann::json index = nlohmann::json::parse(test::readFile(indexPath()));
  EXPECT_EQ(index["metadata"]["total_size"], 8 + 6 + 5);
  EXPECT_EQ(index["weight_map"]["c"], shard2_);

  Expected<Checkpoint> opened = Checkpoint::open(dir_.path());
  ASSERT_TRUE(opened) << opened.errorMessage();
  Checkpoint checkpoint = std::move(*opened);  // entries must survive the move
  ASSERT_EQ(checkpoint.files().size(), 2u);
  EXPECT_EQ(checkpoint.files()[0].path(), dir_.file(shard1_));
  EXPECT_EQ(checkpoint.files()[1].path(), dir_.file(shard2_));
  EXPECT_EQ(checkpoint.tensorNames(), (std::vector<std::string>{"a", "b", "c"}));
  const Checkpoint::Entry* c = checkpoint.find("c");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->file, 1u);
  EXPECT_EQ(checkpoint.files()[c->file].bytes(*c->info)[4], 3);
  EXPECT_EQ(checkpoint.find("b")->file, 0u);
  EXPECT_EQ(checkpoint.find("b")->info->dtype, DType::BF16);

  Expected<Checkpoint> viaIndexFile = Checkpoint::open(indexPath());
  ASSERT_TRUE(viaIndexFile) << viaIndexFile.errorMessage();
  EXPECT_EQ(viaIndexFile->tensorNames().size(), 3u);
}

TEST_F(CheckpointDir, MissingShard) {
  writeTwoShards();
  writeIndex(R"({"weight_map":{"a":")" + shard1_ + R"(","d":"model-00003.safetensors"}})");
  std::string m = openError(dir_.path());
  EXPECT_HAS(m, indexPath());
  EXPECT_HAS(m, "shard \"model-00003.safetensors\" (holding tensor \"d\") does not exist in " +
                    dir_.path());
}

TEST_F(CheckpointDir, BrokenShardNamesIndexAndShard) {
  writeTwoShards();
  test::writeFile(dir_.file(shard2_), "tiny");
  writeIndex(R"({"weight_map":{"c":")" + shard2_ + R"("}})");
  std::string m = openError(dir_.path());
  EXPECT_HAS(m, indexPath() + ": shard \"" + shard2_ + "\": " + dir_.file(shard2_));
  EXPECT_HAS(m, "shorter than 8 bytes");
}

TEST_F(CheckpointDir, TensorInTheWrongShard) {
  writeTwoShards();
  writeIndex(R"({"weight_map":{"a":")" + shard2_ + R"(","b":")" + shard1_ + R"(","c":")" + shard2_ +
             R"("}})");
  std::string m = openError(dir_.path());
  EXPECT_HAS(m, indexPath() + ": tensor \"a\" is mapped to shard \"" + shard2_ +
                    "\" but is in shard \"" + shard1_ + "\"");
  writeIndex(R"({"weight_map":{"a":")" + shard1_ + R"(","b":")" + shard1_ + R"(","c":")" + shard2_ +
             R"(","ghost":")" + shard2_ + R"("}})");
  m = openError(dir_.path());
  EXPECT_HAS(m, "tensor \"ghost\" is mapped to shard \"" + shard2_ + "\", which does not hold it");
}

TEST_F(CheckpointDir, ShardHoldingUnlistedTensor) {
  writeTwoShards();
  writeIndex(R"({"weight_map":{"a":")" + shard1_ + R"(","c":")" + shard2_ + R"("}})");
  std::string m = openError(dir_.path());
  EXPECT_HAS(m, "shard \"" + shard1_ + "\" holds tensor \"b\", which \"weight_map\" does not list");
  EXPECT_TRUE(writeSafetensorsIndex(dir_.path(), {{"a", shard1_}, {"c", shard2_}}));
}

TEST_F(CheckpointDir, DuplicateAcrossShards) {
  writeTwoShards();
  ASSERT_FALSE(writeSafetensors(dir_.file(shard2_),
                                {{"a", DType::F32, {2}, {}}, {"c", DType::U8, {5}, {}}}));
  writeIndex(R"({"weight_map":{"a":")" + shard1_ + R"(","b":")" + shard1_ + R"(","c":")" + shard2_ +
             R"("}})");
  std::string m = openError(dir_.path());
  EXPECT_HAS(m, "tensor \"a\" is in both shard \"" + shard1_ + "\" and shard \"" + shard2_ + "\"");
}

TEST_F(CheckpointDir, MalformedIndex) {
  writeTwoShards();
  struct Case {
    std::string json;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"[]", "index must be a JSON object, not an array"},
      {"{", "index is not valid JSON"},
      {R"({"metadata":{}})", "missing \"weight_map\""},
      {R"({"weight_map":[]})",
       "\"weight_map\" must be an object mapping tensor names to shard file names, not an array"},
      {R"({"weight_map":{}})", "\"weight_map\" lists no tensors"},
      {R"({"weight_map":{"a":7}})",
       "\"weight_map\" maps tensor \"a\" to a number, not a shard file name"},
      {R"({"weight_map":{"a":"x","a":"y"}})", "tensor \"a\" is listed twice in \"weight_map\""},
      {R"({"weight_map":{"a":"../model.safetensors"}})",
       "tensor \"a\" maps to shard \"../model.safetensors\", which is not a plain file name"},
      {R"({"weight_map":{"a":"/etc/passwd"}})", "not a plain file name"},
      {R"({"weight_map":{"a":".."}})", "not a plain file name"},
      {R"({"weight_map":{"a":""}})", "not a plain file name"},
      {R"({"weight_map":{"a":"x\u0000.safetensors"}})", "not a plain file name"},
  };
  for (const Case& c : cases) {
    writeIndex(c.json);
    std::string m = openError(dir_.path());
    EXPECT_HAS(m, indexPath());
    EXPECT_HAS(m, c.expected);
  }
  EXPECT_TRUE(writeSafetensorsIndex(dir_.path(), {{"a", "../x.safetensors"}}));
}

TEST_F(CheckpointDir, DirectoryWithoutCheckpoint) {
  std::string m = openError(dir_.path());
  EXPECT_HAS(m, dir_.path() + ": no model.safetensors or model.safetensors.index.json");
  m = openError(dir_.file("nothing-here"));
  EXPECT_HAS(m, "nothing-here: no such checkpoint file or directory");

  writeTwoShards();
  m = openError(dir_.path());
  EXPECT_HAS(m, dir_.path() + ": 2 .safetensors files (" + shard1_ + ", ...) but no " +
                    "model.safetensors.index.json");

  std::filesystem::remove(dir_.file(shard2_));
  Expected<Checkpoint> lone = Checkpoint::open(dir_.path());
  ASSERT_TRUE(lone) << lone.errorMessage();
  EXPECT_EQ(lone->tensorNames(), (std::vector<std::string>{"a", "b"}));
}

TEST(CheckpointNames, PlainShardFileNames) {
  EXPECT_TRUE(isPlainShardFileName("model-00001-of-00002.safetensors"));
  EXPECT_TRUE(isPlainShardFileName("..hidden.safetensors"));
  EXPECT_FALSE(isPlainShardFileName(""));
  EXPECT_FALSE(isPlainShardFileName("."));
  EXPECT_FALSE(isPlainShardFileName(".."));
  EXPECT_FALSE(isPlainShardFileName("sub/x.safetensors"));
  EXPECT_FALSE(isPlainShardFileName("/abs.safetensors"));
  EXPECT_FALSE(isPlainShardFileName(std::string_view("a\0b", 3)));
}

}  // namespace
}  // namespace tpc
