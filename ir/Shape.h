// Shapes whose dims are either static sizes or one of the two symbols a forward step is
// generic over: `tokens` (tokens in this step, across the batch) and `context` (KV positions).
#pragma once

#include <cstdint>
#include <string>

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"

namespace tpc {

struct Dim {
  enum class Kind : uint8_t { Static, Tokens, Context };
  Kind kind = Kind::Static;
  int64_t size = 0;  // meaningful for Static only

  static Dim of(int64_t n) { return {Kind::Static, n}; }
  static Dim tokens() { return {Kind::Tokens, 0}; }
  static Dim context() { return {Kind::Context, 0}; }
  bool isStatic() const { return kind == Kind::Static; }
  bool operator==(const Dim& o) const { return kind == o.kind && size == o.size; }
  bool operator!=(const Dim& o) const { return !(*this == o); }
};

using Shape = llvm::SmallVector<Dim, 4>;

// Shape of static sizes, e.g. a checkpoint tensor's.
Shape staticShape(llvm::ArrayRef<int64_t> sizes);
// "[tokens, 64]".
std::string formatShape(const Shape& shape);
// Product of the static dims; symbolic dims count as 1, so for an activation this is the
// element count per token.
int64_t staticElementCount(const Shape& shape);
bool isFullyStatic(const Shape& shape);

}  // namespace tpc
