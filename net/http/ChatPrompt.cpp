#include "net/http/ChatPrompt.h"

#include <nlohmann/json.hpp>

namespace tpc::http {
namespace {

// The message's content as text and image parts, split where its images sat.
nlohmann::ordered_json contentParts(const ChatMessage& m, size_t index,
                                    const std::vector<ChatImagePart>& images) {
  nlohmann::ordered_json parts = nlohmann::ordered_json::array();
  size_t from = 0;
  auto text = [&](size_t to) {
    if (to > from) parts.push_back({{"type", "text"}, {"text", m.content.substr(from, to - from)}});
    from = to;
  };
  for (const ChatImagePart& image : images) {
    if (image.message != index) continue;
    text(image.at);
    parts.push_back({{"type", "image"}});
  }
  text(m.content.size());
  return parts;
}

// The message's content with the image token written where each image sat.
std::string contentWithTokens(const ChatMessage& m, size_t index,
                              const std::vector<ChatImagePart>& images,
                              const std::string& imageToken) {
  std::string out;
  size_t from = 0;
  for (const ChatImagePart& image : images) {
    if (image.message != index) continue;
    out += m.content.substr(from, image.at - from) + imageToken;
    from = image.at;
  }
  return out + m.content.substr(from);
}

bool hasImage(size_t index, const std::vector<ChatImagePart>& images) {
  for (const ChatImagePart& image : images)
    if (image.message == index) return true;
  return false;
}

}  // namespace

Expected<std::vector<int32_t>> renderChatPrompt(Tokenizer& tokenizer,
                                                const std::vector<ChatMessage>& messages,
                                                const std::vector<ChatImagePart>& images,
                                                const std::string& imageToken) {
  Expected<std::string> text = std::string();
  const std::string& chatTemplate = tokenizer.settings().chatTemplate;
  if (!chatTemplate.empty()) {
    // The model's own template, rendered as transformers would (frontends/jinja).
    const bool templatePlacesImages = chatTemplate.find("image") != std::string::npos;
    nlohmann::ordered_json conversation = nlohmann::ordered_json::array();
    for (size_t i = 0; i < messages.size(); ++i) {
      const ChatMessage& m = messages[i];
      if (!hasImage(i, images))
        conversation.push_back({{"role", m.role}, {"content", m.content}});
      else if (templatePlacesImages)
        conversation.push_back({{"role", m.role}, {"content", contentParts(m, i, images)}});
      else
        conversation.push_back(
            {{"role", m.role}, {"content", contentWithTokens(m, i, images, imageToken)}});
    }
    text = renderConversation(tokenizer.settings(), conversation, nullptr,
                              /*addGenerationPrompt=*/true);
  } else {
    // No template: the built-in format the tokenizer's added tokens name.
    Expected<ChatFormat> format = detectChatFormat(tokenizer);
    if (!format) return format.takeError();
    std::vector<ChatMessage> withTokens = messages;
    for (size_t i = 0; i < withTokens.size(); ++i)
      withTokens[i].content = contentWithTokens(messages[i], i, images, imageToken);
    text = renderChat(*format, withTokens, tokenizer.settings());
  }
  if (!text) return text.takeError();
  // The rendered text carries its special tokens (BOS included) as text.
  return tokenizer.encode(*text, false);
}

}  // namespace tpc::http
