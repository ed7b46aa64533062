#include "frontends/GraphBuilder.h"

#include <cmath>

#include "frontends/FamilyLayout.h"
#include "frontends/LlavaLayout.h"
#include "ir/Verifier.h"

namespace tpc {
namespace {

// Where parameter tensors come from: a checkpoint to check against, or nothing (listing the
// tensors a model should have).
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual Expected<TensorMeta> resolve(const std::string& name,
                                       const std::vector<int64_t>& shape) = 0;
};

std::string shapeText(const std::vector<int64_t>& shape) { return formatShape(staticShape(shape)); }

class CheckpointSource : public TensorSource {
 public:
  explicit CheckpointSource(const TensorLookup& lookup) : lookup_(lookup) {}
  Expected<TensorMeta> resolve(const std::string& name,
                               const std::vector<int64_t>& shape) override {
    std::optional<TensorMeta> meta = lookup_(name);
    if (!meta)
      return makeError("missing tensor \"", name, "\" (expected shape ", shapeText(shape), ")");
    if (meta->shape != shape)
      return makeError("tensor \"", name, "\" has shape ", shapeText(meta->shape), ", expected ",
                       shapeText(shape));
    if (!isComputeDType(meta->dtype))
      return makeError("tensor \"", name, "\" has dtype ", safetensorsName(meta->dtype),
                       "; only F32, F16 and BF16 weights are supported");
    return *meta;
  }

 private:
  const TensorLookup& lookup_;
};

class ListingSource : public TensorSource {
 public:
  explicit ListingSource(DType dtype) : dtype_(dtype) {}
  Expected<TensorMeta> resolve(const std::string& name,
                               const std::vector<int64_t>& shape) override {
    listed.push_back({name, shape});
    return TensorMeta{dtype_, shape};
  }
  std::vector<ExpectedTensor> listed;

 private:
  DType dtype_;
};

class DecoderBuilder {
 public:
  DecoderBuilder(const ModelSpec& spec, TensorSource& source, DType act,
                 std::optional<LlavaLayout> llava = std::nullopt)
      : spec_(spec),
        layout_(familyLayout(spec.family)),
        source_(source),
        act_(act),
        llava_(std::move(llava)) {}

  Expected<Graph> build() {
    describeModel();
    ids_ = g_.addInput("token_ids", DType::I32, {Dim::tokens()});
    positions_ = g_.addInput("positions", DType::I32, {Dim::tokens()});
    Value* embed = param("model.embed_tokens.weight", {spec_.vocabSize, spec_.hiddenSize});
    Attributes embedAttrs = splitAttrs(spec_.vocabSize, "vocab_size");
    embedAttrs.setInt("pad_to_world", 1);  // the vocab is padded to a multiple of the world
    Value* h = node(OpKind::Embedding, {ids_, embed}, "embed", act_, spec_.hiddenSize, embedAttrs);
    if (spec_.vision) h = imageRows(h);
    for (int64_t l = 0; l < spec_.numLayers; ++l) h = layer(l, h);
    Value* norm = rmsNorm(h, "model.norm.weight", "final_norm");
    // The lm_head runs only on the rows that sample (one per sequence, not a whole prefill
    // chunk). Selected after the final norm, so the last residual add and the norm still fuse
    // into one add_rms_norm; the norm of the other rows costs little beside the lm_head.
    norm = node(OpKind::SelectRows, {norm}, "logit_rows", act_, spec_.hiddenSize);
    Value* head = spec_.tieWordEmbeddings
                      ? embed
                      : param("lm_head.weight", {spec_.vocabSize, spec_.hiddenSize});
    Attributes headAttrs = splitAttrs(spec_.vocabSize, "vocab_size");
    headAttrs.setInt("pad_to_world", 1);
    g_.addOutput(
        node(OpKind::Linear, {norm, head}, "logits", DType::F32, spec_.vocabSize, headAttrs));
    if (error_) return std::move(*error_);
    if (Error e = verifyGraph(g_))
      return std::move(e).withContext("internal: built graph is invalid: ");
    return std::move(g_);
  }

 private:
  void describeModel() {
    g_.name = std::string(familyName(spec_.family));
    Attributes& a = g_.attrs;
    a.setString("family", g_.name);
    a.setInt("vocab_size", spec_.vocabSize);
    a.setInt("hidden_size", spec_.hiddenSize);
    a.setInt("num_layers", spec_.numLayers);
    a.setInt("num_heads", spec_.numHeads);
    a.setInt("num_kv_heads", spec_.numKvHeads);
    a.setInt("head_dim", spec_.headDim);
    a.setInt("intermediate_size", spec_.intermediateSize);
    a.setInt("max_position_embeddings", spec_.maxPositionEmbeddings);
    a.setString("weight_dtype", std::string(irName(spec_.dtype)));
    a.setString("compute_dtype", std::string(irName(act_)));
    a.setInts("eos_token_ids", spec_.eosTokenIds);
    if (spec_.isMoe()) {
      a.setInt("num_experts", spec_.moe.numExperts);
      a.setInt("num_experts_per_tok", spec_.moe.topK);
      a.setInt("moe_intermediate_size", spec_.moe.intermediateSize);
    }
    a.setInt("world", 1);
  }

