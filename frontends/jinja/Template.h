// A Jinja interpreter for Hugging Face chat templates, held byte for byte to @huggingface/jinja
// (the interpreter transformers.js uses), quirks included: JavaScript number formatting,
// tojson's spacing, `strip('x')` stripping all whitespace. It is ours because Debian packages no
// C++ Jinja library that runs these templates (no inja, minja or jinja2cpp), and the oracle's
// semantics would have to be layered on any of them anyway.
//
//   lexer (Lexer.cpp) -> parser (Parser.cpp, Ast.h) -> interpreter (Interpreter.cpp) with
//   filters (Filters.cpp), tests, methods and globals (Builtins.cpp) over values (Value.cpp).
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "ir/Error.h"

namespace tpc::jinja {

struct Program;

class Template {
 public:
  // Fails on a template that does not lex or parse: "line N: what".
  static Expected<Template> parse(const std::string& source);
  // `variables` is a JSON object; each member becomes a template variable. Fails when the
  // template raises (raise_exception) or an operation is invalid: "line N: what".
  Expected<std::string> render(const nlohmann::ordered_json& variables) const;

 private:
  std::shared_ptr<const Program> program_;
};

}  // namespace tpc::jinja
