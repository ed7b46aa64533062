#include "frontends/StrictJson.h"

#include <optional>
#include <unordered_set>

namespace tpc {
namespace {

using nlohmann::json;

struct OpenContainer {
  bool isObject = false;
  std::unordered_set<std::string> keys;
  std::string lastKey;  // names the child being read, for duplicate messages deeper down
};

// nlohmann's what() reads "[json.exception.parse_error.101] parse error at line 1, ...; last
// read: '<token>'; expected ..."; the token may be megabytes of an unterminated string or hold
// control bytes, and a message must stay one short line.
std::string shortParseMessage(std::string_view message) {
  if (size_t bracket = message.find("] "); message.starts_with("[json.") && bracket != message.npos)
    message.remove_prefix(bracket + 2);
  std::string clean;
  for (char ch : message) {
    auto c = static_cast<unsigned char>(ch);
    clean += (c < 0x20 || c >= 0x7F) ? '?' : ch;
  }
  constexpr size_t kHead = 160, kTail = 60;
  if (clean.size() > kHead + kTail + 3)
    clean = clean.substr(0, kHead) + "..." + clean.substr(clean.size() - kTail);
  return clean;
}

// A first pass over the text that builds nothing: it finds syntax errors, duplicate keys and
// excessive nesting, and stops at the first. Only a text that passes is parsed into a DOM. Not
// done with nlohmann's parser callback, whose DOM builder rescans the parent object each time
// a child object ends: quadratic in the tensor count, seconds for an MoE header.
class StrictnessCheck final : public nlohmann::json_sax<json> {
 public:
  StrictnessCheck(std::string_view subject, const DuplicateKeyDescriber& describeDuplicate)
      : subject_(subject), describeDuplicate_(describeDuplicate) {}

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return enter(true); }
  bool start_array(std::size_t) override { return enter(false); }
  bool end_object() override { return leave(); }
  bool end_array() override { return leave(); }

  bool key(string_t& key) override {
    OpenContainer& object = open_.back();
    if (!object.keys.insert(key).second) {
      std::vector<std::string> parents;
      for (size_t i = 0; i + 1 < open_.size(); ++i)
        parents.push_back(open_[i].isObject ? open_[i].lastKey : "[]");
      error_ = describeDuplicate_(parents, key);
      return false;
    }
    object.lastKey = key;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = std::string(subject_) + " is not valid JSON: " + shortParseMessage(e.what());
    return false;
  }

  const std::optional<std::string>& error() const { return error_; }

 private:
  bool enter(bool isObject) {
    if (open_.size() >= kMaxJsonDepth) {
      error_ =
          std::string(subject_) + " nests deeper than " + std::to_string(kMaxJsonDepth) + " levels";
      return false;
    }
    open_.push_back({isObject, {}, {}});
    return true;
  }
  bool leave() {
    open_.pop_back();
    return true;
  }

  std::string_view subject_;
  const DuplicateKeyDescriber& describeDuplicate_;
  std::vector<OpenContainer> open_;
  std::optional<std::string> error_;
};

}  // namespace

Expected<json> parseStrictJson(std::string_view text, std::string_view subject,
                               const DuplicateKeyDescriber& describeDuplicate) {
  try {
    StrictnessCheck check(subject, describeDuplicate);
    bool ok = json::sax_parse(text.begin(), text.end(), &check, json::input_format_t::json,
                              /*strict=*/true, /*ignore_comments=*/false);
    if (check.error()) return Error::failure(*check.error());
    if (!ok) return makeError(subject, " is not valid JSON");
    return json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/true,
                       /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    // Not expected once the check passed; kept so no nlohmann exception escapes the library.
    return makeError(subject, " is not valid JSON: ", shortParseMessage(e.what()));
  }
}

size_t findInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  size_t i = 0;
  auto continuation = [&](size_t at, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return at < n && p[at] >= lo && p[at] <= hi;
  };
  while (i < n) {
    unsigned char c = p[i];
    size_t length = 0;
    if (c < 0x80) {
      length = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      length = continuation(i + 1) ? 2 : 0;
    } else if (c >= 0xE0 && c <= 0xEF) {
      // E0 would allow overlong forms below U+0800, ED the UTF-16 surrogates.
      unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
      unsigned char hi = c == 0xED ? 0x9F : 0xBF;
      length = continuation(i + 1, lo, hi) && continuation(i + 2) ? 3 : 0;
    } else if (c >= 0xF0 && c <= 0xF4) {
      // F0 would allow overlong forms below U+10000, F4 code points over U+10FFFF.
      unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
      unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;
      length = continuation(i + 1, lo, hi) && continuation(i + 2) && continuation(i + 3) ? 4 : 0;
    }
    if (length == 0) return i;
    i += length;
  }
  return std::string_view::npos;
}

std::string quoteName(std::string_view s) {
  constexpr size_t kMaxShown = 120;
  bool validUtf8 = findInvalidUtf8(s) == std::string_view::npos;
  bool shortened = s.size() > kMaxShown;
  if (shortened) {
    size_t cut = kMaxShown;
    // Back off to a character boundary so the shortened name is still valid UTF-8.
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    s = s.substr(0, cut);
  }
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7F || (c >= 0x80 && !validUtf8)) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  out += shortened ? "...\"" : "\"";
  return out;
}

std::string describeJsonKind(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
      return value.get<int64_t>() < 0 ? "a negative number" : "a number";
    case json::value_t::number_unsigned:
      return "a number";
    case json::value_t::number_float:
      return "a non-integer number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "an unexpected value";
  }
}

}  // namespace tpc
