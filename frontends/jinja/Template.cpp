#include "frontends/jinja/Template.h"

#include <nlohmann/json.hpp>

#include "frontends/jinja/Interpreter.h"
#include "frontends/jinja/Parser.h"

namespace tpc::jinja {

Expected<Template> Template::parse(const std::string& source) {
  try {
    Template t;
    t.program_ = std::make_shared<Program>(jinja::parse(tokenize(source)));
    return t;
  } catch (const TemplateError& e) {
    return makeError("line ", e.line ? e.line : 1, ": ", e.message);
  }
}

Expected<std::string> Template::render(const nlohmann::ordered_json& variables) const {
  if (!variables.is_object()) return makeError("template variables must be a JSON object");
  try {
    ScopePtr globals = std::make_shared<Scope>();
    installGlobals(*globals);
    for (auto it = variables.begin(); it != variables.end(); ++it) {
      if (globals->lookup(it.key()))
        return makeError("variable '", it.key(), "' is already declared");
      globals->set(it.key(), fromJson(it.value()));
    }
    Interpreter interpreter;
    return interpreter.run(*program_, globals);
  } catch (const TemplateError& e) {
    return makeError("line ", e.line ? e.line : 1, ": ", e.message);
  } catch (const std::bad_alloc&) {
    return makeError("out of memory rendering the template");
  }
}

}  // namespace tpc::jinja
