#include "net/Worker.h"

#include <deque>
#include <map>

#include "codegen/WeightSliceLayout.h"
#include "net/Wire.h"

namespace tpc::net {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Fetches in flight at once: enough to hide the round trip, few enough to bound memory.
constexpr size_t kWindow = 8;

Expected<std::unique_ptr<WorkerClient>> WorkerClient::connect(WorkerOptions options) {
  std::unique_ptr<WorkerClient> w(new WorkerClient());
  w->options_ = std::move(options);
  Expected<std::unique_ptr<Channel>> channel = Channel::connect(w->options_.head, w->options_.keys);
  if (!channel) return channel.takeError();
  w->channel_ = std::move(*channel);
  w->lastHeard_ = w->lastSent_ = Clock::now();
  return w;
}

Expected<std::optional<Message>> WorkerClient::poll(milliseconds wait) {
  auto until = Clock::now() + wait;
  while (true) {
    auto now = Clock::now();
    if (accepted_ && now - lastSent_ >= heartbeat_) {
      Message beat;
      beat.type = MsgType::Heartbeat;
      [[maybe_unused]] Error e = channel_->send(beat);  // a full queue means a stuck head
      lastSent_ = now;
    }
    milliseconds limit = accepted_ ? timeout_ : options_.joinTimeout;
    auto silent = std::chrono::duration_cast<milliseconds>(now - lastHeard_);
    if (silent > limit)
      return accepted_ ? makeError("the head at ", options_.head, " went silent for ",
                                   silent.count(), " ms")
                       : makeError("no answer from a head at ", options_.head, " within ",
                                   limit.count(), " ms");
    auto left = std::chrono::ceil<milliseconds>(until - now);
    std::optional<Incoming> in = channel_->receive(std::clamp(left, milliseconds(0), heartbeat_));
    if (!in) {
      if (Clock::now() >= until) return std::optional<Message>();
      continue;
    }
    if (in->handshakeFailed)
      return makeError("cannot join ", options_.head, ": ", in->message.errorMessage());
    if (!in->message)
      return makeError("bad message from the head at ", options_.head, ": ",
                       in->message.errorMessage());
    lastHeard_ = Clock::now();
    Message& m = *in->message;
    if (m.type == MsgType::Refused)
      return makeError("the head at ", options_.head, " refused this node: ", m.reason);
    if (m.type == MsgType::Abort) return makeError("the head aborted the run: ", m.reason);
    if (m.type == MsgType::Heartbeat) continue;
    return std::optional<Message>(std::move(m));
  }
}

Expected<Message> WorkerClient::waitFor(MsgType type) {
  while (true) {
    Expected<std::optional<Message>> m = poll(heartbeat_);
    if (!m) return m.takeError();
    if (!*m) continue;
    if ((*m)->type != type)
      return makeError("the head sent ", msgTypeName((*m)->type), " while this node waited for ",
                       msgTypeName(type));
    return std::move(**m);
  }
}

Error WorkerClient::send(MsgType type, const std::string& reason) {
  Message m;
  m.type = type;
  m.reason = reason;
  lastSent_ = Clock::now();
  return channel_->send(m);
}

Expected<std::vector<uint8_t>> WorkerClient::join() {
  Message hello;
  hello.type = MsgType::Hello;
  hello.workerId = options_.workerId;
  hello.localWorld = options_.localWorld;
  hello.backend = options_.backend;
  if (options_.ownPlan)
    hello.planHash = fnv1a64(options_.ownPlan->data(), options_.ownPlan->size());
  if (Error e = channel_->send(hello)) return e;
  Expected<Message> accepted = waitFor(MsgType::Accepted);
  if (!accepted) return accepted.takeError();
  accepted_ = true;
  heartbeat_ = milliseconds(std::max<uint32_t>(accepted->heartbeatMs, 10));
  timeout_ = milliseconds(std::max<uint32_t>(accepted->timeoutMs, 100));
  if (options_.ownPlan) return *options_.ownPlan;
  if (accepted->planSize > (uint64_t{1} << 32))
    return makeError("the head announced a plan of ", accepted->planSize, " bytes");
  std::vector<uint8_t> plan(accepted->planSize);
  uint64_t asked = 0, got = 0;
  size_t inFlight = 0;
  while (got < plan.size()) {
    while (inFlight < kWindow && asked < plan.size()) {
      Message fetch;
      fetch.type = MsgType::FetchPlan;
      fetch.offset = asked;
      fetch.length = static_cast<uint32_t>(std::min<uint64_t>(kChunkBytes, plan.size() - asked));
      if (Error e = channel_->send(fetch)) return e;
      asked += fetch.length;
      ++inFlight;
    }
    Expected<Message> data = waitFor(MsgType::PlanData);
    if (!data) return data.takeError();
    if (data->offset > plan.size() || data->data.size() > plan.size() - data->offset)
      return makeError("the head sent plan bytes outside the plan");
    std::copy(data->data.begin(), data->data.end(),
              plan.begin() + static_cast<ptrdiff_t>(data->offset));
    got += data->data.size();
    --inFlight;
  }
  if (fnv1a64(plan.data(), plan.size()) != accepted->planHash)
    return makeError("the plan received from ", options_.head, " does not match its hash");
  return plan;
}

Expected<Message> WorkerClient::waitForAssignment() { return waitFor(MsgType::Assign); }

Error WorkerClient::fetchWeights(
    const plan::Plan& plan, uint32_t firstRank, uint32_t count,
    const std::function<void(uint32_t, uint32_t, uint32_t, std::vector<uint8_t>)>& sink) {
  struct Piece {
    uint32_t rank, weight, slice;
    uint64_t offset;
    uint32_t length;
  };
  using Key = std::tuple<uint32_t, uint32_t, uint32_t>;
  std::deque<Piece> todo;
  std::map<Key, std::pair<std::vector<uint8_t>, uint64_t>> slices;  // bytes, bytes still due
  for (uint32_t rank = firstRank; rank < firstRank + count; ++rank) {
    const plan::RankProgram* program = plan.ranks()->Get(rank);
    for (uint32_t w = 0; w < program->weights()->size(); ++w) {
      const plan::Weight* weight = program->weights()->Get(w);
      for (uint32_t s = 0; s < weight->slices()->size(); ++s) {
        uint64_t size = sliceLayout(*weight->slices()->Get(s)).packedBytes();
        slices[{rank, w, s}] = {std::vector<uint8_t>(size), size};
        for (uint64_t at = 0; at < size; at += kChunkBytes)
          todo.push_back(
              {rank, w, s, at, static_cast<uint32_t>(std::min<uint64_t>(kChunkBytes, size - at))});
        if (size == 0) sink(rank, w, s, {});
      }
    }
  }
  size_t inFlight = 0;
  while (!todo.empty() || inFlight > 0) {
    while (inFlight < kWindow && !todo.empty()) {
      const Piece& p = todo.front();
      Message fetch;
      fetch.type = MsgType::FetchWeight;
      fetch.rank = p.rank;
      fetch.weight = p.weight;
      fetch.slice = p.slice;
      fetch.offset = p.offset;
      fetch.length = p.length;
      if (Error e = channel_->send(fetch)) return e;
      todo.pop_front();
      ++inFlight;
    }
    Expected<Message> data = waitFor(MsgType::WeightData);
    if (!data) return data.takeError();
    --inFlight;
    auto it = slices.find({data->rank, data->weight, data->slice});
    if (it == slices.end() || data->offset > it->second.first.size() ||
        data->data.size() > it->second.first.size() - data->offset)
      return makeError("the head sent weight bytes this node did not ask for");
    std::copy(data->data.begin(), data->data.end(),
              it->second.first.begin() + static_cast<ptrdiff_t>(data->offset));
    it->second.second -= data->data.size();
    if (it->second.second == 0) {
      sink(data->rank, data->weight, data->slice, std::move(it->second.first));
      slices.erase(it);
    }
  }
  return Error::success();
}

}  // namespace tpc::net
