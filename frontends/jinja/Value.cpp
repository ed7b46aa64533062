#include "frontends/jinja/Value.h"

#include <unicode/ustring.h>

#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

#include "frontends/tokenizer/TokenizerText.h"

namespace tpc::jinja {

void fail(std::string message) { throw TemplateError{std::move(message), 0}; }

const char* kindName(Kind kind) {
  switch (kind) {
    case Kind::Undefined:
      return "UndefinedValue";
    case Kind::Null:
      return "NullValue";
    case Kind::Bool:
      return "BooleanValue";
    case Kind::Int:
      return "IntegerValue";
    case Kind::Float:
      return "FloatValue";
    case Kind::String:
      return "StringValue";
    case Kind::Array:
      return "ArrayValue";
    case Kind::Tuple:
      return "TupleValue";
    case Kind::Object:
      return "ObjectValue";
    case Kind::KwArgs:
      return "KeywordArgumentsValue";
    case Kind::Namespace:
      return "NamespaceValue";
    case Kind::Function:
      return "FunctionValue";
  }
  return "?";
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined:
    case Kind::Null:
      return false;
    case Kind::Bool:
      return v.boolean;
    case Kind::Int:
    case Kind::Float:
      return v.number != 0 && !std::isnan(v.number);
    case Kind::String:
      return !v.text.empty();
    case Kind::Array:
    case Kind::Tuple:
      return !v.array->empty();
    case Kind::Object:
    case Kind::KwArgs:
      return !v.object->entries.empty();
    case Kind::Namespace:
    case Kind::Function:
      return true;
  }
  return false;
}

std::string formatNumber(double n) {
  if (std::isnan(n)) return "NaN";
  if (std::isinf(n)) return n > 0 ? "Infinity" : "-Infinity";
  if (n == 0) return "0";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n, std::chars_format::scientific);
  std::string sci(buf, end);  // [-]d[.ddd]e±XX, the shortest digits that round-trip
  std::string out;
  size_t pos = 0;
  if (sci[0] == '-') {
    out = "-";
    pos = 1;
  }
  size_t e = sci.find('e');
  std::string digits;
  for (size_t i = pos; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  int exponent = std::stoi(sci.substr(e + 1));
  int k = static_cast<int>(digits.size()), point = exponent + 1;
  if (k <= point && point <= 21) {
    out += digits + std::string(static_cast<size_t>(point - k), '0');
  } else if (0 < point && point <= 21) {
    out += digits.substr(0, static_cast<size_t>(point)) + "." +
           digits.substr(static_cast<size_t>(point));
  } else if (-6 < point && point <= 0) {
    out += "0." + std::string(static_cast<size_t>(-point), '0') + digits;
  } else {
    out += digits.substr(0, 1);
    if (k > 1) out += "." + digits.substr(1);
    out += exponent >= 0 ? "e+" : "e-";
    out += std::to_string(std::abs(exponent));
  }
  return out;
}

std::string toDisplay(const Value& v) {
  switch (v.kind) {
    case Kind::Float:
      if (v.number == 0 && std::signbit(v.number)) return "-0.0";
      if (std::isfinite(v.number) && std::floor(v.number) == v.number && std::fabs(v.number) < 1e21)
        return formatNumber(v.number) + ".0";
      return formatNumber(v.number);
    case Kind::Array:
    case Kind::Tuple:
    case Kind::Object:
    case Kind::KwArgs:
    case Kind::Namespace:
      return toJson(v, {}, false);
    default:
      return toRaw(v);
  }
}

std::string toRaw(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined:
      return "undefined";
    case Kind::Null:
      return "null";
    case Kind::Bool:
      return v.boolean ? "true" : "false";
    case Kind::Int:
    case Kind::Float:
      return formatNumber(v.number);
    case Kind::String:
      return v.text;
    case Kind::Array:
    case Kind::Tuple: {
      // Array.prototype.toString over the runtime values: their own toString, comma-joined.
      std::string out;
      for (size_t i = 0; i < v.array->size(); ++i) {
        if (i) out += ',';
        out += toDisplay((*v.array)[i]);
      }
      return out;
    }
    case Kind::Object:
    case Kind::KwArgs:
    case Kind::Namespace:
      return "[object Map]";
    case Kind::Function:
      return "function";
  }
  return "";
}

void appendJsonString(std::string& out, std::string_view s, bool ensureAscii) {
  static const char* hex = "0123456789abcdef";
  auto escape16 = [&](uint32_t unit) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += hex[(unit >> shift) & 0xF];
  };
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80 && ensureAscii) {
      uint32_t cp = tok::nextCodePoint(s, i);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        escape16(0xD800 + (cp >> 10));
        escape16(0xDC00 + (cp & 0x3FF));
      } else {
        escape16(cp);
      }
      continue;
    }
    ++i;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || (c == 0x7F && ensureAscii))
          escape16(c);
        else
          out += static_cast<char>(c);
    }
  }
  out += '"';
}

