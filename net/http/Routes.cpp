#include "net/http/Routes.h"

#include <ctime>
#include <nlohmann/json.hpp>

#include "net/http/ChatPrompt.h"

namespace tpc::http {

using nlohmann::json;

Reply errorReply(const ApiError& error) {
  Reply r;
  r.status = error.status;
  r.body = errorBody(error);
  return r;
}

namespace {

ApiError withStatus(int status, std::string type, std::string message, std::string param = {}) {
  ApiError e;
  e.status = status;
  e.type = std::move(type);
  e.message = std::move(message);
  e.param = std::move(param);
  return e;
}

Reply jsonReply(const json& body) {
  Reply r;
  r.body = body.dump();
  return r;
}

std::optional<ApiError> checkModel(const ServerState& server, const std::string& model) {
  if (model.empty() || model == server.modelName) return std::nullopt;
  ApiError e = withStatus(
      404, "NotFoundError",
      "the model '" + model + "' does not exist (this server has '" + server.modelName + "')",
      "model");
  e.code = "model_not_found";
  return e;
}

// The text of the image token, as the tokenizer spells it ("<image>" in llava's).
std::string imageTokenText(const Tokenizer& tokenizer, int32_t id) {
  for (const AddedToken& a : tokenizer.addedTokens())
    if (a.id == id) return a.content;
  return "<image>";
}

// The request's image (chatIds has checked the parts: one at most, a vision model), decoded.
std::optional<ApiError> chatImageOf(const ServerOptions& options,
                                    const std::vector<ChatImagePart>& parts,
                                    std::shared_ptr<const EngineImage>& image) {
  if (parts.empty() || !options.images) return std::nullopt;
  return loadChatImage(*options.images, parts[0], image);
}

// Chat messages through the chat template, the image token placed and expanded.
std::optional<ApiError> chatIds(ServerState& server, const ServerOptions& options,
                                const std::vector<ChatMessage>& messages,
                                const std::vector<ChatImagePart>& images,
                                std::vector<int32_t>& ids) {
  if (!images.empty() && !options.images)
    return badRequest("the model '" + server.modelName +
                          "' takes no images (it is a text model): send text content parts only",
                      "messages");
  if (images.size() > 1)
    return badRequest("a request carries one image at most, not " + std::to_string(images.size()),
                      "messages");
  const std::string token =
      options.images ? imageTokenText(*server.tokenizer, options.images->tokenIndex) : "";
  Expected<std::vector<int32_t>> chat =
      renderChatPrompt(*server.tokenizer, messages, images, token);
  if (!chat) return badRequest(chat.errorMessage(), "messages");
  ids = std::move(*chat);
  if (!images.empty()) return expandImageTokens(*options.images, ids);
  return std::nullopt;
}

// The prompt's ids: token ids as given, text through the tokenizer, messages through the chat
// template. The length check names both numbers.
std::optional<ApiError> promptIdsOf(ServerState& server, const ServerOptions& options,
                                    const CompletionParams& p, std::vector<int32_t>& ids) {
  if (!server.tokenizer && (p.chat || p.promptIsText))
    return badRequest(
        "this model has no tokenizer: only /v1/completions with a prompt of token ids is served",
        p.chat ? "messages" : "prompt");
  if (!server.tokenizer && !p.stop.empty())
    return badRequest("this model has no tokenizer: 'stop' strings cannot be matched", "stop");
  if (p.chat) {
    if (auto e = chatIds(server, options, p.messages, p.images, ids)) return e;
  } else if (p.promptIsText) {
    Expected<std::vector<int32_t>> text = server.tokenizer->encode(p.promptText, true);
    if (!text) return badRequest(text.errorMessage(), "prompt");
    ids = std::move(*text);
  } else {
    ids = p.promptIds;
  }
  if (ids.empty()) return badRequest("the prompt is empty after tokenization", "prompt");
  const int64_t context = server.engine.maxContext(), n = static_cast<int64_t>(ids.size());
  if (n >= context)
    return badRequest("the prompt has " + std::to_string(n) +
                          " tokens, but the model's context is " + std::to_string(context) +
                          " tokens (and at least one must be left to generate)",
                      p.chat ? "messages" : "prompt");
  if (p.maxTokens && n + *p.maxTokens > context)
    return badRequest("the prompt has " + std::to_string(n) + " tokens and max_tokens is " +
                          std::to_string(*p.maxTokens) + ", more than the model's context of " +
                          std::to_string(context) + " tokens",
                      "max_tokens");
  return std::nullopt;
}

Routed completion(ServerState& server, const ServerOptions& options, const RouteRequest& request,
                  bool chat, CompletionOutput output,
                  const std::function<void(std::function<void()>)>& post) {
  CompletionParams params;
  if (auto e = parseCompletion(request.body, chat, server.engine.vocabSize(), params))
    return {errorReply(*e)};
  if (auto e = checkModel(server, params.model)) return {errorReply(*e)};
  std::vector<int32_t> ids;
  if (auto e = promptIdsOf(server, options, params, ids)) return {errorReply(*e)};
  if (auto e = chatImageOf(options, params.images, params.sampling.image)) return {errorReply(*e)};
  if (server.waiting >= options.maxQueued) {
    ++server.metrics.rejectedQueueFull;
    Reply r = errorReply(withStatus(429, "rate_limit_exceeded",
                                    "the server is busy: " + std::to_string(server.waiting) +
                                        " requests are waiting (--max-queued " +
                                        std::to_string(options.maxQueued) + "); retry later"));
    r.headers.emplace_back("Retry-After", "1");
    return {r};
  }
  if (server.engine.state() == EngineState::Failed || server.engine.state() == EngineState::Stopped)
    return {errorReply(withStatus(503, "service_unavailable",
                                  "the engine is not running: " + server.engine.failure()))};
  bool stream = params.stream;
  auto c =
      std::make_shared<Completion>(server, std::move(params), std::move(ids), std::move(output));
  if (auto e = c->start(post, c)) return {errorReply(*e)};
  return {c, stream};
}

// Image parts are placed and expanded as a completion would, without decoding the images.
Reply tokenize(ServerState& server, const ServerOptions& options, const RouteRequest& request) {
  if (!server.tokenizer) return errorReply(badRequest("this model has no tokenizer"));
  TokenizeParams p;
  if (auto e = parseTokenize(request.body, p)) return errorReply(*e);
  std::vector<int32_t> ids;
  if (p.chat) {
    if (auto e = chatIds(server, options, p.messages, p.images, ids)) return errorReply(*e);
  } else {
    Expected<std::vector<int32_t>> text = server.tokenizer->encode(p.prompt, p.addSpecialTokens);
    if (!text) return errorReply(badRequest(text.errorMessage(), "prompt"));
    ids = std::move(*text);
  }
  return jsonReply(
      {{"tokens", ids}, {"count", ids.size()}, {"max_model_len", server.engine.maxContext()}});
}

Reply detokenize(ServerState& server, const RouteRequest& request) {
  if (!server.tokenizer) return errorReply(badRequest("this model has no tokenizer"));
  std::vector<int32_t> ids;
  if (auto e = parseDetokenize(request.body, server.tokenizer->vocabSize(), ids))
    return errorReply(*e);
  Expected<std::string> text = server.tokenizer->decode(ids);
  if (!text) return errorReply(badRequest(text.errorMessage(), "tokens"));
  return jsonReply({{"prompt", *text}});
}

}  // namespace

Routed route(ServerState& server, const ServerOptions& options, const RouteRequest& request,
             CompletionOutput output, const std::function<void(std::function<void()>)>& post) {
  ++server.metrics.httpRequests;
  std::string path = request.target.substr(0, request.target.find('?'));
  const bool get = request.method == "GET", postMethod = request.method == "POST";
  if (path == "/health") {
    if (!get) return {errorReply(withStatus(405, "invalid_request_error", "use GET /health"))};
    EngineState s = server.engine.state();
    if (s == EngineState::Ready) return Reply{200, "", "text/plain", {}};
    std::string why = s == EngineState::Loading  ? "loading weights"
                      : s == EngineState::Failed ? "the engine failed: " + server.engine.failure()
                                                 : "stopped";
    return {errorReply(withStatus(503, "service_unavailable", why))};
  }
  if (path == "/metrics") {
    if (!get) return {errorReply(withStatus(405, "invalid_request_error", "use GET /metrics"))};
    return {Reply{200,
                  server.metrics.render(server.engine.counters(), server.modelName),
                  "text/plain; version=0.0.4",
                  {}}};
  }
  struct Known {
    const char* path;
    bool post;
  };
  static const Known known[] = {{"/v1/completions", true},
                                {"/v1/chat/completions", true},
                                {"/v1/models", false},
                                {"/tokenize", true},
                                {"/detokenize", true}};
  const Known* match = nullptr;
  for (const Known& k : known)
    if (path == k.path) match = &k;
  if (!match)
    return {
        errorReply(withStatus(404, "NotFoundError", "no route " + request.method + " " + path))};
  if (match->post ? !postMethod : !get)
    return {errorReply(withStatus(405, "invalid_request_error",
                                  std::string("use ") + (match->post ? "POST " : "GET ") + path))};
  if (!options.apiKey.empty() && request.authorization != "Bearer " + options.apiKey)
    return {errorReply(withStatus(401, "AuthenticationError",
                                  request.authorization.empty()
                                      ? "missing API key (send Authorization: Bearer KEY)"
                                      : "wrong API key"))};
  if (path == "/v1/models")
    return {jsonReply({{"object", "list"},
                       {"data",
                        {{{"id", server.modelName},
                          {"object", "model"},
                          {"created", static_cast<int64_t>(std::time(nullptr))},
                          {"owned_by", "tpc"},
                          {"max_model_len", server.engine.maxContext()}}}}})};
  if (path == "/tokenize") return {tokenize(server, options, request)};
  if (path == "/detokenize") return {detokenize(server, request)};
  return completion(server, options, request, path == "/v1/chat/completions", std::move(output),
                    post);
}

}  // namespace tpc::http
