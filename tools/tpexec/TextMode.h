// tpexec with text: the prompt through the model's tokenizer (optionally as a chat), and the
// generated tokens streamed back as text while they are produced.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "codegen/PlanReader.h"
#include "frontends/Tokenizer.h"
#include "tools/common/Args.h"

namespace tpc::cli {

struct TextOptions {
  std::string prompt;
  std::string system;     // --system: a system message for --chat
  bool chat = false;      // wrap the prompt in the tokenizer's chat template
  bool raw = false;       // the text as it is: no template, no special tokens added
  std::string tokenizer;  // --tokenizer; empty: the checkpoint folder's
};

// One of --prompt and --prompt-ids; --chat, --raw and --system go with --prompt.
Error checkTextFlags(const ArgParser& args, bool noPromptIds, const TextOptions& options);

// --tokenizer, else the checkpoint folder (--model-dir, else where the plan was compiled from).
Expected<std::unique_ptr<Tokenizer>> loadRunTokenizer(const std::string& tokenizerPath,
                                                      const std::string& modelDir,
                                                      const LoadedPlan& plan);

// The prompt's ids: plain text gets the tokenizer's special tokens (a leading <s> for Llama-2),
// --chat renders the chat template, --raw adds nothing.
Expected<std::vector<int32_t>> encodePrompt(Tokenizer& tokenizer, const TextOptions& options);

// The text of generated ids, special tokens left out (and ids past the tokenizer's vocab, which
// padded checkpoints have); a failure goes to `error`.
std::string decodeOutput(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, Error& error);

// Prints each token's text to stdout as it arrives. The first decoding failure stops the
// printing and is kept for error().
class TextStreamer {
 public:
  explicit TextStreamer(const Tokenizer& tokenizer);
  void onToken(int32_t id);
  void finish();
  const Error& error() const { return error_; }

 private:
  const Tokenizer& tokenizer_;
  StreamDecoder decoder_;
  Error error_ = Error::success();
};

}  // namespace tpc::cli
