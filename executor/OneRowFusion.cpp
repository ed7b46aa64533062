#include "executor/OneRowFusion.h"

#include <string_view>

#include "executor/StepAttrs.h"
#include "ir/DType.h"

namespace tpc {
namespace {

size_t alignUp(size_t n) { return (n + 255) / 256 * 256; }

int64_t bytesOf(uint8_t dtype) {
  return static_cast<int64_t>(bitWidth(static_cast<DType>(dtype)) / 8);
}

class Planner {
 public:
  Planner(const plan::Plan& plan, uint32_t rank)
      : plan_(plan), prog_(*plan.ranks()->Get(rank)), steps_(*prog_.steps()) {
    const uint32_t buffers = prog_.buffers()->size();
    readers_.assign(buffers, 0);
    producer_.assign(buffers, -1);
    sourceOf_.assign(buffers, -1);
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      for (const plan::Ref* r : *steps_.Get(i)->operands())
        if (r->kind() == plan::RefKind::Buffer) ++readers_[r->index()];
      for (uint32_t b : *steps_.Get(i)->results()) producer_[b] = i;
    }
    out_.skip.assign(steps_.size(), false);
  }

  OneRowFusion run() {
    splitsToViews();
    swigluIntoLinears();
    ropesInPlace();
    return std::move(out_);
  }

 private:
  const plan::Buffer& buffer(uint32_t b) const { return *prog_.buffers()->Get(b); }
  int64_t width(uint32_t b) const { return elementsPerToken(*buffer(b).shape()); }
  int64_t operandBuffer(const plan::Step& s, uint32_t i) const {
    const plan::Ref* r = s.operands()->Get(i);
    return r->kind() == plan::RefKind::Buffer ? static_cast<int64_t>(r->index()) : -1;
  }

  void splitsToViews() {
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      const plan::Step& s = *steps_.Get(i);
      const int64_t source = s.op()->string_view() == "split" ? operandBuffer(s, 0) : -1;
      if (source < 0) continue;
      const auto src = static_cast<uint32_t>(source);
      std::string_view name = buffer(src).name()->string_view();
      if (name == "token_ids" || name == "positions" || out_.views.count(src)) continue;
      const auto base = static_cast<int64_t>(out_.privateBytes);
      out_.privateBytes += alignUp(static_cast<size_t>(buffer(src).bytes_per_token()));
      out_.views[src] = {base, 0};
      int64_t offset = 0;
      for (uint32_t r : *s.results()) {
        out_.views[r] = {base, offset * bytesOf(buffer(src).dtype())};
        sourceOf_[r] = source;
        offset += width(r);
      }
      out_.skip[i] = true;
    }
  }

  void swigluIntoLinears() {
    const int64_t computeBytes = bytesOf(plan_.compute_dtype());
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      const plan::Step& s = *steps_.Get(i);
      if (s.op()->string_view() != "swiglu") continue;
      const int64_t gate = operandBuffer(s, 0), up = operandBuffer(s, 1);
      if (gate < 0 || up < 0 || producer_[gate] < 0 || producer_[gate] != producer_[up]) continue;
      const auto split = static_cast<uint32_t>(producer_[gate]);
      const plan::Step& sp = *steps_.Get(split);
      if (!out_.skip[split] || sp.results()->size() != 2 ||
          sp.results()->Get(0) != static_cast<uint32_t>(gate) ||
          sp.results()->Get(1) != static_cast<uint32_t>(up) || readers_[gate] != 1 ||
          readers_[up] != 1)
        continue;
      const int64_t source = operandBuffer(sp, 0);
      if (source < 0 || producer_[source] < 0 || readers_[source] != 1) continue;
      const auto linear = static_cast<uint32_t>(producer_[source]);
      const plan::Step& ls = *steps_.Get(linear);
      const auto g = static_cast<uint32_t>(gate), u = static_cast<uint32_t>(up);
      if (ls.op()->string_view() != "linear" || width(g) != width(u) ||
          ls.operands()->Get(1)->kind() != plan::RefKind::Weight)
        continue;
      const plan::Weight& w = *prog_.weights()->Get(ls.operands()->Get(1)->index());
      // The paired GEMV streams 16-byte vectors of each weight row.
      if (w.shape()->Get(0) != 2 * width(g) || (w.shape()->Get(1) * computeBytes) % 16 != 0 ||
          buffer(g).dtype() != plan_.compute_dtype())
        continue;
      out_.swigluInto[linear] = i;
      out_.skip[i] = true;  // the split is skipped already
    }
  }

  void ropesInPlace() {
    std::vector<uint32_t> inPlace;
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      const plan::Step& s = *steps_.Get(i);
      if (s.op()->string_view() != "rope") continue;
      const int64_t x = operandBuffer(s, 0);
      // Rotating in place writes the split operand's bytes: only the rope may read them.
      if (x < 0 || sourceOf_[x] < 0 || readers_[x] != 1 || readers_[sourceOf_[x]] != 1) continue;
      out_.views[s.results()->Get(0)] = out_.views[static_cast<uint32_t>(x)];
      inPlace.push_back(i);
    }
    for (size_t n = 0; n + 1 < inPlace.size(); ++n) {
      const uint32_t first = inPlace[n], second = inPlace[n + 1];
      if (second != first + 1 || out_.skip[first]) continue;
      const plan::Step& a = *steps_.Get(first);
      const plan::Step& b = *steps_.Get(second);
      const auto xa = static_cast<uint32_t>(operandBuffer(a, 0));
      const auto xb = static_cast<uint32_t>(operandBuffer(b, 0));
      const auto [baseA, offsetA] = out_.views[xa];
      const auto [baseB, offsetB] = out_.views[xb];
      float scaleA = 1.0f, scaleB = 1.0f;
      const bool sameRope = cpu::ropeInverseFrequencies(stepRopeParams(a), &scaleA) ==
                                cpu::ropeInverseFrequencies(stepRopeParams(b), &scaleB) &&
                            scaleA == scaleB && stepInt(a, "head_dim") == stepInt(b, "head_dim") &&
                            operandBuffer(a, 1) == operandBuffer(b, 1) &&
                            buffer(xa).dtype() == buffer(xb).dtype();
      if (!sameRope || baseA != baseB ||
          offsetA + width(xa) * bytesOf(buffer(xa).dtype()) != offsetB)
        continue;
      out_.fusedRopeHeads[first] = (width(xa) + width(xb)) / stepInt(a, "head_dim");
      out_.skip[second] = true;
    }
  }

  const plan::Plan& plan_;
  const plan::RankProgram& prog_;
  const flatbuffers::Vector<flatbuffers::Offset<plan::Step>>& steps_;
  std::vector<int> readers_;
  std::vector<int64_t> producer_, sourceOf_;
  OneRowFusion out_;
};

}  // namespace

OneRowFusion planOneRowFusion(const plan::Plan& plan, uint32_t rank) {
  return Planner(plan, rank).run();
}

}  // namespace tpc
