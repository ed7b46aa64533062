// Tests (`is defined`), methods of strings and objects (`.startswith`, `.items()`), the global
// functions (raise_exception, range, strftime_now, namespace) and the equality and ordering
// rules of @huggingface/jinja, which are JavaScript's.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>

#include "frontends/jinja/Interpreter.h"
#include "frontends/tokenizer/TokenizerText.h"

namespace tpc::jinja {
namespace {

enum class Payload { Undefined, Null, Bool, Number, String, Reference };

Payload payload(const Value& v) {
  switch (v.kind) {
    case Kind::Undefined:
      return Payload::Undefined;
    case Kind::Null:
      return Payload::Null;
    case Kind::Bool:
      return Payload::Bool;
    case Kind::Int:
    case Kind::Float:
      return Payload::Number;
    case Kind::String:
      return Payload::String;
    default:
      return Payload::Reference;
  }
}

const void* identity(const Value& v) {
  if (v.array) return v.array.get();
  if (v.object) return v.object.get();
  return v.function.get();
}

// StringToNumber: Number("  12 ") is 12, Number("") is 0, anything else not a literal is NaN.
double stringToNumber(const std::string& s) {
  std::string t = tok::trimJsWhitespace(s, true, true);
  if (t.empty()) return 0;
  if (t == "Infinity" || t == "+Infinity") return INFINITY;
  if (t == "-Infinity") return -INFINITY;
  if (t.size() > 2 && t[0] == '0' &&
      (t[1] == 'x' || t[1] == 'X' || t[1] == 'o' || t[1] == 'O' || t[1] == 'b' || t[1] == 'B')) {
    int base = (t[1] == 'x' || t[1] == 'X') ? 16 : (t[1] == 'o' || t[1] == 'O') ? 8 : 2;
    char* end = nullptr;
    double v = static_cast<double>(std::strtoull(t.c_str() + 2, &end, base));
    return *end ? NAN : v;
  }
  size_t i = 0, digits = 0;
  if (t[i] == '+' || t[i] == '-') ++i;
  while (i < t.size() && isdigit(static_cast<unsigned char>(t[i]))) ++i, ++digits;
  if (i < t.size() && t[i] == '.') {
    ++i;
    while (i < t.size() && isdigit(static_cast<unsigned char>(t[i]))) ++i, ++digits;
  }
  if (!digits) return NAN;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    size_t expDigits = 0;
    while (i < t.size() && isdigit(static_cast<unsigned char>(t[i]))) ++i, ++expDigits;
    if (!expDigits) return NAN;
  }
  if (i != t.size()) return NAN;
  return std::strtod(t.c_str(), nullptr);
}

bool isWordByte(char c) { return isalnum(static_cast<unsigned char>(c)) || c == '_'; }

std::string titleCase(const std::string& s) {
  std::string out = s;
  for (size_t i = 0; i < out.size(); ++i)
    if (isWordByte(out[i]) && (i == 0 || !isWordByte(s[i - 1])) && out[i] >= 'a' && out[i] <= 'z')
      out[i] = static_cast<char>(out[i] - 'a' + 'A');
  return out;
}

std::string capitalize(const std::string& s) {
  if (s.empty()) return s;
  size_t len = tok::utf8Length(static_cast<unsigned char>(s[0]));
  if (len == 4) return s;  // charAt(0) is half a surrogate pair, which has no case
  return jsUpper(s.substr(0, len)) + s.substr(len);
}

bool startsOrEnds(const std::string& s, const std::vector<Value>& args, bool start,
                  const char* name) {
  if (args.empty()) fail(std::string(name) + "() requires at least one argument");
  auto check = [&](const std::string& p) { return start ? s.starts_with(p) : s.ends_with(p); };
  const Value& pattern = args[0];
  if (pattern.kind == Kind::String) return check(pattern.text);
  if (pattern.isArray()) {
    for (const Value& item : *pattern.array) {
      if (item.kind != Kind::String) fail(std::string(name) + "() tuple elements must be strings");
      if (check(item.text)) return true;
    }
    return false;
  }
  fail(std::string(name) + "() argument must be a string or tuple of strings");
}

Value split(const std::string& s, const std::vector<Value>& args) {
  Value sep = args.size() > 0 ? args[0] : Value::null();
  if (sep.kind != Kind::String && sep.kind != Kind::Null)
    fail("sep argument must be a string or null");
  Value maxsplit = args.size() > 1 ? args[1] : Value::integer(-1);
  if (maxsplit.kind != Kind::Int) fail("maxsplit argument must be a number");
  double limit = maxsplit.number;
  std::vector<std::string> parts;
  if (sep.kind == Kind::Null) {
    std::string text = tok::trimJsWhitespace(s, true, false);
    size_t i = 0;
    while (i < text.size()) {
      size_t j = i;
      uint32_t cp = tok::nextCodePoint(text, j);
      if (tok::isJsWhitespace(cp)) {
        i = j;
        continue;
      }
      size_t start = i, end = i;
      while (end < text.size()) {
        size_t k = end;
        if (tok::isJsWhitespace(tok::nextCodePoint(text, k))) break;
        end = k;
      }
      if (limit != -1 && static_cast<double>(parts.size()) >= limit) {
        parts.push_back(text.substr(start));
        break;
      }
      parts.push_back(text.substr(start, end - start));
      i = end;
    }
  } else {
    if (sep.text.empty()) fail("empty separator");
    size_t start = 0;
    while (true) {
      size_t hit = s.find(sep.text, start);
      if (hit == std::string::npos) break;
      parts.push_back(s.substr(start, hit - start));
      start = hit + sep.text.size();
    }
    parts.push_back(s.substr(start));
    if (limit != -1 && static_cast<double>(parts.size()) > limit) {
      size_t keep = static_cast<size_t>(std::max(0.0, limit));
      std::string rest;
      for (size_t i = keep; i < parts.size(); ++i) rest += (i > keep ? sep.text : "") + parts[i];
      parts.resize(keep);
      parts.push_back(rest);
    }
  }
  Array out;
  for (std::string& p : parts) out.push_back(Value::string(std::move(p)));
  return Value::list(std::move(out));
}

Value stringMethod(const std::string& s, const std::string& name) {
  auto method = [](auto body) {
    return Value::callable(
        [body](std::vector<Value>& args, const ScopePtr&) { return body(args); });
  };
  if (name == "length") return Value::integer(static_cast<double>(utf16Length(s)));
  if (name == "upper")
    return method([s](std::vector<Value>&) { return Value::string(jsUpper(s)); });
  if (name == "lower")
    return method([s](std::vector<Value>&) { return Value::string(jsLower(s)); });
  // Arguments are ignored, as in the oracle: strip('\n') strips all whitespace.
  if (name == "strip")
    return method([s](std::vector<Value>&) { return Value::string(jsTrim(s, true, true)); });
  if (name == "lstrip")
    return method([s](std::vector<Value>&) { return Value::string(jsTrim(s, true, false)); });
  if (name == "rstrip")
    return method([s](std::vector<Value>&) { return Value::string(jsTrim(s, false, true)); });
  if (name == "title")
    return method([s](std::vector<Value>&) { return Value::string(titleCase(s)); });
  if (name == "capitalize")
    return method([s](std::vector<Value>&) { return Value::string(capitalize(s)); });
  if (name == "startswith")
    return method(
        [s](std::vector<Value>& a) { return Value::of(startsOrEnds(s, a, true, "startswith")); });
  if (name == "endswith")
    return method(
        [s](std::vector<Value>& a) { return Value::of(startsOrEnds(s, a, false, "endswith")); });
  if (name == "split") return method([s](std::vector<Value>& a) { return split(s, a); });
  if (name == "replace")
    return method([s](std::vector<Value>& a) {
      if (a.size() < 2) fail("replace() requires at least two arguments");
      if (a[0].kind != Kind::String || a[1].kind != Kind::String)
        fail("replace() arguments must be strings");
      Value count = Value::null();
      if (a.size() > 2) {
        if (a[2].kind == Kind::KwArgs) {
          const Value* c = a[2].object->find("count");
          count = c ? *c : Value::null();
        } else {
          count = a[2];
        }
      }
      if (count.kind != Kind::Int && count.kind != Kind::Null)
        fail("replace() count argument must be a number or null");
      return Value::string(
          replaceAll(s, a[0].text, a[1].text, count.kind == Kind::Null ? -1 : count.number));
    });
  return Value();
}

Value pairsOf(const Object& o) {
  Array out;
  out.reserve(o.entries.size());
  for (const auto& [k, v] : o.entries) out.push_back(Value::list({Value::string(k), v}));
  return Value::list(std::move(out));
}

Value objectMethod(const Value& object, const std::string& name) {
  std::shared_ptr<Object> o = object.object;
  if (name == "get")
    return Value::callable([o](std::vector<Value>& a, const ScopePtr&) {
      if (a.empty() || a[0].kind != Kind::String)
        fail(std::string("Object key must be a string: got ") +
             kindName(a.empty() ? Kind::Undefined : a[0].kind));
      if (const Value* v = o->find(a[0].text)) return *v;
      return a.size() > 1 ? a[1] : Value::null();
    });
  if (name == "items")
    return Value::callable([o](std::vector<Value>&, const ScopePtr&) { return pairsOf(*o); });
  if (name == "keys")
    return Value::callable([o](std::vector<Value>&, const ScopePtr&) {
      Array out;
      for (const auto& [k, v] : o->entries) out.push_back(Value::string(k));
      return Value::list(std::move(out));
    });
  if (name == "values")
    return Value::callable([o](std::vector<Value>&, const ScopePtr&) {
      Array out;
      for (const auto& [k, v] : o->entries) out.push_back(v);
      return Value::list(std::move(out));
    });
  if (name == "dictsort")
    return Value::callable([o](std::vector<Value>& a, const ScopePtr&) {
      Object kw;
      std::vector<Value> positional;
      for (const Value& v : a) {
        if (v.kind == Kind::KwArgs)
          kw = *v.object;
        else
          positional.push_back(v);
      }
      auto pick = [&](size_t i, const char* key, Value fallback) {
        if (i < positional.size()) return positional[i];
        if (const Value* v = kw.find(key)) return *v;
        return fallback;
      };
      Value caseSensitive = pick(0, "case_sensitive", Value::of(false));
      if (caseSensitive.kind != Kind::Bool) fail("case_sensitive must be a boolean");
      Value by = pick(1, "by", Value::string("key"));
      if (by.kind != Kind::String) fail("by must be a string");
      if (by.text != "key" && by.text != "value") fail("by must be either 'key' or 'value'");
      Value reverse = pick(2, "reverse", Value::of(false));
      if (reverse.kind != Kind::Bool) fail("reverse must be a boolean");
      Value pairs = pairsOf(*o);
      size_t index = by.text == "key" ? 0 : 1;
      std::stable_sort(
          pairs.array->begin(), pairs.array->end(), [&](const Value& x, const Value& y) {
            int r = compareValues((*x.array)[index], (*y.array)[index], caseSensitive.boolean);
            return (reverse.boolean ? -r : r) < 0;
          });
      return pairs;
    });
  return Value();
}

// raise_exception and friends receive the payloads of their arguments, as JavaScript functions.
std::string messageOf(const std::vector<Value>& args) {
  if (args.empty() || args[0].kind == Kind::Undefined) return "";
  return toRaw(args[0]);
}

std::string strftime(const std::string& format) {
  static const char* longMonths[] = {"January",   "February", "March",    "April",
                                     "May",       "June",     "July",     "August",
                                     "September", "October",  "November", "December"};
  static const char* shortMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t now = std::time(nullptr);
  std::tm t{};
  localtime_r(&now, &t);
  auto pad2 = [](int n) { return (n < 10 ? "0" : "") + std::to_string(n); };
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%' || i + 1 >= format.size()) {
      out += format[i];
      continue;
    }
    char c = format[i + 1];
    switch (c) {
      case 'Y':
        out += std::to_string(t.tm_year + 1900);
        break;
      case 'm':
        out += pad2(t.tm_mon + 1);
        break;
      case 'd':
        out += pad2(t.tm_mday);
        break;
      case 'b':
        out += shortMonths[t.tm_mon];
        break;
      case 'B':
        out += longMonths[t.tm_mon];
        break;
      case 'H':
        out += pad2(t.tm_hour);
        break;
      case 'M':
        out += pad2(t.tm_min);
        break;
      case '%':
        out += '%';
        break;
      default:
        out += '%';
        continue;  // not a directive the oracle knows: left as it is
    }
    ++i;
  }
  return out;
}

