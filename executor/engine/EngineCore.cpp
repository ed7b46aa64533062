#include "executor/engine/EngineCore.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>

#include "executor/engine/RequestSampling.h"

namespace tpc {
namespace {

using Clock = std::chrono::steady_clock;

// How long an idle engine waits for work before telling the ranks it is still there: well
// inside the ranks' hang timeout (5 s by default).
constexpr std::chrono::milliseconds kIdleTick{500};

bool contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// The image's name for the prefix cache: FNV-1a over the patches' bytes, then splitmix64's
// finaliser. Never 0, which means "no salt".
uint64_t imageDigest(const EngineImage& image) {
  uint64_t h = 0xcbf29ce484222325ULL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(image.patches.data());
  for (size_t i = 0, n = image.patches.size() * sizeof(float); i < n; ++i)
    h = (h ^ bytes[i]) * 0x100000001b3ULL;
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h ? h : 1;
}

}  // namespace

EngineCore::EngineCore(EngineModel model, EngineConfig config)
    : model_(std::move(model)), config_(config) {
  counters_.kvBlockSize = config_.kvBlockSize;
}

Error EngineCore::validate(const EngineRequest& r) const {
  const auto prompt = static_cast<int64_t>(r.promptIds.size());
  if (prompt == 0) return makeError("the prompt is empty");
  if (prompt >= model_.maxContext)
    return makeError("the prompt has ", prompt, " tokens but the max context is ",
                     model_.maxContext);
  for (int32_t id : r.promptIds)
    if (id < 0 || id >= model_.vocabSize)
      return makeError("prompt token id ", id, " is outside the vocab of ", model_.vocabSize);
  if (r.maxTokens < 1) return makeError("max tokens must be at least 1, not ", r.maxTokens);
  if (!(r.temperature >= 0.0f)) return makeError("temperature must not be negative");
  if (r.topK < 0) return makeError("top-k must not be negative");
  if (!(r.topP > 0.0f && r.topP <= 1.0f)) return makeError("top-p must be in (0, 1]");
  if (!(r.minP >= 0.0f && r.minP <= 1.0f)) return makeError("min-p must be in [0, 1]");
  if (!(r.repetitionPenalty > 0.0f)) return makeError("the repetition penalty must be positive");
  if (r.topLogprobs > 20) return makeError("at most 20 top log-probabilities, not ", r.topLogprobs);
  return validateImage(r);
}

Error EngineCore::validateImage(const EngineRequest& r) const {
  const int32_t token = model_.imageTokenIndex;
  const auto tokens = token < 0 ? 0 : std::count(r.promptIds.begin(), r.promptIds.end(), token);
  if (!r.image) {
    if (tokens > 0)
      return makeError("the prompt holds the image token (id ", token, ") ", tokens,
                       " times but the request carries no image");
    return Error::success();
  }
  if (token < 0 || model_.imageRows <= 0) return makeError("this model takes no images");
  const EngineImage& image = *r.image;
  if (image.rows != model_.imageRows ||
      static_cast<int64_t>(image.patches.size()) != image.rows * model_.imagePatchWidth)
    return makeError("the image has ", image.rows, " rows of ",
                     image.rows ? static_cast<int64_t>(image.patches.size()) / image.rows : 0,
                     " patch values but the vision tower takes ", model_.imageRows, " rows of ",
                     model_.imagePatchWidth);
  const int64_t want = model_.imageRows - model_.imageFirstRow;
  if (tokens != want)
    return makeError("the prompt has ", tokens, " image tokens (id ", token,
                     ") but the image gives ", want, " feature rows");
  const auto bytes = static_cast<int64_t>(image.patches.size() * sizeof(float));
  if (config_.maxImageBytesPerIteration > 0 && bytes > config_.maxImageBytesPerIteration)
    return makeError("the image's patches are ", bytes, " bytes, more than the ",
                     config_.maxImageBytesPerIteration,
                     " one iteration carries between nodes: images are served on one node only "
                     "for this tower");
  return Error::success();
}

Expected<EngineRequestId> EngineCore::submit(EngineRequest request, EngineEventSink sink) {
  if (Error e = validate(request)) return e;
  auto seq = std::make_unique<Sequence>();
  seq->submitted = Clock::now();
  seq->promptLength = static_cast<int64_t>(request.promptIds.size());
  seq->tokens = request.promptIds;
  seq->seed = request.seed ? *request.seed : std::random_device{}();
  if (request.image) {
    for (int64_t p = 0; p < seq->promptLength; ++p)
      if (seq->tokens[static_cast<size_t>(p)] == model_.imageTokenIndex)
        seq->imagePositions.push_back(static_cast<int32_t>(p));
    seq->salt = {imageDigest(*request.image), seq->imagePositions.front()};
    seq->imageBytes = static_cast<int64_t>(request.image->patches.size() * sizeof(float));
  }
  seq->request = std::move(request);
  seq->sink = std::move(sink);
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ == EngineState::Failed) return makeError("the engine failed: ", failure_);
  if (state_ == EngineState::Stopped) return makeError("the engine has stopped");
  if (seq->hasImage() && state_ == EngineState::Ready && !acceptImages_)
    return makeError("this backend does not run the vision tower: images are not served");
  const int64_t tokens = std::min(seq->promptLength + seq->request.maxTokens, model_.maxContext);
  const int64_t blocks = (tokens + config_.kvBlockSize - 1) / config_.kvBlockSize;
  if (poolBlocks_ > 0 && blocks > poolBlocks_)
    return makeError("the request needs ", blocks, " KV blocks of ", config_.kvBlockSize,
                     " tokens but the pool holds ", poolBlocks_,
                     " (give a larger --kv-cache-memory or fewer max tokens)");
  seq->id = nextId_++;
  const EngineRequestId id = seq->id;
  inbox_.push_back(std::move(seq));
  wake_.notify_one();
  return id;
}

