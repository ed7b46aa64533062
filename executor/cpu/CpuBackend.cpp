// The CPU backend: runs a rank's program step by step in fp32 with the reference kernels.
// Activations live in one arena laid out by the plan's memory plan. Offsets are planned in
// bytes per token for the plan's dtypes; every fp32 value fits in `scale_` times its planned
// bytes, so scaling every offset by `scale_` keeps the plan's non-overlap guarantees.
// Two KV caches: the paged pool the engine addresses through block tables (sized from
// BackendOptions::kvCacheBytes, all layers together) and, for the slot form of StepInput, one
// contiguous cache of max batch x max context per layer in untouched zero pages.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "codegen/PlanFormat.h"
#include "executor/Backend.h"
#include "executor/LocalExperts.h"
#include "executor/StepAttrs.h"
#include "executor/SyntheticWeights.h"
#include "executor/WeightLoader.h"
#include "ir/Graph.h"
#include "kernels/cpu/Kernels.h"
#include "kernels/cpu/Vision.h"

namespace tpc {
namespace {

// The paged pool of a CPU rank when --kv-cache-memory is not given: room for a few thousand
// tokens of the small models the CPU runs, small enough for any test machine.
constexpr uint64_t kDefaultKvCacheBytes = uint64_t{64} << 20;

int64_t intAttr(const plan::Step& s, std::string_view key, int64_t fallback = 0) {
  return stepInt(s, key, fallback);
}
double floatAttr(const plan::Step& s, std::string_view key, double fallback = 0.0) {
  return stepFloat(s, key, fallback);
}

class CpuBackend : public Backend {
 public:
  // `program` is the rank's text program, or (for the vision tower) another of its programs.
  CpuBackend(const plan::Plan& plan, uint32_t rank, const plan::RankProgram& program,
             Communicator& comm, std::vector<std::vector<float>> weights,
             const BackendOptions& options)
      : plan_(plan), prog_(program), comm_(comm), weights_(std::move(weights)) {
    // Pipeline stages: this rank's collectives are its stage's, rank = stage * tp + tp rank.
    const int64_t pp = planIntAttr(plan.model(), "pp", 1);
    tp_ = static_cast<int64_t>(plan.world()) / pp;
    tpRank_ = static_cast<int64_t>(rank) % tp_;
    if (pp > 1)
      group_ =
          createGroupCommunicator(comm, static_cast<int>(rank - tpRank_), static_cast<int>(tp_));
    for (const plan::Buffer* b : *prog_.buffers()) {
      int64_t width = elementsPerToken(*b->shape());
      widths_.push_back(width);
      if (b->bytes_per_token() > 0)
        scale_ = std::max(scale_, (4 * width + b->bytes_per_token() - 1) / b->bytes_per_token());
    }
    for (const auto& w : weights_) weightBytes_ += w.size() * sizeof(float);
    for (const plan::Step* s : *prog_.steps()) {
      if (s->op()->string_view() != "attention") continue;
      cpu::KvCache cache;
      cache.slots = plan.limits()->max_batch();
      cache.maxContext = plan.limits()->max_context();
      cache.kvHeads = intAttr(*s, "kv_heads");
      cache.headDim = intAttr(*s, "head_dim");
      size_t n =
          static_cast<size_t>(cache.slots * cache.maxContext * cache.kvHeads * cache.headDim);
      // calloc hands out untouched zero pages: a cache sized for max batch x max context costs
      // memory only for the positions actually written.
      kvStorage_.emplace_back(static_cast<float*>(std::calloc(2 * n, sizeof(float))));
      if (!kvStorage_.back()) {
        kvBytesMissing_ += 2 * n * sizeof(float);
        continue;
      }
      cache.k = kvStorage_.back().get();
      cache.v = cache.k + n;
      caches_.push_back(cache);
    }
    allocatePool(options);
    // An earlier stage's program ends with the recvs of the logits from the last stage: the
    // part finishForward runs.
    const auto& steps = *prog_.steps();
    tailStart_ = steps.size();
    while (pp > 1 && tailStart_ > 0 && steps.Get(tailStart_ - 1)->op()->string_view() == "recv" &&
           intAttr(*steps.Get(tailStart_ - 1), "peer_stage") == pp - 1 &&
           intAttr(*steps.Get(tailStart_ - 1), "stage") != pp - 1)
      --tailStart_;
  }

