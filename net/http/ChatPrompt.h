// The one place where chat messages become prompt ids, so that a different chat-template
// renderer can replace this one behind the same function.
#pragma once

#include <vector>

#include "frontends/ChatTemplate.h"
#include "frontends/Tokenizer.h"

namespace tpc::http {

Expected<std::vector<int32_t>> renderChatPrompt(Tokenizer& tokenizer,
                                                const std::vector<ChatMessage>& messages);

}  // namespace tpc::http
