// Tokens to a syntax tree, following @huggingface/jinja's recursive-descent parser so that what
// it accepts (and rejects) we accept (and reject) too. Throws TemplateError naming the line.
#pragma once

#include <vector>

#include "frontends/jinja/Ast.h"
#include "frontends/jinja/Lexer.h"

namespace tpc::jinja {

Program parse(const std::vector<Token>& tokens);

}  // namespace tpc::jinja