  const char* name() const override { return "cpu"; }
  // Bytes of KV cache that could not be allocated (0 when all is well).
  uint64_t kvBytesMissing() const { return kvBytesMissing_; }
  uint64_t residentWeightBytes() const override { return weightBytes_; }
  int64_t kvBlocks() const override { return poolBlocks_; }

  Expected<const float*> forward(const StepInput& in) override {
    if (Error e = beginForward(in)) return e;
    return finishForward(in);
  }

  Error beginForward(const StepInput& in) override {
    tokens_ = in.tokens;
    size_t floats = static_cast<size_t>(scale_ * prog_.arena_bytes_per_token() * in.tokens / 4 + 4);
    if (arena_.size() < floats) arena_.assign(floats, 0.0f);
    for (uint32_t b : *prog_.inputs()) {
      std::string_view name = prog_.buffers()->Get(b)->name()->string_view();
      if (name == "image_embeds") {
        if (in.imageEmbeds)
          std::memcpy(buffer(b), in.imageEmbeds,
                      static_cast<size_t>(in.tokens * widths_[b]) * sizeof(float));
        continue;
      }
      const int32_t* src = name == "positions" ? in.positions : in.tokenIds;
      std::memcpy(buffer(b), src, static_cast<size_t>(in.tokens) * sizeof(int32_t));
    }
    slots_ = in.slots;
    rows_ = in.tokens;
    input_ = &in;
    if (in.paged())
      if (Error e = checkPaged(in)) return e;
    return runSteps(0, tailStart_);
  }

  // The arena is laid out for the step again; what other steps began meanwhile wrote there is
  // dead by now (they have sent their hidden states), and the tail only receives.
  Expected<const float*> finishForward(const StepInput& in) override {
    if (tailStart_ < prog_.steps()->size()) {
      tokens_ = in.tokens;
      rows_ = in.tokens;
      slots_ = in.slots;
      input_ = &in;
      if (Error e = runSteps(tailStart_, prog_.steps()->size())) return e;
    }
    tokens_ = in.tokens;
    return static_cast<const float*>(buffer(prog_.outputs()->Get(0)));
  }

  // The vision tower program: its one input is the image's patches, its one output the
  // projected image features.
  Expected<const float*> runTower(const float* patches, int64_t rows) {
    tokens_ = rows;
    rows_ = rows;
    size_t floats = static_cast<size_t>(scale_ * prog_.arena_bytes_per_token() * rows / 4 + 4);
    if (arena_.size() < floats) arena_.assign(floats, 0.0f);
    const uint32_t input = prog_.inputs()->Get(0);
    std::memcpy(buffer(input), patches, static_cast<size_t>(rows * widths_[input]) * 4);
    StepInput none;
    input_ = &none;
    size_t attention = 0;
    for (const plan::Step* s : *prog_.steps())
      if (Error e = run(*s, attention))
        return std::move(e).withContext(std::string("vision tower ") +
                                        std::string(s->op()->string_view()) + ": ");
    input_ = nullptr;
    return static_cast<const float*>(buffer(prog_.outputs()->Get(0)));
  }

  void setTower(std::unique_ptr<CpuBackend> tower) { tower_ = std::move(tower); }

  Expected<const float*> encodeImage(const float* patches, int64_t rows) override {
    if (!tower_)
      return makeError(plan_.vision_tower() ? "the vision tower's weights are not loaded here "
                                              "(its weights come only from a checkpoint)"
                                            : "this plan has no vision tower");
    const int64_t want = planIntAttr(plan_.model(), "vision_rows");
    if (rows != want)
      return makeError("the vision tower takes ", want, " rows (class slot and patches), not ",
                       rows);
    return tower_->runTower(patches, rows);
  }

  bool encodesImages() const override { return tower_ != nullptr; }

