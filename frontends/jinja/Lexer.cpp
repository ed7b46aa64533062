#include "frontends/jinja/Lexer.h"

#include <cstring>

#include "frontends/jinja/Value.h"
#include "frontends/tokenizer/TokenizerText.h"

namespace tpc::jinja {
namespace {

// The source after preprocessing, with the original line of every byte.
struct Source {
  std::string text;
  std::vector<int> lines;
  explicit Source(size_t capacity) {
    text.reserve(capacity);
    lines.reserve(capacity);
  }
  void push(char c, int line) {
    text += c;
    lines.push_back(line);
  }
};

bool isAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// A line break as a JavaScript /m regex sees one (\n, \r, U+2028, U+2029) ending at `i`.
bool lineBreakBefore(const Source& s, size_t i) {
  if (i == 0) return true;
  char c = s.text[i - 1];
  if (c == '\n' || c == '\r') return true;
  return i >= 3 && (c == '\xA8' || c == '\xA9') && s.text[i - 3] == '\xE2' &&
         s.text[i - 2] == '\x80';
}

Source preprocess(const std::string& template_) {
  Source s(template_.size());
  int line = 1;
  for (char c : template_) {
    s.push(c, line);
    if (c == '\n') ++line;
  }
  // A single trailing newline is dropped, as Jinja does by default.
  if (!s.text.empty() && s.text.back() == '\n') {
    s.text.pop_back();
    s.lines.pop_back();
  }
  // lstrip_blocks: /^[ \t]*({[#%-])/gm -> "$1"
  Source l(s.text.size());
  for (size_t i = 0; i < s.text.size();) {
    if (lineBreakBefore(s, i)) {
      size_t j = i;
      while (j < s.text.size() && (s.text[j] == ' ' || s.text[j] == '\t')) ++j;
      if (j + 1 < s.text.size() && s.text[j] == '{' && std::strchr("#%-", s.text[j + 1]) &&
          s.text[j + 1] != '\0')
        i = j;
    }
    l.push(s.text[i], s.lines[i]);
    ++i;
  }
  // trim_blocks: /([#%-]})\n/g -> "$1"
  Source t(l.text.size());
  for (size_t i = 0; i < l.text.size(); ++i) {
    t.push(l.text[i], l.lines[i]);
    if (i + 2 < l.text.size() && std::strchr("#%-", l.text[i]) && l.text[i] != '\0' &&
        l.text[i + 1] == '}' && l.text[i + 2] == '\n') {
      t.push('}', l.lines[i + 1]);
      i += 2;
    }
  }
  // /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs -> (lstrip ? "" : $1) + (rstrip ? "" : $4)
  Source g(t.text.size());
  const std::string& x = t.text;
  for (size_t i = 0; i < x.size();) {
    if (x[i] == '{' && i + 1 < x.size() && x[i + 1] == '%') {
      size_t j = i + 2;
      bool lstrip = j < x.size() && x[j] == '-';
      if (lstrip) ++j;
      while (j < x.size() && isAsciiSpace(x[j])) ++j;
      if (x.compare(j, 3, "end") == 0 && x.compare(j + 3, 10, "generation") == 0) j += 3;
      if (x.compare(j, 10, "generation") == 0) {
        j += 10;
        while (j < x.size() && isAsciiSpace(x[j])) ++j;
        bool rstrip = j < x.size() && x[j] == '-';
        if (rstrip) ++j;
        if (x.compare(j, 2, "%}") == 0) {
          j += 2;
          if (lstrip)
            while (!g.text.empty() && isAsciiSpace(g.text.back())) {
              g.text.pop_back();
              g.lines.pop_back();
            }
          size_t after = j;
          while (after < x.size() && isAsciiSpace(x[after])) ++after;
          if (!rstrip)
            for (size_t k = j; k < after; ++k) g.push(x[k], t.lines[k]);
          i = after;
          continue;
        }
      }
    }
    g.push(x[i], t.lines[i]);
    ++i;
  }
  return g;
}

class Lexer {
 public:
  explicit Lexer(Source source) : s_(std::move(source)) {}

  std::vector<Token> run();

 private:
  Source s_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;

