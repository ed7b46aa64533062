#include "executor/engine/RankRunners.h"

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
                           std::function<void()> heartbeat)
    : backend_(backend),
      link_(link),
      vocab_(vocab),
      hidden_(hidden),
      heartbeat_(std::move(heartbeat)) {}

Error LeaderRunner::send(const Iteration& it) { return link_.send(it.encode()); }

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
  while (true) {
    Expected<std::string> bytes = link.receive();
    if (!bytes) return bytes.takeError();
    Expected<Iteration> it = Iteration::decode(*bytes);
    if (!it) return it.takeError();
    if (it->kind == Iteration::Kind::Stop) return Error::success();
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
