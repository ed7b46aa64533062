#include "ir/Shape.h"

namespace tpc {

Shape staticShape(llvm::ArrayRef<int64_t> sizes) {
  Shape s;
  for (int64_t n : sizes) s.push_back(Dim::of(n));
  return s;
}

std::string formatShape(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    switch (shape[i].kind) {
      case Dim::Kind::Static:
        out += std::to_string(shape[i].size);
        break;
      case Dim::Kind::Tokens:
        out += "tokens";
        break;
      case Dim::Kind::Context:
        out += "context";
        break;
    }
  }
  return out + "]";
}

int64_t staticElementCount(const Shape& shape) {
  int64_t n = 1;
  for (const Dim& d : shape)
    if (d.isStatic()) n *= d.size;
  return n;
}

bool isFullyStatic(const Shape& shape) {
  for (const Dim& d : shape)
    if (!d.isStatic()) return false;
  return true;
}

}  // namespace tpc
