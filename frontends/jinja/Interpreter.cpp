#include "frontends/jinja/Interpreter.h"

#include <cmath>

#include "frontends/tokenizer/TokenizerText.h"

namespace tpc::jinja {
namespace {

// break and continue unwind to their loop, as the oracle's control-flow exceptions do.
struct BreakSignal {};
struct ContinueSignal {};

bool numericLike(const Value& v) { return v.isNumber() || v.kind == Kind::Bool; }
double numericValue(const Value& v) {
  return v.kind == Kind::Bool ? (v.boolean ? 1 : 0) : v.number;
}

// Python-style slicing of `n` items, as the oracle's utils.slice computes the indices.
std::vector<size_t> sliceIndices(size_t n, const Value& start, const Value& stop,
                                 const Value& step) {
  double len = static_cast<double>(n);
  double st = step.kind == Kind::Undefined ? 1 : step.number;
  double a, b;
  if (st >= 0) {
    a = start.kind == Kind::Undefined ? 0 : start.number;
    a = a < 0 ? std::max(len + a, 0.0) : std::min(a, len);
    b = stop.kind == Kind::Undefined ? len : stop.number;
    b = b < 0 ? std::max(len + b, 0.0) : std::min(b, len);
  } else {
    a = start.kind == Kind::Undefined ? len - 1 : start.number;
    a = a < 0 ? std::max(len + a, -1.0) : std::min(a, len - 1);
    b = stop.kind == Kind::Undefined ? -1 : stop.number;
    b = b < -1 ? std::max(len + b, -1.0) : std::min(b, len - 1);
  }
  std::vector<size_t> out;
  double dir = st > 0 ? 1 : st < 0 ? -1 : 0;
  if (dir == 0) fail("slice step cannot be zero");
  for (double i = a; dir * i < dir * b; i += st) out.push_back(static_cast<size_t>(i));
  return out;
}

// String.prototype.at over UTF-16 indices; half of a surrogate pair prints as U+FFFD.
Value stringAt(const std::string& s, double index) {
  double length = static_cast<double>(utf16Length(s));
  double i = std::trunc(index);
  if (i < 0) i += length;
  if (i < 0 || i >= length) return Value();
  double unit = 0;
  for (size_t p = 0; p < s.size();) {
    size_t len = tok::utf8Length(static_cast<unsigned char>(s[p]));
    double units = len == 4 ? 2 : 1;
    if (i < unit + units) return Value::string(units == 2 ? "\xEF\xBF\xBD" : s.substr(p, len));
    unit += units;
    p += len;
  }
  return Value();
}

// Whether a macro body reads `kwargs` or `varargs`, which then collect the extra arguments.
bool readsName(const Node& node, const char* name) {
  if (node.kind == NodeKind::Identifier && node.text == name) return true;
  for (const Node* child : {node.a.get(), node.b.get(), node.c.get()})
    if (child && readsName(*child, name)) return true;
  for (const auto* list : {&node.items, &node.body, &node.alternate})
    for (const NodePtr& child : *list)
      if (child && readsName(*child, name)) return true;
  for (const auto& [k, v] : node.pairs)
    if (readsName(*k, name) || readsName(*v, name)) return true;
  return false;
}

bool bodyReads(const std::vector<NodePtr>& body, const char* name) {
  for (const NodePtr& n : body)
    if (readsName(*n, name)) return true;
  return false;
}

}  // namespace

std::string Interpreter::run(const Program& program, const ScopePtr& globals) {
  std::string out;
  try {
    block(program.body, globals, out);
  } catch (const BreakSignal&) {
    fail("'break' outside of a for loop");
  } catch (const ContinueSignal&) {
    fail("'continue' outside of a for loop");
  }
  return out;
}

void Interpreter::block(const std::vector<NodePtr>& body, const ScopePtr& scope, std::string& out) {
  for (const NodePtr& node : body) {
    if (node->kind == NodeKind::String) {
      out += node->text;
      continue;
    }
    try {
      if (node->kind == NodeKind::If) {
        block(truthy(eval(*node->a, scope)) ? node->body : node->alternate, scope, out);
        continue;
      }
      Value v = statement(*node, scope);
      if (v.kind == Kind::String)
        out += v.text;
      else if (!v.isUndefinedOrNull())
        out += toDisplay(v);
    } catch (TemplateError& e) {
      if (!e.line) e.line = node->line;
      throw;
    }
  }
}

Value Interpreter::statement(const Node& node, const ScopePtr& scope) {
  switch (node.kind) {
    case NodeKind::Comment:
      return Value::null();
    case NodeKind::Set:
      set(node, scope);
      return Value::null();
    case NodeKind::For:
      return forLoop(node, scope);
    case NodeKind::Macro:
      return macro(node, scope);
    case NodeKind::CallBlock:
      return callBlock(node, scope);
    case NodeKind::FilterBlock: {
      std::string rendered;
      block(node.body, scope, rendered);
      return applyFilter(*this, Value::string(std::move(rendered)), *node.a, scope);
    }
    case NodeKind::Break:
      throw BreakSignal{};
    case NodeKind::Continue:
      throw ContinueSignal{};
    default:
      return eval(node, scope);
  }
}

Value Interpreter::eval(const Node& node, const ScopePtr& scope) {
  try {
    return evalNode(node, scope);
  } catch (TemplateError& e) {
    if (!e.line) e.line = node.line;
    throw;
  }
}

Value Interpreter::evalNode(const Node& node, const ScopePtr& scope) {
  switch (node.kind) {
    case NodeKind::Integer:
      return Value::integer(node.number);
    case NodeKind::Float:
      return Value::floating(node.number);
    case NodeKind::String:
      return Value::string(node.text);
    case NodeKind::ArrayLiteral:
    case NodeKind::TupleLiteral: {
      Array items;
      items.reserve(node.items.size());
      for (const NodePtr& item : node.items) items.push_back(eval(*item, scope));
      return Value::list(std::move(items),
                         node.kind == NodeKind::TupleLiteral ? Kind::Tuple : Kind::Array);
    }
    case NodeKind::ObjectLiteral: {
      Object o;
      for (const auto& [k, v] : node.pairs) {
        Value key = eval(*k, scope);
        if (key.kind != Kind::String)
          fail(std::string("Object keys must be strings: got ") + kindName(key.kind));
        o.set(key.text, eval(*v, scope));
      }
      return Value::map(std::move(o));
    }
    case NodeKind::Identifier: {
      const Value* v = scope->lookup(node.text);
      return v ? *v : Value();
    }
    case NodeKind::Call:
      return call(node, scope);
    case NodeKind::Member:
      return member(node, scope);
    case NodeKind::Unary:
      return unary(node, scope);
    case NodeKind::Binary:
      return binary(node, scope);
    case NodeKind::FilterExpr:
      return applyFilter(*this, eval(*node.a, scope), *node.b, scope);
    case NodeKind::Test: {
      Value operand = eval(*node.a, scope);
      if (!hasTest(node.text)) fail("Unknown test: " + node.text);
      return Value::of(runTest(node.text, operand, nullptr) != node.flag);
    }
    case NodeKind::Select:
      if (!truthy(eval(*node.b, scope))) return Value();
      return eval(*node.a, scope);
    case NodeKind::Ternary:
      return truthy(eval(*node.a, scope)) ? eval(*node.b, scope) : eval(*node.c, scope);
    case NodeKind::If: {
      std::string out;
      block(truthy(eval(*node.a, scope)) ? node.body : node.alternate, scope, out);
      return Value::string(std::move(out));
    }
    default:
      return statement(node, scope);
  }
}

Value Interpreter::binary(const Node& node, const ScopePtr& scope) {
  const std::string& op = node.text;
  Value left = eval(*node.a, scope);
  if (op == "and") return truthy(left) ? eval(*node.b, scope) : left;
  if (op == "or") return truthy(left) ? left : eval(*node.b, scope);
  Value right = eval(*node.b, scope);
  if (op == "==") return Value::of(looseEquals(left, right));
  if (op == "!=") return Value::of(!looseEquals(left, right));
  bool membership = op == "in" || op == "not in";
  if (left.kind == Kind::Undefined || right.kind == Kind::Undefined) {
    if (right.kind == Kind::Undefined && membership) return Value::of(op == "not in");
    fail("Cannot perform operation " + op + " on undefined values");
  }
  if (left.kind == Kind::Null || right.kind == Kind::Null)
    fail("Cannot perform operation on null values");
  if (op == "~") return Value::string(toRaw(left) + toRaw(right));
  if (op == "**" && numericLike(left) && numericLike(right)) {
    double a = numericValue(left), b = numericValue(right);
    if (a == 0 && b < 0) fail("0.0 cannot be raised to a negative power");
    double r = std::pow(a, b);
    if (!std::isfinite(r)) fail("Exponentiation result is not a finite real number");
    bool isFloat = left.kind == Kind::Float || right.kind == Kind::Float || b < 0;
    return isFloat ? Value::floating(r) : Value::integer(r);
  }
  if (left.isNumber() && right.isNumber()) {
    double a = left.number, b = right.number;
    bool isFloat = left.kind == Kind::Float || right.kind == Kind::Float;
    auto number = [&](double r) { return isFloat ? Value::floating(r) : Value::integer(r); };
    if (op == "+") return number(a + b);
    if (op == "-") return number(a - b);
    if (op == "*") return number(a * b);
    if (op == "/") return Value::floating(a / b);
    if (op == "//") return number(std::floor(a / b));
    if (op == "%") return number(std::fmod(a, b));
    if (op == "<") return Value::of(a < b);
    if (op == ">") return Value::of(a > b);
    if (op == ">=") return Value::of(a >= b);
    if (op == "<=") return Value::of(a <= b);
  } else if (left.isArray() && right.isArray()) {
    if (op == "+") {
      Array joined = *left.array;
      joined.insert(joined.end(), right.array->begin(), right.array->end());
      return Value::list(std::move(joined));
    }
  } else if (right.isArray()) {
    if (membership) {
      bool found = false;
      for (const Value& item : *right.array)
        if (strictEquals(item, left)) {
          found = true;
          break;
        }
      return Value::of(found == (op == "in"));
    }
  }
  if ((left.kind == Kind::String || right.kind == Kind::String) && op == "+")
    return Value::string(toRaw(left) + toRaw(right));
  if (left.kind == Kind::String && right.kind == Kind::String && membership)
    return Value::of((right.text.find(left.text) != std::string::npos) == (op == "in"));
  if (left.kind == Kind::String && right.isObject() && membership)
    return Value::of((right.object->find(left.text) != nullptr) == (op == "in"));
  fail("Unknown operator \"" + op + "\" between " + kindName(left.kind) + " and " +
       kindName(right.kind));
}

Value Interpreter::unary(const Node& node, const ScopePtr& scope) {
  Value v = eval(*node.a, scope);
  if (node.text == "not") return Value::of(!truthy(v));
  if (!numericLike(v)) fail("Unknown operator \"" + node.text + "\" for " + kindName(v.kind));
  double r = (node.text == "-" ? -1 : 1) * numericValue(v);
  return v.kind == Kind::Float ? Value::floating(r) : Value::integer(r);
}

Value Interpreter::slice(const Value& object, const Node& s, const ScopePtr& scope) {
  if (!object.isArray() && object.kind != Kind::String)
    fail("Slice object must be an array or string");
  Value parts[3];
  const Node* nodes[3] = {s.a.get(), s.b.get(), s.c.get()};
  const char* names[3] = {"start", "stop", "step"};
  for (int i = 0; i < 3; ++i) {
    if (nodes[i]) parts[i] = eval(*nodes[i], scope);
    if (parts[i].kind != Kind::Int && parts[i].kind != Kind::Undefined)
      fail(std::string("Slice ") + names[i] + " must be numeric or undefined");
  }
  if (object.isArray()) {
    Array out;
    for (size_t i : sliceIndices(object.array->size(), parts[0], parts[1], parts[2]))
      out.push_back((*object.array)[i]);
    return Value::list(std::move(out));
  }
  std::vector<std::string> chars = codePoints(object.text);
  std::string out;
  for (size_t i : sliceIndices(chars.size(), parts[0], parts[1], parts[2])) out += chars[i];
  return Value::string(std::move(out));
}

Value Interpreter::member(const Node& node, const ScopePtr& scope) {
  Value object = eval(*node.a, scope);
  Value property;
  if (node.flag) {
    if (node.b->kind == NodeKind::Slice) return slice(object, *node.b, scope);
    property = eval(*node.b, scope);
  } else if (node.b->kind == NodeKind::Integer) {
    property = Value::integer(node.b->number);
  } else {
    property = Value::string(node.b->text);
  }
  if (object.isAttributeContainer()) {
    if (property.kind != Kind::String)
      fail(std::string("Cannot access property with non-string: got ") + kindName(property.kind));
    if (const Value* v = object.object->find(property.text)) return *v;
    return object.isObject() ? builtinMember(object, property.text) : Value();
  }
  if (object.isArray() || object.kind == Kind::String) {
    if (property.kind == Kind::Int) {
      if (object.kind == Kind::String) return stringAt(object.text, property.number);
      double length = static_cast<double>(object.array->size());
      double i = std::trunc(property.number);
      if (i < 0) i += length;
      if (i < 0 || i >= length) return Value();
      return (*object.array)[static_cast<size_t>(i)];
    }
    if (property.kind == Kind::String) return builtinMember(object, property.text);
    fail(std::string("Cannot access property with non-string/non-number: got ") +
         kindName(property.kind));
  }
  if (property.kind != Kind::String)
    fail(std::string("Cannot access property with non-string: got ") + kindName(property.kind));
  return builtinMember(object, property.text);
}

void Interpreter::evalArguments(const std::vector<NodePtr>& args, const ScopePtr& scope,
                                std::vector<Value>& positional, Object& keywords) {
  for (const NodePtr& arg : args) {
    if (arg->kind == NodeKind::Spread) {
      Value v = eval(*arg->a, scope);
      if (!v.isArray()) fail(std::string("Cannot unpack non-iterable type: ") + kindName(v.kind));
      positional.insert(positional.end(), v.array->begin(), v.array->end());
    } else if (arg->kind != NodeKind::KeywordArg && arg->kind != NodeKind::KeywordSpread) {
      positional.push_back(eval(*arg, scope));
    }
  }
  auto add = [&](const std::string& key, Value value) {
    if (keywords.find(key)) fail("Got multiple values for keyword argument '" + key + "'");
    keywords.entries.emplace_back(key, std::move(value));
  };
  for (const NodePtr& arg : args) {
    if (arg->kind == NodeKind::KeywordArg) {
      add(arg->text, eval(*arg->a, scope));
    } else if (arg->kind == NodeKind::KeywordSpread) {
      Value v = eval(*arg->a, scope);
      if (!v.isObject())
        fail(std::string("Argument after ** must be a mapping, not ") + kindName(v.kind));
      for (const auto& [k, value] : v.object->entries) add(k, value);
    }
  }
}

Value Interpreter::call(const Node& node, const ScopePtr& scope) {
  std::vector<Value> args;
  Object keywords;
  evalArguments(node.items, scope, args, keywords);
  if (!keywords.entries.empty()) args.push_back(Value::map(std::move(keywords), Kind::KwArgs));
  Value fn = eval(*node.a, scope);
  if (fn.kind != Kind::Function)
    fail(std::string("Cannot call something that is not a function: got ") + kindName(fn.kind));
  return (*fn.function)(args, scope);
}

Value Interpreter::forLoop(const Node& node, const ScopePtr& outer) {
  ScopePtr scope = std::make_shared<Scope>(outer);
  const Node* test = nullptr;
  Value iterable;
  if (node.b->kind == NodeKind::Select) {
    iterable = eval(*node.b->a, scope);
    test = node.b->b.get();
  } else {
    iterable = eval(*node.b, scope);
  }
  if (!iterable.isArray() && !iterable.isObject())
    fail(std::string("Expected iterable or object type in for loop: got ") +
         kindName(iterable.kind));
  Array all;
  if (iterable.isObject()) {
    for (const auto& [k, v] : iterable.object->entries) all.push_back(Value::string(k));
  } else {
    all = *iterable.array;
  }
  const Node& target = *node.a;
  auto bind = [&](Scope& s, const Value& current) {
    if (target.kind == NodeKind::Identifier) {
      s.set(target.text, current);
      return;
    }
    if (current.kind != Kind::Array)
      fail(std::string("Cannot unpack non-iterable type: ") + kindName(current.kind));
    if (target.items.size() != current.array->size())
      fail(std::string("Too ") + (target.items.size() > current.array->size() ? "few" : "many") +
           " items to unpack");
    for (size_t j = 0; j < target.items.size(); ++j) {
      if (target.items[j]->kind != NodeKind::Identifier) fail("Cannot unpack non-identifier type");
      s.set(target.items[j]->text, (*current.array)[j]);
    }
  };
  Array items;
  for (const Value& current : all) {
    if (test) {
      ScopePtr loopScope = std::make_shared<Scope>(scope);
      bind(*loopScope, current);
      if (!truthy(eval(*test, loopScope))) continue;
    } else if (target.kind != NodeKind::Identifier) {
      Scope probe;  // the oracle checks unpacking before the first iteration runs
      bind(probe, current);
    }
    items.push_back(current);
  }
  std::string result;
  bool noIteration = true;
  size_t n = items.size();
  for (size_t i = 0; i < n; ++i) {
    Object loop;
    loop.entries.reserve(9);
    double di = static_cast<double>(i), dn = static_cast<double>(n);
    loop.entries.emplace_back("index", Value::integer(di + 1));
    loop.entries.emplace_back("index0", Value::integer(di));
    loop.entries.emplace_back("revindex", Value::integer(dn - di));
    loop.entries.emplace_back("revindex0", Value::integer(dn - di - 1));
    loop.entries.emplace_back("first", Value::of(i == 0));
    loop.entries.emplace_back("last", Value::of(i == n - 1));
    loop.entries.emplace_back("length", Value::integer(dn));
    loop.entries.emplace_back("previtem", i > 0 ? items[i - 1] : Value());
    loop.entries.emplace_back("nextitem", i + 1 < n ? items[i + 1] : Value());
    scope->set("loop", Value::map(std::move(loop)));
    bind(*scope, items[i]);
    // An iteration cut short by break or continue contributes nothing, as in the oracle.
    std::string iteration;
    try {
      block(node.body, scope, iteration);
    } catch (const ContinueSignal&) {
      continue;
    } catch (const BreakSignal&) {
      break;
    }
    result += iteration;
    noIteration = false;
  }
  if (noIteration) block(node.alternate, scope, result);
  return Value::string(std::move(result));
}

void Interpreter::set(const Node& node, const ScopePtr& scope) {
  Value rhs;
  if (node.b) {
    rhs = eval(*node.b, scope);
  } else {
    std::string out;
    block(node.body, scope, out);
    rhs = Value::string(std::move(out));
  }
  const Node& target = *node.a;
  if (target.kind == NodeKind::Identifier) {
    scope->set(target.text, std::move(rhs));
  } else if (target.kind == NodeKind::TupleLiteral) {
    if (!rhs.isArray())
      fail(std::string("Cannot unpack non-iterable type in set: ") + kindName(rhs.kind));
    if (rhs.array->size() != target.items.size())
      fail(std::string("Too ") + (target.items.size() > rhs.array->size() ? "few" : "many") +
           " items to unpack in set");
    for (size_t i = 0; i < target.items.size(); ++i) {
      if (target.items[i]->kind != NodeKind::Identifier)
        fail("Cannot unpack to non-identifier in set");
      scope->set(target.items[i]->text, (*rhs.array)[i]);
    }
  } else if (target.kind == NodeKind::Member) {
    Value object = eval(*target.a, scope);
    if (object.kind != Kind::Namespace) fail("cannot assign attribute on non-namespace object");
    if (target.b->kind != NodeKind::Identifier)
      fail("Cannot assign to member with non-identifier property");
    object.object->set(target.b->text, std::move(rhs));
  } else {
    fail("Invalid LHS inside assignment expression");
  }
}

void Interpreter::bindMacroArguments(const std::string& displayName,
                                     const std::vector<NodePtr>& parameters, bool usesKwargs,
                                     bool usesVarargs, std::vector<Value> args,
                                     const ScopePtr& scope) {
  Object keywords;
  if (!args.empty() && args.back().kind == Kind::KwArgs) {
    keywords = *args.back().object;
    args.pop_back();
  }
  std::vector<std::pair<std::string, const Node*>> pendingDefaults;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const Node& p = *parameters[i];
    const Node* defaultValue = p.kind == NodeKind::KeywordArg ? p.a.get() : nullptr;
    Value value;
    bool given = i < args.size();
    if (given) {
      value = args[i];
    } else if (const Value* kw = keywords.find(p.text)) {
      value = *kw;
      keywords.erase(p.text);
      given = true;
    }
    if (!given && defaultValue) pendingDefaults.emplace_back(p.text, defaultValue);
    scope->set(p.text, value);
  }
  if (usesKwargs)
    scope->set("kwargs", Value::map(keywords));
  else if (!keywords.entries.empty())
    fail("macro " + displayName + " takes no keyword argument '" + keywords.entries[0].first + "'");
  if (usesVarargs) {
    Array rest;
    for (size_t i = parameters.size(); i < args.size(); ++i) rest.push_back(args[i]);
    scope->set("varargs", Value::list(std::move(rest)));
  } else if (args.size() > parameters.size()) {
    fail("macro " + displayName + " takes not more than " + std::to_string(parameters.size()) +
         " argument(s)");
  }
  for (const auto& [name, expr] : pendingDefaults) scope->set(name, eval(*expr, scope));
}

