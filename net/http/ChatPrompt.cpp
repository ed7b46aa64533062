#include "net/http/ChatPrompt.h"

#include <nlohmann/json.hpp>

namespace tpc::http {

Expected<std::vector<int32_t>> renderChatPrompt(Tokenizer& tokenizer,
                                                const std::vector<ChatMessage>& messages) {
  Expected<std::string> text = std::string();
  if (!tokenizer.settings().chatTemplate.empty()) {
    // The model's own template, rendered as transformers would (frontends/jinja).
    nlohmann::ordered_json conversation = nlohmann::ordered_json::array();
    for (const ChatMessage& m : messages)
      conversation.push_back({{"role", m.role}, {"content", m.content}});
    text = renderConversation(tokenizer.settings(), conversation, nullptr,
                              /*addGenerationPrompt=*/true);
  } else {
    // No template: the built-in format the tokenizer's added tokens name.
    Expected<ChatFormat> format = detectChatFormat(tokenizer);
    if (!format) return format.takeError();
    text = renderChat(*format, messages, tokenizer.settings());
  }
  if (!text) return text.takeError();
  // The rendered text carries its special tokens (BOS included) as text.
  return tokenizer.encode(*text, false);
}

}  // namespace tpc::http