void EngineCore::cancel(EngineRequestId id) {
  std::lock_guard<std::mutex> lock(mutex_);
  cancels_.push_back(id);
  wake_.notify_one();
}

EngineCounters EngineCore::counters() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counters_;
}

EngineState EngineCore::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

std::string EngineCore::failure() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failure_;
}

void EngineCore::shutdown() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopRequested_ = true;
  wake_.notify_one();
}

void EngineCore::fail(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    state_ = EngineState::Failed;
    failure_ = why;
  }
  failAll(why);
}

void EngineCore::failAll(const std::string& why) {
  std::vector<std::unique_ptr<Sequence>> fresh;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fresh.swap(inbox_);
  }
  for (auto& seq : fresh) sequences_.emplace(seq->id, std::move(seq));
  for (auto& [id, seq] : sequences_) {
    EngineEvent event;
    event.kind = EngineEvent::Kind::Failed;
    event.error = why;
    event.promptTokens = seq->promptLength;
    event.completionTokens = seq->generated;
    if (seq->sink) seq->sink(event);
  }
  sequences_.clear();
}

void EngineCore::takeInbox(std::vector<std::unique_ptr<Sequence>>& fresh,
                           std::vector<EngineRequestId>& cancels, bool& stop) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (inbox_.empty() && cancels_.empty() && !stopRequested_ && scheduler_->idle())
    wake_.wait_for(lock, kIdleTick);
  fresh.swap(inbox_);
  cancels.swap(cancels_);
  stop = stopRequested_;
}

void EngineCore::publishCounters() {
  std::lock_guard<std::mutex> lock(mutex_);
  counters_.running = static_cast<int64_t>(scheduler_->running().size());
  counters_.waiting = static_cast<int64_t>(scheduler_->waiting().size() + inbox_.size());
  counters_.kvBlocksTotal = pool_->total();
  counters_.kvBlocksUsed = pool_->used();
  counters_.prefixCacheQueriedTokens = scheduler_->counters().prefixQueriedTokens;
  counters_.prefixCacheHitTokens = scheduler_->counters().prefixHitTokens;
  counters_.preemptions = scheduler_->counters().preemptions;
  counters_.promptTokens = promptTokens_;
  counters_.generationTokens = generationTokens_;
  counters_.iterations = iterations_;
  counters_.requestsFinished = finished_;
}

