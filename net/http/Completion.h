// One generation request between the engine and a client, on the I/O thread: engine events in,
// OpenAI's response shapes out (one JSON body, or Server-Sent Events as the text grows). Text
// is decoded incrementally in whole UTF-8 characters and passed through the stop strings.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "executor/engine/Engine.h"
#include "frontends/Tokenizer.h"
#include "net/http/Metrics.h"
#include "net/http/Schema.h"
#include "net/http/StopStrings.h"

namespace tpc::http {

// What every request of one server shares; lives on the I/O thread.
struct ServerState {
  ServerState(Engine& e, Tokenizer* t, std::string name)
      : engine(e), tokenizer(t), modelName(std::move(name)) {}
  Engine& engine;
  Tokenizer* tokenizer = nullptr;  // null: token-id prompts only
  std::string modelName;
  ServerMetrics metrics;
  int64_t waiting = 0;  // submitted, no token yet (the bound of --max-queued)
  int64_t open = 0;     // submitted, not finished
  uint64_t nextId = 0;
  std::set<class Completion*> live;  // submitted and not finished, to cancel at shutdown
};

// Where a completion's output goes: the HTTP session. `body` is a whole response for a plain
// request; `data` is one SSE event's payload for a stream; `end` closes the stream.
struct CompletionOutput {
  std::function<void(int status, std::string body)> respond;
  std::function<void(std::string data)> event;
  std::function<void()> end;
};

class Completion {
 public:
  Completion(ServerState& server, CompletionParams params, std::vector<int32_t> promptIds,
             CompletionOutput output);
  // Submits to the engine; the engine's events come back through `post` (which must hand them
  // to the I/O thread). An ApiError when the engine refuses the request.
  std::optional<ApiError> start(const std::function<void(std::function<void()>)>& post,
                                const std::shared_ptr<Completion>& self);
  void onEvent(const EngineEvent& event);
  // The client went away: cancel in the engine; no more output.
  void clientGone();
  bool done() const { return done_; }

 private:
  void onToken(const EngineEvent& event);
  void onEnd(const EngineEvent& event);
  void sendPiece(const std::string& text, bool force);
  std::string tokenText(int32_t id) const;
  struct TokenRecord {
    int32_t id;
    float logprob;
    std::vector<TokenLogprob> top;
  };
  std::string chunk(const std::string& text, const char* finishReason);
  std::string finalBody(const EngineEvent& end);
  nlohmann::json logprobsJson() const;

  ServerState& server_;
  CompletionParams params_;
  std::vector<int32_t> promptIds_;
  CompletionOutput output_;
  std::optional<StreamDecoder> decoder_;
  StopMatcher stops_;
  std::string id_;
  int64_t created_ = 0;
  EngineRequestId engineId_ = 0;
  bool submitted_ = false, sawFirst_ = false, stoppedByString_ = false, clientGone_ = false,
       done_ = false;
  std::chrono::steady_clock::time_point submittedAt_, lastTokenAt_;
  // Everything generated so far (non-streaming), or since the last chunk (streaming).
  std::string text_;
  std::vector<TokenRecord> tokens_;
  size_t textOffset_ = 0;  // completions' logprobs.text_offset of the next chunk
  int64_t completionTokens_ = 0;
  std::string finishReason_;
};

}  // namespace tpc::http