Value numberValue(double d) {
  return std::floor(d) == d && std::isfinite(d) ? Value::integer(d) : Value::floating(d);
}

}  // namespace

bool looseEquals(const Value& a, const Value& b) {
  Payload pa = payload(a), pb = payload(b);
  bool nullishA = pa == Payload::Undefined || pa == Payload::Null;
  bool nullishB = pb == Payload::Undefined || pb == Payload::Null;
  if (nullishA || nullishB) return nullishA && nullishB;
  if (pa == pb) {
    switch (pa) {
      case Payload::Bool:
        return a.boolean == b.boolean;
      case Payload::Number:
        return a.number == b.number;
      case Payload::String:
        return a.text == b.text;
      default:
        return identity(a) == identity(b);
    }
  }
  if (pa == Payload::Bool) return looseEquals(Value::integer(a.boolean ? 1 : 0), b);
  if (pb == Payload::Bool) return looseEquals(a, Value::integer(b.boolean ? 1 : 0));
  if (pa == Payload::Number && pb == Payload::String) return a.number == stringToNumber(b.text);
  if (pa == Payload::String && pb == Payload::Number) return stringToNumber(a.text) == b.number;
  if (pa == Payload::Reference) return looseEquals(Value::string(toRaw(a)), b);
  if (pb == Payload::Reference) return looseEquals(a, Value::string(toRaw(b)));
  return false;
}

