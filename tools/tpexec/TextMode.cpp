#include "tools/tpexec/TextMode.h"

#include <cstdio>

#include "frontends/ChatTemplate.h"

namespace tpc::cli {

Error checkTextFlags(const ArgParser& args, bool noPromptIds, const TextOptions& options) {
  bool prompt = args.seen("--prompt");
  if (prompt && !noPromptIds) return makeError("give either --prompt or --prompt-ids, not both");
  if (!prompt && (options.chat || options.raw || args.seen("--system")))
    return makeError("--chat, --raw and --system go with --prompt TEXT");
  if (!prompt && noPromptIds)
    return makeError("--prompt-ids is required (token ids, e.g. 1,2,3), or --prompt TEXT");
  if (options.chat && options.raw) return makeError("give either --chat or --raw, not both");
  if (args.seen("--system") && !options.chat) return makeError("--system needs --chat");
  return Error::success();
}

Expected<std::unique_ptr<Tokenizer>> loadRunTokenizer(const std::string& tokenizerPath,
                                                      const std::string& modelDir,
                                                      const LoadedPlan& plan) {
  std::string path = tokenizerPath;
  if (path.empty()) path = modelDir;
  if (path.empty() && plan.plan().model_dir()) path = plan.plan().model_dir()->str();
  if (path.empty()) return makeError("the plan names no model folder; pass --tokenizer PATH");
  Expected<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::load(path);
  if (!tokenizer)
    return std::move(tokenizer.takeError())
        .withContext(tokenizerPath.empty() ? "no tokenizer for --prompt (use --tokenizer PATH): "
                                           : "--tokenizer: ");
  return tokenizer;
}

Expected<std::vector<int32_t>> encodePrompt(Tokenizer& tokenizer, const TextOptions& options) {
  if (!options.chat) return tokenizer.encode(options.prompt, !options.raw);
  Expected<ChatFormat> format = detectChatFormat(tokenizer);
  if (!format) return std::move(format.takeError()).withContext("--chat: ");
  std::vector<ChatMessage> messages;
  if (!options.system.empty()) messages.push_back({"system", options.system});
  messages.push_back({"user", options.prompt});
  Expected<std::string> text = renderChat(*format, messages, tokenizer.settings());
  if (!text) return std::move(text.takeError()).withContext("--chat: ");
  return tokenizer.encode(*text, false);
}

TextStreamer::TextStreamer(const Tokenizer& tokenizer) : decoder_(tokenizer, {true}) {}

void TextStreamer::onToken(int32_t id) {
  if (error_) return;
  Expected<std::string> piece = decoder_.push(id);
  if (!piece) {
    error_ = std::move(piece.takeError()).withContext("decoding the output: ");
    return;
  }
  std::fwrite(piece->data(), 1, piece->size(), stdout);
  std::fflush(stdout);
}

void TextStreamer::finish() {
  if (error_) return;
  Expected<std::string> rest = decoder_.finish();
  if (!rest) {
    error_ = std::move(rest.takeError()).withContext("decoding the output: ");
    return;
  }
  std::fwrite(rest->data(), 1, rest->size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace tpc::cli
