#include "net/http/Completion.h"

#include <ctime>

namespace tpc::http {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double secondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

json bytesOf(const std::string& s) {
  json out = json::array();
  for (unsigned char c : s) out.push_back(c);
  return out;
}

}  // namespace

Completion::Completion(ServerState& server, CompletionParams params, std::vector<int32_t> promptIds,
                       CompletionOutput output)
    : server_(server),
      params_(std::move(params)),
      promptIds_(std::move(promptIds)),
      output_(std::move(output)),
      stops_(params_.stop) {
  if (server_.tokenizer) decoder_.emplace(*server_.tokenizer, DecodeOptions{true});
  id_ = (params_.chat ? "chatcmpl-" : "cmpl-") + std::to_string(++server_.nextId);
  created_ = static_cast<int64_t>(std::time(nullptr));
}

std::optional<ApiError> Completion::start(const std::function<void(std::function<void()>)>& post,
                                          const std::shared_ptr<Completion>& self) {
  EngineRequest request = params_.sampling;
  request.promptIds = promptIds_;
  const int64_t room = server_.engine.maxContext() - static_cast<int64_t>(promptIds_.size());
  request.maxTokens = params_.maxTokens.value_or(params_.chat ? room : std::min<int64_t>(16, room));
  // Chat turns end with the tokenizer's end token (<|eot_id|>, <|im_end|>), which the model's
  // own end-of-sequence ids may not name.
  if (params_.chat && server_.tokenizer && !request.ignoreEos)
    if (auto eos = server_.tokenizer->tokenId(server_.tokenizer->settings().eosToken))
      request.stopTokenIds.push_back(*eos);
  // The sink keeps the completion alive until the engine's last event, so the counts of open
  // and waiting requests stay right even after the client has gone.
  EngineEventSink sink = [post, self](const EngineEvent& event) {
    post([self, event] { self->onEvent(event); });
  };
  submittedAt_ = Clock::now();
  Expected<EngineRequestId> id = server_.engine.submit(std::move(request), std::move(sink));
  if (!id) return badRequest(id.errorMessage());
  engineId_ = *id;
  submitted_ = true;
  ++server_.waiting;
  ++server_.open;
  server_.live.insert(this);
  if (params_.stream && params_.chat) {
    json c = {{"id", id_},
              {"object", "chat.completion.chunk"},
              {"created", created_},
              {"model", server_.modelName},
              {"choices",
               {{{"index", 0},
                 {"delta", {{"role", "assistant"}, {"content", ""}}},
                 {"logprobs", nullptr},
                 {"finish_reason", nullptr}}}}};
    output_.event(c.dump());
  }
  return std::nullopt;
}

void Completion::onEvent(const EngineEvent& event) {
  if (done_) return;
  if (!sawFirst_) {
    sawFirst_ = true;
    --server_.waiting;
  }
  if (event.kind == EngineEvent::Kind::Token) return onToken(event);
  onEnd(event);
}

std::string Completion::tokenText(int32_t id) const {
  if (!server_.tokenizer || id >= server_.tokenizer->vocabSize())
    return "token_id:" + std::to_string(id);
  Expected<std::string> text = server_.tokenizer->decode({id});
  return text ? *text : std::string();
}

void Completion::onToken(const EngineEvent& event) {
  if (stoppedByString_ || clientGone_) return;  // tokens already in flight when we cancelled
  Clock::time_point now = Clock::now();
  if (completionTokens_ == 0)
    server_.metrics.timeToFirstToken.observe(secondsBetween(submittedAt_, now));
  else
    server_.metrics.interTokenLatency.observe(secondsBetween(lastTokenAt_, now));
  lastTokenAt_ = now;
  ++completionTokens_;
  tokens_.push_back({event.token, event.logprob, event.top});
  std::string piece;
  // Checkpoints pad the vocab past the tokenizer; those ids have no text.
  if (decoder_ && event.token < server_.tokenizer->vocabSize()) {
    Expected<std::string> p = decoder_->push(event.token);
    if (p) piece = std::move(*p);
  }
  std::string text = stops_.push(piece);
  if (stops_.stopped()) {
    stoppedByString_ = true;
    finishReason_ = "stop";
    server_.engine.cancel(engineId_);
  }
  // Without a tokenizer each token is a chunk of its own (its id is the content).
  sendPiece(text, !decoder_);
}

void Completion::sendPiece(const std::string& text, bool force) {
  if (!params_.stream) {
    text_ += text;
    return;
  }
  if (text.empty() && !force) return;
  output_.event(chunk(text, nullptr));
  textOffset_ += text.size();
  tokens_.clear();
}