bool strictEquals(const Value& a, const Value& b) {
  Payload pa = payload(a);
  if (pa != payload(b)) return false;
  switch (pa) {
    case Payload::Undefined:
    case Payload::Null:
      return true;
    case Payload::Bool:
      return a.boolean == b.boolean;
    case Payload::Number:
      return a.number == b.number;
    case Payload::String:
      return a.text == b.text;
    case Payload::Reference:
      return identity(a) == identity(b);
  }
  return false;
}

int compareValues(const Value& a, const Value& b, bool caseSensitive) {
  if (a.kind == Kind::Null && b.kind == Kind::Null) return 0;
  if (a.kind == Kind::Null || b.kind == Kind::Null || a.kind == Kind::Undefined ||
      b.kind == Kind::Undefined) {
    if (a.kind == Kind::Undefined && b.kind == Kind::Undefined) return 0;
    fail(std::string("Cannot compare ") + kindName(a.kind) + " with " + kindName(b.kind));
  }
  bool numA = a.isNumber() || a.kind == Kind::Bool, numB = b.isNumber() || b.kind == Kind::Bool;
  if (numA && numB) {
    double x = a.kind == Kind::Bool ? a.boolean : a.number;
    double y = b.kind == Kind::Bool ? b.boolean : b.number;
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.kind != b.kind)
    fail(std::string("Cannot compare different types: ") + kindName(a.kind) + " and " +
         kindName(b.kind));
  if (a.kind != Kind::String) fail(std::string("Cannot compare type: ") + kindName(a.kind));
  std::string x = caseSensitive ? a.text : jsLower(a.text);
  std::string y = caseSensitive ? b.text : jsLower(b.text);
  // JavaScript compares UTF-16 code units; UTF-8 byte order differs only past the BMP.
  return x < y ? -1 : x > y ? 1 : 0;
}

