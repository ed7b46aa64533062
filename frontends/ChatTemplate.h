// Chat prompts for the supported families. tokenizer_config.json carries a Jinja template;
// rather than run Jinja, the template is recognised by its markers and the family's format is
// written out here (and checked against the Jinja rendering of transformers.js in the tests).
#pragma once

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

// The format of the tokenizer's chat_template; an error that suggests --raw when there is none
// or it is not one of the known ones.
Expected<ChatFormat> detectChatFormat(const Tokenizer& tokenizer);

// The prompt text for `messages`, ending where the assistant's answer begins. Special tokens
// appear as text; encode it without adding special tokens.
Expected<std::string> renderChat(ChatFormat format, const std::vector<ChatMessage>& messages,
                                 const TokenizerSettings& settings);

}  // namespace tpc
