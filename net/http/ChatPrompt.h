// The one place where chat messages become prompt ids, so that a different chat-template
// renderer can replace this one behind the same function.
#pragma once

#include <string>
#include <vector>

#include "frontends/ChatTemplate.h"
#include "frontends/Tokenizer.h"
#include "net/http/Schema.h"

namespace tpc::http {

// `images` are the messages' image parts. A template that handles image parts (it names
// 'image') gets each such message's content as OpenAI-style parts, {"type": "text"} and
// {"type": "image"}, and places the image token itself, as transformers' processors' templates
// do; any other template, and the built-in formats, get `imageToken` written into the text
// where the part was.
Expected<std::vector<int32_t>> renderChatPrompt(Tokenizer& tokenizer,
                                                const std::vector<ChatMessage>& messages,
                                                const std::vector<ChatImagePart>& images = {},
                                                const std::string& imageToken = "<image>");

}  // namespace tpc::http
