#include "frontends/tokenizer/TokenizerText.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <algorithm>

namespace tpc::tok {
namespace {

// The code points JavaScript's \s matches (ECMAScript WhiteSpace and LineTerminator), as the
// inside of a PCRE2 character class. PCRE2's own \s differs (it has U+0085, lacks U+FEFF).
constexpr const char* kJsSpaceClass =
    "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}\\x{FEFF}";

// Length of the well-formed UTF-8 prefix at text[i] (0: not well-formed), and how many bytes a
// decoder consumes before giving up (the "maximal subpart" WHATWG replaces by one U+FFFD).
size_t wellFormedAt(std::string_view text, size_t i, size_t& maximalSubpart) {
  auto at = [&](size_t k) -> int {
    return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : -1;
  };
  int b = at(0);
  maximalSubpart = 1;
  if (b < 0x80) return 1;
  size_t need;
  int lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    int c = at(k);
    int l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (c < l || c > h) return 0;
    maximalSubpart = k + 1;
  }
  return need + 1;
}

Expected<std::u16string> toUtf16(std::string_view text) {
  std::u16string out(text.size() + 1, u'\0');
  int32_t length = 0;
  UErrorCode status = U_ZERO_ERROR;
  u_strFromUTF8(reinterpret_cast<UChar*>(out.data()), static_cast<int32_t>(out.size()), &length,
                text.data(), static_cast<int32_t>(text.size()), &status);
  if (U_FAILURE(status)) return makeError("text is not valid UTF-8 (", u_errorName(status), ")");
  out.resize(static_cast<size_t>(length));
  return out;
}

Expected<std::string> toUtf8(const std::u16string& text) {
  std::string out(text.size() * 3 + 1, '\0');
  int32_t length = 0;
  UErrorCode status = U_ZERO_ERROR;
  u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &length,
              reinterpret_cast<const UChar*>(text.data()), static_cast<int32_t>(text.size()),
              &status);
  if (U_FAILURE(status)) return makeError("cannot convert to UTF-8 (", u_errorName(status), ")");
  out.resize(static_cast<size_t>(length));
  return out;
}

bool isAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

}  // namespace

bool isValidUtf8(std::string_view text) {
  size_t subpart = 0;
  for (size_t i = 0; i < text.size();) {
    size_t n = wellFormedAt(text, i, subpart);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string repairUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t subpart = 0;
  for (size_t i = 0; i < bytes.size();) {
    size_t n = wellFormedAt(bytes, i, subpart);
    if (n) {
      out.append(bytes.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += subpart;
    }
  }
  return out;
}

void appendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

uint32_t nextCodePoint(std::string_view text, size_t& i) {
  auto b = static_cast<unsigned char>(text[i]);
  size_t n = std::min(utf8Length(b), text.size() - i);
  uint32_t cp = n == 1 ? b : (b & (0x7F >> n));
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
  i += n;
  return cp;
}

bool isJsWhitespace(uint32_t cp) {
  if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return true;
  if (cp < 0xA0) return false;
  return cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

std::string replaceAll(std::string_view text, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(text);
  std::string out;
  size_t at = 0;
  for (size_t hit = text.find(from); hit != std::string_view::npos; hit = text.find(from, at)) {
    out.append(text.substr(at, hit - at));
    out.append(to);
    at = hit + from.size();
  }
  out.append(text.substr(at));
  return out;
}

std::string trimJsWhitespace(std::string_view text, bool left, bool right) {
  size_t begin = 0, end = text.size();
  if (left) {
    while (begin < end) {
      size_t next = begin;
      if (!isJsWhitespace(nextCodePoint(text, next))) break;
      begin = next;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
      size_t probe = start;
      if (!isJsWhitespace(nextCodePoint(text, probe))) break;
      end = start;
    }
  }
  return std::string(text.substr(begin, end - begin));
}

Expected<std::string> normalizeUnicode(std::string_view text, NormalForm form) {
  if (isAscii(text)) return std::string(text);  // ASCII is the same in every normal form
  UErrorCode status = U_ZERO_ERROR;
  const UNormalizer2* normalizer = nullptr;
  switch (form) {
    case NormalForm::NFC:
      normalizer = unorm2_getNFCInstance(&status);
      break;
    case NormalForm::NFD:
      normalizer = unorm2_getNFDInstance(&status);
      break;
    case NormalForm::NFKC:
      normalizer = unorm2_getNFKCInstance(&status);
      break;
    case NormalForm::NFKD:
      normalizer = unorm2_getNFKDInstance(&status);
      break;
  }
  if (U_FAILURE(status)) return makeError("ICU normalizer unavailable (", u_errorName(status), ")");
  Expected<std::u16string> wide = toUtf16(text);
  if (!wide) return wide.takeError();
  std::u16string out(wide->size() * 4 + 16, u'\0');
  int32_t length = unorm2_normalize(
      normalizer, reinterpret_cast<const UChar*>(wide->data()), static_cast<int32_t>(wide->size()),
      reinterpret_cast<UChar*>(out.data()), static_cast<int32_t>(out.size()), &status);
  if (U_FAILURE(status))
    return makeError("Unicode normalization failed (", u_errorName(status), ")");
  out.resize(static_cast<size_t>(length));
  return toUtf8(out);
}

Expected<std::string> lowercaseUnicode(std::string_view text) {
  if (isAscii(text)) {
    std::string out(text);
    for (char& c : out)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
  }
  Expected<std::u16string> wide = toUtf16(text);
  if (!wide) return wide.takeError();
  std::u16string out(wide->size() * 3 + 16, u'\0');
  UErrorCode status = U_ZERO_ERROR;
  int32_t length =
      u_strToLower(reinterpret_cast<UChar*>(out.data()), static_cast<int32_t>(out.size()),
                   reinterpret_cast<const UChar*>(wide->data()), static_cast<int32_t>(wide->size()),
                   "", &status);
  if (U_FAILURE(status)) return makeError("lowercasing failed (", u_errorName(status), ")");
  out.resize(static_cast<size_t>(length));
  return toUtf8(out);
}

Expected<std::string> translateTokenizerPattern(const std::string& pattern) {
  std::string p = pattern;
  // Inline case-insensitive groups are what JavaScript cannot parse; transformers.js rewrites
  // the one real tokenizers use into explicit classes, which also keeps U+017F (long s) and
  // U+212A (Kelvin) from matching as they would under Unicode case folding.
  const std::string contractions = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
  for (size_t at = p.find(contractions); at != std::string::npos; at = p.find(contractions, at))
    p.replace(at, contractions.size(), "(?:'([sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))");
  std::string out;
  bool inClass = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char d = p[++i];
      if (d == 's') {
        out += inClass ? std::string(kJsSpaceClass) : "[" + std::string(kJsSpaceClass) + "]";
      } else if (d == 'S') {
        if (inClass) return makeError("pattern '", pattern, "': \\S inside a class is unsupported");
        out += "[^" + std::string(kJsSpaceClass) + "]";
      } else if (d == '#' || d == '&' || d == '~') {
        out += d;
      } else {
        out += c;
        out += d;
      }
      continue;
    }
    if (c == '[' && !inClass) {
      inClass = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // a leading ] is literal
      continue;
    }
    if (c == ']' && inClass) inClass = false;
    out += c;
  }
  return out;
}

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() { pcre2_code_free(code); }
};

