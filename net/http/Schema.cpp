#include "net/http/Schema.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace tpc::http {

using nlohmann::json;

ApiError badRequest(std::string message, std::string param) {
  ApiError e;
  e.message = std::move(message);
  e.param = std::move(param);
  return e;
}

std::string errorBody(const ApiError& error) {
  json e = {{"message", error.message},
            {"type", error.type},
            {"param", error.param.empty() ? json() : json(error.param)},
            {"code", error.code.empty() ? json(error.status) : json(error.code)}};
  // The message may quote the invalid bytes of a bad body.
  return json{{"error", e}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest names the place.
std::string parseFailure(const json::exception& e) {
  std::string what = e.what();
  size_t close = what.find("] ");
  return close == std::string::npos ? what : what.substr(close + 2);
}

std::optional<ApiError> parseObject(const std::string& body, json& out) {
  try {
    out = json::parse(body);
  } catch (const json::exception& e) {
    return badRequest("malformed JSON body: " + parseFailure(e));
  }
  if (!out.is_object()) return badRequest("the request body must be a JSON object");
  return std::nullopt;
}

// Field readers: a missing field or an explicit null leaves the default; a value of the wrong
// type or range is a 400 naming the field.
class Fields {
 public:
  explicit Fields(const json& object) : object_(object) {}
  const json* get(const char* name) const {
    auto it = object_.find(name);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  std::optional<ApiError> number(const char* name, double lo, double hi, float& out) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_number()) return badRequest(std::string("'") + name + "' must be a number", name);
    double d = v->get<double>();
    if (!(d >= lo && d <= hi))
      return badRequest(std::string("'") + name + "' must be in [" + trim(lo) + ", " + trim(hi) +
                            "], got " + trim(d),
                        name);
    out = static_cast<float>(d);
    return std::nullopt;
  }
  std::optional<ApiError> integer(const char* name, int64_t lo, int64_t hi,
                                  std::optional<int64_t>& out) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_number_integer())
      return badRequest(std::string("'") + name + "' must be an integer", name);
    int64_t i =
        v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX ? INT64_MAX : v->get<int64_t>();
    if (i < lo || i > hi)
      return badRequest(std::string("'") + name + "' must be in [" + std::to_string(lo) + ", " +
                            std::to_string(hi) + "], got " + std::to_string(i),
                        name);
    out = i;
    return std::nullopt;
  }
  std::optional<ApiError> boolean(const char* name, bool& out) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) return badRequest(std::string("'") + name + "' must be a boolean", name);
    out = v->get<bool>();
    return std::nullopt;
  }
  std::optional<ApiError> string(const char* name, std::string& out) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_string()) return badRequest(std::string("'") + name + "' must be a string", name);
    out = v->get<std::string>();
    return std::nullopt;
  }
  std::optional<ApiError> tokenIds(const char* name, int64_t vocab,
                                   std::vector<int32_t>& out) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    return readIds(*v, name, vocab, out);
  }
  static std::optional<ApiError> readIds(const json& v, const char* name, int64_t vocab,
                                         std::vector<int32_t>& out) {
    if (!v.is_array())
      return badRequest(std::string("'") + name + "' must be an array of token ids", name);
    for (const json& id : v) {
      if (!id.is_number_integer())
        return badRequest(std::string("'") + name + "' must hold integer token ids", name);
      bool inVocab = id.is_number_unsigned() ? id.get<uint64_t>() < static_cast<uint64_t>(vocab)
                                             : id.get<int64_t>() >= 0 && id.get<int64_t>() < vocab;
      if (!inVocab)
        return badRequest(std::string("'") + name + "': token id " + id.dump() +
                              " is outside the vocabulary (0.." + std::to_string(vocab - 1) + ")",
                          name);
      out.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    return std::nullopt;
  }

 private:
  static std::string trim(double d) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%g", d);
    return buffer;
  }
  const json& object_;
};

