// One forward step of a model as a graph of ops over values. Before the `shard` pass the graph
// describes the whole model; after it, the same graph describes what each rank computes
// (SPMD): value and parameter shapes are per-rank, and each value carries its Sharding.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ir/Attributes.h"
#include "ir/DType.h"
#include "ir/Shape.h"
#include "ir/Sharding.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"

namespace tpc {

enum class OpKind : uint8_t {
#define TPC_OP(Enum, Name, MinOps, MaxOps, Results, Summary) Enum,
#include "ir/Ops.def"
};

struct OpInfo {
  OpKind kind;
  const char* name;
  int minOperands;
  int maxOperands;  // -1: variadic
  int results;      // -1: variadic
  const char* summary;
};
const OpInfo& opInfo(OpKind op);
const char* opName(OpKind op);
// Looks an op up by its text name; nullptr when unknown.
const OpInfo* findOp(llvm::StringRef name);
llvm::ArrayRef<OpInfo> allOps();

struct Node;

// A checkpoint tensor (or the slice of it a Sharding selects) that a parameter is made of.
struct WeightPiece {
  std::string tensor;  // name in the checkpoint
  DType dtype = DType::BF16;
  Shape shape;  // whole checkpoint shape, static
  Sharding sharding;
  bool operator==(const WeightPiece& o) const {
    return tensor == o.tensor && dtype == o.dtype && shape == o.shape && sharding == o.sharding;
  }
};

struct Value {
  enum class Kind : uint8_t { Input, Parameter, Intermediate };
  Kind kind = Kind::Intermediate;
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  Sharding sharding;
  Node* producer = nullptr;  // Intermediate only
  // Set by plan-memory: byte offset in the rank's activation arena per token of the step, so
  // a step of T tokens finds the value at arenaOffset * T. -1 until planned.
  int64_t arenaOffset = -1;
  // Parameter only: the pieces, concatenated along dim 0, that make this rank's weight. One
  // piece unless the fuse pass merged several weights into one GEMM. Whole pieces under a
  // Split(0) parameter stack the weights of all ranks instead; each rank holds its rows.
  llvm::SmallVector<WeightPiece, 1> pieces;

  bool isParameter() const { return kind == Kind::Parameter; }
};

struct Node {
  OpKind op;
  llvm::SmallVector<Value*, 4> operands;
  llvm::SmallVector<Value*, 2> results;
  Attributes attrs;

  Value* result(unsigned i = 0) const { return results[i]; }
  Value* operand(unsigned i) const { return operands[i]; }
};

// Name, dtype and shape of a result a new node will produce.
struct ResultSpec {
  std::string name;
  DType dtype;
  Shape shape;
  Sharding sharding = {};
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  Graph(Graph&&) = default;
  Graph& operator=(Graph&&) = default;

  std::string name;
  Attributes attrs;  // model summary: family, sizes, world after sharding, ...

  Value* addInput(const std::string& name, DType dtype, Shape shape);
  Value* addParameter(const std::string& name, DType dtype, Shape shape,
                      llvm::SmallVector<WeightPiece, 1> pieces);
  // Appends a node at the end of the program order.
  Node* addNode(OpKind op, llvm::ArrayRef<Value*> operands, llvm::ArrayRef<ResultSpec> results,
                Attributes attrs = {});
  // Inserts a node right before or after `anchor` in program order.
  Node* insertBefore(Node* anchor, OpKind op, llvm::ArrayRef<Value*> operands,
                     llvm::ArrayRef<ResultSpec> results, Attributes attrs = {});
  Node* insertAfter(Node* anchor, OpKind op, llvm::ArrayRef<Value*> operands,
                    llvm::ArrayRef<ResultSpec> results, Attributes attrs = {});
  // Removes a node whose results are no longer used.
  void erase(Node* node);
  // Removes a parameter no node uses any more (after fusion).
  void eraseParameter(Value* param);
  // Points every use of `from` (operands and graph outputs) at `to`, except inside `except`.
  void replaceAllUsesWith(Value* from, Value* to, const Node* except = nullptr);
  void addOutput(Value* v) { outputs_.push_back(v); }
  // Makes the graph return `to` where it returned `from`; uses by nodes are untouched.
  void replaceOutput(Value* from, Value* to);

  llvm::ArrayRef<Value*> inputs() const { return inputs_; }
  llvm::ArrayRef<Value*> parameters() const { return parameters_; }
  llvm::ArrayRef<Node*> nodes() const { return order_; }
  llvm::ArrayRef<Value*> outputs() const { return outputs_; }
  Value* findValue(llvm::StringRef name) const;
  // Nodes that use `v`, in program order.
  llvm::SmallVector<Node*, 4> users(const Value* v) const;
  size_t indexOf(const Node* node) const;

  // `base` if unused, else `base.1`, `base.2`, ...
  std::string uniqueName(llvm::StringRef base) const;
  // Renames a value (the name must be unused).
  void rename(Value* v, const std::string& newName);

 private:
  Value* newValue(Value::Kind kind, const std::string& name, DType dtype, Shape shape);
  Node* newNode(OpKind op, llvm::ArrayRef<Value*> operands, llvm::ArrayRef<ResultSpec> results,
                Attributes attrs);

  std::vector<std::unique_ptr<Value>> valueStorage_;
  std::vector<std::unique_ptr<Node>> nodeStorage_;
  std::vector<Value*> inputs_, parameters_, outputs_;
  std::vector<Node*> order_;
  llvm::StringMap<Value*> byName_;
};

}  // namespace tpc