  int lineAt(size_t i) const {
    if (s_.lines.empty()) return 1;
    return s_.lines[std::min(i, s_.lines.size() - 1)];
  }
  [[noreturn]] void error(const std::string& message) const {
    throw TemplateError{message, lineAt(pos_)};
  }
  char at(size_t i) const { return i < s_.text.size() ? s_.text[i] : '\0'; }
  // Every sequence the lexer looks for is one to three ASCII characters.
  bool startsWith(const char* seq) const {
    for (size_t k = 0; seq[k]; ++k)
      if (at(pos_ + k) != seq[k]) return false;
    return true;
  }
  // JavaScript's \s at `i`: ASCII and Unicode whitespace; returns its byte length or 0.
  size_t whitespaceAt(size_t i) const {
    if (i >= s_.text.size()) return 0;
    unsigned char c = static_cast<unsigned char>(s_.text[i]);
    if (c < 0x80) return (c == ' ' || (c >= '\t' && c <= '\r')) ? 1 : 0;
    size_t j = i;
    uint32_t cp = tok::nextCodePoint(s_.text, j);
    return tok::isJsWhitespace(cp) ? j - i : 0;
  }
  void push(Tok type, std::string value, size_t at) {
    tokens_.push_back({type, std::move(value), lineAt(at)});
  }
  void stripTrailingWhitespace() {
    if (!tokens_.empty() && tokens_.back().type == Tok::Text) {
      tokens_.back().value = tok::trimJsWhitespace(tokens_.back().value, false, true);
      if (tokens_.back().value.empty()) tokens_.pop_back();
    }
  }
  void skipLeadingWhitespace() {
    while (size_t n = whitespaceAt(pos_)) pos_ += n;
  }
  std::string consumeDigits() {
    std::string out;
    while (pos_ < s_.text.size() && isdigit(static_cast<unsigned char>(s_.text[pos_])))
      out += s_.text[pos_++];
    return out;
  }
  std::string consumeString(char quote);
  std::string consumeWord() {
    std::string out;
    while (pos_ < s_.text.size() &&
           (isalnum(static_cast<unsigned char>(s_.text[pos_])) || s_.text[pos_] == '_'))
      out += s_.text[pos_++];
    return out;
  }
};

std::string Lexer::consumeString(char quote) {
  std::string out;
  while (true) {
    if (pos_ >= s_.text.size()) error("Unexpected end of input");
    char c = s_.text[pos_];
    if (c == quote) return out;
    if (c == '\\') {
      ++pos_;
      if (pos_ >= s_.text.size()) error("Unexpected end of input");
      char e = s_.text[pos_++];
      if (e == 'x' || e == 'u') {
        size_t n = e == 'x' ? 2 : 4;
        std::string hex = s_.text.substr(pos_, n);
        if (hex.size() != n || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
          error("Invalid hexadecimal escape sequence: \\" + std::string(1, e) + hex);
        tok::appendUtf8(out, static_cast<uint32_t>(std::stoul(hex, nullptr, 16)));
        pos_ += n;
        continue;
      }
      const char* from = "ntrbfv'\"\\";
      const char* to = "\n\t\r\b\f\v'\"\\";
      const char* hit = std::strchr(from, e);
      if (!hit || e == '\0') error(std::string("Unexpected escaped character: ") + e);
      out += to[hit - from];
      continue;
    }
    out += c;
    ++pos_;
    if (pos_ >= s_.text.size()) error("Unexpected end of input");
  }
}

std::vector<Token> Lexer::run() {
  static const std::pair<const char*, Tok> table[] = {
      {"{%", Tok::OpenStatement},  {"%}", Tok::CloseStatement},
      {"{{", Tok::OpenExpression}, {"}}", Tok::CloseExpression},
      {"(", Tok::OpenParen},       {")", Tok::CloseParen},
      {"{", Tok::OpenCurly},       {"}", Tok::CloseCurly},
      {"[", Tok::OpenSquare},      {"]", Tok::CloseSquare},
      {",", Tok::Comma},           {".", Tok::Dot},
      {":", Tok::Colon},           {"|", Tok::Pipe},
      {"<=", Tok::Comparison},     {">=", Tok::Comparison},
      {"==", Tok::Comparison},     {"!=", Tok::Comparison},
      {"<", Tok::Comparison},      {">", Tok::Comparison},
      {"+", Tok::Additive},        {"-", Tok::Additive},
      {"~", Tok::Additive},        {"**", Tok::Power},
      {"*", Tok::Multiplicative},  {"//", Tok::Multiplicative},
      {"/", Tok::Multiplicative},  {"%", Tok::Multiplicative},
      {"=", Tok::Equals},
  };
  const std::string& src = s_.text;
  int curlyDepth = 0;
  while (pos_ < src.size()) {
    Tok last = tokens_.empty() ? Tok::CloseStatement : tokens_.back().type;
    if (last == Tok::CloseStatement || last == Tok::CloseExpression || last == Tok::Comment) {
      size_t start = pos_;
      while (pos_ < src.size() &&
             !(src[pos_] == '{' &&
               (at(pos_ + 1) == '%' || at(pos_ + 1) == '{' || at(pos_ + 1) == '#')))
        ++pos_;
      if (pos_ > start) {
        push(Tok::Text, src.substr(start, pos_ - start), start);
        continue;
      }
    }
    if (startsWith("{#")) {
      size_t start = pos_;
      pos_ += 2;
      bool stripBefore = at(pos_) == '-';
      if (stripBefore) ++pos_;
      std::string comment;
      while (at(pos_) != '#' || at(pos_ + 1) != '}') {
        if (pos_ + 2 >= src.size()) {
          pos_ = start;
          error("Missing end of comment tag");
        }
        comment += src[pos_++];
      }
      bool stripAfter = !comment.empty() && comment.back() == '-';
      if (stripAfter) comment.pop_back();
      if (stripBefore) stripTrailingWhitespace();
      push(Tok::Comment, comment, start);
      pos_ += 2;
      if (stripAfter) skipLeadingWhitespace();
      continue;
    }
    if (startsWith("{%-")) {
      stripTrailingWhitespace();
      push(Tok::OpenStatement, "{%", pos_);
      pos_ += 3;
      continue;
    }
    if (startsWith("{{-")) {
      stripTrailingWhitespace();
      push(Tok::OpenExpression, "{{", pos_);
      curlyDepth = 0;
      pos_ += 3;
      continue;
    }
    skipLeadingWhitespace();
    if (startsWith("-%}")) {
      push(Tok::CloseStatement, "%}", pos_);
      pos_ += 3;
      skipLeadingWhitespace();
      continue;
    }
    if (startsWith("-}}")) {
      push(Tok::CloseExpression, "}}", pos_);
      pos_ += 3;
      skipLeadingWhitespace();
      continue;
    }
    if (pos_ >= src.size()) break;  // whitespace ran to the end inside a tag
    char c = src[pos_];
    if (c == '-' || c == '+') {
      if (tokens_.empty() || tokens_.back().type == Tok::Text)
        error(std::string("Unexpected character: ") + c);
      Tok prev = tokens_.back().type;
      if (prev != Tok::Identifier && prev != Tok::Number && prev != Tok::String &&
          prev != Tok::CloseParen && prev != Tok::CloseSquare) {
        size_t start = pos_++;
        std::string num = consumeDigits();
        if (!num.empty() && at(pos_) == '.' && isdigit(static_cast<unsigned char>(at(pos_ + 1)))) {
          ++pos_;
          num += "." + consumeDigits();
        }
        push(num.empty() ? Tok::Unary : Tok::Number, std::string(1, c) + num, start);
        continue;
      }
    }
    bool matched = false;
    for (const auto& [seq, type] : table) {
      if (type == Tok::CloseExpression && curlyDepth > 0) continue;
      if (!startsWith(seq)) continue;
      push(type, seq, pos_);
      if (type == Tok::OpenExpression)
        curlyDepth = 0;
      else if (type == Tok::OpenCurly)
        ++curlyDepth;
      else if (type == Tok::CloseCurly)
        --curlyDepth;
      pos_ += seq[1] ? 2 : 1;
      matched = true;
      break;
    }
    if (matched) continue;
    if (c == '\'' || c == '"') {
      size_t start = pos_++;
      std::string text = consumeString(c);
      ++pos_;
      push(Tok::String, std::move(text), start);
      continue;
    }
    if (isdigit(static_cast<unsigned char>(c))) {
      size_t start = pos_;
      std::string num = consumeDigits();
      if ((tokens_.empty() || tokens_.back().type != Tok::Dot) && at(pos_) == '.' &&
          isdigit(static_cast<unsigned char>(at(pos_ + 1)))) {
        ++pos_;
        num += "." + consumeDigits();
      }
      push(Tok::Number, std::move(num), start);
      continue;
    }
    if (isalnum(static_cast<unsigned char>(c)) || c == '_') {
      size_t start = pos_;
      push(Tok::Identifier, consumeWord(), start);
      continue;
    }
    error("Unexpected character: " +
          src.substr(pos_, tok::utf8Length(static_cast<unsigned char>(c))));
  }
  return std::move(tokens_);
}

}  // namespace

std::vector<Token> tokenize(const std::string& source) { return Lexer(preprocess(source)).run(); }

}  // namespace tpc::jinja
