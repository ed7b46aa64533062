// The engine: one scheduler on rank 0 (the head across nodes) that batches every request into
// iterations over a paged KV cache, and hands each rank the iteration to run. This header is
// what its users see: the server and `tpexec --requests` submit requests and receive their
// tokens as they come, cancel them, and read counters for metrics.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ir/Error.h"

namespace tpc {

// llava: one request's image as the vision tower takes it, already preprocessed.
struct EngineImage {
  std::vector<float> patches;  // cpu::patchify's layout: `rows` rows of channels * patch^2
  int64_t rows = 0;            // the tower's rows (class slot and patches)
};

// What one request asks for. The engine validates it in submit(): an empty prompt, a prompt
// that leaves no room in the plan's max context, a token id outside the vocab, max tokens < 1
// or an out-of-range sampling value is an Error there and never reaches the scheduler.
struct EngineRequest {
  std::vector<int32_t> promptIds;
  int64_t maxTokens = 16;    // generated tokens at most (also bounded by the max context)
  float temperature = 0.0f;  // <= 0: greedy
  int64_t topK = 0;          // 0: off
  float topP = 1.0f;         // 1: off
  float minP = 0.0f;         // 0: off
  // The request's random stream depends only on this seed and its own tokens, so batching
  // never changes a seeded result. Unset: the engine picks one at submit.
  std::optional<uint64_t> seed;
  // OpenAI's presence and frequency penalties (subtracted from the logits of tokens already
  // generated) and the multiplicative repetition penalty of transformers (1: off), over the
  // prompt and the generated tokens.
  float presencePenalty = 0.0f, frequencyPenalty = 0.0f, repetitionPenalty = 1.0f;
  std::vector<int32_t> stopTokenIds;  // generation stops after producing one of these
  bool ignoreEos = false;             // keep going past the model's end-of-sequence ids
  // -1: no log-probabilities. 0..20: each token event carries the chosen token's log-probability
  // and this many most likely alternatives.
  int topLogprobs = -1;
  // Tests and --logits-out: each token event carries the full logits row it was sampled from.
  bool returnLogits = false;
  // llava: the image whose features replace the prompt's image tokens, in order (the prompt
  // holds exactly as many image tokens as the tower gives feature rows). Null: text only, and
  // the prompt must hold no image token. Shared: a request is copied without copying patches.
  std::shared_ptr<const EngineImage> image;
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.0f;
};

struct EngineEvent {
  enum class Kind {
    Token,     // one new token
    Finished,  // the request is done; no event follows
    Failed,    // the request could not finish (the engine died); no event follows
  };
  Kind kind = Kind::Token;
  // Token:
  int32_t token = 0;
  float logprob = 0.0f;           // when topLogprobs >= 0
  std::vector<TokenLogprob> top;  // topLogprobs alternatives, most likely first
  std::vector<float> logits;      // when returnLogits
  // Finished: "stop" (an end-of-sequence or stop token), "length" (max tokens or the max
  // context) or "cancelled".
  std::string finishReason;
  std::string error;  // Failed: why, one line
  // Finished and Failed: usage and timing of the whole request.
  int64_t promptTokens = 0, cachedPromptTokens = 0, completionTokens = 0;
  double queueMs = 0;  // from submit to the first iteration that scheduled it
};

using EngineRequestId = uint64_t;
// Called on the engine's thread, in order, for one request; it must not block (hand the event
// to another thread, e.g. post it to an I/O loop).
using EngineEventSink = std::function<void(const EngineEvent&)>;

struct EngineCounters {
  int64_t running = 0, waiting = 0;
  int64_t kvBlocksTotal = 0, kvBlocksUsed = 0, kvBlockSize = 0;
  int64_t prefixCacheQueriedTokens = 0, prefixCacheHitTokens = 0;  // cumulative
  int64_t preemptions = 0;                                         // cumulative
  int64_t promptTokens = 0, generationTokens = 0;                  // cumulative, computed
  int64_t iterations = 0, requestsFinished = 0;                    // cumulative
};

enum class EngineState {
  Loading,  // ranks are loading weights; requests submitted now wait
  Ready,
  Failed,   // a rank died or a collective failed: every open request got a Failed event
  Stopped,  // shut down
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Thread-safe. Queues the request (first come, first served) or returns why it is invalid.
  virtual Expected<EngineRequestId> submit(EngineRequest request, EngineEventSink sink) = 0;
  // Thread-safe; unknown or finished ids are ignored. The request's KV blocks are free within
  // one iteration and its sink gets Finished "cancelled".
  virtual void cancel(EngineRequestId id) = 0;
  virtual EngineCounters counters() const = 0;
  virtual EngineState state() const = 0;
  virtual std::string failure() const = 0;  // why it failed, when state() is Failed
  virtual int64_t maxContext() const = 0;
  virtual int64_t vocabSize() const = 0;
  // The model's end-of-sequence ids (config.json and generation_config.json).
  virtual std::vector<int64_t> eosIds() const = 0;
};

// How the scheduler batches and how the KV pool is sized.
struct EngineConfig {
  int64_t kvBlockSize = 16;            // tokens per KV block (--kv-block-size)
  int64_t maxSeqs = 0;                 // sequences in one iteration; 0: the plan's max batch
  int64_t maxBatchedTokens = 2048;     // tokens in one iteration (--max-batched-tokens)
  uint64_t kvCacheBytes = 0;           // cpu: the KV pool per rank; 0: a small default
  double gpuMemoryUtilization = 0.90;  // cuda: the share of the GPU's memory the rank may use
  bool prefixCaching = true;
  // Bytes of image patches one iteration may carry (0: no limit). Across nodes an iteration
  // travels in one control-plane frame: a larger image is refused at submit, and images that
  // together pass the limit go in different iterations.
  int64_t maxImageBytesPerIteration = 0;
  // Pipeline micro-batches kept in flight, so that stages work at the same time: the running
  // sequences split into this many iterations (--micro-batches). 0: the plan's stages; 1: one
  // iteration at a time.
  int64_t microBatches = 0;
};

}  // namespace tpc
