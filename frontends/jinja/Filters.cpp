// The filters of @huggingface/jinja, dispatched the way it does: first by whether the filter
// has arguments, then by the operand's type, so a filter that the oracle lacks for a type (or
// rejects without parentheses) fails here too.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#include "frontends/jinja/Interpreter.h"
#include "frontends/tokenizer/TokenizerText.h"

namespace tpc::jinja {
namespace {

// The first positional argument, else the keyword, else `fallback`.
Value argument(const std::vector<Value>& args, size_t i, const Object& keywords, const char* name,
               Value fallback) {
  if (i < args.size()) return args[i];
  if (const Value* v = keywords.find(name)) return *v;
  return fallback;
}

// parseInt(s, 10) / parseFloat(s); NaN when no number starts the string.
double parseLeadingNumber(const std::string& s, bool integer) {
  std::string t = tok::trimJsWhitespace(s, true, false);
  size_t i = 0;
  std::string lit;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) lit += t[i++];
  if (!integer && t.compare(i, 8, "Infinity") == 0) return lit == "-" ? -INFINITY : INFINITY;
  size_t digits = 0;
  while (i < t.size() && isdigit(static_cast<unsigned char>(t[i]))) lit += t[i++], ++digits;
  if (!integer) {
    if (i < t.size() && t[i] == '.') {
      lit += t[i++];
      while (i < t.size() && isdigit(static_cast<unsigned char>(t[i]))) lit += t[i++], ++digits;
    }
    if (digits && i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
      size_t j = i + 1;
      std::string exp = "e";
      if (j < t.size() && (t[j] == '+' || t[j] == '-')) exp += t[j++];
      size_t expDigits = 0;
      while (j < t.size() && isdigit(static_cast<unsigned char>(t[j]))) exp += t[j++], ++expDigits;
      if (expDigits) lit += exp;
    }
  }
  if (!digits) return NAN;
  return std::strtod(lit.c_str(), nullptr);
}

// The value at "a.b.0" inside objects and arrays (sort and map's `attribute`).
Value attributePath(const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (v.isAttributeContainer()) {
      const Value* next = v.object->find(part);
      if (!next) return Value();
      Value copy = *next;
      v = std::move(copy);
    } else if (v.isArray()) {
      double index = parseLeadingNumber(part, true);
      if (std::isnan(index) || index < 0 || index >= static_cast<double>(v.array->size()))
        return Value();
      Value copy = (*v.array)[static_cast<size_t>(index)];
      v = std::move(copy);
    } else {
      return Value();
    }
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

std::string joinValues(const Array& items, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += separator;
    if (!items[i].isUndefinedOrNull()) out += toRaw(items[i]);
  }
  return out;
}

std::string indentLines(const std::string& text, const std::string& pad, bool first, bool blank) {
  std::string out;
  size_t start = 0;
  for (size_t lineNo = 0;; ++lineNo) {
    size_t nl = text.find('\n', start);
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (lineNo) out += '\n';
    bool skip = (!first && lineNo == 0) || (!blank && line.empty());
    if (!skip) out += pad;
    out += line;
    if (nl == std::string::npos) return out;
    start = nl + 1;
  }
}

Value jsonFilter(Interpreter& interp, const Value& operand, const Node& call,
                 const ScopePtr& scope) {
  std::vector<Value> args;
  Object kw;
  interp.evalArguments(call.items, scope, args, kw);
  JsonOptions o;
  Value indent = argument({}, 0, kw, "indent", Value::null());
  if (indent.kind != Kind::Int && indent.kind != Kind::Null)
    fail("If set, indent must be a number");
  if (indent.kind == Kind::Int) o.indent = std::max(0, static_cast<int>(indent.number));
  Value ascii = argument({}, 0, kw, "ensure_ascii", Value::of(false));
  if (ascii.kind != Kind::Bool) fail("If set, ensure_ascii must be a boolean");
  o.ensureAscii = ascii.boolean;
  Value sortKeys = argument({}, 0, kw, "sort_keys", Value::of(false));
  if (sortKeys.kind != Kind::Bool) fail("If set, sort_keys must be a boolean");
  o.sortKeys = sortKeys.boolean;
  Value seps = argument({}, 0, kw, "separators", Value::null());
  if (seps.isArray()) {
    if (seps.array->size() != 2 || (*seps.array)[0].kind != Kind::String ||
        (*seps.array)[1].kind != Kind::String)
      fail("separators must be a tuple of two strings");
    o.customSeparators = true;
    o.itemSeparator = (*seps.array)[0].text;
    o.keySeparator = (*seps.array)[1].text;
  } else if (seps.kind != Kind::Null) {
    fail("If set, separators must be a tuple of two strings");
  }
  return Value::string(toJson(operand, o));
}

Value plainFilter(const Value& operand, const std::string& name) {
  if (name == "safe") return operand;
  if (name == "tojson") return Value::string(toJson(operand, {}));
  if (operand.isArray()) {
    const Array& a = *operand.array;
    if (name == "list") return operand;
    if (name == "first") return a.empty() ? Value() : a.front();
    if (name == "last") return a.empty() ? Value() : a.back();
    if (name == "length") return Value::integer(static_cast<double>(a.size()));
    if (name == "reverse") return Value::list(Array(a.rbegin(), a.rend()));
    if (name == "sort") {
      Array sorted = a;
      std::stable_sort(sorted.begin(), sorted.end(), [](const Value& x, const Value& y) {
        return compareValues(x, y, false) < 0;
      });
      return Value::list(std::move(sorted));
    }
    if (name == "join") return Value::string(joinValues(a, ""));
    if (name == "string") return Value::string(toJson(operand, {}, false));
    if (name == "unique") {
      Array out;
      for (const Value& item : a)
        if (std::none_of(out.begin(), out.end(),
                         [&](const Value& seen) { return strictEquals(seen, item); }))
          out.push_back(item);
      return Value::list(std::move(out));
    }
    fail("Unknown ArrayValue filter: " + name);
  }
  if (operand.kind == Kind::String) {
    const std::string& s = operand.text;
    if (name == "length" || name == "upper" || name == "lower" || name == "title" ||
        name == "capitalize") {
      Value m = builtinMember(operand, name);
      if (m.kind == Kind::Function) {
        std::vector<Value> none;
        return (*m.function)(none, nullptr);
      }
      return m;
    }
    if (name == "trim") return Value::string(jsTrim(s, true, true));
    if (name == "indent") return Value::string(indentLines(s, "    ", false, false));
    if (name == "join" || name == "string") return operand;
    if (name == "int") {
      double v = parseLeadingNumber(s, true);
      return Value::integer(std::isnan(v) ? 0 : std::trunc(v));
    }
    if (name == "float") {
      double v = parseLeadingNumber(s, false);
      return Value::floating(std::isnan(v) ? 0 : v);
    }
    fail("Unknown StringValue filter: " + name);
  }
  if (operand.isNumber()) {
    if (name == "abs")
      return operand.kind == Kind::Int ? Value::integer(std::fabs(operand.number))
                                       : Value::floating(std::fabs(operand.number));
    if (name == "int") return Value::integer(std::floor(operand.number));
    if (name == "float") return Value::floating(operand.number);
    if (name == "string") return Value::string(toDisplay(operand));
    fail("Unknown NumericValue filter: " + name);
  }
  if (operand.isObject()) {
    if (name == "length")
      return Value::integer(static_cast<double>(operand.object->entries.size()));
    Value m = builtinMember(operand, name);
    if (m.kind == Kind::Function) {
      std::vector<Value> none;
      return (*m.function)(none, nullptr);
    }
    if (m.kind != Kind::Undefined) return m;
    fail("Unknown ObjectValue filter: " + name);
  }
  if (operand.kind == Kind::Bool) {
    if (name == "bool") return operand;
    if (name == "int") return Value::integer(operand.boolean ? 1 : 0);
    if (name == "float") return Value::floating(operand.boolean ? 1 : 0);
    if (name == "string") return Value::string(operand.boolean ? "true" : "false");
    fail("Unknown BooleanValue filter: " + name);
  }
  fail("Cannot apply filter \"" + name + "\" to type: " + kindName(operand.kind));
}

Value selectOrReject(Interpreter& interp, const Value& operand, const Node& call,
                     const ScopePtr& scope, bool select) {
  const std::string& name = call.a->text;
  for (const Value& item : *operand.array)
    if (!item.isAttributeContainer())
      fail("`" + name + "` can only be applied to array of objects");
  for (const NodePtr& arg : call.items)
    if (arg->kind != NodeKind::String) fail("arguments of `" + name + "` must be strings");
  std::vector<Value> args;
  for (const NodePtr& arg : call.items) args.push_back(interp.eval(*arg, scope));
  if (args.empty()) fail("`" + name + "` needs an attribute name");
  const Value* testName = args.size() > 1 ? &args[1] : nullptr;
  const Value* testArg = args.size() > 2 ? &args[2] : nullptr;
  if (testName && !hasTest(testName->text)) fail("Unknown test: " + testName->text);
  Array out;
  for (const Value& item : *operand.array) {
    const Value* a = item.object->find(args[0].text);
    bool result = false;
    if (a) result = testName ? runTest(testName->text, *a, testArg) : truthy(*a);
    if (result == select) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value arrayCallFilter(Interpreter& interp, const Value& operand, const Node& call,
                      const ScopePtr& scope) {
  const std::string& name = call.a->text;
  if (name == "sort") {
    std::vector<Value> args;
    Object kw;
    interp.evalArguments(call.items, scope, args, kw);
    Value reverse = argument(args, 0, kw, "reverse", Value::of(false));
    if (reverse.kind != Kind::Bool) fail("reverse must be a boolean");
    Value caseSensitive = argument(args, 1, kw, "case_sensitive", Value::of(false));
    if (caseSensitive.kind != Kind::Bool) fail("case_sensitive must be a boolean");
    Value attribute = argument(args, 2, kw, "attribute", Value::null());
    if (attribute.kind != Kind::String && attribute.kind != Kind::Int &&
        attribute.kind != Kind::Null)
      fail("attribute must be a string, integer, or null");
    auto key = [&](const Value& item) {
      if (attribute.kind == Kind::Null) return item;
      return attributePath(
          item, attribute.kind == Kind::Int ? formatNumber(attribute.number) : attribute.text);
    };
    Array sorted = *operand.array;
    std::stable_sort(sorted.begin(), sorted.end(), [&](const Value& x, const Value& y) {
      int r = compareValues(key(x), key(y), caseSensitive.boolean);
      return (reverse.boolean ? -r : r) < 0;
    });
    return Value::list(std::move(sorted));
  }
  if (name == "selectattr" || name == "rejectattr")
    return selectOrReject(interp, operand, call, scope, name == "selectattr");
  if (name == "map") {
    std::vector<Value> args;
    Object kw;
    interp.evalArguments(call.items, scope, args, kw);
    const Value* attr = kw.find("attribute");
    if (!attr) fail("`map` expressions without `attribute` set are not currently supported.");
    if (attr->kind != Kind::String) fail("attribute must be a string");
    const Value* fallback = kw.find("default");
    Array out;
    for (const Value& item : *operand.array) {
      if (!item.isAttributeContainer()) fail("items in map must be an object");
      Value v = attributePath(item, attr->text);
      out.push_back(v.kind == Kind::Undefined && fallback ? *fallback : v);
    }
    return Value::list(std::move(out));
  }
  fail("Unknown ArrayValue filter: " + name);
}

}  // namespace

Value applyFilter(Interpreter& interp, const Value& operand, const Node& filter,
                  const ScopePtr& scope) {
  if (filter.kind == NodeKind::Identifier) return plainFilter(operand, filter.text);
  if (filter.kind != NodeKind::Call || filter.a->kind != NodeKind::Identifier)
    fail("Unknown filter expression");
  const std::string& name = filter.a->text;
  if (name == "tojson") return jsonFilter(interp, operand, filter, scope);
  if (name == "join") {
    Array items;
    if (operand.kind == Kind::String) {
      for (std::string& c : codePoints(operand.text)) items.push_back(Value::string(std::move(c)));
    } else if (operand.isArray()) {
      items = *operand.array;
    } else {
      fail("Cannot apply filter \"join\" to type: " + std::string(kindName(operand.kind)));
    }
    std::vector<Value> args;
    Object kw;
    interp.evalArguments(filter.items, scope, args, kw);
    Value sep = argument(args, 0, kw, "separator", Value::string(""));
    if (sep.kind != Kind::String) fail("separator must be a string");
    return Value::string(joinValues(items, sep.text));
  }
  if (name == "int" || name == "float") {
    bool integer = name == "int";
    std::vector<Value> args;
    Object kw;
    interp.evalArguments(filter.items, scope, args, kw);
    Value fallback =
        argument(args, 0, kw, "default", integer ? Value::integer(0) : Value::floating(0));
    if (operand.kind == Kind::String) {
      double v = parseLeadingNumber(operand.text, integer);
      if (std::isnan(v)) return fallback;
      return integer ? Value::integer(std::trunc(v)) : Value::floating(v);
    }
    if (operand.isNumber()) return operand;
    if (operand.kind == Kind::Bool)
      return integer ? Value::integer(operand.boolean) : Value::floating(operand.boolean);
    fail("Cannot apply filter \"" + name + "\" to type: " + kindName(operand.kind));
  }
  if (name == "default") {
    std::vector<Value> args;
    Object kw;
    interp.evalArguments(filter.items, scope, args, kw);
    Value fallback = args.empty() ? Value::string("") : args[0];
    Value boolean = argument(args, 1, kw, "boolean", Value::of(false));
    if (boolean.kind != Kind::Bool) fail("`default` filter flag must be a boolean");
    if (operand.kind == Kind::Undefined || (boolean.boolean && !truthy(operand))) return fallback;
    return operand;
  }
  if (operand.isArray()) return arrayCallFilter(interp, operand, filter, scope);
  if (operand.kind == Kind::String) {
    std::vector<Value> args;
    Object kw;
    interp.evalArguments(filter.items, scope, args, kw);
    if (name == "indent") {
      Value width = argument(args, 0, kw, "width", Value::integer(4));
      if (width.kind != Kind::Int) fail("width must be a number");
      Value first = argument(args, 1, kw, "first", Value::of(false));
      Value blank = argument(args, 2, kw, "blank", Value::of(false));
      std::string pad(static_cast<size_t>(std::max(0.0, width.number)), ' ');
      return Value::string(indentLines(operand.text, pad, truthy(first), truthy(blank)));
    }
    if (name == "replace") {
      Value fn = builtinMember(operand, "replace");
      args.push_back(Value::map(std::move(kw), Kind::KwArgs));
      return (*fn.function)(args, scope);
    }
    fail("Unknown StringValue filter: " + name);
  }
  if (operand.isObject()) {
    Value fn = builtinMember(operand, name);
    if (fn.kind == Kind::Function) {
      std::vector<Value> args;
      Object kw;
      interp.evalArguments(filter.items, scope, args, kw);
      if (!kw.entries.empty()) args.push_back(Value::map(std::move(kw), Kind::KwArgs));
      return (*fn.function)(args, scope);
    }
    fail("Unknown ObjectValue filter: " + name);
  }
  fail("Cannot apply filter \"" + name + "\" to type: " + kindName(operand.kind));
}

}  // namespace tpc::jinja
