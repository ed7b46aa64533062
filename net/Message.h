// The control-plane messages between the head (ZeroMQ ROUTER) and each worker node (DEALER).
// Every message is one frame: magic, protocol version, type, then the type's fields. Frames
// are capped (kMaxFrameBytes, enforced by ZMQ_MAXMSGSIZE on receipt) and decoding checks
// every length, so garbage becomes an Error naming what was wrong.
//
// The conversation, in order:
//   worker Hello            -> head Accepted | Refused
//   worker FetchPlan*       -> head PlanData*         (skipped when the worker has the plan)
//   worker PlanReady        -> (once every worker is there) head Assign: ranks, store, comm id
//   worker FetchWeight*     -> head WeightData*       (only without a matching checkpoint)
//   worker Loaded           -> (once every node has its weights) head Start: fork the ranks
//   worker Ready            -> (once every rank everywhere is up) head Request* ... End, or,
//                              running the engine, head Iteration* (the last one Stop) End
//                              (or Abort at any point)
//   worker Done | Failed
// Heartbeat goes both ways throughout; a peer silent for the agreed timeout is dead.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/Error.h"

namespace tpc::net {

constexpr uint32_t kMagic = 0x4e435054;   // "TPCN"
constexpr uint16_t kProtocolVersion = 2;  // 2: the engine (Iteration, Assign's pool)
// Plan and weight bytes travel in chunks of this size; a frame holds one chunk and its ids.
constexpr uint32_t kChunkBytes = 1u << 20;
constexpr int64_t kMaxFrameBytes = kChunkBytes + 64 * 1024;
constexpr size_t kMaxStringBytes = 16 * 1024;
constexpr size_t kMaxPromptTokens = 1u << 18;  // 1 MiB of ids: a Request fits one frame

enum class MsgType : uint16_t {
  Hello = 1,
  Accepted,
  Refused,
  FetchPlan,
  PlanData,
  PlanReady,
  Assign,
  FetchWeight,
  WeightData,
  Loaded,
  Start,
  Ready,
  Request,
  Cancel,  // no longer sent: the engine cancels a request on the head
  End,
  Abort,
  Heartbeat,
  Failed,
  Done,
  Iteration,  // one engine iteration from global rank 0, for every rank (in `data`)
};
const char* msgTypeName(MsgType type);

// One generation request as every rank receives it.
struct WireRequest {
  uint64_t seq = 0;  // position in the head's stream, from 0
  std::string id;
  std::vector<int32_t> promptIds;
  int64_t maxNewTokens = 16;
  float temperature = 0, topP = 1;
  int64_t topK = 0;
  uint64_t seed = 0;
  std::vector<int64_t> eosIds;
  bool keepLogits = false;
};

// Assign: whether the ranks run the engine, and how every rank sizes its KV pool, so the
// workers' pools match the head's.
struct EnginePool {
  bool engine = false;
  int64_t kvBlockSize = 16;
  uint64_t kvCacheBytes = 0;
  float gpuMemoryUtilization = 0.9f;
};

// All fields of all types; each type encodes only those its comment in Message.cpp lists.
struct Message {
  MsgType type = MsgType::Heartbeat;
  // Hello
  int64_t workerId = -1;  // -1: the head orders this node by arrival
  uint32_t localWorld = 0;
  std::string backend;
  uint64_t planHash = 0;  // Hello: 0 when the worker has no plan of its own
  // Accepted
  uint64_t planSize = 0;
  uint32_t heartbeatMs = 0, timeoutMs = 0;
  // Refused, Abort, Failed
  std::string reason;
  // PlanReady
  bool needWeights = false;
  // Assign
  uint32_t world = 0, firstRank = 0, storePort = 0;
  std::string storePrefix;
  std::vector<uint8_t> commId;  // NCCL unique id (cuda); empty for Gloo
  EnginePool pool;
  // FetchPlan, PlanData, FetchWeight, WeightData; Iteration (data only)
  uint32_t rank = 0, weight = 0, slice = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  std::vector<uint8_t> data;
  // Request, Cancel (seq only)
  WireRequest request;
};

std::vector<uint8_t> encode(const Message& m);
// Fails on a wrong magic or version, an unknown type, a truncated or over-long field, or
// trailing bytes; the message says which.
Expected<Message> decode(const uint8_t* data, size_t size);

}  // namespace tpc::net
