#include "ir/Graph.h"

#include <algorithm>
#include <cassert>

namespace tpc {
namespace {

const OpInfo kOps[] = {
#define TPC_OP(Enum, Name, MinOps, MaxOps, Results, Summary) \
  {OpKind::Enum, Name, MinOps, MaxOps, Results, Summary},
#include "ir/Ops.def"
};

}  // namespace

const OpInfo& opInfo(OpKind op) { return kOps[static_cast<size_t>(op)]; }
const char* opName(OpKind op) { return opInfo(op).name; }
llvm::ArrayRef<OpInfo> allOps() { return kOps; }

const OpInfo* findOp(llvm::StringRef name) {
  for (const OpInfo& info : kOps)
    if (name == info.name) return &info;
  return nullptr;
}

Value* Graph::newValue(Value::Kind kind, const std::string& name, DType dtype, Shape shape) {
  assert(!byName_.count(name) && "value names are unique");
  auto v = std::make_unique<Value>();
  v->kind = kind;
  v->name = name;
  v->dtype = dtype;
  v->shape = std::move(shape);
  Value* raw = v.get();
  valueStorage_.push_back(std::move(v));
  byName_[name] = raw;
  return raw;
}

Value* Graph::addInput(const std::string& name, DType dtype, Shape shape) {
  Value* v = newValue(Value::Kind::Input, name, dtype, std::move(shape));
  inputs_.push_back(v);
  return v;
}

Value* Graph::addParameter(const std::string& name, DType dtype, Shape shape,
                           llvm::SmallVector<WeightPiece, 1> pieces) {
  Value* v = newValue(Value::Kind::Parameter, name, dtype, std::move(shape));
  v->pieces = std::move(pieces);
  parameters_.push_back(v);
  return v;
}

Node* Graph::newNode(OpKind op, llvm::ArrayRef<Value*> operands, llvm::ArrayRef<ResultSpec> results,
                     Attributes attrs) {
  auto n = std::make_unique<Node>();
  n->op = op;
  n->operands.assign(operands.begin(), operands.end());
  n->attrs = std::move(attrs);
  for (const ResultSpec& r : results) {
    Value* v = newValue(Value::Kind::Intermediate, r.name, r.dtype, r.shape);
    v->sharding = r.sharding;
    v->producer = n.get();
    n->results.push_back(v);
  }
  Node* raw = n.get();
  nodeStorage_.push_back(std::move(n));
  return raw;
}

Node* Graph::addNode(OpKind op, llvm::ArrayRef<Value*> operands, llvm::ArrayRef<ResultSpec> results,
                     Attributes attrs) {
  Node* n = newNode(op, operands, results, std::move(attrs));
  order_.push_back(n);
  return n;
}

Node* Graph::insertBefore(Node* anchor, OpKind op, llvm::ArrayRef<Value*> operands,
                          llvm::ArrayRef<ResultSpec> results, Attributes attrs) {
  Node* n = newNode(op, operands, results, std::move(attrs));
  order_.insert(order_.begin() + static_cast<long>(indexOf(anchor)), n);
  return n;
}

Node* Graph::insertAfter(Node* anchor, OpKind op, llvm::ArrayRef<Value*> operands,
                         llvm::ArrayRef<ResultSpec> results, Attributes attrs) {
  Node* n = newNode(op, operands, results, std::move(attrs));
  order_.insert(order_.begin() + static_cast<long>(indexOf(anchor)) + 1, n);
  return n;
}

size_t Graph::indexOf(const Node* node) const {
  auto it = std::find(order_.begin(), order_.end(), node);
  assert(it != order_.end() && "node not in graph");
  return static_cast<size_t>(it - order_.begin());
}

void Graph::erase(Node* node) {
  for (Value* r : node->results) {
    assert(users(r).empty() && "erasing a node whose result is still used");
    byName_.erase(r->name);
  }
  order_.erase(order_.begin() + static_cast<long>(indexOf(node)));
  // Storage is kept until the graph dies: raw pointers held by callers stay valid.
}

void Graph::eraseParameter(Value* param) {
  assert(users(param).empty() && "erasing a parameter that is still used");
  byName_.erase(param->name);
  parameters_.erase(std::find(parameters_.begin(), parameters_.end(), param));
}

void Graph::replaceAllUsesWith(Value* from, Value* to, const Node* except) {
  for (Node* n : order_) {
    if (n == except) continue;
    for (Value*& op : n->operands)
      if (op == from) op = to;
  }
  for (Value*& out : outputs_)
    if (out == from) out = to;
}

void Graph::replaceOutput(Value* from, Value* to) {
  for (Value*& out : outputs_)
    if (out == from) out = to;
}

Value* Graph::findValue(llvm::StringRef name) const {
  auto it = byName_.find(name);
  return it == byName_.end() ? nullptr : it->second;
}

llvm::SmallVector<Node*, 4> Graph::users(const Value* v) const {
  llvm::SmallVector<Node*, 4> out;
  for (Node* n : order_)
    if (std::find(n->operands.begin(), n->operands.end(), v) != n->operands.end()) out.push_back(n);
  return out;
}

std::string Graph::uniqueName(llvm::StringRef base) const {
  if (!byName_.count(base)) return base.str();
  for (int i = 1;; ++i) {
    std::string candidate = base.str() + "." + std::to_string(i);
    if (!byName_.count(candidate)) return candidate;
  }
}

void Graph::rename(Value* v, const std::string& newName) {
  assert(!byName_.count(newName) && "value names are unique");
  byName_.erase(v->name);
  v->name = newName;
  byName_[newName] = v;
}

}  // namespace tpc