std::string replaceAll(const std::string& s, const std::string& from, const std::string& to,
                       double count) {
  if (count == 0) return s;
  double remaining = count < 0 ? INFINITY : count;
  std::string out;
  if (from.empty()) {
    // (?=) with the u flag: an empty match before every code point and at the end.
    size_t i = 0;
    while (true) {
      if (remaining > 0) {
        out += to;
        --remaining;
      }
      if (i >= s.size()) break;
      size_t len = tok::utf8Length(static_cast<unsigned char>(s[i]));
      out.append(s, i, len);
      i += len;
    }
    return out;
  }
  size_t start = 0;
  while (remaining > 0) {
    size_t hit = s.find(from, start);
    if (hit == std::string::npos) break;
    out.append(s, start, hit - start);
    out += to;
    start = hit + from.size();
    --remaining;
  }
  out.append(s, start, std::string::npos);
  return out;
}

bool hasTest(const std::string& name) {
  static const char* names[] = {"boolean",  "callable",  "odd",      "even",   "false",
                                "true",     "none",      "string",   "number", "integer",
                                "iterable", "mapping",   "sequence", "lower",  "upper",
                                "defined",  "undefined", "equalto",  "eq"};
  return std::any_of(std::begin(names), std::end(names), [&](const char* n) { return name == n; });
}

