#include "frontends/jinja/Parser.h"

#include <algorithm>
#include <set>

#include "frontends/jinja/Value.h"

namespace tpc::jinja {
namespace {

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

  Program run() {
    Program program;
    while (i_ < t_.size()) program.body.push_back(any());
    return program;
  }

 private:
  const std::vector<Token>& t_;
  size_t i_ = 0;
  int depth_ = 0;

  // Nesting is bounded so that a hostile template fails with a message, not a stack overflow.
  struct Nesting {
    Parser& p;
    explicit Nesting(Parser& parser) : p(parser) {
      if (++p.depth_ > 400) p.error("the template nests too deeply");
    }
    ~Nesting() { --p.depth_; }
  };

  int line() const {
    if (t_.empty()) return 1;
    return t_[std::min(i_, t_.size() - 1)].line;
  }
  [[noreturn]] void error(const std::string& message) const {
    throw TemplateError{message, line()};
  }
  const Token& peek() const {
    if (i_ >= t_.size()) error("unexpected end of template (a block or tag is not closed)");
    return t_[i_];
  }
  const Token& next() {
    const Token& tok = peek();
    ++i_;
    return tok;
  }
  bool is(Tok type, size_t ahead = 0) const {
    return i_ + ahead < t_.size() && t_[i_ + ahead].type == type;
  }
  bool isIdentifier(const char* name, size_t ahead = 0) const {
    return is(Tok::Identifier, ahead) && t_[i_ + ahead].value == name;
  }
  bool isStatement(std::initializer_list<const char*> names) const {
    if (!is(Tok::OpenStatement) || !is(Tok::Identifier, 1)) return false;
    return std::any_of(names.begin(), names.end(),
                       [&](const char* n) { return t_[i_ + 1].value == n; });
  }
  void expect(Tok type, const char* what) {
    if (i_ >= t_.size()) error(std::string("unexpected end of template: ") + what);
    if (t_[i_].type != type) error(std::string(what) + ", got '" + t_[i_].value + "'");
    ++i_;
  }
  void expectIdentifier(const char* name) {
    if (!isIdentifier(name)) error(std::string("Expected ") + name);
    ++i_;
  }
  NodePtr node(NodeKind kind) const { return std::make_unique<Node>(kind, line()); }

