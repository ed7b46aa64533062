#include "ir/Verifier.h"

#include <set>

#include "ir/Printer.h"

namespace tpc {

Shape localPieceShape(const WeightPiece& piece) {
  Shape s = piece.shape;
  if (piece.sharding.isSplit() && piece.sharding.dim < static_cast<int>(s.size())) {
    Dim& d = s[piece.sharding.dim];
    d.size = (d.size + piece.sharding.parts - 1) / piece.sharding.parts;
  }
  return s;
}

namespace {

// A [tokens, n] activation: returns n, or -1 when the shape is anything else.
int64_t rowWidth(const Value* v) {
  if (v->shape.size() != 2 || v->shape[0] != Dim::tokens() || !v->shape[1].isStatic()) return -1;
  return v->shape[1].size;
}

bool isStaticShape(const Value* v, std::initializer_list<int64_t> sizes) {
  if (v->shape.size() != sizes.size()) return false;
  size_t i = 0;
  for (int64_t s : sizes)
    if (v->shape[i++] != Dim::of(s)) return false;
  return true;
}

class NodeChecker {
 public:
  explicit NodeChecker(const Node& n) : n_(n) {}

  Error check() {
    switch (n_.op) {
      case OpKind::Embedding: {
        const Value* table = n_.operand(1);
        if (table->shape.size() != 2 || !isFullyStatic(table->shape))
          return bad("table must be [rows, hidden]");
        if (n_.operand(0)->shape != Shape{Dim::tokens()}) return bad("ids must be [tokens]");
        if (!isIntegerDType(n_.operand(0)->dtype)) return bad("ids must be integers");
        return expectWidth(n_.result(), table->shape[1].size);
      }
      case OpKind::RmsNorm:
      case OpKind::AddRmsNorm:
      case OpKind::AllReduceAddRmsNorm: {
        int64_t h = rowWidth(n_.operand(0));
        if (h < 0) return bad("x must be [tokens, hidden]");
        const Value* w = n_.operands.back();
        if (!isStaticShape(w, {h})) return bad("weight must be [" + std::to_string(h) + "]");
        if (n_.op != OpKind::RmsNorm) {
          if (rowWidth(n_.operand(1)) != h) return bad("residual width differs from x");
          if (Error e = expectWidth(n_.result(1), h)) return e;
        }
        return expectWidth(n_.result(0), h);
      }
      case OpKind::HeadRmsNorm: {
        int64_t d = n_.attrs.getInt("head_dim");
        int64_t w = rowWidth(n_.operand(0));
        if (d <= 0 || w <= 0 || w % d != 0) return bad("x must be [tokens, heads * head_dim]");
        if (!isStaticShape(n_.operand(1), {d})) return bad("weight must be [head_dim]");
        return expectWidth(n_.result(), w);
      }
      case OpKind::Add:
      case OpKind::SwiGlu: {
        int64_t w = rowWidth(n_.operand(0));
        if (w < 0 || rowWidth(n_.operand(1)) != w)
          return bad("operands must be [tokens, n] of one width");
        return expectWidth(n_.result(), w);
      }
      case OpKind::Linear: {
        int64_t k = rowWidth(n_.operand(0));
        const Value* w = n_.operand(1);
        if (k < 0) return bad("x must be [tokens, in]");
        if (w->shape.size() != 2 || w->shape[1] != Dim::of(k) || !w->shape[0].isStatic())
          return bad("weight " + formatShape(w->shape) + " does not take input width " +
                     std::to_string(k));
        int64_t out = w->shape[0].size;
        if (n_.operands.size() == 3 && !isStaticShape(n_.operand(2), {out}))
          return bad("bias must be [out]");
        return expectWidth(n_.result(), out);
      }
      case OpKind::Rope: {
        int64_t d = n_.attrs.getInt("head_dim");
        int64_t w = rowWidth(n_.operand(0));
        if (d <= 0 || d % 2 != 0 || w <= 0 || w % d != 0)
          return bad("x must be [tokens, heads * even head_dim]");
        if (n_.operand(1)->shape != Shape{Dim::tokens()}) return bad("positions must be [tokens]");
        return expectWidth(n_.result(), w);
      }
      case OpKind::Attention: {
        int64_t h = n_.attrs.getInt("heads"), kv = n_.attrs.getInt("kv_heads"),
                d = n_.attrs.getInt("head_dim");
        if (h <= 0 || kv <= 0 || d <= 0 || h % kv != 0)
          return bad("heads must be a multiple of kv_heads");
        if (rowWidth(n_.operand(0)) != h * d) return bad("q must be [tokens, heads * head_dim]");
        if (rowWidth(n_.operand(1)) != kv * d || rowWidth(n_.operand(2)) != kv * d)
          return bad("k and v must be [tokens, kv_heads * head_dim]");
        if (n_.operand(3)->shape != Shape{Dim::tokens()}) return bad("positions must be [tokens]");
        return expectWidth(n_.result(), h * d);
      }
      case OpKind::Split: {
        std::vector<int64_t> sizes = n_.attrs.getInts("sizes");
        int64_t w = rowWidth(n_.operand(0)), total = 0;
        if (sizes.size() != n_.results.size()) return bad("sizes must list one size per result");
        for (size_t i = 0; i < sizes.size(); ++i) {
          total += sizes[i];
          if (Error e = expectWidth(n_.result(static_cast<unsigned>(i)), sizes[i])) return e;
        }
        if (w != total) return bad("sizes do not add up to the input width");
        return Error::success();
      }
      case OpKind::MoeRouter: {
        int64_t h = rowWidth(n_.operand(0)), k = n_.attrs.getInt("top_k");
        const Value* gate = n_.operand(1);
        if (h < 0 || gate->shape.size() != 2 || gate->shape[1] != Dim::of(h))
          return bad("gate must be [experts, hidden]");
        if (k <= 0 || k > gate->shape[0].size) return bad("top_k must be in 1..experts");
        if (n_.results.size() != 2 || rowWidth(n_.result(0)) != k || rowWidth(n_.result(1)) != k)
          return bad("results must be [tokens, top_k] weights and experts");
        return Error::success();
      }
      case OpKind::MoeExperts: {
        int64_t per = n_.attrs.getInt("params_per_expert");
        int64_t experts = n_.attrs.getInt("experts");
        if ((per != 2 && per != 3) || experts <= 0 ||
            static_cast<int64_t>(n_.operands.size()) != 3 + per * experts)
          return bad("needs x, weights, experts and params_per_expert (2 or 3) weights per expert");
        int64_t h = rowWidth(n_.operand(0));
        if (h < 0) return bad("x must be [tokens, hidden]");
        return expectWidth(n_.result(), h);
      }
      case OpKind::AllReduce:
        if (n_.operand(0)->shape != n_.result()->shape) return bad("result shape must equal input");
        return Error::success();
      case OpKind::Send:
      case OpKind::Recv: {
        const Value* v = n_.op == OpKind::Send ? n_.operand(0) : n_.result();
        if (v->shape.empty() || v->shape[0] != Dim::tokens()) return bad("must be [tokens, ...]");
        if (n_.attrs.getInt("peer_stage", -1) < 0) return bad("needs a peer_stage");
        return Error::success();
      }
      case OpKind::LayerNorm:
      case OpKind::BiasAdd: {
        int64_t h = rowWidth(n_.operand(0));
        if (h < 0) return bad("x must be [tokens, hidden]");
        for (size_t i = 1; i < n_.operands.size(); ++i)
          if (!isStaticShape(n_.operand(static_cast<unsigned>(i)), {h}))
            return bad("weight and bias must be [" + std::to_string(h) + "]");
        return expectWidth(n_.result(), h);
      }
      case OpKind::Gelu:
      case OpKind::QuickGelu:
        return expectWidth(n_.result(), rowWidth(n_.operand(0)));
      case OpKind::VisionEmbed: {
        int64_t h = rowWidth(n_.operand(0));
        const Value* position = n_.operand(2);
        if (h < 0 || !isStaticShape(n_.operand(1), {h}) || position->shape.size() != 2 ||
            position->shape[1] != Dim::of(h))
          return bad("needs x[tokens, H], class_embedding[H] and position_embedding[rows, H]");
        return expectWidth(n_.result(), h);
      }
      case OpKind::EncoderAttention: {
        int64_t h = n_.attrs.getInt("heads"), d = n_.attrs.getInt("head_dim");
        for (unsigned i = 0; i < 3; ++i)
          if (h <= 0 || d <= 0 || rowWidth(n_.operand(i)) != h * d)
            return bad("q, k and v must be [tokens, heads * head_dim]");
        return expectWidth(n_.result(), h * d);
      }
      case OpKind::ImageRows: {
        int64_t h = rowWidth(n_.operand(0));
        if (h < 0 || rowWidth(n_.operand(1)) != h) return bad("embeds and image rows differ");
        if (n_.operand(2)->shape != Shape{Dim::tokens()}) return bad("ids must be [tokens]");
        return expectWidth(n_.result(), h);
      }
      case OpKind::SelectRows:
        if (n_.operand(0)->shape != n_.result()->shape) return bad("result shape must equal input");
        return Error::success();
      case OpKind::AllGather:
      case OpKind::Slice: {
        int64_t dim = n_.attrs.getInt("dim", -1);
        if (dim < 0 || dim >= static_cast<int64_t>(n_.operand(0)->shape.size()) ||
            n_.result()->shape.size() != n_.operand(0)->shape.size())
          return bad("dim out of range");
        return Error::success();
      }
    }
    return Error::success();
  }