Error EngineCore::run(IterationRunner& runner, int64_t kvBlocks) {
  pool_ = std::make_unique<KvBlockPool>(kvBlocks);
  if (config_.prefixCaching) prefix_ = std::make_unique<PrefixCache>(*pool_, config_.kvBlockSize);
  SchedulerConfig sc;
  sc.maxSeqs = config_.maxSeqs > 0 ? config_.maxSeqs : model_.maxBatch;
  sc.maxBatchedTokens = config_.maxBatchedTokens;
  sc.blockSize = config_.kvBlockSize;
  sc.maxImageBytes = config_.maxImageBytesPerIteration;
  scheduler_ = std::make_unique<Scheduler>(sc, *pool_, prefix_.get());
  microBatches_ = config_.microBatches > 0 ? config_.microBatches : model_.stages;
  if (runner.inFlightTokens() < 1) microBatches_ = 1;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    poolBlocks_ = kvBlocks;
    if (state_ == EngineState::Loading) state_ = EngineState::Ready;
  }
  publishCounters();
  while (true) {
    std::vector<std::unique_ptr<Sequence>> fresh;
    std::vector<EngineRequestId> cancels;
    bool stop = false;
    takeInbox(fresh, cancels, stop);
    for (auto& seq : fresh) {
      Sequence* s = seq.get();
      sequences_.emplace(s->id, std::move(seq));
      // Requests submitted while loading were not checked against the pool yet.
      const int64_t tokens = std::min(s->promptLength + s->request.maxTokens, model_.maxContext);
      const bool noTower = s->hasImage() && !acceptImages_;
      if (noTower || scheduler_->blocksFor(tokens) > kvBlocks) {
        EngineEvent event;
        event.kind = EngineEvent::Kind::Failed;
        event.error = noTower
                          ? "this backend does not run the vision tower: images are not served"
                          : "the request needs " + std::to_string(scheduler_->blocksFor(tokens)) +
                                " KV blocks but the pool holds " + std::to_string(kvBlocks);
        if (s->sink) s->sink(event);
        sequences_.erase(s->id);
        continue;
      }
      scheduler_->add(s);
    }
    for (EngineRequestId id : cancels) {
      auto it = sequences_.find(id);
      if (it == sequences_.end()) continue;
      // In flight: it finishes when its micro-batch is back.
      if (it->second->inFlight)
        it->second->cancelled = true;
      else
        finish(*it->second, "cancelled");
    }
    if (stop) break;
    Error e = scheduler_->idle() ? runner.idle() : runIteration(runner);
    if (e) {
      inFlight_.clear();
      fail(e.message());
      return e;
    }
    publishCounters();
  }
  // Every rank finishes what it began before the ranks are told to stop.
  while (!inFlight_.empty())
    if (Error e = finishOldest(runner)) {
      inFlight_.clear();
      fail(e.message());
      return e;
    }
  failAll("the engine stopped");
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ != EngineState::Failed) state_ = EngineState::Stopped;
  return Error::success();
}

