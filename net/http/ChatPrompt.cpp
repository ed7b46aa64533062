#include "net/http/ChatPrompt.h"

namespace tpc::http {

Expected<std::vector<int32_t>> renderChatPrompt(Tokenizer& tokenizer,
                                                const std::vector<ChatMessage>& messages) {
  Expected<ChatFormat> format = detectChatFormat(tokenizer);
  if (!format) return format.takeError();
  Expected<std::string> text = renderChat(*format, messages, tokenizer.settings());
  if (!text) return text.takeError();
  // The rendered text carries its special tokens (BOS included) as text.
  return tokenizer.encode(*text, false);
}

}  // namespace tpc::http