  Expected<std::vector<int32_t>> forwardArgmax(const StepInput& in) override {
    Expected<const float*> logits = forward(in);
    if (!logits) return logits.takeError();
    const int64_t vocab = planIntAttr(plan_.model(), "vocab_size");
    std::vector<int32_t> ids;
    for (int64_t t = 0; t < rows_; ++t)
      ids.push_back(static_cast<int32_t>(cpu::argmax(*logits + t * vocab, vocab)));
    return ids;
  }

 private:
  float* buffer(uint32_t index) {
    return arena_.data() + scale_ * prog_.buffers()->Get(index)->arena_offset() * tokens_ / 4;
  }
  const float* operand(const plan::Step& s, uint32_t i) {
    const plan::Ref* r = s.operands()->Get(i);
    return r->kind() == plan::RefKind::Weight ? weights_[r->index()].data() : buffer(r->index());
  }
  const plan::Weight& weightOf(const plan::Step& s, uint32_t i) {
    return *prog_.weights()->Get(s.operands()->Get(i)->index());
  }
  int64_t width(const plan::Step& s, uint32_t operand) {
    return widths_[s.operands()->Get(operand)->index()];
  }
  float* result(const plan::Step& s, uint32_t i = 0) { return buffer(s.results()->Get(i)); }
  int64_t resultWidth(const plan::Step& s, uint32_t i = 0) { return widths_[s.results()->Get(i)]; }