// One content part: text is appended to the message, an image part is recorded where it sits.
std::optional<ApiError> readPart(const json& part, size_t message, ChatMessage& into,
                                 std::vector<ChatImagePart>& images) {
  const std::string type = part.is_object() && part.contains("type") && part["type"].is_string()
                               ? part["type"].get<std::string>()
                               : std::string();
  if (type == "text") {
    if (!part.contains("text") || !part["text"].is_string())
      return badRequest("a text content part needs a string 'text'", "messages");
    into.content += part["text"].get<std::string>();
    return std::nullopt;
  }
  if (type == "image_url") {
    // {"url": "..."} as OpenAI sends it, or the URL alone as some clients do.
    const json* url = part.contains("image_url") ? &part["image_url"] : nullptr;
    if (url && url->is_object()) url = url->contains("url") ? &(*url)["url"] : nullptr;
    if (!url || !url->is_string())
      return badRequest("an image_url content part needs 'image_url': {\"url\": \"data:...\"}",
                        "messages");
    images.push_back({message, into.content.size(), url->get<std::string>()});
    return std::nullopt;
  }
  return badRequest(
      "content parts of type '" + type + "' are not supported (only 'text' and 'image_url')",
      "messages");
}

std::optional<ApiError> readMessages(const json* v, std::vector<ChatMessage>& out,
                                     std::vector<ChatImagePart>& images) {
  if (!v) return badRequest("'messages' is required", "messages");
  if (!v->is_array()) return badRequest("'messages' must be an array", "messages");
  if (v->empty()) return badRequest("'messages' must not be empty", "messages");
  for (const json& m : *v) {
    if (!m.is_object()) return badRequest("each message must be an object", "messages");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      return badRequest("each message needs a string 'role'", "messages");
    ChatMessage message{role->get<std::string>(), ""};
    if (message.role != "system" && message.role != "user" && message.role != "assistant" &&
        message.role != "developer")
      return badRequest(
          "message role '" + message.role + "' is not one of system, developer, user, assistant",
          "messages");
    // OpenAI's "developer" role is the newer name of "system".
    if (message.role == "developer") message.role = "system";
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      // An assistant turn may carry no content.
    } else if (content->is_string()) {
      message.content = content->get<std::string>();
    } else if (content->is_array()) {
      // Content parts: text, and images for vision models (Routes refuses them otherwise).
      for (const json& part : *content)
        if (auto e = readPart(part, out.size(), message, images)) return e;
    } else {
      return badRequest("a message's 'content' must be a string or an array of parts", "messages");
    }
    out.push_back(std::move(message));
  }
  return std::nullopt;
}

std::optional<ApiError> readPrompt(const json* v, int64_t vocab, CompletionParams& out) {
  if (!v) return badRequest("'prompt' is required", "prompt");
  // One prompt only (n = 1): a string, an array of ids, or an array holding one of those.
  const json* p = v;
  if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
  if (p->is_string()) {
    out.promptIsText = true;
    out.promptText = p->get<std::string>();
    if (out.promptText.empty()) return badRequest("'prompt' must not be empty", "prompt");
    return std::nullopt;
  }
  if (p->is_array() && !p->empty() && ((*p)[0].is_string() || (*p)[0].is_array()))
    return badRequest("'prompt' holds several prompts; send one per request", "prompt");
  if (!p->is_array())
    return badRequest("'prompt' must be a string or an array of token ids", "prompt");
  if (p->empty()) return badRequest("'prompt' must not be empty", "prompt");
  return Fields::readIds(*p, "prompt", vocab, out.promptIds);
}

}  // namespace