Error EngineCore::runIteration(IterationRunner& runner) {
  // Each micro-batch takes its share of the sequences; while one is in flight the next takes
  // no more tokens than the stages' sends buffer.
  const SchedulerConfig& config = scheduler_->config();
  ScheduleLimits limits{config.maxSeqs, config.maxBatchedTokens};
  if (microBatches_ > 1) {
    const auto known =
        static_cast<int64_t>(scheduler_->running().size() + scheduler_->waiting().size());
    limits.maxSeqs = (known + microBatches_ - 1) / microBatches_;
    if (!inFlight_.empty()) limits.maxTokens = runner.inFlightTokens();
  }
  std::vector<ScheduledChunk> chosen;
  if (static_cast<int64_t>(inFlight_.size()) < microBatches_) chosen = scheduler_->schedule(limits);
  if (chosen.empty()) {
    if (!inFlight_.empty()) return finishOldest(runner);
    return runner.idle();  // nothing fits yet (cannot last: see submit)
  }
  Scheduled scheduled;
  scheduled.started = Clock::now();
  scheduled.chunks = std::move(chosen);
  const std::vector<ScheduledChunk>& chunks = scheduled.chunks;
  IterationStats& stats = scheduled.stats;
  stats.sequences = static_cast<int64_t>(chunks.size());
  stats.alongside = static_cast<int64_t>(inFlight_.size());
  Iteration& it = scheduled.it;
  it.seqStarts.push_back(0);
  int64_t stride = 0;
  for (const ScheduledChunk& c : chunks)
    stride = std::max<int64_t>(stride, static_cast<int64_t>(c.seq->blocks.size()));
  it.blockTableStride = stride;
  bool& host = scheduled.host;
  std::vector<Sequence*>& sampling = scheduled.sampling;
  const bool images = std::any_of(chunks.begin(), chunks.end(), [](const ScheduledChunk& c) {
    return c.seq->coversImage(c.start, c.count);
  });
  for (const ScheduledChunk& c : chunks) {
    Sequence& seq = *c.seq;
    if (images) addImages(c, it);
    for (int64_t p = c.start; p < c.start + c.count; ++p) {
      it.tokenIds.push_back(seq.tokens[static_cast<size_t>(p)]);
      it.positions.push_back(static_cast<int32_t>(p));
      const int32_t block = seq.blocks[static_cast<size_t>(p / config_.kvBlockSize)];
      it.kvSlots.push_back(
          static_cast<int32_t>(block * config_.kvBlockSize + p % config_.kvBlockSize));
      if (p < seq.promptLength) ++promptTokens_;
    }
    const bool decode = c.count == 1 && c.start + 1 == static_cast<int64_t>(seq.tokens.size()) &&
                        seq.generated > 0 && c.start >= seq.promptLength;
    (decode ? stats.decodeTokens : stats.prefillTokens) += c.count;
    stats.kvTokensRead += c.start + c.count;
    it.seqStarts.push_back(static_cast<int32_t>(it.tokenIds.size()));
    it.blockTables.insert(it.blockTables.end(), seq.blocks.begin(), seq.blocks.end());
    // Rows of `stride` entries; the unused tail of a shorter table is never read.
    it.blockTables.resize((it.seqStarts.size() - 1) * static_cast<size_t>(stride), 0);
    if (c.samples) {
      it.logitRows.push_back(static_cast<int32_t>(it.tokenIds.size()) - 1);
      it.sampling.push_back(rowSamplingOf(seq));
      sampling.push_back(&seq);
      host |= needsHostSampling(seq.request);
    }
    if (seq.queueMs == 0)
      seq.queueMs = std::chrono::duration<double, std::milli>(Clock::now() - seq.submitted).count();
  }
  it.kind = host ? Iteration::Kind::Forward : Iteration::Kind::Sample;
  if (microBatches_ > 1) {
    for (const ScheduledChunk& c : chunks) c.seq->inFlight = true;
    inFlight_.push_back(std::move(scheduled));
    return runner.begin(inFlight_.back().it);
  }
  if (host) {
    Expected<const float*> out = runner.forward(it);
    if (!out) return out.takeError();
    scheduled.logits = *out;
  } else {
    Expected<std::vector<int32_t>> out = runner.sample(it);
    if (!out) return out.takeError();
    scheduled.picked = std::move(*out);
  }
  return complete(scheduled);
}

Error EngineCore::finishOldest(IterationRunner& runner) {
  Scheduled s = std::move(inFlight_.front());
  inFlight_.pop_front();
  for (const ScheduledChunk& c : s.chunks) c.seq->inFlight = false;
  Expected<const float*> logits = runner.finish(s.it);
  if (!logits) return logits.takeError();
  if (s.host)
    s.logits = *logits;
  else
    s.picked = sampleLogitRows(*logits, static_cast<int64_t>(s.it.logitRows.size()),
                               s.it.sampling.data(), model_.vocabSize);
  if (Error e = complete(s)) return e;
  // Going idle: the other ranks finish their part now, not at the next message.
  if (inFlight_.empty() && scheduler_->idle()) return runner.idle();
  return Error::success();
}