Regex::Regex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

Expected<Regex> Regex::compile(const std::string& pcrePattern) {
  int errorCode = 0;
  PCRE2_SIZE errorOffset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcrePattern.data()), pcrePattern.size(), PCRE2_UTF,
                    &errorCode, &errorOffset, nullptr);
  if (!code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(errorCode, message, sizeof(message));
    return makeError("bad regex '", pcrePattern, "' at offset ", errorOffset, ": ",
                     reinterpret_cast<const char*>(message));
  }
  auto impl = std::make_unique<Impl>();
  impl->code = code;
  impl->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return Regex(std::move(impl));
}

Expected<Regex> Regex::fromTokenizerPattern(const std::string& pattern) {
  Expected<std::string> translated = translateTokenizerPattern(pattern);
  if (!translated) return translated.takeError();
  return compile(*translated);
}

Expected<Regex> Regex::literal(std::string_view text) {
  std::string quoted = "\\Q";
  for (size_t at = 0; at < text.size(); ++at) {
    if (text.substr(at, 2) == "\\E") {
      quoted += "\\E\\\\E\\Q";
      ++at;
    } else {
      quoted += text[at];
    }
  }
  return compile(quoted + "\\E");
}

Expected<std::vector<std::pair<size_t, size_t>>> Regex::findAll(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  // Only the whole match is read, so one pair of offsets is enough for any pattern (PCRE2 then
  // returns 0 for "ovector too small" but fills the first pair); reused across calls.
  thread_local std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> holder(
      pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
  pcre2_match_data* data = holder.get();
  size_t offset = 0;
  while (offset <= text.size()) {
    auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    int rc = impl_->jit
                 ? pcre2_jit_match(impl_->code, subject, text.size(), offset, 0, data, nullptr)
                 : pcre2_match(impl_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, data,
                               nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      return makeError("regex matching failed at byte ", offset, ": ",
                       reinterpret_cast<const char*>(message));
    }
    PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    size_t begin = ovector[0], end = ovector[1];
    matches.emplace_back(begin, end);
    if (end > begin) {
      offset = end;
    } else if (end < text.size()) {
      offset = end + utf8Length(static_cast<unsigned char>(text[end]));
    } else {
      break;
    }
  }
  return matches;
}

}  // namespace tpc::tok
