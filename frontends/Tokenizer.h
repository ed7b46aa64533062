// Hugging Face tokenizer.json in C++: text to token ids and back, for the BPE tokenizers of the
// supported families. Byte-level BPE (GPT-2, Llama-3, Qwen: a Split regex, then bytes mapped to
// printable characters) and the SentencePiece form (Llama-2, Mistral: metaspace and byte
// fallback) share one model; normalizers, pre-tokenizers, post-processors and decoders follow
// the JSON. Added tokens are matched in the raw text first and never split.
//
// Behaviour is pinned to transformers.js (@lenml/tokenizers), the oracle the tests compare
// against, including its JavaScript regex semantics (tokenizer/TokenizerText.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ir/Error.h"

namespace tpc {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false, rstrip = false;
};

// What tokenizer_config.json says that tokenizer.json does not.
struct TokenizerSettings {
  std::string tokenizerClass;
  std::string bosToken, eosToken;
  std::string chatTemplate;  // empty: none; chat_template.jinja beside the config wins
  // The special tokens a chat template sees (bos_token, eos_token, unk_token, pad_token), as
  // strings, only those tokenizer_config.json sets (transformers passes no null ones).
  std::vector<std::pair<std::string, std::string>> templateTokens;
  bool legacy = true;  // LlamaTokenizer's legacy flag
};

struct DecodeOptions {
  bool skipSpecialTokens = false;
};

class Tokenizer {
 public:
  // `path` is a tokenizer.json or a directory holding one; tokenizer_config.json beside it is
  // read when present.
  static Expected<std::unique_ptr<Tokenizer>> load(const std::string& path);
  // Only what a chat template needs from a folder: tokenizer_config.json (and
  // chat_template.jinja beside it); no tokenizer.json is read.
  static Expected<TokenizerSettings> loadSettings(const std::string& dir);
  // `configJson` may be empty. `name` says where the text came from, for error messages.
  static Expected<std::unique_ptr<Tokenizer>> fromJson(std::string_view tokenizerJson,
                                                       std::string_view configJson,
                                                       const std::string& name);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // `addSpecialTokens` runs the post-processor (e.g. Llama-2's leading <s>). `text` must be
  // valid UTF-8. Not thread-safe: a cache of recent words is shared by calls.
  Expected<std::vector<int32_t>> encode(std::string_view text, bool addSpecialTokens = false);
  // The text of `ids`; ill-formed byte sequences come out as U+FFFD, so the result is valid
  // UTF-8. An id outside the vocab is an error.
  Expected<std::string> decode(const std::vector<int32_t>& ids,
                               const DecodeOptions& options = {}) const;

  // One more than the largest id, added tokens included.
  int64_t vocabSize() const;
  std::optional<int32_t> tokenId(std::string_view token) const;
  bool isSpecial(int32_t id) const;
  const std::vector<AddedToken>& addedTokens() const;
  const TokenizerSettings& settings() const;
  const std::string& name() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns ids into text as they arrive, one token at a time, emitting only complete UTF-8: a
// character split over several byte tokens appears once its last byte is in, and decoders that
// look at the start of the text (Llama-2 strips one leading space) see the same start as a
// whole-sequence decode, so the pieces concatenate to decode(all ids).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options = {});
  // The text that `id` completes (often empty while a character is still partial).
  Expected<std::string> push(int32_t id);
  // Whatever is still held back (an incomplete character comes out as U+FFFD).
  Expected<std::string> finish();

 private:
  const Tokenizer& tokenizer_;
  DecodeOptions options_;
  std::vector<int32_t> ids_;
  size_t prefixOffset_ = 0, readOffset_ = 0;
};

}  // namespace tpc