Value Interpreter::macro(const Node& node, const ScopePtr& scope) {
  bool kwargs = bodyReads(node.body, "kwargs"), varargs = bodyReads(node.body, "varargs");
  const Node* n = &node;
  scope->set(node.text, Value::callable([this, n, kwargs, varargs](std::vector<Value>& args,
                                                                   const ScopePtr& caller) {
               // Recursion is bounded so that it fails instead of overflowing the stack.
               if (callDepth_ >= 200) fail("macro '" + n->text + "' recurses too deeply");
               ++callDepth_;
               struct Leave {
                 int& depth;
                 ~Leave() { --depth; }
               } leave{callDepth_};
               ScopePtr macroScope = std::make_shared<Scope>(caller);
               bindMacroArguments("'" + n->text + "'", n->items, kwargs, varargs, args, macroScope);
               std::string out;
               block(n->body, macroScope, out);
               return Value::string(std::move(out));
             }));
  return Value::null();
}

Value Interpreter::callBlock(const Node& node, const ScopePtr& scope) {
  bool kwargs = bodyReads(node.body, "kwargs"), varargs = bodyReads(node.body, "varargs");
  const Node* n = &node;
  Value caller =
      Value::callable([this, n, kwargs, varargs, scope](std::vector<Value>& args, const ScopePtr&) {
        ScopePtr callScope = std::make_shared<Scope>(scope);
        bindMacroArguments("None", n->items, kwargs, varargs, args, callScope);
        std::string out;
        block(n->body, callScope, out);
        return Value::string(std::move(out));
      });
  std::vector<Value> args;
  Object keywords;
  evalArguments(node.a->items, scope, args, keywords);
  args.push_back(Value::map(std::move(keywords), Kind::KwArgs));
  Value fn = eval(*node.a->a, scope);
  if (fn.kind != Kind::Function)
    fail(std::string("Cannot call something that is not a function: got ") + kindName(fn.kind));
  ScopePtr withCaller = std::make_shared<Scope>(scope);
  withCaller->set("caller", std::move(caller));
  return (*fn.function)(args, withCaller);
}

}  // namespace tpc::jinja
