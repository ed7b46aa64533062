#include "executor/engine/RankRunners.h"

#include <algorithm>
#include <deque>

#include "executor/StepAttrs.h"
#include "executor/engine/IterationImages.h"

namespace tpc {

Error MeshLink::send(std::string message) {
  if (mesh_.world() == 1) return Error::success();
  return mesh_.broadcast(message, 0);
}

Expected<std::string> MeshLink::receive() {
  std::string bytes;
  if (Error e = mesh_.broadcast(bytes, 0)) return e;
  return bytes;
}

LeaderRunner::LeaderRunner(Backend& backend, IterationLink& link, int64_t vocab, int64_t hidden,
                           std::function<void()> heartbeat, int64_t inFlightTokens)
    : backend_(backend),
      link_(link),
      vocab_(vocab),
      hidden_(hidden),
      heartbeat_(std::move(heartbeat)),
      inFlightTokens_(inFlightTokens) {}

// Every message tells the other ranks how many in-flight steps rank 0 finished before it, so
// each rank begins and finishes its steps in rank 0's order.
Error LeaderRunner::send(Iteration it) {
  it.finishFirst = finished_;
  finished_ = 0;
  return link_.send(it.encode());
}

Error LeaderRunner::begin(const Iteration& it) {
  Iteration message = it;
  message.inFlight = true;
  if (Error e = send(std::move(message))) return e;
  return backend_.beginForward(it.stepInput());
}

Expected<const float*> LeaderRunner::finish(const Iteration& it) {
  Expected<const float*> logits = backend_.finishForward(it.stepInput());
  ++finished_;
  if (heartbeat_) heartbeat_();
  return logits;
}

int64_t inFlightTokenLimit(const plan::Plan& plan, const Communicator& comm) {
  int64_t widest = 0;
  for (const plan::RankProgram* program : *plan.ranks())
    for (const plan::Step* s : *program->steps())
      if (s->op()->string_view() == "send" && stepInt(*s, "peer_stage") > stepInt(*s, "stage"))
        widest = std::max(
            widest,
            elementsPerToken(*program->buffers()->Get(s->operands()->Get(0)->index())->shape()));
  if (widest == 0) return 0;
  return static_cast<int64_t>(comm.bufferedSendFloats()) / widest;
}

Expected<const float*> LeaderRunner::forward(const Iteration& it) {
  if (Error e = send(it)) return e;
  Expected<StepImages> images = encodeIterationImages(backend_, it, hidden_);
  if (!images) return images.takeError();
  Expected<const float*> logits = backend_.forward(images->apply(it.stepInput()));
  if (heartbeat_) heartbeat_();
  return logits;
}

Expected<std::vector<int32_t>> LeaderRunner::sample(const Iteration& it) {
  if (Error e = send(it)) return e;
  Expected<StepImages> images = encodeIterationImages(backend_, it, hidden_);
  if (!images) return images.takeError();
  Expected<std::vector<int32_t>> ids =
      backend_.forwardSample(images->apply(it.stepInput()), it.sampling.data(), vocab_);
  if (heartbeat_) heartbeat_();
  return ids;
}

Error LeaderRunner::idle() {
  Iteration it;
  it.kind = Iteration::Kind::Idle;
  if (Error e = send(it)) return e;
  if (heartbeat_) heartbeat_();
  return Error::success();
}

Error LeaderRunner::stop() {
  Iteration it;
  it.kind = Iteration::Kind::Stop;
  return send(it);
}

Error followIterations(Backend& backend, IterationLink& link, int64_t vocab, int64_t hidden,
                       const std::function<void()>& heartbeat) {
  // Steps begun and not finished yet, oldest first: their arrays must outlive them.
  std::deque<Iteration> inFlight;
  while (true) {
    Expected<std::string> bytes = link.receive();
    if (!bytes) return bytes.takeError();
    Expected<Iteration> it = Iteration::decode(*bytes);
    if (!it) return it.takeError();
    if (it->finishFirst > static_cast<int32_t>(inFlight.size()))
      return makeError("iteration message: finish ", it->finishFirst, " steps of ", inFlight.size(),
                       " in flight");
    for (int32_t i = 0; i < it->finishFirst; ++i) {
      Expected<const float*> logits = backend.finishForward(inFlight.front().stepInput());
      if (!logits) return logits.takeError();
      inFlight.pop_front();
    }
    if (it->kind == Iteration::Kind::Stop) return Error::success();
    if (it->inFlight && it->kind != Iteration::Kind::Idle) {
      // Sampling is rank 0's: only its picks count. Staged plans have no vision tower.
      inFlight.push_back(std::move(*it));
      if (Error e = backend.beginForward(inFlight.back().stepInput())) return e;
      if (heartbeat) heartbeat();
      continue;
    }
    Expected<StepImages> images = encodeIterationImages(backend, *it, hidden);
    if (!images) return images.takeError();
    if (it->kind == Iteration::Kind::Forward) {
      Expected<const float*> logits = backend.forward(images->apply(it->stepInput()));
      if (!logits) return logits.takeError();
    } else if (it->kind == Iteration::Kind::Sample) {
      if (it->sampling.size() != it->logitRows.size())
        return makeError("iteration message: ", it->sampling.size(), " row samplings for ",
                         it->logitRows.size(), " logit rows");
      Expected<std::vector<int32_t>> ids =
          backend.forwardSample(images->apply(it->stepInput()), it->sampling.data(), vocab);
      if (!ids) return ids.takeError();
    }
    if (heartbeat) heartbeat();
  }
}

}  // namespace tpc