  // llava: the projected image rows replace the embeddings of the image tokens. The rows come
  // in as an input (the vision tower is its own program), one per token of the step.
  Value* imageRows(Value* embeds) {
    const VisionSpec& v = *spec_.vision;
    Value* rows = g_.addInput("image_embeds", act_, {Dim::tokens(), Dim::of(spec_.hiddenSize)});
    Attributes a;
    a.setInt("image_token_index", v.imageTokenIndex);
    Attributes& m = g_.attrs;
    m.setString("architecture", "llava");
    m.setInt("image_token_index", v.imageTokenIndex);
    m.setInt("image_seq_length", v.imageSeqLength);
    m.setInt("vision_image_size", v.imageSize);
    m.setInt("vision_patch_size", v.patchSize);
    m.setInt("vision_num_channels", v.numChannels);
    m.setInt("vision_rows", v.rows());
    m.setInt("vision_first_feature_row", v.keepClassRow ? 0 : 1);
    return node(OpKind::ImageRows, {embeds, rows, ids_}, "image_rows", act_, spec_.hiddenSize, a);
  }

  static Attributes splitAttrs(int64_t groups, const char* configKey) {
    Attributes a;
    a.setInt("split_groups", groups);
    a.setString("split_name", configKey);
    return a;
  }

  Value* param(const std::string& canonical, const std::vector<int64_t>& shape) {
    const std::string name = llava_ ? llava_->textName(canonical) : canonical;
    if (Value* existing = g_.findValue(name)) return existing;
    Expected<TensorMeta> meta = source_.resolve(name, shape);
    DType dtype = spec_.dtype;
    if (!meta) {
      if (!error_) error_ = meta.takeError();
    } else {
      dtype = meta->dtype;
    }
    Shape s = staticShape(shape);
    return g_.addParameter(name, dtype, s, {WeightPiece{name, dtype, s, Sharding::replicated()}});
  }

  Value* node(OpKind op, llvm::ArrayRef<Value*> operands, const std::string& name, DType dtype,
              int64_t width, Attributes attrs = {}) {
    return g_
        .addNode(op, operands, {ResultSpec{name, dtype, {Dim::tokens(), Dim::of(width)}}},
                 std::move(attrs))
        ->result();
  }

  Value* rmsNorm(Value* x, const std::string& weight, const std::string& name) {
    Attributes a;
    a.setDouble("eps", spec_.rmsNormEps);
    return node(OpKind::RmsNorm, {x, param(weight, {spec_.hiddenSize})}, name, act_,
                spec_.hiddenSize, a);
  }

  Value* linear(Value* x, const std::string& prefix, int64_t out, int64_t in, bool bias,
                const std::string& name, Attributes attrs) {
    llvm::SmallVector<Value*, 3> ops{x, param(prefix + ".weight", {out, in})};
    if (bias) ops.push_back(param(prefix + ".bias", {out}));
    return node(OpKind::Linear, ops, name, act_, out, std::move(attrs));
  }

  Attributes ropeAttrs() const {
    const RopeSpec& r = spec_.rope;
    Attributes a;
    a.setInt("head_dim", spec_.headDim);
    a.setString("rope_type", std::string(ropeTypeName(r.type)));
    a.setDouble("rope_theta", r.theta);
    if (r.type != RopeType::Default) a.setDouble("rope_factor", r.factor);
    if (r.type == RopeType::Llama3) {
      a.setDouble("rope_low_freq_factor", r.lowFreqFactor);
      a.setDouble("rope_high_freq_factor", r.highFreqFactor);
    }
    if (r.type == RopeType::Llama3 || r.type == RopeType::Yarn)
      a.setInt("rope_original_max_position", r.originalMaxPositionEmbeddings);
    if (r.type == RopeType::Yarn) {
      a.setDouble("rope_beta_fast", r.betaFast);
      a.setDouble("rope_beta_slow", r.betaSlow);
      a.setDouble("rope_attention_factor", r.attentionFactor);
    }
    return a;
  }

  Value* layer(int64_t l, Value* h) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const std::string n = "l" + std::to_string(l) + ".";
    const int64_t H = spec_.hiddenSize, d = spec_.headDim;
    const int64_t qWidth = spec_.numHeads * d, kvWidth = spec_.numKvHeads * d;

