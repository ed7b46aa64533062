// The values a chat template computes with. They mirror the runtime values of @huggingface/jinja
// (the interpreter transformers.js runs, which our rendering is held to byte for byte): numbers
// are JavaScript doubles tagged integer or float, arrays and objects are shared by reference
// (so `namespace()` attributes can be assigned and `==` on containers is identity), and
// objects keep their keys in insertion order.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace tpc::jinja {

enum class Kind {
  Undefined,
  Null,
  Bool,
  Int,
  Float,
  String,
  Array,
  Tuple,  // an array made by `(a, b)`: iterable but not JSON-serialisable, as in the oracle
  Object,
  KwArgs,     // keyword arguments of a call, passed as the last argument
  Namespace,  // namespace(): assignable attributes, no methods
  Function,
};

struct Value;
struct Scope;
using Array = std::vector<Value>;
struct Object;
// Positional arguments, the keyword arguments last (as a KwArgs value) when there are any; the
// scope is the caller's (macros see their caller's variables, as in the oracle).
using Function = std::function<Value(std::vector<Value>& args, const std::shared_ptr<Scope>&)>;

struct Value {
  Kind kind = Kind::Undefined;
  bool boolean = false;
  double number = 0;
  std::string text;
  std::shared_ptr<Array> array;
  std::shared_ptr<Object> object;
  std::shared_ptr<Function> function;

  static Value null() { return make(Kind::Null); }
  static Value of(bool b) {
    Value v = make(Kind::Bool);
    v.boolean = b;
    return v;
  }
  static Value integer(double n) {
    Value v = make(Kind::Int);
    v.number = n;
    return v;
  }
  static Value floating(double n) {
    Value v = make(Kind::Float);
    v.number = n;
    return v;
  }
  static Value string(std::string s) {
    Value v = make(Kind::String);
    v.text = std::move(s);
    return v;
  }
  static Value list(Array items, Kind kind = Kind::Array);
  static Value map(Object entries, Kind kind = Kind::Object);
  static Value callable(Function f);
  static Value make(Kind k) {
    Value v;
    v.kind = k;
    return v;
  }

  bool isArray() const { return kind == Kind::Array || kind == Kind::Tuple; }
  bool isObject() const { return kind == Kind::Object || kind == Kind::KwArgs; }
  bool isAttributeContainer() const { return isObject() || kind == Kind::Namespace; }
  bool isNumber() const { return kind == Kind::Int || kind == Kind::Float; }
  bool isUndefinedOrNull() const { return kind == Kind::Undefined || kind == Kind::Null; }
};

struct Object {
  std::vector<std::pair<std::string, Value>> entries;
  const Value* find(std::string_view key) const {
    for (const auto& [k, v] : entries)
      if (k == key) return &v;
    return nullptr;
  }
  void set(std::string key, Value value) {
    for (auto& [k, v] : entries)
      if (k == key) {
        v = std::move(value);
        return;
      }
    entries.emplace_back(std::move(key), std::move(value));
  }
  bool erase(std::string_view key) {
    for (size_t i = 0; i < entries.size(); ++i)
      if (entries[i].first == key) {
        entries.erase(entries.begin() + static_cast<std::ptrdiff_t>(i));
        return true;
      }
    return false;
  }
};

inline Value Value::list(Array items, Kind kind) {
  Value v = make(kind);
  v.array = std::make_shared<Array>(std::move(items));
  return v;
}
inline Value Value::map(Object entries, Kind kind) {
  Value v = make(kind);
  v.object = std::make_shared<Object>(std::move(entries));
  return v;
}
inline Value Value::callable(Function f) {
  Value v = make(Kind::Function);
  v.function = std::make_shared<Function>(std::move(f));
  return v;
}

// A failure while lexing, parsing or rendering; `line` is 1-based, 0 until a node claims it.
// Exceptions stay inside frontends/jinja: Template turns them into Error values.
struct TemplateError {
  std::string message;
  int line = 0;
};
[[noreturn]] void fail(std::string message);

// The oracle's type names ("StringValue", ...), which its error messages use.
const char* kindName(Kind kind);
bool truthy(const Value& v);
// What `{{ v }}` prints (RuntimeValue.toString).
std::string toDisplay(const Value& v);
// JavaScript's String(v.value), used by `~`, `+` on strings and join.
std::string toRaw(const Value& v);
// JavaScript's Number.prototype.toString.
std::string formatNumber(double n);

struct JsonOptions {
  int indent = 0;  // 0: one line
  bool ensureAscii = false, sortKeys = false;
  bool customSeparators = false;
  std::string itemSeparator, keySeparator;
};
// The tojson filter; `undefinedAsNull` false is the form arrays and objects print in.
std::string toJson(const Value& v, const JsonOptions& options, bool undefinedAsNull = true,
                   int depth = 0);
// JSON.stringify of one string.
void appendJsonString(std::string& out, std::string_view s, bool ensureAscii);

Value fromJson(const nlohmann::ordered_json& j);

// JavaScript string semantics over UTF-8: lengths and indices count UTF-16 code units.
size_t utf16Length(std::string_view s);
std::vector<std::string> codePoints(std::string_view s);
std::string jsTrim(std::string_view s, bool left, bool right);
std::string jsUpper(std::string_view s);
std::string jsLower(std::string_view s);

}  // namespace tpc::jinja