  Error run(const plan::Step& s, size_t& attention) {
    std::string_view op = s.op()->string_view();
    const int64_t T = rows_;
    auto eps = static_cast<float>(floatAttr(s, "eps", 1e-6));
    if (op == "embedding") {
      const plan::Weight& table = weightOf(s, 1);
      const plan::WeightSlice* slice = table.slices()->Get(0);
      int64_t firstRow = slice->dim() == 0 ? slice->start() : 0;
      cpu::embedding(reinterpret_cast<const int32_t*>(operand(s, 0)), T, operand(s, 1),
                     table.shape()->Get(0), firstRow, table.shape()->Get(1), result(s));
    } else if (op == "rms_norm") {
      cpu::rmsNorm(operand(s, 0), operand(s, 1), T, width(s, 0), eps, result(s));
    } else if (op == "add_rms_norm") {
      cpu::addRmsNorm(operand(s, 0), operand(s, 1), operand(s, 2), T, width(s, 0), eps,
                      result(s, 0), result(s, 1));
    } else if (op == "head_rms_norm") {
      int64_t d = intAttr(s, "head_dim");
      cpu::headRmsNorm(operand(s, 0), operand(s, 1), T, width(s, 0) / d, d, eps, result(s));
    } else if (op == "add") {
      cpu::add(operand(s, 0), operand(s, 1), T * width(s, 0), result(s));
    } else if (op == "linear") {
      const plan::Weight& w = weightOf(s, 1);
      cpu::linear(operand(s, 0), operand(s, 1), s.operands()->size() == 3 ? operand(s, 2) : nullptr,
                  T, w.shape()->Get(1), w.shape()->Get(0), result(s));
    } else if (op == "rope") {
      cpu::RopeParams p = stepRopeParams(s);
      cpu::rope(operand(s, 0), reinterpret_cast<const int32_t*>(operand(s, 1)), T,
                width(s, 0) / p.headDim, p, result(s));
    } else if (op == "attention" && input_->paged()) {
      if (attention >= pools_.size()) return makeError("more attention steps than KV pools");
      const StepInput& in = *input_;
      cpu::PagedBatch batch{reinterpret_cast<const int32_t*>(operand(s, 3)),
                            in.kvSlots,
                            T,
                            in.sequences,
                            in.seqStarts,
                            in.blockTables,
                            in.blockTableStride};
      cpu::pagedAttention(operand(s, 0), operand(s, 1), operand(s, 2), batch, intAttr(s, "heads"),
                          static_cast<float>(floatAttr(s, "scale")), pools_[attention++],
                          result(s));
    } else if (op == "select_rows") {
      selectRows(s);
    } else if (op == "layer_norm") {
      cpu::layerNorm(operand(s, 0), operand(s, 1), operand(s, 2), T, width(s, 0), eps, result(s));
    } else if (op == "bias_add") {
      cpu::biasAdd(operand(s, 0), operand(s, 1), T, width(s, 0), result(s));
    } else if (op == "gelu") {
      cpu::gelu(operand(s, 0), T * width(s, 0), result(s));
    } else if (op == "quick_gelu") {
      cpu::quickGelu(operand(s, 0), T * width(s, 0), result(s));
    } else if (op == "vision_embed") {
      if (T != weightOf(s, 2).shape()->Get(0))
        return makeError("the step has ", T, " rows, the position embedding ",
                         weightOf(s, 2).shape()->Get(0));
      cpu::visionEmbed(operand(s, 0), operand(s, 1), operand(s, 2), T, width(s, 0), result(s));
    } else if (op == "encoder_attention") {
      const int64_t heads = intAttr(s, "heads");
      cpu::encoderAttention(operand(s, 0), operand(s, 1), operand(s, 2), T, heads,
                            width(s, 0) / heads, static_cast<float>(floatAttr(s, "scale")),
                            result(s));
    } else if (op == "image_rows") {
      imageRows(s);
    } else if (op == "attention") {
      if (attention >= caches_.size()) return makeError("more attention steps than KV caches");
      cpu::attention(operand(s, 0), operand(s, 1), operand(s, 2),
                     reinterpret_cast<const int32_t*>(operand(s, 3)), slots_, T,
                     intAttr(s, "heads"), static_cast<float>(floatAttr(s, "scale")),
                     caches_[attention++], result(s));
    } else if (op == "swiglu") {
      cpu::swiglu(operand(s, 0), operand(s, 1), T * width(s, 0), result(s));
    } else if (op == "split") {
      const float* x = operand(s, 0);
      int64_t in = width(s, 0), offset = 0;
      for (uint32_t r = 0; r < s.results()->size(); ++r) {
        int64_t w = resultWidth(s, r);
        float* out = result(s, r);
        for (int64_t t = 0; t < T; ++t)
          std::memcpy(out + t * w, x + t * in + offset, static_cast<size_t>(w) * 4);
        offset += w;
      }
    } else if (op == "moe_router") {
      const plan::Weight& gate = weightOf(s, 1);
      cpu::moeRouter(operand(s, 0), operand(s, 1), T, width(s, 0), gate.shape()->Get(0),
                     intAttr(s, "top_k"), intAttr(s, "norm_topk_prob") != 0, result(s, 0),
                     reinterpret_cast<int32_t*>(result(s, 1)));
    } else if (op == "moe_experts") {
      return runExperts(s);
    } else if (op == "send") {
      return comm_.send(operand(s, 0), static_cast<size_t>(T * width(s, 0)), peerOf(s));
    } else if (op == "recv") {
      // Past the last stage's select_rows the value holds the logit rows only.
      if (intAttr(s, "logit_rows"))
        rows_ = input_->logitRows ? input_->logitRowCount : input_->tokens;
      return comm_.recv(result(s), static_cast<size_t>(rows_ * resultWidth(s)), peerOf(s));
    } else if (op == "all_reduce") {
      std::memcpy(result(s), operand(s, 0), static_cast<size_t>(T * width(s, 0)) * 4);
      return tpComm().allReduceSum(result(s), static_cast<size_t>(T * width(s, 0)));
    } else if (op == "all_reduce_add_rms_norm") {
      // The twin of all_reduce then add_rms_norm: the same sums in the same order.
      const size_t n = static_cast<size_t>(T * width(s, 0));
      reduced_.assign(operand(s, 0), operand(s, 0) + n);
      if (Error e = tpComm().allReduceSum(reduced_.data(), n)) return e;
      cpu::addRmsNorm(operand(s, 1), reduced_.data(), operand(s, 2), T, width(s, 0), eps,
                      result(s, 0), result(s, 1));
    } else if (op == "all_gather") {
      int64_t w = width(s, 0), world = tpComm().world();
      gathered_.resize(static_cast<size_t>(world * T * w));
      if (Error e = tpComm().allGather(operand(s, 0), static_cast<size_t>(T * w), gathered_.data()))
        return e;
      float* out = result(s);
      for (int64_t r = 0; r < world; ++r)
        for (int64_t t = 0; t < T; ++t)
          std::memcpy(out + t * w * world + r * w, gathered_.data() + (r * T + t) * w,
                      static_cast<size_t>(w) * 4);
    } else if (op == "slice") {
      int64_t in = width(s, 0), start = intAttr(s, "start"), length = intAttr(s, "length");
      const float* x = operand(s, 0);
      float* out = result(s);
      for (int64_t t = 0; t < T; ++t)
        std::memcpy(out + t * length, x + t * in + start, static_cast<size_t>(length) * 4);
    } else {
      return makeError("the CPU backend has no kernel for ", op);
    }
    return Error::success();
  }

