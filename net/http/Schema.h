// The request bodies of the OpenAI endpoints, parsed and checked before anything reaches the
// engine: each problem is one ApiError in OpenAI's shape, naming the field. Unknown fields are
// ignored, as OpenAI's clients and vLLM's benchmark send some of their own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "executor/engine/Engine.h"
#include "frontends/ChatTemplate.h"

namespace tpc::http {

// OpenAI's error object: {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
};

ApiError badRequest(std::string message, std::string param = {});
std::string errorBody(const ApiError& error);

// A chat message's image part ({"type": "image_url", "image_url": {"url": ...}}): the message
// it is in, where in that message's text it sits (a byte offset into its content), and the URL
// as given (Routes checks and decodes it).
struct ChatImagePart {
  size_t message = 0;
  size_t at = 0;
  std::string url;
};

// One /v1/completions or /v1/chat/completions request, as the client wrote it. The prompt is
// still text or messages here; the tokenizer turns it into ids later (Routes).
struct CompletionParams {
  bool chat = false;
  std::string model;  // empty: not given
  bool promptIsText = false;
  std::string promptText;
  std::vector<int32_t> promptIds;
  std::vector<ChatMessage> messages;
  std::vector<ChatImagePart> images;
  std::optional<int64_t> maxTokens;  // unset: what the context leaves
  std::vector<std::string> stop;
  bool stream = false, includeUsage = false, returnTokenIds = false;
  EngineRequest sampling;  // every field but promptIds and maxTokens
};

// Parses and checks a body; `vocabSize` bounds token ids (prompt and stop_token_ids).
std::optional<ApiError> parseCompletion(const std::string& body, bool chat, int64_t vocabSize,
                                        CompletionParams& out);

// /tokenize: a prompt string or chat messages; /detokenize: token ids.
struct TokenizeParams {
  std::string prompt;
  std::vector<ChatMessage> messages;
  std::vector<ChatImagePart> images;
  bool chat = false;
  bool addSpecialTokens = true;
};
std::optional<ApiError> parseTokenize(const std::string& body, TokenizeParams& out);
std::optional<ApiError> parseDetokenize(const std::string& body, int64_t vocabSize,
                                        std::vector<int32_t>& out);

}  // namespace tpc::http
