#include "ir/Printer.h"

#include <sstream>

namespace tpc {
namespace {

std::string typeText(DType dtype, const Shape& shape, const Sharding& sharding) {
  std::string s = std::string(irName(dtype)) + formatShape(shape);
  if (!sharding.isReplicated()) s += " " + sharding.str();
  return s;
}

std::string quoted(const std::string& s) { return formatAttrValue(AttrValue(s)); }

std::string attrBlock(const Attributes& attrs) {
  if (attrs.empty()) return "";
  std::string out = " {";
  bool first = true;
  for (const auto& [key, value] : attrs.entries()) {
    out += (first ? "" : ", ") + key + " = " + formatAttrValue(value);
    first = false;
  }
  return out + "}";
}

std::string pieceText(const WeightPiece& p) {
  return quoted(p.tensor) + " : " + typeText(p.dtype, p.shape, p.sharding);
}

}  // namespace

std::string printValueDecl(const Value& v) {
  std::string s = "%" + v.name + " : " + typeText(v.dtype, v.shape, v.sharding);
  if (v.arenaOffset >= 0) s += " @" + std::to_string(v.arenaOffset);
  return s;
}

std::string printNode(const Node& node) {
  std::string out;
  for (size_t i = 0; i < node.results.size(); ++i)
    out += (i ? ", " : "") + printValueDecl(*node.results[i]);
  out += std::string(node.results.empty() ? "" : " = ") + opName(node.op) + "(";
  for (size_t i = 0; i < node.operands.size(); ++i)
    out += (i ? ", %" : "%") + node.operands[i]->name;
  return out + ")" + attrBlock(node.attrs);
}

std::string printGraph(const Graph& g) {
  std::ostringstream os;
  os << "graph " << quoted(g.name) << " {\n";
  for (const auto& [key, value] : g.attrs.entries())
    os << "  attr " << key << " = " << formatAttrValue(value) << "\n";
  for (const Value* v : g.inputs()) os << "  input " << printValueDecl(*v) << "\n";
  for (const Value* p : g.parameters()) {
    os << "  param " << printValueDecl(*p) << " = ";
    if (p->pieces.size() == 1) {
      os << pieceText(p->pieces[0]);
    } else {
      os << "concat(";
      for (size_t i = 0; i < p->pieces.size(); ++i)
        os << (i ? ", " : "") << pieceText(p->pieces[i]);
      os << ")";
    }
    os << "\n";
  }
  for (const Node* n : g.nodes()) os << "  " << printNode(*n) << "\n";
  for (const Value* v : g.outputs()) os << "  output %" << v->name << "\n";
  os << "}\n";
  return os.str();
}

}  // namespace tpc
