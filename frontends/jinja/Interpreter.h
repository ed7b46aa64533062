// Renders a parsed template, statement by statement, with the semantics of @huggingface/jinja's
// runtime (its scoping, its truthiness, its JavaScript string and number formatting), since
// that is what transformers.js renders chat prompts with and what the tests hold us to.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "frontends/jinja/Ast.h"
#include "frontends/jinja/Value.h"

namespace tpc::jinja {

// Variables of one level: the template's globals, a for loop, a macro call.
struct Scope {
  std::shared_ptr<Scope> parent;
  std::vector<std::pair<std::string, Value>> variables;

  explicit Scope(std::shared_ptr<Scope> p = nullptr) : parent(std::move(p)) {}
  const Value* lookup(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent.get())
      for (const auto& [k, v] : s->variables)
        if (k == name) return &v;
    return nullptr;
  }
  void set(std::string_view name, Value value) {
    for (auto& [k, v] : variables)
      if (k == name) {
        v = std::move(value);
        return;
      }
    variables.emplace_back(std::string(name), std::move(value));
  }
};
using ScopePtr = std::shared_ptr<Scope>;

class Interpreter {
 public:
  std::string run(const Program& program, const ScopePtr& globals);

  Value eval(const Node& node, const ScopePtr& scope);
  // Positional values (with *spread expanded) and keyword values, as the oracle collects them.
  void evalArguments(const std::vector<NodePtr>& args, const ScopePtr& scope,
                     std::vector<Value>& positional, Object& keywords);

 private:
  void block(const std::vector<NodePtr>& body, const ScopePtr& scope, std::string& out);
  // A statement's value, appended to the output unless null or undefined.
  Value statement(const Node& node, const ScopePtr& scope);
  Value evalNode(const Node& node, const ScopePtr& scope);
  Value binary(const Node& node, const ScopePtr& scope);
  Value unary(const Node& node, const ScopePtr& scope);
  Value member(const Node& node, const ScopePtr& scope);
  Value slice(const Value& object, const Node& slice, const ScopePtr& scope);
  Value call(const Node& node, const ScopePtr& scope);
  Value forLoop(const Node& node, const ScopePtr& scope);
  void set(const Node& node, const ScopePtr& scope);
  Value macro(const Node& node, const ScopePtr& scope);
  Value callBlock(const Node& node, const ScopePtr& scope);
  void bindMacroArguments(const std::string& displayName, const std::vector<NodePtr>& parameters,
                          bool usesKwargs, bool usesVarargs, std::vector<Value> args,
                          const ScopePtr& scope);
  // Macro calls in progress; recursion is bounded so that it fails instead of overflowing.
  int callDepth_ = 0;
};

// Filters (Filters.cpp) and tests, methods and globals (Builtins.cpp).
Value applyFilter(Interpreter& interp, const Value& operand, const Node& filter,
                  const ScopePtr& scope);
bool runTest(const std::string& name, const Value& operand, const Value* argument);
bool hasTest(const std::string& name);
// `object.name` for strings, arrays and objects: a bound method, `length`, or undefined.
Value builtinMember(const Value& object, const std::string& name);
void installGlobals(Scope& globals);
// Loose (==) and strict (===) equality of JavaScript, over the values' payloads.
bool looseEquals(const Value& a, const Value& b);
bool strictEquals(const Value& a, const Value& b);
// The sort/dictsort comparison; throws for types that do not compare.
int compareValues(const Value& a, const Value& b, bool caseSensitive);
std::string replaceAll(const std::string& s, const std::string& from, const std::string& to,
                       double count);

}  // namespace tpc::jinja
