#include "executor/engine/Traffic.h"

#include <cmath>
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

StepTraffic trafficOf(const plan::Plan& p, int64_t batch) {
  const plan::RankProgram& prog = *p.ranks()->Get(0);
  const uint64_t elt = (bitWidth(static_cast<DType>(p.compute_dtype())) + 7) / 8;
  std::set<uint32_t> embeddingOnly, readWhole;
  StepTraffic out;
  for (const plan::Step* s : *prog.steps()) {
    std::string_view op = s->op()->string_view();
    if (op == "moe_experts") {
      // This rank's e experts of the model's global ones (e == global without expert
      // parallelism). Each token picks top_k of the global experts, so one of this rank's is
      // touched by a step of `batch` tokens with probability 1 - (1 - k / global)^batch.
      const double e = static_cast<double>(stepInt(*s, "experts"));
      const double global =
          static_cast<double>(stepInt(*s, "global_experts", stepInt(*s, "experts")));
      const double k = static_cast<double>(stepInt(*s, "top_k"));
      uint64_t allExperts = 0;
      for (uint32_t i = 3; i < s->operands()->size(); ++i)
        allExperts += static_cast<uint64_t>(
                          elementCount(*prog.weights()->Get(s->operands()->Get(i)->index()))) *
                      elt;
      const double touched = e * (1.0 - std::pow(1.0 - k / global, static_cast<double>(batch)));
      out.expertsReadPerLayer = touched;
      out.weightBytes += static_cast<uint64_t>(static_cast<double>(allExperts) * touched / e);
      // Each token runs its top_k experts; on average k * e / global of them are this rank's,
      // each over this rank's piece of that expert.
      const auto elements = static_cast<double>(allExperts) / static_cast<double>(elt);
      out.linearMacsPerToken += static_cast<uint64_t>(std::llround(k * elements / global));
    }
    for (uint32_t i = 0; i < s->operands()->size(); ++i) {
      const plan::Ref* r = s->operands()->Get(i);
      if (r->kind() != plan::RefKind::Weight || (op == "moe_experts" && i >= 3)) continue;
      (op == "embedding" ? embeddingOnly : readWhole).insert(r->index());
      // The router's gate is a linear of its own: [experts, hidden].
      if ((op == "linear" || op == "moe_router") && i == 1)
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