  Error runSteps(size_t from, size_t to) {
    size_t attention = 0;
    for (size_t i = from; i < to; ++i) {
      const plan::Step& s = *prog_.steps()->Get(static_cast<flatbuffers::uoffset_t>(i));
      if (Error e = run(s, attention))
        return std::move(e).withContext(std::string(s.op()->string_view()) + ": ");
    }
    return Error::success();
  }

  Communicator& tpComm() { return group_ ? *group_ : comm_; }
  // The same tensor-parallel rank of the step's peer stage.
  int peerOf(const plan::Step& s) const {
    return static_cast<int>(intAttr(s, "peer_stage") * tp_ + tpRank_);
  }

  // The text embedding with the image tokens' rows taken from the step's image rows.
  void imageRows(const plan::Step& s) {
    const int64_t w = width(s, 0);
    const float* embeds = operand(s, 0);
    const float* image = operand(s, 1);
    const auto* ids = reinterpret_cast<const int32_t*>(operand(s, 2));
    const int64_t imageToken = intAttr(s, "image_token_index", -1);
    float* out = result(s);
    for (int64_t t = 0; t < rows_; ++t) {
      const bool take = input_->imageEmbeds &&
                        (input_->useImageRow ? input_->useImageRow[t] != 0 : ids[t] == imageToken);
      const float* src = take ? image : embeds;
      if (out + t * w != src + t * w)
        std::memmove(out + t * w, src + t * w, static_cast<size_t>(w) * 4);
    }
  }

  // Keeps the logit rows (all rows when the step names none); the steps after it run on those
  // rows only. Rows ascend, so row i moves down or stays: a forward copy is safe.
  void selectRows(const plan::Step& s) {
    const int64_t w = width(s, 0);
    const float* x = operand(s, 0);
    float* out = result(s);
    const StepInput& in = *input_;
    if (!in.logitRows) {
      if (out != x) std::memmove(out, x, static_cast<size_t>(rows_ * w) * 4);
      return;
    }
    for (int64_t i = 0; i < in.logitRowCount; ++i)
      std::memmove(out + i * w, x + in.logitRows[i] * w, static_cast<size_t>(w) * 4);
    rows_ = in.logitRowCount;
  }

  // A paged step names only blocks and slots of this pool and rows of this step; anything else
  // is a malformed iteration (a bug upstream or a bad message), refused before any kernel runs.
  Error checkPaged(const StepInput& in) const {
    const int64_t slots = poolBlocks_ * poolBlockSize_;
    if (in.sequences < 1 || !in.seqStarts || in.seqStarts[0] != 0 ||
        in.seqStarts[in.sequences] != in.tokens)
      return makeError("paged step: seq starts do not cover the step's ", in.tokens, " tokens");
    for (int64_t t = 0; t < in.tokens; ++t)
      if (in.kvSlots[t] < 0 || in.kvSlots[t] >= slots)
        return makeError("paged step: KV slot ", in.kvSlots[t], " is outside the pool of ", slots);
    for (int64_t s = 0; s < in.sequences; ++s) {
      if (in.seqStarts[s + 1] < in.seqStarts[s])
        return makeError("paged step: seq starts must not decrease");
      for (int64_t t = in.seqStarts[s]; t < in.seqStarts[s + 1]; ++t) {
        const int64_t needed = in.positions[t] / poolBlockSize_ + 1;
        if (in.positions[t] < 0 || needed > in.blockTableStride)
          return makeError("paged step: position ", in.positions[t],
                           " is past its sequence's block table");
        for (int64_t b = 0; b < needed; ++b) {
          const int32_t block = in.blockTables[s * in.blockTableStride + b];
          if (block < 0 || block >= poolBlocks_)
            return makeError("paged step: block ", block, " is outside the pool of ", poolBlocks_);
        }
      }
    }
    if (in.logitRows)
      for (int64_t i = 0; i < in.logitRowCount; ++i)
        if (in.logitRows[i] < 0 || in.logitRows[i] >= in.tokens ||
            (i > 0 && in.logitRows[i] <= in.logitRows[i - 1]))
          return makeError("paged step: logit rows must ascend within the step's tokens");
    return Error::success();
  }

