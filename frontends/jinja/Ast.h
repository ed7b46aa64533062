// The syntax tree of a template, one node type with a kind, as @huggingface/jinja's parser
// builds it (statements and expressions alike; text is a string literal).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tpc::jinja {

enum class NodeKind {
  // statements
  Comment,
  Set,  // target = value, or a block body
  If,   // test, body, alternate
  For,  // target, iterable, body, alternate (the else block)
  Break,
  Continue,
  Macro,        // name, parameters, body
  CallBlock,    // call (a Call node), parameters (the caller's), body
  FilterBlock,  // filter (Identifier or Call), body
  // expressions
  Integer,
  Float,
  String,
  ArrayLiteral,
  TupleLiteral,
  ObjectLiteral,  // pairs
  Identifier,
  Member,         // object, property; computed for [..]
  Call,           // callee, args
  Binary,         // op, left, right
  Unary,          // op, operand
  FilterExpr,     // operand, filter (Identifier or Call)
  Test,           // operand, name; negate
  Select,         // value, test: `a if b` without else
  Ternary,        // test, value, otherwise
  Slice,          // start, stop, step (any may be null)
  KeywordArg,     // name, value
  Spread,         // *args
  KeywordSpread,  // **kwargs
};

struct Node;
using NodePtr = std::unique_ptr<Node>;

struct Node {
  NodeKind kind;
  int line = 0;
  std::string text;  // identifier, string, operator, test or keyword name
  double number = 0;
  bool flag = false;           // Member: computed; Test: negated
  NodePtr a, b, c;             // operands in the order the comments above list them
  std::vector<NodePtr> items;  // elements, arguments, parameters
  std::vector<NodePtr> body, alternate;
  std::vector<std::pair<NodePtr, NodePtr>> pairs;

  Node(NodeKind k, int l) : kind(k), line(l) {}
};

struct Program {
  std::vector<NodePtr> body;
};

}  // namespace tpc::jinja
