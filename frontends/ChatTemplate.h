// Chat prompts. A tokenizer's own Jinja chat_template (tokenizer_config.json or
// chat_template.jinja) is rendered by frontends/jinja, as transformers would render it; the
// three formats written out here serve only tokenizers that carry no template.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "frontends/Tokenizer.h"
#include "ir/Error.h"

namespace tpc {

enum class ChatFormat {
  Llama3,   // <|start_header_id|>role<|end_header_id|>\n\n ... <|eot_id|>
  ChatML,   // <|im_start|>role\n ... <|im_end|>\n  (Qwen)
  Mistral,  // <s>[INST] ... [/INST]answer</s>
};

struct ChatMessage {
  std::string role;  // system, user or assistant
  std::string content;
};

const char* chatFormatName(ChatFormat format);

// The prompt for a conversation through the tokenizer's chat_template, with the variables
// transformers passes: `messages` (a JSON array of OpenAI-style messages), `tools` (an array,
// or null for none), `add_generation_prompt`, `documents` (null) and the special tokens. The
// one entry point for --chat and the HTTP server. Fails when there is no template, when it is
// malformed, or when it raises: one line naming the template line.
Expected<std::string> renderConversation(const TokenizerSettings& settings,
                                         const nlohmann::ordered_json& messages,
                                         const nlohmann::ordered_json& tools,
                                         bool addGenerationPrompt);

// The built-in format for a tokenizer: with a template, the one its markers name; without
// one, the one its added tokens name. An error that suggests --raw when neither tells.
Expected<ChatFormat> detectChatFormat(const Tokenizer& tokenizer);

// The prompt text for `messages`, ending where the assistant's answer begins. Special tokens
// appear as text; encode it without adding special tokens.
Expected<std::string> renderChat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                 const TokenizerSettings& settings);

}  // namespace tpc
