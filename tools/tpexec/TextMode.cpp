#include "tools/tpexec/TextMode.h"

#include <cstdio>
#include <nlohmann/json.hpp>

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
  if (!tokenizer.settings().chatTemplate.empty()) {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!options.system.empty())
      messages.push_back({{"role", "system"}, {"content", options.system}});
    messages.push_back({{"role", "user"}, {"content", options.prompt}});
    Expected<std::string> text =
        renderConversation(tokenizer.settings(), messages, nullptr, /*addGenerationPrompt=*/true);
    if (!text) return std::move(text.takeError()).withContext("--chat: ");
    return tokenizer.encode(*text, false);
  }
  // No template: the built-in format its added tokens name.
  Expected<ChatFormat> format = detectChatFormat(tokenizer);
  if (!format) return std::move(format.takeError()).withContext("--chat: ");
  std::vector<ChatMessage> messages;
  if (!options.system.empty()) messages.push_back({"system", options.system});
  messages.push_back({"user", options.prompt});
  Expected<std::string> text = renderChat(*format, messages, tokenizer.settings());
  if (!text) return std::move(text.takeError()).withContext("--chat: ");
  return tokenizer.encode(*text, false);
}

TextStreamer::TextStreamer(const Tokenizer& tokenizer)
    : tokenizer_(tokenizer), decoder_(tokenizer, {true}) {}

std::string decodeOutput(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                         Error& error) {
  std::vector<int32_t> known;
  for (int32_t id : ids)
    if (id < tokenizer.vocabSize()) known.push_back(id);
  Expected<std::string> text = tokenizer.decode(known, {true});
  if (!text) {
    error = std::move(text.takeError()).withContext("decoding the output: ");
    return {};
  }
  return *text;
}

void TextStreamer::onToken(int32_t id) {
  // Checkpoints pad the vocab past the tokenizer (Qwen: 151936 rows, 151669 tokens); those ids
  // have no text, as in transformers, rather than ending the run.
  if (error_ || id >= tokenizer_.vocabSize()) return;
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
