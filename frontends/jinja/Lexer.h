// Template text to tokens, the way @huggingface/jinja's lexer does it: the source is first
// preprocessed with trim_blocks and lstrip_blocks (both on, as transformers sets them) and the
// transformers-only {% generation %} tags are dropped; then `-` markers strip whitespace.
// Every token remembers the line of the original template it came from, for error messages.
#pragma once

#include <string>
#include <vector>

namespace tpc::jinja {

enum class Tok {
  Text,
  Number,
  String,
  Identifier,
  Equals,
  OpenParen,
  CloseParen,
  OpenStatement,
  CloseStatement,
  OpenExpression,
  CloseExpression,
  OpenSquare,
  CloseSquare,
  OpenCurly,
  CloseCurly,
  Comma,
  Dot,
  Colon,
  Pipe,
  Additive,        // + - ~
  Multiplicative,  // * / // %
  Power,           // **
  Comparison,      // < > <= >= == !=
  Unary,           // a lone + or - before an operand
  Comment,
};

struct Token {
  Tok type;
  std::string value;
  int line;
};

// Throws TemplateError naming the line of the offending character.
std::vector<Token> tokenize(const std::string& source);

}  // namespace tpc::jinja