  NodePtr any();
  NodePtr statement();
  NodePtr setStatement(int at);
  NodePtr ifStatement(int at);
  NodePtr forStatement(int at);
  NodePtr macroStatement(int at);
  // The statements up to one of `ends`; a block that the template never closes is named by
  // the line that opened it.
  void blockUntil(std::vector<NodePtr>& body, std::initializer_list<const char*> ends,
                  const char* opener, int openedAt) {
    while (!isStatement(ends)) {
      if (i_ >= t_.size())
        throw TemplateError{std::string("'") + opener + "' block opened on line " +
                                std::to_string(openedAt) + " is never closed (no {% end" + opener +
                                " %})",
                            openedAt};
      body.push_back(any());
    }
  }
  NodePtr sequence(bool primaryOnly = false);
  NodePtr expression() {
    Nesting guard(*this);
    return ifExpression();
  }
  NodePtr ifExpression();
  NodePtr logicalOr();
  NodePtr logicalAnd();
  NodePtr logicalNot();
  NodePtr comparison();
  NodePtr additive();
  NodePtr multiplicative();
  NodePtr power();
  NodePtr test();
  NodePtr filter();
  NodePtr unarySign();
  NodePtr callMember();
  NodePtr call(NodePtr callee);
  std::vector<NodePtr> args(bool parameters);
  NodePtr member(NodePtr object);
  NodePtr memberArguments();
  NodePtr primary();
};

NodePtr Parser::any() {
  Nesting guard(*this);
  const Token& tok = peek();
  switch (tok.type) {
    case Tok::Comment: {
      NodePtr n = node(NodeKind::Comment);
      ++i_;
      return n;
    }
    case Tok::Text: {
      NodePtr n = node(NodeKind::String);
      n->text = tok.value;
      ++i_;
      return n;
    }
    case Tok::OpenStatement:
      return statement();
    case Tok::OpenExpression: {
      ++i_;
      NodePtr e = expression();
      expect(Tok::CloseExpression, "Expected closing expression token '}}'");
      return e;
    }
    default:
      error("Unexpected token '" + tok.value + "'");
  }
}

NodePtr Parser::statement() {
  int at = line();
  expect(Tok::OpenStatement, "Expected '{%'");
  if (!is(Tok::Identifier)) error("Unknown statement, got '" + peek().value + "'");
  std::string name = next().value;
  if (name == "set") return setStatement(at);
  if (name == "if") {
    NodePtr n = ifStatement(at);
    expect(Tok::OpenStatement, "Expected {% endif %}");
    expectIdentifier("endif");
    expect(Tok::CloseStatement, "Expected '%}'");
    return n;
  }
  if (name == "macro") {
    NodePtr n = macroStatement(at);
    expect(Tok::OpenStatement, "Expected {% endmacro %}");
    expectIdentifier("endmacro");
    expect(Tok::CloseStatement, "Expected '%}'");
    return n;
  }
  if (name == "for") {
    NodePtr n = forStatement(at);
    expect(Tok::OpenStatement, "Expected {% endfor %}");
    expectIdentifier("endfor");
    expect(Tok::CloseStatement, "Expected '%}'");
    return n;
  }
  if (name == "call") {
    NodePtr n = std::make_unique<Node>(NodeKind::CallBlock, at);
    if (is(Tok::OpenParen)) n->items = args(true);
    NodePtr callee = primary();
    if (callee->kind != NodeKind::Identifier) error("Expected identifier following call statement");
    NodePtr c = node(NodeKind::Call);
    c->a = std::move(callee);
    c->items = args(false);
    n->a = std::move(c);
    expect(Tok::CloseStatement, "Expected '%}'");
    blockUntil(n->body, {"endcall"}, "call", at);
    expect(Tok::OpenStatement, "Expected '{%'");
    expectIdentifier("endcall");
    expect(Tok::CloseStatement, "Expected '%}'");
    return n;
  }
  if (name == "break" || name == "continue") {
    NodePtr n = std::make_unique<Node>(name == "break" ? NodeKind::Break : NodeKind::Continue, at);
    expect(Tok::CloseStatement, "Expected '%}'");
    return n;
  }
  if (name == "filter") {
    NodePtr n = std::make_unique<Node>(NodeKind::FilterBlock, at);
    NodePtr f = primary();
    if (f->kind == NodeKind::Identifier && is(Tok::OpenParen)) f = call(std::move(f));
    n->a = std::move(f);
    expect(Tok::CloseStatement, "Expected '%}'");
    blockUntil(n->body, {"endfilter"}, "filter", at);
    expect(Tok::OpenStatement, "Expected '{%'");
    expectIdentifier("endfilter");
    expect(Tok::CloseStatement, "Expected '%}'");
    return n;
  }
  --i_;
  error("Unknown statement type: " + name);
}

NodePtr Parser::setStatement(int at) {
  NodePtr n = std::make_unique<Node>(NodeKind::Set, at);
  n->a = sequence();
  if (is(Tok::Equals)) {
    ++i_;
    n->b = sequence();
  } else {
    expect(Tok::CloseStatement, "Expected '%}'");
    blockUntil(n->body, {"endset"}, "set", at);
    expect(Tok::OpenStatement, "Expected '{%'");
    expectIdentifier("endset");
  }
  expect(Tok::CloseStatement, "Expected '%}'");
  return n;
}

NodePtr Parser::ifStatement(int at) {
  NodePtr n = std::make_unique<Node>(NodeKind::If, at);
  n->a = expression();
  expect(Tok::CloseStatement, "Expected '%}'");
  blockUntil(n->body, {"elif", "else", "endif"}, "if", at);
  if (isStatement({"elif"})) {
    int elifLine = line();
    i_ += 2;
    n->alternate.push_back(ifStatement(elifLine));
  } else if (isStatement({"else"})) {
    i_ += 2;
    expect(Tok::CloseStatement, "Expected '%}'");
    blockUntil(n->alternate, {"endif"}, "if", at);
  }
  return n;
}

NodePtr Parser::macroStatement(int at) {
  NodePtr n = std::make_unique<Node>(NodeKind::Macro, at);
  NodePtr name = primary();
  if (name->kind != NodeKind::Identifier) error("Expected identifier following macro statement");
  n->text = name->text;
  n->items = args(true);
  expect(Tok::CloseStatement, "Expected '%}'");
  blockUntil(n->body, {"endmacro"}, "macro", at);
  return n;
}

NodePtr Parser::sequence(bool primaryOnly) {
  NodePtr first = primaryOnly ? primary() : expression();
  if (!is(Tok::Comma)) return first;
  NodePtr tuple = std::make_unique<Node>(NodeKind::TupleLiteral, first->line);
  tuple->items.push_back(std::move(first));
  while (is(Tok::Comma)) {
    ++i_;
    tuple->items.push_back(primaryOnly ? primary() : expression());
  }
  return tuple;
}

NodePtr Parser::forStatement(int at) {
  NodePtr n = std::make_unique<Node>(NodeKind::For, at);
  n->a = sequence(true);
  if (n->a->kind != NodeKind::Identifier && n->a->kind != NodeKind::TupleLiteral)
    error("Expected identifier/tuple for the loop variable");
  if (!isIdentifier("in")) error("Expected `in` keyword following loop variable");
  ++i_;
  n->b = expression();
  expect(Tok::CloseStatement, "Expected '%}'");
  blockUntil(n->body, {"endfor", "else"}, "for", at);
  if (isStatement({"else"})) {
    i_ += 2;
    expect(Tok::CloseStatement, "Expected '%}'");
    blockUntil(n->alternate, {"endfor"}, "for", at);
  }
  return n;
}

NodePtr Parser::ifExpression() {
  NodePtr a = logicalOr();
  if (!isIdentifier("if")) return a;
  ++i_;
  NodePtr test = logicalOr();
  if (isIdentifier("else")) {
    ++i_;
    NodePtr n = node(NodeKind::Ternary);
    n->a = std::move(test);
    n->b = std::move(a);
    n->c = ifExpression();
    return n;
  }
  NodePtr n = node(NodeKind::Select);
  n->a = std::move(a);
  n->b = std::move(test);
  return n;
}

NodePtr binary(std::string op, NodePtr left, NodePtr right) {
  NodePtr n = std::make_unique<Node>(NodeKind::Binary, left->line);
  n->text = std::move(op);
  n->a = std::move(left);
  n->b = std::move(right);
  return n;
}

NodePtr Parser::logicalOr() {
  NodePtr left = logicalAnd();
  while (isIdentifier("or")) {
    ++i_;
    left = binary("or", std::move(left), logicalAnd());
  }
  return left;
}

NodePtr Parser::logicalAnd() {
  NodePtr left = logicalNot();
  while (isIdentifier("and")) {
    ++i_;
    left = binary("and", std::move(left), logicalNot());
  }
  return left;
}

NodePtr Parser::logicalNot() {
  if (!isIdentifier("not")) return comparison();
  Nesting guard(*this);
  NodePtr n = node(NodeKind::Unary);
  n->text = "not";
  ++i_;
  n->a = logicalNot();
  return n;
}

NodePtr Parser::comparison() {
  NodePtr left = additive();
  while (true) {
    std::string op;
    if (isIdentifier("not") && isIdentifier("in", 1)) {
      op = "not in";
      i_ += 2;
    } else if (isIdentifier("in")) {
      op = "in";
      ++i_;
    } else if (is(Tok::Comparison)) {
      op = next().value;
    } else {
      break;
    }
    left = binary(op, std::move(left), additive());
  }
  return left;
}

NodePtr Parser::additive() {
  NodePtr left = multiplicative();
  while (is(Tok::Additive)) {
    std::string op = next().value;
    left = binary(op, std::move(left), multiplicative());
  }
  return left;
}

NodePtr Parser::multiplicative() {
  NodePtr left = power();
  while (is(Tok::Multiplicative)) {
    std::string op = next().value;
    left = binary(op, std::move(left), power());
  }
  return left;
}

NodePtr Parser::power() {
  NodePtr left = test();
  while (is(Tok::Power)) {
    ++i_;
    left = binary("**", std::move(left), test());
  }
  return left;
}

NodePtr Parser::test() {
  NodePtr operand = filter();
  while (isIdentifier("is")) {
    ++i_;
    bool negate = isIdentifier("not");
    if (negate) ++i_;
    NodePtr name = primary();
    if (name->kind != NodeKind::Identifier) error("Expected identifier for the test");
    NodePtr n = node(NodeKind::Test);
    n->text = name->text;
    n->flag = negate;
    n->a = std::move(operand);
    operand = std::move(n);
  }
  return operand;
}

NodePtr Parser::filter() {
  NodePtr operand = unarySign();
  while (is(Tok::Pipe)) {
    ++i_;
    NodePtr f = primary();
    if (f->kind != NodeKind::Identifier) error("Expected identifier for the filter");
    if (is(Tok::OpenParen)) f = call(std::move(f));
    NodePtr n = node(NodeKind::FilterExpr);
    n->a = std::move(operand);
    n->b = std::move(f);
    operand = std::move(n);
  }
  return operand;
}

NodePtr Parser::unarySign() {
  if ((is(Tok::Unary) || is(Tok::Additive)) && (peek().value == "-" || peek().value == "+")) {
    Nesting guard(*this);
    NodePtr n = node(NodeKind::Unary);
    n->text = next().value;
    n->a = unarySign();
    return n;
  }
  return callMember();
}

NodePtr Parser::callMember() {
  NodePtr m = member(primary());
  if (is(Tok::OpenParen)) return call(std::move(m));
  return m;
}

NodePtr Parser::call(NodePtr callee) {
  NodePtr n = node(NodeKind::Call);
  n->a = std::move(callee);
  n->items = args(false);
  NodePtr e = member(std::move(n));
  if (is(Tok::OpenParen)) e = call(std::move(e));
  return e;
}

std::vector<NodePtr> Parser::args(bool parameters) {
  expect(Tok::OpenParen, "Expected '(' for the arguments list");
  std::vector<NodePtr> out;
  std::set<std::string> names;
  bool sawKeyword = false, sawSpread = false;
  while (!is(Tok::CloseParen)) {
    bool keywordSpread = is(Tok::Power);
    bool positionalSpread = is(Tok::Multiplicative) && peek().value == "*";
    if (parameters && (keywordSpread || positionalSpread))
      error("Argument unpacking is not allowed in parameter declarations");
    if (keywordSpread) {
      ++i_;
      NodePtr n = node(NodeKind::KeywordSpread);
      n->a = expression();
      out.push_back(std::move(n));
      if (is(Tok::Comma)) ++i_;
      if (!is(Tok::CloseParen))
        error("Expected closing parenthesis: `**` must be applied to the final argument");
      break;
    }
    NodePtr arg;
    if (positionalSpread) {
      if (sawSpread) error("Only one `*` argument unpacking is allowed");
      sawSpread = true;
      ++i_;
      arg = node(NodeKind::Spread);
      arg->a = expression();
    } else {
      arg = expression();
      if (is(Tok::Equals)) {
        ++i_;
        if (arg->kind != NodeKind::Identifier)
          error(parameters ? "Expected identifier for parameter declaration"
                           : "Expected identifier for keyword argument");
        NodePtr kw = node(NodeKind::KeywordArg);
        kw->text = arg->text;
        kw->a = expression();
        arg = std::move(kw);
      }
      if (parameters) {
        if (arg->kind != NodeKind::Identifier && arg->kind != NodeKind::KeywordArg)
          error("Expected identifier for parameter declaration");
        if (!names.insert(arg->text).second) error("Duplicate parameter name: " + arg->text);
      }
      if (arg->kind == NodeKind::KeywordArg)
        sawKeyword = true;
      else if (sawKeyword)
        error(parameters ? "Non-default argument follows default argument"
                         : "Positional arguments must come before keyword arguments");
      else if (sawSpread)
        error("Positional arguments must not follow `*` argument unpacking");
    }
    out.push_back(std::move(arg));
    if (is(Tok::Comma)) ++i_;
  }
  ++i_;  // ')'
  return out;
}

NodePtr Parser::memberArguments() {
  std::vector<NodePtr> slices;
  bool isSlice = false;
  while (!is(Tok::CloseSquare)) {
    if (is(Tok::Colon)) {
      slices.push_back(nullptr);
      ++i_;
      isSlice = true;
    } else {
      slices.push_back(expression());
      if (is(Tok::Colon)) {
        ++i_;
        isSlice = true;
      }
    }
  }
  if (slices.empty()) error("Expected at least one argument for member/slice expression");
  if (!isSlice) return std::move(slices[0]);
  if (slices.size() > 3) error("Expected 0-3 arguments for slice expression");
  NodePtr n = node(NodeKind::Slice);
  slices.resize(3);
  n->a = std::move(slices[0]);
  n->b = std::move(slices[1]);
  n->c = std::move(slices[2]);
  return n;
}

NodePtr Parser::member(NodePtr object) {
  while (is(Tok::Dot) || is(Tok::OpenSquare)) {
    bool computed = next().type == Tok::OpenSquare;
    NodePtr n = node(NodeKind::Member);
    n->flag = computed;
    if (computed) {
      n->b = memberArguments();
      expect(Tok::CloseSquare, "Expected closing square bracket");
    } else {
      n->b = primary();
      if (n->b->kind != NodeKind::Identifier && n->b->kind != NodeKind::Integer)
        error("Expected identifier or integer following dot operator");
    }
    n->a = std::move(object);
    object = std::move(n);
  }
  return object;
}

NodePtr Parser::primary() {
  const Token& tok = next();
  switch (tok.type) {
    case Tok::Number: {
      NodePtr n = std::make_unique<Node>(
          tok.value.find('.') != std::string::npos ? NodeKind::Float : NodeKind::Integer, tok.line);
      n->number = std::stod(tok.value);
      return n;
    }
    case Tok::String: {
      NodePtr n = std::make_unique<Node>(NodeKind::String, tok.line);
      n->text = tok.value;
      while (is(Tok::String)) n->text += next().value;
      return n;
    }
    case Tok::Identifier: {
      NodePtr n = std::make_unique<Node>(NodeKind::Identifier, tok.line);
      n->text = tok.value;
      return n;
    }
    case Tok::OpenParen: {
      NodePtr e = sequence();
      expect(Tok::CloseParen, "Expected closing parenthesis");
      return e;
    }
    case Tok::OpenSquare: {
      NodePtr n = std::make_unique<Node>(NodeKind::ArrayLiteral, tok.line);
      while (!is(Tok::CloseSquare)) {
        n->items.push_back(expression());
        if (is(Tok::Comma)) ++i_;
      }
      ++i_;
      return n;
    }
    case Tok::OpenCurly: {
      NodePtr n = std::make_unique<Node>(NodeKind::ObjectLiteral, tok.line);
      while (!is(Tok::CloseCurly)) {
        NodePtr key = expression();
        expect(Tok::Colon, "Expected colon between key and value in object literal");
        n->pairs.emplace_back(std::move(key), expression());
        if (is(Tok::Comma)) ++i_;
      }
      ++i_;
      return n;
    }
    default:
      --i_;
      error("Unexpected token '" + tok.value + "'");
  }
}

}  // namespace

Program parse(const std::vector<Token>& tokens) { return Parser(tokens).run(); }

}  // namespace tpc::jinja
