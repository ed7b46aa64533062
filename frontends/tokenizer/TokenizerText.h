// Text helpers the tokenizer needs beyond std::string: UTF-8 walking and repair, Unicode
// normalization (ICU), and regular expressions (PCRE2) that behave like the JavaScript ones the
// Hugging Face tokenizer.json patterns are checked against.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ir/Error.h"

namespace tpc::tok {

// Length in bytes of the UTF-8 sequence starting with `lead` (1 for a stray byte).
inline size_t utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// Whether `text` is well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool isValidUtf8(std::string_view text);
// Replaces every ill-formed subsequence by U+FFFD, the way a WHATWG TextDecoder does.
std::string repairUtf8(std::string_view bytes);
// Appends code point `cp` as UTF-8.
void appendUtf8(std::string& out, uint32_t cp);
// Whitespace as JavaScript's String.prototype.trim and \s see it.
bool isJsWhitespace(uint32_t cp);
// Decodes the code point at `text[i]` (valid UTF-8 assumed) and advances `i`.
uint32_t nextCodePoint(std::string_view text, size_t& i);
std::string trimJsWhitespace(std::string_view text, bool left, bool right);
// Every occurrence of `from` (not empty) replaced by `to`, left to right, without overlaps.
std::string replaceAll(std::string_view text, std::string_view from, std::string_view to);

enum class NormalForm { NFC, NFD, NFKC, NFKD };
Expected<std::string> normalizeUnicode(std::string_view text, NormalForm form);
Expected<std::string> lowercaseUnicode(std::string_view text);

// A compiled PCRE2 pattern (UTF mode, JIT when available). Patterns are written for the
// tokenizers of Python/Rust/JavaScript; `fromTokenizerPattern` rewrites the constructs whose
// meaning differs so that matches agree with JavaScript's `new RegExp(pattern, "gu")`.
class Regex {
 public:
  static Expected<Regex> compile(const std::string& pcrePattern);
  static Expected<Regex> fromTokenizerPattern(const std::string& pattern);
  static Expected<Regex> literal(std::string_view text);
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  // Every non-overlapping match of `text` as [begin, end) byte offsets, JavaScript matchAll
  // style (an empty match moves on by one code point). `text` must be valid UTF-8. Fails only
  // when PCRE2 gives up (a resource limit), never by returning part of the matches.
  Expected<std::vector<std::pair<size_t, size_t>>> findAll(std::string_view text) const;

 private:
  struct Impl;
  explicit Regex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Rewrites a tokenizer.json regex into PCRE2 syntax with JavaScript semantics; exposed for tests.
Expected<std::string> translateTokenizerPattern(const std::string& pattern);

}  // namespace tpc::tok
