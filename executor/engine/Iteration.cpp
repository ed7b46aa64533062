#include "executor/engine/Iteration.h"

#include <cstring>

namespace tpc {
namespace {

template <class T>
void put(std::string& out, const std::vector<T>& v) {
  const uint64_t n = v.size();
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  out.append(reinterpret_cast<const char*>(v.data()), n * sizeof(T));
}

template <class T>
bool take(const std::string& in, size_t& at, std::vector<T>& v) {
  uint64_t n = 0;
  if (in.size() - at < sizeof n) return false;
  std::memcpy(&n, in.data() + at, sizeof n);
  at += sizeof n;
  if (n > (in.size() - at) / sizeof(T)) return false;
  v.resize(n);
  std::memcpy(v.data(), in.data() + at, n * sizeof(T));
  at += n * sizeof(T);
  return true;
}

}  // namespace

StepInput Iteration::stepInput() const {
  StepInput in;
  in.tokenIds = tokenIds.data();
  in.positions = positions.data();
  in.tokens = static_cast<int64_t>(tokenIds.size());
  in.kvSlots = kvSlots.data();
  in.sequences = seqStarts.empty() ? 0 : static_cast<int64_t>(seqStarts.size()) - 1;
  in.seqStarts = seqStarts.data();
  in.blockTables = blockTables.data();
  in.blockTableStride = blockTableStride;
  in.logitRows = logitRows.data();
  in.logitRowCount = static_cast<int64_t>(logitRows.size());
  return in;
}

std::string Iteration::encode() const {
  std::string out;
  const auto k = static_cast<int32_t>(kind);
  out.append(reinterpret_cast<const char*>(&k), sizeof k);
  out.append(reinterpret_cast<const char*>(&blockTableStride), sizeof blockTableStride);
  const int32_t flow[2] = {finishFirst, inFlight ? 1 : 0};
  out.append(reinterpret_cast<const char*>(flow), sizeof flow);
  for (const auto* v : {&tokenIds, &positions, &kvSlots, &seqStarts, &blockTables, &logitRows})
    put(out, *v);
  put(out, sampling);
  put(out, imageRowCounts);
  put(out, imagePatches);
  put(out, imageFeatureRows);
  return out;
}

bool Iteration::isStop(const std::string& bytes) {
  int32_t k = -1;
  if (bytes.size() >= sizeof k) std::memcpy(&k, bytes.data(), sizeof k);
  return k == static_cast<int32_t>(Kind::Stop);
}

Expected<Iteration> Iteration::decode(const std::string& bytes) {
  Iteration it;
  int32_t k = 0;
  int32_t flow[2] = {0, 0};
  size_t at = sizeof k + sizeof it.blockTableStride + sizeof flow;
  if (bytes.size() < at) return makeError("iteration message of ", bytes.size(), " bytes is short");
  std::memcpy(&k, bytes.data(), sizeof k);
  std::memcpy(&it.blockTableStride, bytes.data() + sizeof k, sizeof it.blockTableStride);
  std::memcpy(flow, bytes.data() + sizeof k + sizeof it.blockTableStride, sizeof flow);
  if (k < 0 || k > static_cast<int32_t>(Kind::Stop))
    return makeError("iteration message of unknown kind ", k);
  if (flow[0] < 0 || flow[1] < 0 || flow[1] > 1)
    return makeError("iteration message: bad micro-batch fields ", flow[0], ", ", flow[1]);
  it.finishFirst = flow[0];
  it.inFlight = flow[1] != 0;
  it.kind = static_cast<Kind>(k);
  for (auto* v :
       {&it.tokenIds, &it.positions, &it.kvSlots, &it.seqStarts, &it.blockTables, &it.logitRows})
    if (!take(bytes, at, *v)) return makeError("iteration message is truncated");
  if (!take(bytes, at, it.sampling) || !take(bytes, at, it.imageRowCounts) ||
      !take(bytes, at, it.imagePatches) || !take(bytes, at, it.imageFeatureRows) ||
      at != bytes.size())
    return makeError("iteration message is truncated or has trailing bytes");
  if (it.positions.size() != it.tokenIds.size() || it.kvSlots.size() != it.tokenIds.size())
    return makeError("iteration message: ids, positions and KV slots differ in length");
  if (!it.imageRowCounts.empty() && it.imageFeatureRows.size() != it.tokenIds.size())
    return makeError("iteration message: image rows and ids differ in length");
  return it;
}

}  // namespace tpc
