#include "executor/OneRowFusion.h"

#include <algorithm>
#include <initializer_list>
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
  Planner(const plan::Plan& plan, uint32_t rank, OneRowFolds folds)
      : plan_(plan), prog_(*plan.ranks()->Get(rank)), steps_(*prog_.steps()), folds_(folds) {
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
    out_.skipInDecodeRows.assign(steps_.size(), false);
    out_.skipInFusedRows.assign(steps_.size(), false);
  }

  OneRowFusion run() {
    splitsToViews();
    swigluIntoLinears();
    ropesInPlace();
    if (folds_.norms) normsIntoLinears();
    if (folds_.ropes) ropesIntoAttention();
    if (folds_.ropes) headNormsAndRopesIntoAttention();
    if (folds_.ropes) attentionReadsQkvRows();
    swigluReadsGateUpRows();
    return std::move(out_);
  }

 private:
  const plan::Buffer& buffer(uint32_t b) const { return *prog_.buffers()->Get(b); }
  int64_t width(uint32_t b) const { return elementsPerToken(*buffer(b).shape()); }
  // The first step after `i` that runs at one token (steps_.size() when none does).
  uint32_t nextRunning(uint32_t i) const {
    uint32_t next = i + 1;
    while (next < steps_.size() && out_.skip[next]) ++next;
    return next;
  }
  int64_t operandBuffer(const plan::Step& s, uint32_t i) const {
    const plan::Ref* r = s.operands()->Get(i);
    return r->kind() == plan::RefKind::Buffer ? static_cast<int64_t>(r->index()) : -1;
  }

  // Two rope steps that rotate alike: the same frequencies, scaling, head size and positions.
  bool rotateAlike(const plan::Step& a, const plan::Step& b) const {
    float scaleA = 1.0f, scaleB = 1.0f;
    return cpu::ropeInverseFrequencies(stepRopeParams(a), &scaleA) ==
               cpu::ropeInverseFrequencies(stepRopeParams(b), &scaleB) &&
           scaleA == scaleB && stepInt(a, "head_dim") == stepInt(b, "head_dim") &&
           operandBuffer(a, 1) == operandBuffer(b, 1);
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
      // The pair writes the swiglu's result while its later blocks still read the linear's
      // input, and the memory plan may give the two the same bytes (the input dies at the
      // linear, the result is born two steps later; in the Llama shapes it always does). So at
      // one token the result gets storage of its own, as a view in the private block.
      const uint32_t act = s.results()->Get(0);
      out_.views[act] = {static_cast<int64_t>(out_.privateBytes), 0};
      out_.privateBytes += alignUp(static_cast<size_t>(buffer(act).bytes_per_token()));
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
      const bool sameRope = rotateAlike(a, b) && buffer(xa).dtype() == buffer(xb).dtype();
      if (!sameRope || baseA != baseB ||
          offsetA + width(xa) * bytesOf(buffer(xa).dtype()) != offsetB)
        continue;
      out_.fusedRopeHeads[first] = (width(xa) + width(xb)) / stepInt(a, "head_dim");
      out_.skip[second] = true;
    }
  }

  // A norm folds into the (plain GEMV) linear that alone reads its normed row when nothing runs
  // between them (so its inputs and its stored sum are untouched meanwhile), its rows are
  // compute-dtype hidden states of more than 1024 elements in at most 1024 16-byte vectors (the
  // norm kernel's one-block path, whose arithmetic the GEMV repeats), and the linear streams them.
  void normsIntoLinears() {
    const int64_t computeBytes = bytesOf(plan_.compute_dtype());
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      const plan::Step& s = *steps_.Get(i);
      const std::string_view op = s.op()->string_view();
      const bool add = op == "add_rms_norm";
      if ((op != "rms_norm" && !add) || out_.skip[i]) continue;
      const uint32_t normed = s.results()->Get(add ? 1 : 0);
      const uint32_t next = nextRunning(i);
      if (next >= steps_.size() || readers_[normed] != 1) continue;
      const plan::Step& ls = *steps_.Get(next);
      if (ls.op()->string_view() != "linear" || operandBuffer(ls, 0) != normed ||
          ls.operands()->Get(1)->kind() != plan::RefKind::Weight || out_.views.count(normed))
        continue;
      // Not into the gate/up pair (gemvSwiglu takes no folded norm): with the first pair kernel,
      // one block per SM, the grid ran in many waves and each block's own norm cost more than
      // the norm's launch saves (measured on the H200: 76 us against 64 for the Llama-3-8B MLP).
      // The pipelined pair variants hold more blocks per SM and have not been measured so.
      if (out_.swigluInto.count(next)) continue;
      const int64_t width = this->width(normed);
      const int64_t vectors = width * computeBytes / 16;
      const plan::Weight& w = *prog_.weights()->Get(ls.operands()->Get(1)->index());
      if (buffer(normed).dtype() != plan_.compute_dtype() || (width * computeBytes) % 16 != 0 ||
          width <= 1024 || vectors > 1024 || w.shape()->Get(1) != width)
        continue;
      // The GEMV reads the norm's inputs while it writes the linear's result, which the memory
      // plan may place on their bytes (they die at the norm, the result is born after it); a
      // result with storage of its own (a split's operand) is apart from the arena.
      const uint32_t result = ls.results()->Get(0);
      bool apart = true;
      for (uint32_t o = 0; o < s.operands()->size(); ++o) {
        const int64_t in = operandBuffer(s, o);
        apart = apart && (in < 0 || out_.views.count(result) || out_.views.count(in) ||
                          !shareBytes(result, static_cast<uint32_t>(in)));
      }
      if (!apart) continue;
      out_.normInto[next] = i;
      out_.skip[i] = true;
    }
  }

  // A layer's fused q/k rope folds into the attention right after it (only skipped steps between)
  // when that attention reads exactly the two rotated views and nothing else reads them: the
  // decode attention kernel rotates what it reads instead (kernels/cuda/DecodeAttention.h).
  void ropesIntoAttention() {
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      const plan::Step& s = *steps_.Get(i);
      if (s.op()->string_view() != "rope" || out_.skip[i] || !out_.fusedRopeHeads.count(i))
        continue;
      const plan::Step& twin = *steps_.Get(i + 1);  // fused ropes are adjacent
      const uint32_t q = s.results()->Get(0), k = twin.results()->Get(0);
      const uint32_t next = nextRunning(i);
      if (next >= steps_.size() || readers_[q] != 1 || readers_[k] != 1) continue;
      const plan::Step& attention = *steps_.Get(next);
      if (attention.op()->string_view() != "attention" || operandBuffer(attention, 0) != q ||
          operandBuffer(attention, 1) != k ||
          stepInt(attention, "head_dim") != stepInt(s, "head_dim"))
        continue;
      out_.ropeInto[next] = i;
      out_.skip[i] = true;
      // With more rows the ropes' inputs are arena buffers that die at the ropes, so the memory
      // plan may give the attention's result their bytes; folded, the attention would read them
      // while writing it.
      const uint32_t result = attention.results()->Get(0);
      const int64_t qIn = operandBuffer(s, 0), kIn = operandBuffer(twin, 0);
      if (qIn >= 0 && kIn >= 0 && !shareBytes(result, static_cast<uint32_t>(qIn)) &&
          !shareBytes(result, static_cast<uint32_t>(kIn))) {
        out_.ropeIntoRows[next] = i;
        out_.skipInDecodeRows[i] = out_.skipInDecodeRows[i + 1] = true;
      }
    }
  }

  // The split step that alone reads one buffer and makes exactly `results` (in this order), each
  // of which has one reader; -1 when there is none.
  int64_t soleSplitOf(std::initializer_list<int64_t> results) const {
    const int64_t first = *results.begin();
    if (first < 0 || producer_[first] < 0) return -1;
    const auto split = static_cast<uint32_t>(producer_[first]);
    const plan::Step& sp = *steps_.Get(split);
    const int64_t source = operandBuffer(sp, 0);
    if (sp.op()->string_view() != "split" || source < 0 || readers_[source] != 1 ||
        sp.results()->size() != results.size())
      return -1;
    uint32_t n = 0;
    for (int64_t r : results)
      if (r < 0 || sp.results()->Get(n++) != static_cast<uint32_t>(r) || readers_[r] != 1)
        return -1;
    return split;
  }

  // One slot of the rows' private block for results of `kind` (0: attention, 1: swiglu), wide
  // enough for buffer `b`; the offsets are settled once every result is known (placeRowViews).
  void giveRowStorage(uint32_t b, int kind) {
    rowKinds_[b] = kind;
    rowSlotBytes_[kind] =
        std::max(rowSlotBytes_[kind], static_cast<int64_t>(buffer(b).bytes_per_token()));
  }

  // At several decode rows the attention whose ropes fold into it at one token (ropeInto) reads
  // q, k and v from the qkv rows when the three are a split's results that only the two ropes
  // and the attention read.
  void attentionReadsQkvRows() {
    for (auto [attention, rope] : out_.ropeInto) {
      const plan::Step& s = *steps_.Get(attention);
      const int64_t split =
          soleSplitOf({operandBuffer(*steps_.Get(rope), 0), operandBuffer(*steps_.Get(rope + 1), 0),
                       operandBuffer(s, 2)});
      if (split < 0) continue;
      const auto sp = static_cast<uint32_t>(split);
      out_.attentionReadsSplit[attention] = {sp, rope};
      for (uint32_t step : {sp, rope, rope + 1}) out_.skipInFusedRows[step] = true;
      giveRowStorage(s.results()->Get(0), 0);
    }
    placeRowViews();
  }

  void swigluReadsGateUpRows() {
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      const plan::Step& s = *steps_.Get(i);
      if (s.op()->string_view() != "swiglu") continue;
      const int64_t gate = operandBuffer(s, 0), up = operandBuffer(s, 1);
      const int64_t split = soleSplitOf({gate, up});
      if (split < 0 || width(static_cast<uint32_t>(gate)) != width(static_cast<uint32_t>(up)) ||
          buffer(s.results()->Get(0)).dtype() != buffer(static_cast<uint32_t>(gate)).dtype())
        continue;
      out_.swigluReadsSplit[i] = static_cast<uint32_t>(split);
      out_.skipInFusedRows[static_cast<uint32_t>(split)] = true;
      giveRowStorage(s.results()->Get(0), 1);
    }
    placeRowViews();
  }

  void placeRowViews() {
    const auto slot0 = static_cast<int64_t>(alignUp(static_cast<size_t>(rowSlotBytes_[0])));
    for (auto [b, kind] : rowKinds_) out_.rowViews[b] = kind == 0 ? 0 : slot0;
    out_.rowsPrivateBytesPerToken =
        slot0 + static_cast<int64_t>(alignUp(static_cast<size_t>(rowSlotBytes_[1])));
  }

  // Whether two buffers' arena ranges (per token, so at any token count) overlap.
  bool shareBytes(uint32_t a, uint32_t b) const {
    const plan::Buffer& x = buffer(a);
    const plan::Buffer& y = buffer(b);
    return x.arena_offset() < y.arena_offset() + y.bytes_per_token() &&
           y.arena_offset() < x.arena_offset() + x.bytes_per_token();
  }

  // The per-head q/k norms and the ropes after them (Qwen3) fold into the attention when they are
  // the four steps that run right before it (so nothing else touches their inputs meanwhile), each
  // result has that one reader, the ropes rotate alike over the attention's positions, and the
  // norms' weights are rows of head_dim elements of the compute dtype.
  void headNormsAndRopesIntoAttention() {
    const auto producerOf = [&](int64_t b, std::string_view op) -> int64_t {
      if (b < 0 || producer_[b] < 0 || readers_[b] != 1) return -1;
      const auto step = static_cast<uint32_t>(producer_[b]);
      return steps_.Get(step)->op()->string_view() == op && !out_.skip[step] ? producer_[b] : -1;
    };
    for (uint32_t i = 0; i < steps_.size(); ++i) {
      const plan::Step& attention = *steps_.Get(i);
      if (attention.op()->string_view() != "attention" || out_.ropeInto.count(i)) continue;
      const int64_t qRope = producerOf(operandBuffer(attention, 0), "rope");
      const int64_t kRope = producerOf(operandBuffer(attention, 1), "rope");
      if (qRope < 0 || kRope < 0) continue;
      const plan::Step& rq = *steps_.Get(static_cast<uint32_t>(qRope));
      const plan::Step& rk = *steps_.Get(static_cast<uint32_t>(kRope));
      const int64_t qNorm = producerOf(operandBuffer(rq, 0), "head_rms_norm");
      const int64_t kNorm = producerOf(operandBuffer(rk, 0), "head_rms_norm");
      if (qNorm < 0 || kNorm < 0) continue;
      const auto nq = static_cast<uint32_t>(qNorm), nk = static_cast<uint32_t>(kNorm);
      const auto q = static_cast<uint32_t>(qRope), k = static_cast<uint32_t>(kRope);
      if (nextRunning(nq) != nk || nextRunning(nk) != q || nextRunning(q) != k ||
          nextRunning(k) != i)
        continue;
      const int64_t headDim = stepInt(attention, "head_dim");
      const bool sameRope = rotateAlike(rq, rk) && stepInt(rq, "head_dim") == headDim &&
                            operandBuffer(rq, 1) == operandBuffer(attention, 3);
      bool normsFit = true;
      for (uint32_t n : {nq, nk}) {
        const plan::Step& ns = *steps_.Get(n);
        const plan::Ref* w = ns.operands()->Get(1);
        const plan::Weight* weight =
            w->kind() == plan::RefKind::Weight ? prog_.weights()->Get(w->index()) : nullptr;
        normsFit = normsFit && weight && stepInt(ns, "head_dim") == headDim &&
                   elementsPerToken(*weight->shape()) == headDim &&
                   weight->dtype() == plan_.compute_dtype() &&
                   buffer(ns.results()->Get(0)).dtype() == plan_.compute_dtype();
      }
      if (!sameRope || !normsFit) continue;
      out_.normedRopesInto[i] = {nq, nk, q, k};
      for (uint32_t n : {nq, nk, q, k}) out_.skip[n] = true;
    }
  }

  const plan::Plan& plan_;
  const plan::RankProgram& prog_;
  const flatbuffers::Vector<flatbuffers::Offset<plan::Step>>& steps_;
  std::vector<int> readers_;
  std::vector<int64_t> producer_, sourceOf_;
  OneRowFolds folds_;
  std::map<uint32_t, int> rowKinds_;  // buffers of the rows' private block -> their slot
  int64_t rowSlotBytes_[2] = {0, 0};  // per token
  OneRowFusion out_;
};

}  // namespace

OneRowFusion planOneRowFusion(const plan::Plan& plan, uint32_t rank, OneRowFolds folds) {
  return Planner(plan, rank, folds).run();
}

}  // namespace tpc