bool runTest(const std::string& name, const Value& v, const Value* argument) {
  if (name == "boolean") return v.kind == Kind::Bool;
  if (name == "callable") return v.kind == Kind::Function;
  if (name == "odd" || name == "even") {
    if (v.kind != Kind::Int) fail("cannot " + name + " on " + kindName(v.kind));
    bool odd = std::fmod(v.number, 2) != 0;
    return name == "odd" ? odd : !odd;
  }
  if (name == "false") return v.kind == Kind::Bool && !v.boolean;
  if (name == "true") return v.kind == Kind::Bool && v.boolean;
  if (name == "none") return v.kind == Kind::Null;
  if (name == "string") return v.kind == Kind::String;
  if (name == "number") return v.isNumber();
  if (name == "integer") return v.kind == Kind::Int;
  if (name == "iterable") return v.kind == Kind::Array || v.kind == Kind::String;
  if (name == "mapping") return v.isObject();
  if (name == "sequence") return v.isArray() || v.isObject() || v.kind == Kind::String;
  if (name == "lower") return v.kind == Kind::String && v.text == jsLower(v.text);
  if (name == "upper") return v.kind == Kind::String && v.text == jsUpper(v.text);
  if (name == "defined") return v.kind != Kind::Undefined;
  if (name == "undefined") return v.kind == Kind::Undefined;
  if (name == "equalto" || name == "eq") {
    if (!argument) fail("the '" + name + "' test needs a value to compare with");
    return strictEquals(v, *argument);
  }
  fail("Unknown test: " + name);
}

Value builtinMember(const Value& object, const std::string& name) {
  if (object.kind == Kind::String) return stringMethod(object.text, name);
  if (object.isArray())
    return name == "length" ? Value::integer(static_cast<double>(object.array->size())) : Value();
  if (object.isObject()) return objectMethod(object, name);
  return Value();
}

void installGlobals(Scope& globals) {
  globals.set("false", Value::of(false));
  globals.set("true", Value::of(true));
  globals.set("none", Value::null());
  globals.set("False", Value::of(false));
  globals.set("True", Value::of(true));
  globals.set("None", Value::null());
  globals.set("raise_exception",
              Value::callable([](std::vector<Value>& args, const ScopePtr&) -> Value {
                fail(messageOf(args));
              }));
  globals.set("strftime_now", Value::callable([](std::vector<Value>& args, const ScopePtr&) {
                if (args.empty() || args[0].kind != Kind::String)
                  fail("strftime_now() needs a format string");
                return Value::string(strftime(args[0].text));
              }));
  globals.set("range", Value::callable([](std::vector<Value>& args, const ScopePtr&) {
                for (const Value& a : args)
                  if (!a.isNumber()) fail("range() arguments must be numbers");
                if (args.empty()) fail("range expected at least 1 argument, got 0");
                double start = 0, stop = args[0].number, step = 1;
                if (args.size() > 1) start = args[0].number, stop = args[1].number;
                if (args.size() > 2) step = args[2].number;
                if (step == 0) fail("range() step must not be zero");
                Array out;
                for (double i = start; step > 0 ? i < stop : i > stop; i += step)
                  out.push_back(numberValue(i));
                return Value::list(std::move(out));
              }));
  globals.set(
      "namespace", Value::callable([](std::vector<Value>& args, const ScopePtr&) {
        std::vector<Value> positional = args;
        Object kwargs;
        if (!positional.empty() && positional.back().kind == Kind::KwArgs) {
          kwargs = *positional.back().object;
          positional.pop_back();
        }
        if (positional.size() > 1)
          fail("namespace expected at most 1 argument, got " + std::to_string(positional.size()));
        Object entries;
        if (positional.size() == 1) {
          const Value& source = positional[0];
          if (source.isObject()) {
            for (const auto& [k, v] : source.object->entries) entries.set(k, v);
          } else if (source.isArray()) {
            for (const Value& pair : *source.array) {
              Array kv;
              if (pair.isArray()) kv = *pair.array;
              if (pair.kind == Kind::String)
                for (std::string& c : codePoints(pair.text))
                  kv.push_back(Value::string(std::move(c)));
              if (kv.size() != 2)
                fail("namespace expected an object or an iterable of [key, value] pairs");
              if (kv[0].kind != Kind::String) fail("namespace keys must be strings");
              entries.set(kv[0].text, kv[1]);
            }
          } else {
            fail(std::string("'") + kindName(source.kind) + "' object is not iterable");
          }
        }
        for (const auto& [k, v] : kwargs.entries) entries.set(k, v);
        return Value::map(std::move(entries), Kind::Namespace);
      }));
}

}  // namespace tpc::jinja
