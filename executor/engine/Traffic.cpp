#include "executor/engine/Traffic.h"

#include <set>

#include "executor/StepAttrs.h"
#include "ir/DType.h"

namespace tpc {
namespace {

int64_t elementCount(const plan::Weight& w) {
  int64_t n = 1;
  for (int64_t d : *w.shape()) n *= d;
  return n;
}

}  // namespace

StepTraffic trafficOf(const plan::Plan& p) {
  const plan::RankProgram& prog = *p.ranks()->Get(0);
  const uint64_t elt = (bitWidth(static_cast<DType>(p.compute_dtype())) + 7) / 8;
  std::set<uint32_t> embeddingOnly, readWhole;
  StepTraffic out;
  for (const plan::Step* s : *prog.steps()) {
    std::string_view op = s->op()->string_view();
    for (uint32_t i = 0; i < s->operands()->size(); ++i) {
      const plan::Ref* r = s->operands()->Get(i);
      if (r->kind() != plan::RefKind::Weight) continue;
      (op == "embedding" ? embeddingOnly : readWhole).insert(r->index());
      if (op == "linear" && i == 1)
        out.linearMacsPerToken +=
            static_cast<uint64_t>(elementCount(*prog.weights()->Get(r->index())));
    }
    if (op == "attention")
      out.kvBytesPerPosition +=
          2 * static_cast<uint64_t>(stepInt(*s, "kv_heads") * stepInt(*s, "head_dim")) * elt;
  }
  for (uint32_t w : readWhole)
    out.weightBytes += static_cast<uint64_t>(elementCount(*prog.weights()->Get(w))) * elt;
  return out;
}

}  // namespace tpc
