#include "frontends/ChatTemplate.h"

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

#include "frontends/jinja/Template.h"
#include "frontends/tokenizer/TokenizerText.h"

namespace tpc {

namespace {

// Parsed templates by source text: a server renders the same template for every request, and
// parsing costs more than rendering. Templates are immutable once parsed, so renderings share
// them across threads.
Expected<std::shared_ptr<const jinja::Template>> parsedTemplate(const std::string& source) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const jinja::Template>> cache;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.find(source);
    if (it != cache.end()) return it->second;
  }
  Expected<jinja::Template> parsed = jinja::Template::parse(source);
  if (!parsed) return parsed.takeError();
  auto shared = std::make_shared<const jinja::Template>(std::move(*parsed));
  std::lock_guard<std::mutex> lock(mutex);
  if (cache.size() >= 16) cache.clear();  // a handful of models per process at most
  cache.emplace(source, shared);
  return shared;
}

}  // namespace

Expected<std::string> renderConversation(const TokenizerSettings& settings,
                                         const nlohmann::ordered_json& messages,
                                         const nlohmann::ordered_json& tools,
                                         bool addGenerationPrompt) {
  if (settings.chatTemplate.empty()) return makeError("the tokenizer has no chat_template");
  if (!messages.is_array()) return makeError("messages must be a JSON array");
  if (!tools.is_null() && !tools.is_array()) return makeError("tools must be a JSON array");
  Expected<std::shared_ptr<const jinja::Template>> tmpl = parsedTemplate(settings.chatTemplate);
  if (!tmpl) return std::move(tmpl.takeError()).withContext("chat template ");
  nlohmann::ordered_json variables = {{"messages", messages},
                                      {"add_generation_prompt", addGenerationPrompt},
                                      {"tools", tools},
                                      {"documents", nullptr}};
  for (const auto& [name, text] : settings.templateTokens) variables[name] = text;
  Expected<std::string> text = (*tmpl)->render(variables);
  if (!text) return std::move(text.takeError()).withContext("chat template ");
  return text;
}

const char* chatFormatName(ChatFormat format) {
  switch (format) {
    case ChatFormat::Llama3:
      return "Llama-3";
    case ChatFormat::ChatML:
      return "ChatML";
    case ChatFormat::Mistral:
      return "Mistral [INST]";
  }
  return "?";
}

Expected<ChatFormat> detectChatFormat(const Tokenizer& tokenizer) {
  const std::string& tmpl = tokenizer.settings().chatTemplate;
  if (tmpl.empty()) {
    if (tokenizer.tokenId("<|start_header_id|>")) return ChatFormat::Llama3;
    if (tokenizer.tokenId("<|im_start|>")) return ChatFormat::ChatML;
    return makeError(tokenizer.name(),
                     ": no chat_template in tokenizer_config.json (use --raw to send the prompt "
                     "as it is)");
  }
  if (tmpl.find("<|start_header_id|>") != std::string::npos) return ChatFormat::Llama3;
  if (tmpl.find("<|im_start|>") != std::string::npos) return ChatFormat::ChatML;
  if (tmpl.find("[INST]") != std::string::npos) return ChatFormat::Mistral;
  return makeError(tokenizer.name(),
                   ": unknown chat template (known: Llama-3 headers, ChatML, Mistral [INST]); use "
                   "--raw to send the prompt as it is");
}

Expected<std::string> renderChat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                 const TokenizerSettings& settings) {
  if (messages.empty()) return makeError("a chat needs at least one message");
  for (const ChatMessage& m : messages)
    if (m.role != "system" && m.role != "user" && m.role != "assistant")
      return makeError("chat role '", m.role, "' is not system, user or assistant");
  std::string out;
  switch (format) {
    case ChatFormat::Llama3:
      // Meta's template trims each message (Jinja's trim) and starts with the BOS token.
      out = settings.bosToken;
      for (const ChatMessage& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" +
               tok::trimJsWhitespace(m.content, true, true) + "<|eot_id|>";
      out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    case ChatFormat::ChatML:
      for (const ChatMessage& m : messages)
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      out += "<|im_start|>assistant\n";
      return out;
    case ChatFormat::Mistral:
      // Mistral's template has no system role and insists on user/assistant turns.
      out = settings.bosToken;
      for (size_t i = 0; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if ((m.role == "user") != (i % 2 == 0))
          return makeError(
              "the Mistral [INST] template needs user and assistant turns in "
              "alternation, starting with user (message ",
              i, " is ", m.role, ")");
        out +=
            m.role == "user" ? "[INST] " + m.content + " [/INST]" : m.content + settings.eosToken;
      }
      return out;
  }
  return makeError("unknown chat format");
}

}  // namespace tpc