  // The paged pool: every layer gets the same number of blocks, as many as kvCacheBytes holds
  // for all layers in fp32 (the CPU keeps K/V in fp32 whatever the plan's dtype).
  void allocatePool(const BackendOptions& options) {
    poolBlockSize_ = std::max<int64_t>(options.kvBlockSize, 1);
    const uint64_t budget = options.kvCacheBytes ? options.kvCacheBytes : kDefaultKvCacheBytes;
    // Sized for the rank with the most KV per token, so that every pipeline stage holds as
    // many blocks as the engine hands out (a stage of fewer layers leaves some budget unused).
    uint64_t bytesPerBlock = 0;
    for (const plan::RankProgram* program : *plan_.ranks()) {
      uint64_t bytes = 0;
      for (const plan::Step* s : *program->steps())
        if (s->op()->string_view() == "attention")
          bytes += 2 *
                   static_cast<uint64_t>(poolBlockSize_ * intAttr(*s, "kv_heads") *
                                         intAttr(*s, "head_dim")) *
                   4;
      bytesPerBlock = std::max(bytesPerBlock, bytes);
    }
    if (bytesPerBlock == 0 || caches_.empty()) return;
    poolBlocks_ = static_cast<int64_t>(budget / bytesPerBlock);
    if (poolBlocks_ == 0) return;
    for (const cpu::KvCache& c : caches_) {
      auto n = static_cast<size_t>(poolBlocks_ * poolBlockSize_ * c.kvHeads * c.headDim);
      kvStorage_.emplace_back(static_cast<float*>(std::calloc(2 * n, sizeof(float))));
      if (!kvStorage_.back()) {
        kvBytesMissing_ += 2 * n * sizeof(float);
        continue;
      }
      pools_.push_back({kvStorage_.back().get(), kvStorage_.back().get() + n, poolBlocks_,
                        poolBlockSize_, c.kvHeads, c.headDim});
    }
  }

  Error runExperts(const plan::Step& s) {
    const int64_t per = intAttr(s, "params_per_expert"), topK = intAttr(s, "top_k");
    Expected<LocalExperts> local = localExperts(s, prog_, tp_, tpRank_);
    if (!local) return local.takeError();
    const int64_t experts = local->count;
    std::vector<const float*> gateOrGateUp(static_cast<size_t>(experts)),
        up(static_cast<size_t>(experts)), down(static_cast<size_t>(experts));
    int64_t intermediate = 0;
    for (int64_t e = 0; e < experts; ++e) {
      uint32_t base = static_cast<uint32_t>(3 + e * per);
      auto slot = static_cast<size_t>(e);
      gateOrGateUp[slot] = operand(s, base);
      up[slot] = per == 3 ? operand(s, base + 1) : nullptr;
      down[slot] = operand(s, base + static_cast<uint32_t>(per) - 1);
      intermediate = weightOf(s, base + static_cast<uint32_t>(per) - 1).shape()->Get(1);
    }
    // Expert parallelism: the choices renumbered to this rank's experts (-1: another rank's).
    const auto* chosen = reinterpret_cast<const int32_t*>(operand(s, 2));
    if (local->sharded()) {
      localChoices_.resize(static_cast<size_t>(rows_ * topK));
      cpu::moeLocalExperts(chosen, rows_ * topK, local->first, local->count, localChoices_.data());
      chosen = localChoices_.data();
    }
    float* out = result(s);
    int64_t hidden = width(s, 0);
    std::fill(out, out + rows_ * hidden, 0.0f);
    cpu::moeExperts(operand(s, 0), operand(s, 1), chosen, rows_, hidden, intermediate, topK,
                    gateOrGateUp.data(), per == 3 ? up.data() : nullptr, down.data(), out);
    return Error::success();
  }