json Completion::logprobsJson() const {
  if (params_.sampling.topLogprobs < 0) return nullptr;
  if (params_.chat) {
    json content = json::array();
    for (const TokenRecord& t : tokens_) {
      std::string s = tokenText(t.id);
      json top = json::array();
      for (const TokenLogprob& a : t.top) {
        std::string as = tokenText(a.id);
        top.push_back({{"token", as}, {"logprob", a.logprob}, {"bytes", bytesOf(as)}});
      }
      content.push_back(
          {{"token", s}, {"logprob", t.logprob}, {"bytes", bytesOf(s)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), logprobs = json::array(), top = json::array(),
       offsets = json::array();
  size_t offset = textOffset_;
  for (const TokenRecord& t : tokens_) {
    std::string s = tokenText(t.id);
    tokens.push_back(s);
    logprobs.push_back(t.logprob);
    json alternatives = json::object();
    for (const TokenLogprob& a : t.top) alternatives[tokenText(a.id)] = a.logprob;
    top.push_back(alternatives);
    offsets.push_back(offset);
    offset += s.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

std::string Completion::chunk(const std::string& text, const char* finishReason) {
  json choice = {{"index", 0}};
  if (params_.chat)
    choice["delta"] = finishReason ? json::object() : json{{"content", text}};
  else
    choice["text"] = text;
  choice["logprobs"] = logprobsJson();
  choice["finish_reason"] = finishReason ? json(finishReason) : json();
  if (params_.returnTokenIds) {
    json ids = json::array();
    for (const TokenRecord& t : tokens_) ids.push_back(t.id);
    choice["token_ids"] = ids;
  }
  json c = {{"id", id_},
            {"object", params_.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", created_},
            {"model", server_.modelName},
            {"choices", {choice}}};
  return c.dump();
}

namespace {

json usageOf(const EngineEvent& end, int64_t promptTokens, int64_t completionTokens) {
  return {{"prompt_tokens", promptTokens},
          {"completion_tokens", completionTokens},
          {"total_tokens", promptTokens + completionTokens},
          {"prompt_tokens_details", {{"cached_tokens", end.cachedPromptTokens}}}};
}

}  // namespace

std::string Completion::finalBody(const EngineEvent& end) {
  json choice = {{"index", 0}};
  if (params_.chat)
    choice["message"] = {{"role", "assistant"}, {"content", text_}};
  else
    choice["text"] = text_;
  choice["logprobs"] = logprobsJson();
  choice["finish_reason"] = finishReason_;
  if (params_.returnTokenIds) {
    json ids = json::array();
    for (const TokenRecord& t : tokens_) ids.push_back(t.id);
    choice["token_ids"] = ids;
    choice["prompt_token_ids"] = promptIds_;
  }
  json body = {{"id", id_},
               {"object", params_.chat ? "chat.completion" : "text_completion"},
               {"created", created_},
               {"model", server_.modelName},
               {"choices", {choice}},
               {"usage", usageOf(end, static_cast<int64_t>(promptIds_.size()), completionTokens_)}};
  return body.dump();
}

void Completion::onEnd(const EngineEvent& event) {
  done_ = true;
  --server_.open;
  server_.live.erase(this);
  if (!sawFirst_) --server_.waiting;
  server_.metrics.queueTime.observe(event.queueMs / 1000.0);
  server_.metrics.endToEndLatency.observe(secondsBetween(submittedAt_, Clock::now()));
  if (clientGone_) {
    ++server_.metrics.finished["abort"];
    return;
  }
  if (event.kind == EngineEvent::Kind::Failed) {
    ++server_.metrics.finished["error"];
    ApiError e;
    e.status = 500;
    e.type = "internal_server_error";
    e.message = "the engine failed: " + event.error;
    if (params_.stream) {
      output_.event(errorBody(e));
      output_.end();
    } else {
      output_.respond(500, errorBody(e));
    }
    return;
  }
  if (!stoppedByString_) {
    finishReason_ = event.finishReason == "cancelled" ? "abort" : event.finishReason;
    if (decoder_) {
      Expected<std::string> rest = decoder_->finish();
      std::string text = stops_.push(rest ? *rest : std::string());
      if (stops_.stopped()) finishReason_ = "stop";
      text += stops_.finish();
      sendPiece(text, false);
    }
  }
  ++server_.metrics.finished[finishReason_];
  if (!params_.stream) return output_.respond(200, finalBody(event));
  output_.event(chunk("", finishReason_.c_str()));
  if (params_.includeUsage) {
    json c = {
        {"id", id_},
        {"object", params_.chat ? "chat.completion.chunk" : "text_completion"},
        {"created", created_},
        {"model", server_.modelName},
        {"choices", json::array()},
        {"usage", usageOf(event, static_cast<int64_t>(promptIds_.size()), completionTokens_)}};
    output_.event(c.dump());
  }
  output_.event("[DONE]");
  output_.end();
}

void Completion::clientGone() {
  if (done_ || clientGone_) return;
  clientGone_ = true;
  server_.engine.cancel(engineId_);
}

}  // namespace tpc::http