std::optional<ApiError> parseCompletion(const std::string& body, bool chat, int64_t vocabSize,
                                        CompletionParams& out) {
  json j;
  if (auto e = parseObject(body, j)) return e;
  Fields f(j);
  out.chat = chat;
  if (auto e = f.string("model", out.model)) return e;
  if (chat) {
    if (auto e = readMessages(f.get("messages"), out.messages, out.images)) return e;
  } else if (auto e = readPrompt(f.get("prompt"), vocabSize, out)) {
    return e;
  }
  std::optional<int64_t> maxTokens, completionTokens, n, topK, seed, logprobs, topLogprobs;
  if (auto e = f.integer("max_tokens", 1, INT32_MAX, maxTokens)) return e;
  if (auto e = f.integer("max_completion_tokens", 1, INT32_MAX, completionTokens)) return e;
  out.maxTokens = completionTokens ? completionTokens : maxTokens;
  if (auto e = f.integer("n", 1, INT32_MAX, n)) return e;
  if (n && *n != 1) return badRequest("only n = 1 is supported", "n");
  EngineRequest& s = out.sampling;
  if (auto e = f.number("temperature", 0, 2, s.temperature)) return e;
  if (auto e = f.number("top_p", 1e-9, 1, s.topP)) return e;
  if (auto e = f.integer("top_k", -1, INT32_MAX, topK)) return e;
  s.topK = topK && *topK > 0 ? *topK : 0;  // -1 and 0 both mean "off", as in vLLM
  if (auto e = f.number("min_p", 0, 1, s.minP)) return e;
  if (auto e = f.integer("seed", INT64_MIN, INT64_MAX, seed)) return e;
  if (seed) s.seed = static_cast<uint64_t>(*seed);
  if (auto e = f.number("presence_penalty", -2, 2, s.presencePenalty)) return e;
  if (auto e = f.number("frequency_penalty", -2, 2, s.frequencyPenalty)) return e;
  if (auto e = f.number("repetition_penalty", 1e-9, 2, s.repetitionPenalty)) return e;
  if (auto e = f.tokenIds("stop_token_ids", vocabSize, s.stopTokenIds)) return e;
  if (auto e = f.boolean("ignore_eos", s.ignoreEos)) return e;
  if (auto e = f.boolean("return_token_ids", out.returnTokenIds)) return e;
  if (auto e = f.boolean("stream", out.stream)) return e;
  std::string user;
  if (auto e = f.string("user", user)) return e;
  if (const json* stop = f.get("stop")) {
    if (stop->is_string()) {
      out.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& s : *stop) {
        if (!s.is_string()) return badRequest("'stop' must hold strings", "stop");
        out.stop.push_back(s.get<std::string>());
      }
    } else {
      return badRequest("'stop' must be a string or an array of strings", "stop");
    }
    if (out.stop.size() > 4)
      return badRequest(
          "'stop' holds " + std::to_string(out.stop.size()) + " strings; at most 4 are allowed",
          "stop");
    for (const std::string& s : out.stop)
      if (s.empty()) return badRequest("'stop' strings must not be empty", "stop");
  }
  if (const json* options = f.get("stream_options")) {
    if (!options->is_object())
      return badRequest("'stream_options' must be an object", "stream_options");
    if (!out.stream)
      return badRequest("'stream_options' is only allowed with \"stream\": true", "stream_options");
    Fields o(*options);
    if (auto e = o.boolean("include_usage", out.includeUsage)) return e;
  }
  // Completions: logprobs is how many alternatives (0..20). Chat: logprobs is a boolean and
  // top_logprobs the count.
  if (chat) {
    bool wanted = false;
    if (auto e = f.boolean("logprobs", wanted)) return e;
    if (auto e = f.integer("top_logprobs", 0, 20, topLogprobs)) return e;
    if (topLogprobs && !wanted)
      return badRequest("'top_logprobs' needs \"logprobs\": true", "top_logprobs");
    if (wanted) s.topLogprobs = static_cast<int>(topLogprobs.value_or(0));
  } else {
    if (const json* lp = f.get("logprobs"); lp && lp->is_boolean()) {
      if (lp->get<bool>()) s.topLogprobs = 0;
    } else {
      if (auto e = f.integer("logprobs", 0, 20, logprobs)) return e;
      if (logprobs) s.topLogprobs = static_cast<int>(*logprobs);
    }
  }
  return std::nullopt;
}

std::optional<ApiError> parseTokenize(const std::string& body, TokenizeParams& out) {
  json j;
  if (auto e = parseObject(body, j)) return e;
  Fields f(j);
  if (auto e = f.boolean("add_special_tokens", out.addSpecialTokens)) return e;
  if (f.get("messages")) {
    out.chat = true;
    return readMessages(f.get("messages"), out.messages, out.images);
  }
  if (!f.get("prompt")) return badRequest("'prompt' or 'messages' is required", "prompt");
  if (auto e = f.string("prompt", out.prompt)) return e;
  return std::nullopt;
}

std::optional<ApiError> parseDetokenize(const std::string& body, int64_t vocabSize,
                                        std::vector<int32_t>& out) {
  json j;
  if (auto e = parseObject(body, j)) return e;
  Fields f(j);
  if (!f.get("tokens")) return badRequest("'tokens' is required", "tokens");
  return f.tokenIds("tokens", vocabSize, out);
}

}  // namespace tpc::http