  const plan::Plan& plan_;
  const plan::RankProgram& prog_;
  Communicator& comm_;
  std::unique_ptr<Communicator> group_;  // this stage's ranks, when the plan has stages
  int64_t tp_ = 1, tpRank_ = 0;
  std::vector<int32_t> localChoices_;  // a sharded moe_experts step's renumbered choices
  std::vector<std::vector<float>> weights_;
  uint64_t weightBytes_ = 0;
  std::vector<int64_t> widths_;
  int64_t scale_ = 1;
  std::vector<float> arena_, gathered_, reduced_;
  struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
  };
  std::vector<std::unique_ptr<float, FreeDeleter>> kvStorage_;
  uint64_t kvBytesMissing_ = 0;
  std::vector<cpu::KvCache> caches_;
  std::vector<cpu::KvPool> pools_;
  int64_t poolBlocks_ = 0, poolBlockSize_ = 16;
  int64_t tokens_ = 0;  // rows the arena is laid out for
  int64_t rows_ = 0;    // rows the current step runs on (fewer after select_rows)
  const StepInput* input_ = nullptr;
  const int32_t* slots_ = nullptr;
  size_t tailStart_ = 0;  // steps from here on finish a step (the logits' recvs)
  std::unique_ptr<CpuBackend> tower_;
};

// From the checkpoint, or from options.weightSource on a node that has none.
Expected<std::vector<std::vector<float>>> loadRankWeights(const plan::Plan& p, uint32_t rank,
                                                          const BackendOptions& options) {
  if (options.syntheticWeights) {
    return syntheticWeightsF32(p, rank, options.onProgress);
  }
  if (!options.weightSource) {
    Expected<Checkpoint> checkpoint = openPlanCheckpoint(p, options.modelDir);
    if (!checkpoint) return checkpoint.takeError();
    return loadWeightsF32(p, rank, *checkpoint, options.onProgress);
  }
  std::vector<std::vector<float>> weights;
  for (uint32_t w = 0; w < p.ranks()->Get(rank)->weights()->size(); ++w) {
    Expected<std::vector<float>> data = options.weightSource(w);
    if (!data) return data.takeError();
    weights.push_back(std::move(*data));
    if (options.onProgress) options.onProgress();
  }
  return weights;
}

}  // namespace

Expected<std::unique_ptr<Backend>> createCpuBackend(const LoadedPlan& plan, uint32_t rank,
                                                    Communicator& comm,
                                                    const BackendOptions& options) {
  const plan::Plan& p = plan.plan();
  Expected<std::vector<std::vector<float>>> weights = loadRankWeights(p, rank, options);
  if (!weights) return weights.takeError();
  auto backend = std::make_unique<CpuBackend>(p, rank, *p.ranks()->Get(rank), comm,
                                              std::move(*weights), options);
  if (p.vision_tower() && options.syntheticWeights)
    return makeError("--synthetic-weights: the CPU backend makes no vision tower weights");
  if (p.vision_tower() && !options.weightSource) {
    const plan::RankProgram& program = *p.vision_tower()->Get(rank);
    Expected<Checkpoint> checkpoint = openPlanCheckpoint(p, options.modelDir);
    if (!checkpoint) return checkpoint.takeError();
    std::vector<std::vector<float>> towerWeights;
    for (uint32_t w = 0; w < program.weights()->size(); ++w) {
      Expected<std::vector<float>> data = loadProgramWeightF32(program, *checkpoint, w);
      if (!data) return data.takeError().withContext("vision tower: ");
      towerWeights.push_back(std::move(*data));
    }
    backend->setTower(
        std::make_unique<CpuBackend>(p, rank, program, comm, std::move(towerWeights), options));
  }
  if (backend->kvBytesMissing())
    return makeError("cannot allocate ", backend->kvBytesMissing(), " bytes of KV cache on rank ",
                     rank,
                     " (recompile with a smaller --max-context or --max-batch, or give a smaller "
                     "--kv-cache-memory)");
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace tpc
