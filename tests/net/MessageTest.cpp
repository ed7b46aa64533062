// Control-plane frames: every type round-trips, and malformed frames are refused with a
// message that says what was wrong.
#include <gtest/gtest.h>

#include "net/Message.h"
#include "net/Wire.h"

namespace tpc::net {
namespace {

std::vector<uint8_t> header(uint32_t magic, uint16_t version, uint16_t type) {
  ByteWriter w;
  w.u32(magic);
  w.u16(version);
  w.u16(type);
  return std::move(w.bytes());
}

std::string decodeError(const std::vector<uint8_t>& bytes) {
  Expected<Message> m = decode(bytes.data(), bytes.size());
  return m ? "" : m.errorMessage();
}

TEST(NetMessage, EveryFieldRoundTrips) {
  Message hello;
  hello.type = MsgType::Hello;
  hello.workerId = 3;
  hello.localWorld = 2;
  hello.backend = "cpu";
  hello.planHash = 0x1234567890abcdefull;
  std::vector<uint8_t> bytes = encode(hello);
  Expected<Message> back = decode(bytes.data(), bytes.size());
  ASSERT_TRUE(back) << back.errorMessage();
  EXPECT_EQ(back->workerId, 3);
  EXPECT_EQ(back->localWorld, 2u);
  EXPECT_EQ(back->backend, "cpu");
  EXPECT_EQ(back->planHash, hello.planHash);

  Message request;
  request.type = MsgType::Request;
  request.request.seq = 7;
  request.request.id = "abc";
  request.request.promptIds = {1, 2, 3};
  request.request.maxNewTokens = 9;
  request.request.temperature = 0.5f;
  request.request.topK = 4;
  request.request.topP = 0.9f;
  request.request.seed = 11;
  request.request.eosIds = {2, 5};
  request.request.keepLogits = true;
  bytes = encode(request);
  back = decode(bytes.data(), bytes.size());
  ASSERT_TRUE(back) << back.errorMessage();
  EXPECT_EQ(back->request.seq, 7u);
  EXPECT_EQ(back->request.id, "abc");
  EXPECT_EQ(back->request.promptIds, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(back->request.topK, 4);
  EXPECT_FLOAT_EQ(back->request.topP, 0.9f);
  EXPECT_EQ(back->request.eosIds, (std::vector<int64_t>{2, 5}));
  EXPECT_TRUE(back->request.keepLogits);

  Message data;
  data.type = MsgType::WeightData;
  data.rank = 5;
  data.weight = 6;
  data.slice = 1;
  data.offset = 1u << 20;
  data.data = {9, 8, 7};
  bytes = encode(data);
  back = decode(bytes.data(), bytes.size());
  ASSERT_TRUE(back) << back.errorMessage();
  EXPECT_EQ(back->rank, 5u);
  EXPECT_EQ(back->offset, 1u << 20);
  EXPECT_EQ(back->data, data.data);
}

TEST(NetMessage, AssignCarriesTheEnginePoolAndIterationsTheirBytes) {
  Message assign;
  assign.type = MsgType::Assign;
  assign.world = 4;
  assign.firstRank = 2;
  assign.localWorld = 2;
  assign.pool = {true, 32, uint64_t{3} << 30, 0.5f};
  std::vector<uint8_t> bytes = encode(assign);
  Expected<Message> back = decode(bytes.data(), bytes.size());
  ASSERT_TRUE(back) << back.errorMessage();
  EXPECT_EQ(back->firstRank, 2u);
  EXPECT_TRUE(back->pool.engine);
  EXPECT_EQ(back->pool.kvBlockSize, 32);
  EXPECT_EQ(back->pool.kvCacheBytes, uint64_t{3} << 30);
  EXPECT_FLOAT_EQ(back->pool.gpuMemoryUtilization, 0.5f);

  Message iteration;
  iteration.type = MsgType::Iteration;
  iteration.data = {1, 0, 0, 0, 42};
  bytes = encode(iteration);
  back = decode(bytes.data(), bytes.size());
  ASSERT_TRUE(back) << back.errorMessage();
  EXPECT_EQ(back->type, MsgType::Iteration);
  EXPECT_EQ(back->data, iteration.data);
  bytes.pop_back();  // a truncated one is refused
  EXPECT_NE(decodeError(bytes).find("truncated or oversized Iteration"), std::string::npos);
}

TEST(NetMessage, MalformedFramesAreRefusedByName) {
  EXPECT_NE(decodeError({'G', 'E', 'T', ' ', '/'}).find("not a tpc control-plane message"),
            std::string::npos);
  EXPECT_NE(decodeError({}).find("not a tpc control-plane message"), std::string::npos);
  EXPECT_NE(decodeError(header(kMagic, 99, 1)).find("protocol version 99 is not supported"),
            std::string::npos);
  EXPECT_NE(decodeError(header(kMagic, kProtocolVersion, 999)).find("unknown message type 999"),
            std::string::npos);
  // A Hello cut short, and one with bytes after its last field.
  EXPECT_NE(decodeError(header(kMagic, kProtocolVersion, 1)).find("truncated"), std::string::npos);
  Message hello;
  hello.type = MsgType::Hello;
  std::vector<uint8_t> bytes = encode(hello);
  bytes.push_back(0);
  EXPECT_NE(decodeError(bytes).find("trailing bytes"), std::string::npos);
  // A string that claims more bytes than the frame holds.
  std::vector<uint8_t> lying =
      header(kMagic, kProtocolVersion, static_cast<uint16_t>(MsgType::Failed));
  ByteWriter w;
  w.u32(0x7fffffff);
  lying.insert(lying.end(), w.bytes().begin(), w.bytes().end());
  EXPECT_NE(decodeError(lying).find("truncated or oversized Failed"), std::string::npos);
  // A data chunk above the cap.
  Message big;
  big.type = MsgType::PlanData;
  big.data.resize(kChunkBytes + 1);
  EXPECT_NE(decodeError(encode(big)).find("oversized"), std::string::npos);
}

TEST(NetMessage, RandomBytesNeverCrashTheDecoder) {
  uint64_t state = 42;
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> bytes =
        header(kMagic, kProtocolVersion, static_cast<uint16_t>(1 + i % 20));
    size_t n = (state >> 33) % 64;
    for (size_t k = 0; k < n; ++k) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      bytes.push_back(static_cast<uint8_t>(state >> 56));
    }
    Expected<Message> m = decode(bytes.data(), bytes.size());
    (void)m;
  }
}

}  // namespace
}  // namespace tpc::net
