#include "net/Message.h"

#include "net/Wire.h"

namespace tpc::net {

const char* msgTypeName(MsgType type) {
  switch (type) {
    case MsgType::Hello:
      return "Hello";
    case MsgType::Accepted:
      return "Accepted";
    case MsgType::Refused:
      return "Refused";
    case MsgType::FetchPlan:
      return "FetchPlan";
    case MsgType::PlanData:
      return "PlanData";
    case MsgType::PlanReady:
      return "PlanReady";
    case MsgType::Assign:
      return "Assign";
    case MsgType::FetchWeight:
      return "FetchWeight";
    case MsgType::WeightData:
      return "WeightData";
    case MsgType::Loaded:
      return "Loaded";
    case MsgType::Start:
      return "Start";
    case MsgType::Ready:
      return "Ready";
    case MsgType::Request:
      return "Request";
    case MsgType::Cancel:
      return "Cancel";
    case MsgType::End:
      return "End";
    case MsgType::Iteration:
      return "Iteration";
    case MsgType::Abort:
      return "Abort";
    case MsgType::Heartbeat:
      return "Heartbeat";
    case MsgType::Failed:
      return "Failed";
    case MsgType::Done:
      return "Done";
  }
  return "unknown";
}

namespace {

void writeRequest(ByteWriter& w, const WireRequest& r) {
  w.u64(r.seq);
  w.str(r.id);
  w.u32(static_cast<uint32_t>(r.promptIds.size()));
  for (int32_t id : r.promptIds) w.u32(static_cast<uint32_t>(id));
  w.i64(r.maxNewTokens);
  w.f32(r.temperature);
  w.f32(r.topP);
  w.i64(r.topK);
  w.u64(r.seed);
  w.u32(static_cast<uint32_t>(r.eosIds.size()));
  for (int64_t id : r.eosIds) w.i64(id);
  w.u8(r.keepLogits ? 1 : 0);
}

bool readRequest(ByteReader& in, WireRequest& r) {
  r.seq = in.u64();
  r.id = in.str(kMaxStringBytes);
  uint32_t n = in.u32();
  if (!in.ok() || n > kMaxPromptTokens || n * 4ull > in.remaining()) return false;
  r.promptIds.resize(n);
  for (auto& id : r.promptIds) id = static_cast<int32_t>(in.u32());
  r.maxNewTokens = in.i64();
  r.temperature = in.f32();
  r.topP = in.f32();
  r.topK = in.i64();
  r.seed = in.u64();
  uint32_t e = in.u32();
  if (!in.ok() || e > 1024 || e * 8ull > in.remaining()) return false;
  r.eosIds.resize(e);
  for (auto& id : r.eosIds) id = in.i64();
  r.keepLogits = in.u8() != 0;
  return in.ok();
}

}  // namespace

std::vector<uint8_t> encode(const Message& m) {
  ByteWriter w;
  w.u32(kMagic);
  w.u16(kProtocolVersion);
  w.u16(static_cast<uint16_t>(m.type));
  switch (m.type) {
    case MsgType::Hello:
      w.i64(m.workerId);
      w.u32(m.localWorld);
      w.str(m.backend);
      w.u64(m.planHash);
      break;
    case MsgType::Accepted:
      w.u64(m.planSize);
      w.u64(m.planHash);
      w.u32(m.heartbeatMs);
      w.u32(m.timeoutMs);
      break;
    case MsgType::Refused:
    case MsgType::Abort:
    case MsgType::Failed:
      w.str(m.reason);
      break;
    case MsgType::PlanReady:
      w.u8(m.needWeights ? 1 : 0);
      break;
    case MsgType::Assign:
      w.u32(m.world);
      w.u32(m.firstRank);
      w.u32(m.localWorld);
      w.u32(m.storePort);
      w.str(m.storePrefix);
      w.str(m.backend);
      w.blob(m.commId);
      w.u8(m.pool.engine ? 1 : 0);
      w.i64(m.pool.kvBlockSize);
      w.u64(m.pool.kvCacheBytes);
      w.f32(m.pool.gpuMemoryUtilization);
      break;
    case MsgType::FetchPlan:
    case MsgType::FetchWeight:
      w.u32(m.rank);
      w.u32(m.weight);
      w.u32(m.slice);
      w.u64(m.offset);
      w.u32(m.length);
      break;
    case MsgType::PlanData:
    case MsgType::WeightData:
      w.u32(m.rank);
      w.u32(m.weight);
      w.u32(m.slice);
      w.u64(m.offset);
      w.blob(m.data);
      break;
    case MsgType::Request:
      writeRequest(w, m.request);
      break;
    case MsgType::Cancel:
      w.u64(m.request.seq);
      break;
    case MsgType::Iteration:
      w.blob(m.data);
      break;
    case MsgType::Loaded:
    case MsgType::Start:
    case MsgType::Ready:
    case MsgType::End:
    case MsgType::Heartbeat:
    case MsgType::Done:
      break;
  }
  return std::move(w.bytes());
}

Expected<Message> decode(const uint8_t* data, size_t size) {
  ByteReader in(data, size);
  uint32_t magic = in.u32();
  uint16_t version = in.u16();
  uint16_t type = in.u16();
  if (!in.ok() || magic != kMagic)
    return makeError("not a tpc control-plane message (", size, " bytes without the TPCN magic)");
  if (version != kProtocolVersion)
    return makeError("protocol version ", version, " is not supported (this side speaks ",
                     kProtocolVersion, ")");
  Message m;
  m.type = static_cast<MsgType>(type);
  switch (m.type) {
    case MsgType::Hello:
      m.workerId = in.i64();
      m.localWorld = in.u32();
      m.backend = in.str(64);
      m.planHash = in.u64();
      break;
    case MsgType::Accepted:
      m.planSize = in.u64();
      m.planHash = in.u64();
      m.heartbeatMs = in.u32();
      m.timeoutMs = in.u32();
      break;
    case MsgType::Refused:
    case MsgType::Abort:
    case MsgType::Failed:
      m.reason = in.str(kMaxStringBytes);
      break;
    case MsgType::PlanReady:
      m.needWeights = in.u8() != 0;
      break;
    case MsgType::Assign:
      m.world = in.u32();
      m.firstRank = in.u32();
      m.localWorld = in.u32();
      m.storePort = in.u32();
      m.storePrefix = in.str(256);
      m.backend = in.str(64);
      m.commId = in.blob(4096);
      m.pool.engine = in.u8() != 0;
      m.pool.kvBlockSize = in.i64();
      m.pool.kvCacheBytes = in.u64();
      m.pool.gpuMemoryUtilization = in.f32();
      break;
    case MsgType::FetchPlan:
    case MsgType::FetchWeight:
      m.rank = in.u32();
      m.weight = in.u32();
      m.slice = in.u32();
      m.offset = in.u64();
      m.length = in.u32();
      break;
    case MsgType::PlanData:
    case MsgType::WeightData:
      m.rank = in.u32();
      m.weight = in.u32();
      m.slice = in.u32();
      m.offset = in.u64();
      m.data = in.blob(kChunkBytes);
      break;
    case MsgType::Request:
      if (!readRequest(in, m.request)) return makeError("malformed Request message");
      break;
    case MsgType::Cancel:
      m.request.seq = in.u64();
      break;
    case MsgType::Iteration:
      m.data = in.blob(kChunkBytes);
      break;
    case MsgType::Loaded:
    case MsgType::Start:
    case MsgType::Ready:
    case MsgType::End:
    case MsgType::Heartbeat:
    case MsgType::Done:
      break;
    default:
      return makeError("unknown message type ", type);
  }
  if (!in.ok()) return makeError("truncated or oversized ", msgTypeName(m.type), " message");
  if (!in.atEnd())
    return makeError(msgTypeName(m.type), " message has ", in.remaining(), " trailing bytes");
  return m;
}

}  // namespace tpc::net