Error EngineCore::complete(Scheduled& s) {
  const std::vector<Sequence*>& sampling = s.sampling;
  if (!s.host && s.picked.size() != sampling.size())
    return makeError("the backend picked ", s.picked.size(), " tokens for ", sampling.size(),
                     " rows");
  const int64_t vocab = model_.vocabSize;
  const float* logits = s.logits;
  ++iterations_;
  if (onIteration_) {
    s.stats.ms = std::chrono::duration<double, std::milli>(Clock::now() - s.started).count();
    onIteration_(s.stats);
  }
  scheduler_->completed(s.chunks);
  // Cancelled while in flight: they end now, without this iteration's token.
  std::vector<EngineRequestId> cancelled;
  for (const ScheduledChunk& c : s.chunks)
    if (c.seq->cancelled) cancelled.push_back(c.seq->id);
  for (size_t r = 0; r < sampling.size(); ++r) {
    Sequence& seq = *sampling[r];
    if (seq.cancelled) continue;
    if (!s.host) {
      emitToken(seq, s.picked[r], nullptr);
      continue;
    }
    rowScratch_.assign(logits + static_cast<int64_t>(r) * vocab,
                       logits + static_cast<int64_t>(r + 1) * vocab);
    applyPenalties(seq, rowScratch_.data(), vocab);
    emitToken(seq, pickToken(seq, rowScratch_.data(), vocab),
              logits + static_cast<int64_t>(r) * vocab);
  }
  for (EngineRequestId id : cancelled) {
    auto it = sequences_.find(id);
    if (it != sequences_.end()) finish(*it->second, "cancelled");
  }
  return Error::success();
}

// The chunk's image rows: its image, when the chunk reaches any of its tokens (every rank
// encodes it again for each chunk: ranks keep no image between iterations), and one entry of
// imageFeatureRows per token of the chunk.
void EngineCore::addImages(const ScheduledChunk& c, Iteration& it) const {
  const Sequence& seq = *c.seq;
  const int64_t base = std::accumulate(it.imageRowCounts.begin(), it.imageRowCounts.end(),
                                       int64_t{0}, [](int64_t a, int32_t b) { return a + b; });
  const bool covers = seq.coversImage(c.start, c.count);
  if (covers) {
    const EngineImage& image = *seq.request.image;
    it.imageRowCounts.push_back(static_cast<int32_t>(image.rows));
    it.imagePatches.insert(it.imagePatches.end(), image.patches.begin(), image.patches.end());
  }
  for (int64_t p = c.start; p < c.start + c.count; ++p) {
    int32_t row = -1;
    if (covers) {
      auto at = std::lower_bound(seq.imagePositions.begin(), seq.imagePositions.end(), p);
      if (at != seq.imagePositions.end() && *at == p)
        row = static_cast<int32_t>(base + model_.imageFirstRow + (at - seq.imagePositions.begin()));
    }
    it.imageFeatureRows.push_back(row);
  }
}

void EngineCore::emitToken(Sequence& seq, int32_t token, const float* logits) {
  EngineEvent event;
  event.token = token;
  if (seq.request.topLogprobs >= 0)
    fillLogprobs(rowScratch_.data(), model_.vocabSize, token, seq.request.topLogprobs, event);
  if (seq.request.returnLogits && logits) event.logits.assign(logits, logits + model_.vocabSize);
  seq.tokens.push_back(token);
  ++seq.generated;
  ++seq.generatedCounts[token];
  ++generationTokens_;
  if (seq.sink) seq.sink(event);
  const EngineRequest& r = seq.request;
  const bool eos = !r.ignoreEos && std::find(model_.eosIds.begin(), model_.eosIds.end(),
                                             static_cast<int64_t>(token)) != model_.eosIds.end();
  if (eos || contains(r.stopTokenIds, token))
    finish(seq, "stop");
  else if (seq.generated >= r.maxTokens ||
           static_cast<int64_t>(seq.tokens.size()) > model_.maxContext)
    finish(seq, "length");
}

void EngineCore::finish(Sequence& seq, const std::string& reason) {
  EngineEvent event;
  event.kind = EngineEvent::Kind::Finished;
  event.finishReason = reason;
  event.promptTokens = seq.promptLength;
  event.cachedPromptTokens = seq.cachedPromptTokens;
  event.completionTokens = seq.generated;
  event.queueMs = seq.queueMs;
  const EngineRequestId id = seq.id;
  if (seq.sink) seq.sink(event);
  scheduler_->remove(&seq);
  ++finished_;
  sequences_.erase(id);
}

}  // namespace tpc