 private:
  Error bad(const std::string& what) const {
    return makeError("node ", printNode(n_).substr(0, 120), ": ", what);
  }
  Error expectWidth(const Value* r, int64_t width) const {
    if (rowWidth(r) != width)
      return bad("result %" + r->name + " must be [tokens, " + std::to_string(width) + "], not " +
                 formatShape(r->shape));
    return Error::success();
  }

  const Node& n_;
};

Error checkParameter(const Value* p) {
  if (p->pieces.empty()) return makeError("parameter %", p->name, " has no checkpoint tensor");
  Shape concat;
  for (const WeightPiece& piece : p->pieces) {
    if (!isFullyStatic(piece.shape) || piece.shape.empty())
      return makeError("parameter %", p->name, ": tensor \"", piece.tensor,
                       "\" must have a static shape");
    if (piece.sharding.isPartial())
      return makeError("parameter %", p->name, ": a weight cannot be partial");
    if (piece.sharding.isSplit() && piece.sharding.dim >= static_cast<int>(piece.shape.size()))
      return makeError("parameter %", p->name, ": split dim out of range");
    Shape local = localPieceShape(piece);
    // A convolution kernel [out, c, kh, kw] serves as the GEMM weight [out, c * kh * kw].
    if (local.size() > p->shape.size() && p->shape.size() == 2) {
      int64_t inner = 1;
      for (size_t i = 1; i < local.size(); ++i) inner *= local[i].size;
      local = {local[0], Dim::of(inner)};
    }
    if (concat.empty()) {
      concat = local;
      continue;
    }
    bool sameTail = local.size() == concat.size();
    for (size_t i = 1; sameTail && i < local.size(); ++i) sameTail = local[i] == concat[i];
    if (!sameTail) return makeError("parameter %", p->name, ": pieces differ beyond dim 0");
    concat[0].size += local[0].size;
  }
  // Whole pieces under a split parameter stack every rank's weight (expert parallelism): the
  // split picks this rank's rows of the stack.
  bool stacked = p->sharding.isSplit() && p->sharding.dim == 0;
  for (const WeightPiece& piece : p->pieces) stacked = stacked && piece.sharding.isReplicated();
  if (stacked) {
    if (concat[0].size % p->sharding.parts != 0)
      return makeError("parameter %", p->name, ": ", concat[0].size,
                       " stacked rows do not split into ", p->sharding.parts, " parts");
    concat[0].size /= p->sharding.parts;
  }
  if (concat != p->shape)
    return makeError("parameter %", p->name, " is ", formatShape(p->shape), " but its pieces make ",
                     formatShape(concat));
  return Error::success();
}

}  // namespace

Error verifyGraph(const Graph& g) {
  std::set<const Value*> defined;
  for (const Value* v : g.inputs()) defined.insert(v);
  for (const Value* p : g.parameters()) {
    if (Error e = checkParameter(p)) return e;
    defined.insert(p);
  }
  for (const Node* n : g.nodes()) {
    const OpInfo& info = opInfo(n->op);
    int ops = static_cast<int>(n->operands.size()), res = static_cast<int>(n->results.size());
    if (ops < info.minOperands || (info.maxOperands >= 0 && ops > info.maxOperands))
      return makeError("node ", printNode(*n).substr(0, 120), ": ", info.name, " takes ",
                       info.minOperands, (info.maxOperands == info.minOperands ? "" : "+"),
                       " operands, not ", ops);
    if ((info.results >= 0 && res != info.results) || (res == 0 && info.results != 0))
      return makeError("node ", printNode(*n).substr(0, 120), ": wrong number of results");
    for (const Value* op : n->operands)
      if (!defined.count(op))
        return makeError("node ", printNode(*n).substr(0, 120), ": %", op->name,
                         " is used before it is defined");
    if (Error e = NodeChecker(*n).check()) return e;
    for (const Value* r : n->results) defined.insert(r);
  }
  if (g.outputs().empty()) return makeError("graph \"", g.name, "\" has no output");
  for (const Value* v : g.outputs())
    if (!defined.count(v)) return makeError("output %", v->name, " is not defined");
  return Error::success();
}

}  // namespace tpc