    Value* x = rmsNorm(h, p + "input_layernorm.weight", n + "attn_norm");
    Value* q = linear(x, p + "self_attn.q_proj", qWidth, H, spec_.attentionBias, n + "q",
                      splitAttrs(spec_.numHeads, "num_attention_heads"));
    Attributes kvAttrs = splitAttrs(spec_.numKvHeads, "num_key_value_heads");
    kvAttrs.setInt("replicable", 1);  // KV heads may be held by several ranks
    Value* k = linear(x, p + "self_attn.k_proj", kvWidth, H, spec_.attentionBias, n + "k", kvAttrs);
    Value* v = linear(x, p + "self_attn.v_proj", kvWidth, H, spec_.attentionBias, n + "v", kvAttrs);
    if (spec_.qkNorm) {
      Attributes a;
      a.setInt("head_dim", d);
      a.setDouble("eps", spec_.rmsNormEps);
      q = node(OpKind::HeadRmsNorm, {q, param(p + "self_attn.q_norm.weight", {d})}, n + "q_norm",
               act_, qWidth, a);
      k = node(OpKind::HeadRmsNorm, {k, param(p + "self_attn.k_norm.weight", {d})}, n + "k_norm",
               act_, kvWidth, a);
    }
    q = node(OpKind::Rope, {q, positions_}, n + "q_rope", act_, qWidth, ropeAttrs());
    k = node(OpKind::Rope, {k, positions_}, n + "k_rope", act_, kvWidth, ropeAttrs());
    Attributes attn;
    attn.setInt("layer", l);
    attn.setInt("heads", spec_.numHeads);
    attn.setInt("kv_heads", spec_.numKvHeads);
    attn.setInt("head_dim", d);
    attn.setDouble("scale", 1.0 / std::sqrt(static_cast<double>(d)));
    Value* a = node(OpKind::Attention, {q, k, v, positions_}, n + "attn", act_, qWidth, attn);
    Value* o = linear(a, p + "self_attn.o_proj", H, qWidth, false, n + "o", {});
    h = node(OpKind::Add, {h, o}, n + "h_attn", act_, H);

    x = rmsNorm(h, p + "post_attention_layernorm.weight", n + "mlp_norm");
    Value* mlp = spec_.layerIsMoe(l) ? moe(p, n, x) : denseMlp(p, n, x);
    return node(OpKind::Add, {h, mlp}, n + "h", act_, H);
  }

  Value* denseMlp(const std::string& p, const std::string& n, Value* x) {
    const int64_t H = spec_.hiddenSize, I = spec_.intermediateSize;
    Value* gate =
        linear(x, p + "mlp.gate_proj", I, H, false, n + "gate", splitAttrs(I, "intermediate_size"));
    Value* up =
        linear(x, p + "mlp.up_proj", I, H, false, n + "up", splitAttrs(I, "intermediate_size"));
    Value* act = node(OpKind::SwiGlu, {gate, up}, n + "act", act_, I);
    return linear(act, p + "mlp.down_proj", H, I, false, n + "down", {});
  }

  Value* moe(const std::string& p, const std::string& n, Value* x) {
    const int64_t H = spec_.hiddenSize, I = spec_.moe.intermediateSize, E = spec_.moe.numExperts;
    const int64_t k = spec_.moe.topK;
    Attributes router;
    router.setInt("top_k", k);
    router.setInt("norm_topk_prob", spec_.moe.normTopkProb ? 1 : 0);
    Node* r =
        g_.addNode(OpKind::MoeRouter, {x, param(p + layout_.routerGate, {E, H})},
                   {ResultSpec{n + "router_weights", DType::F32, {Dim::tokens(), Dim::of(k)}},
                    ResultSpec{n + "router_experts", DType::I32, {Dim::tokens(), Dim::of(k)}}},
                   router);
    llvm::SmallVector<Value*, 64> ops{x, r->result(0), r->result(1)};
    for (int64_t e = 0; e < E; ++e) {
      ops.push_back(param(p + expertTensorName(layout_.expertGate, e), {I, H}));
      ops.push_back(param(p + expertTensorName(layout_.expertUp, e), {I, H}));
      ops.push_back(param(p + expertTensorName(layout_.expertDown, e), {H, I}));
    }
    Attributes a = splitAttrs(I, "moe_intermediate_size");
    a.setInt("experts", E);
    a.setInt("top_k", k);
    a.setInt("params_per_expert", 3);
    return node(OpKind::MoeExperts, ops, n + "moe", act_, H, a);
  }

  const ModelSpec& spec_;
  const FamilyLayout& layout_;
  TensorSource& source_;
  DType act_;
  Graph g_;
  Value* ids_ = nullptr;
  Value* positions_ = nullptr;
  std::optional<Error> error_;
  std::optional<LlavaLayout> llava_;
};

}  // namespace

Expected<Graph> buildGraph(const ModelSpec& spec, const TensorLookup& lookup,
                           const BuildOptions& options) {
  if (!isComputeDType(options.computeDType))
    return makeError("compute dtype ", irName(options.computeDType),
                     " is not one of f32, f16, bf16");
  CheckpointSource source(lookup);
  std::optional<LlavaLayout> llava;
  if (spec.vision) {
    Expected<LlavaLayout> layout = detectLlavaLayout(lookup);
    if (!layout) return layout.takeError();
    llava = *layout;
  }
  return DecoderBuilder(spec, source, options.computeDType, llava).build();
}

std::vector<ExpectedTensor> expectedTensors(const ModelSpec& spec) {
  ListingSource source(spec.dtype);
  Expected<Graph> g = DecoderBuilder(spec, source, DType::F32).build();
  (void)g;  // only the listing matters; the spec was validated when parsed
  return std::move(source.listed);
}

}  // namespace tpc