std::string toJson(const Value& v, const JsonOptions& options, bool undefinedAsNull, int depth) {
  std::string itemSep = ", ", keySep = ": ";
  if (options.customSeparators) {
    itemSep = options.itemSeparator;
    keySep = options.keySeparator;
  } else if (options.indent) {
    itemSep = ",";
  }
  switch (v.kind) {
    case Kind::Null:
      return "null";
    case Kind::Undefined:
      return undefinedAsNull ? "null" : "undefined";
    case Kind::Bool:
      return v.boolean ? "true" : "false";
    case Kind::Int:
    case Kind::Float:
      return std::isfinite(v.number) ? formatNumber(v.number) : "null";
    case Kind::String: {
      std::string out;
      appendJsonString(out, v.text, options.ensureAscii);
      return out;
    }
    case Kind::Array:
    case Kind::Object:
    case Kind::Namespace: {
      std::string unit(static_cast<size_t>(options.indent), ' ');
      std::string base = "\n";
      for (int i = 0; i < depth; ++i) base += unit;
      std::string child = base + unit;
      std::vector<std::string> core;
      if (v.kind == Kind::Array) {
        for (const Value& item : *v.array)
          core.push_back(toJson(item, options, undefinedAsNull, depth + 1));
      } else {
        std::vector<const std::pair<std::string, Value>*> entries;
        for (const auto& e : v.object->entries) entries.push_back(&e);
        // localeCompare in the oracle; code point order agrees for ASCII keys of one case.
        if (options.sortKeys)
          std::stable_sort(entries.begin(), entries.end(),
                           [](auto* a, auto* b) { return a->first < b->first; });
        for (const auto* e : entries) {
          std::string item;
          if (options.indent) item = child;
          appendJsonString(item, e->first, options.ensureAscii);
          item += keySep + toJson(e->second, options, undefinedAsNull, depth + 1);
          core.push_back(std::move(item));
        }
      }
      std::string out(1, v.kind == Kind::Array ? '[' : '{');
      bool pretty = options.indent && !core.empty();
      for (size_t i = 0; i < core.size(); ++i) {
        if (i) out += itemSep;
        if (pretty && v.kind == Kind::Array) out += child;
        out += core[i];
      }
      if (pretty) out += base;
      out += v.kind == Kind::Array ? ']' : '}';
      return out;
    }
    default:
      fail(std::string("Cannot convert to JSON: ") + kindName(v.kind));
  }
}

Value fromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value::null();
    case nlohmann::ordered_json::value_t::boolean:
      return Value::of(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
    case nlohmann::ordered_json::value_t::number_unsigned:
    case nlohmann::ordered_json::value_t::number_float: {
      // JSON.parse gives doubles; Number.isInteger decides the kind.
      double d = j.get<double>();
      return std::isfinite(d) && std::floor(d) == d ? Value::integer(d) : Value::floating(d);
    }
    case nlohmann::ordered_json::value_t::string:
      return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      Array items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(fromJson(item));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Object o;
      o.entries.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) o.set(it.key(), fromJson(it.value()));
      return Value::map(std::move(o));
    }
    default:
      return Value();
  }
}

size_t utf16Length(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    size_t len = tok::utf8Length(static_cast<unsigned char>(s[i]));
    n += len == 4 ? 2 : 1;
    i += len;
  }
  return n;
}

std::vector<std::string> codePoints(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t len = std::min(tok::utf8Length(static_cast<unsigned char>(s[i])), s.size() - i);
    out.emplace_back(s.substr(i, len));
    i += len;
  }
  return out;
}

std::string jsTrim(std::string_view s, bool left, bool right) {
  return tok::trimJsWhitespace(s, left, right);
}

namespace {

bool isAscii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

// toUpperCase/toLowerCase: ICU's locale-independent full case mapping, as V8 does.
std::string caseMap(std::string_view s, bool upper) {
  std::u16string wide(s.size() + 1, u'\0');
  UErrorCode status = U_ZERO_ERROR;
  int32_t wideLength = 0;
  u_strFromUTF8(reinterpret_cast<UChar*>(wide.data()), static_cast<int32_t>(wide.size()),
                &wideLength, s.data(), static_cast<int32_t>(s.size()), &status);
  if (U_FAILURE(status)) return std::string(s);
  std::u16string mapped(static_cast<size_t>(wideLength) * 3 + 16, u'\0');
  auto fn = upper ? u_strToUpper : u_strToLower;
  int32_t n = fn(reinterpret_cast<UChar*>(mapped.data()), static_cast<int32_t>(mapped.size()),
                 reinterpret_cast<const UChar*>(wide.data()), wideLength, "", &status);
  if (U_FAILURE(status)) return std::string(s);
  std::string out(static_cast<size_t>(n) * 3 + 4, '\0');
  int32_t outLength = 0;
  u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &outLength,
              reinterpret_cast<const UChar*>(mapped.data()), n, &status);
  if (U_FAILURE(status)) return std::string(s);
  out.resize(static_cast<size_t>(outLength));
  return out;
}

}  // namespace

std::string jsUpper(std::string_view s) {
  if (!isAscii(s)) return caseMap(s, true);
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

std::string jsLower(std::string_view s) {
  if (!isAscii(s)) return caseMap(s, false);
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace tpc::jinja
