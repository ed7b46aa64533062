// The IR of a LLaVA vision tower and projector, one image per step: the rows of the step are the
// class slot and the patches, so every existing row-wise op (linear, add, the collectives) and
// the sharding table apply unchanged. Biases of row-parallel linears are separate bias_add
// steps, so that they are added once, after the all-reduce.
#include <cmath>

#include "frontends/GraphBuilder.h"
#include "frontends/LlavaLayout.h"
#include "ir/Verifier.h"

namespace tpc {
namespace {

class VisionBuilder {
 public:
  VisionBuilder(const ModelSpec& spec, const TensorLookup& lookup, const LlavaLayout& layout,
                DType act)
      : spec_(spec), v_(*spec.vision), lookup_(lookup), layout_(layout), act_(act) {}

  Expected<Graph> build() {
    g_.name = "vision_tower";
    g_.attrs.setString("family", "clip_vision_model");
    g_.attrs.setInt("hidden_size", v_.hiddenSize);
    g_.attrs.setInt("num_layers", v_.layersRun());
    g_.attrs.setInt("num_heads", v_.numHeads);
    g_.attrs.setInt("intermediate_size", v_.intermediateSize);
    g_.attrs.setInt("rows", v_.rows());
    g_.attrs.setString("compute_dtype", std::string(irName(act_)));
    g_.attrs.setInt("world", 1);
    const int64_t H = v_.hiddenSize, patchWidth = v_.numChannels * v_.patchSize * v_.patchSize;
    Value* patches = g_.addInput("pixel_patches", act_, {Dim::tokens(), Dim::of(patchWidth)});
    const std::string t = layout_.tower;
    Value* conv = param(t + "embeddings.patch_embedding.weight",
                        {H, v_.numChannels, v_.patchSize, v_.patchSize}, {H, patchWidth});
    // Kept whole: split by columns, its output would need an all_gather before the
    // position embedding, for a GEMM that is a small part of the tower.
    Attributes whole;
    whole.setInt("replicate", 1);
    Value* h = linear(patches, conv, nullptr, "patch_embed", H, whole);
    h = node(OpKind::VisionEmbed,
             {h, param(t + "embeddings.class_embedding", {H}),
              param(t + "embeddings.position_embedding.weight", {v_.rows(), H})},
             "vision_embed", H);
    h = layerNorm(h, t + "pre_layrnorm", "pre_norm");
    for (int64_t l = 0; l < v_.layersRun(); ++l) h = layer(l, h);
    h = projector(h);
    g_.addOutput(h);
    if (error_) return std::move(*error_);
    if (Error e = verifyGraph(g_))
      return std::move(e).withContext("internal: built vision graph is invalid: ");
    return std::move(g_);
  }

 private:
  static Attributes splitAttrs(int64_t groups, const char* what) {
    Attributes a;
    a.setInt("split_groups", groups);
    a.setString("split_name", what);
    return a;
  }

  // `view` is the shape the graph uses when it differs from the checkpoint's (a conv kernel as
  // a GEMM weight).
  Value* param(const std::string& name, const std::vector<int64_t>& shape,
               const std::vector<int64_t>& view = {}) {
    DType dtype = spec_.dtype;
    std::optional<TensorMeta> meta = lookup_(name);
    if (!meta) {
      fail("missing tensor \"", name, "\" (expected shape ", formatShape(staticShape(shape)), ")");
    } else if (meta->shape != shape) {
      fail("tensor \"", name, "\" has shape ", formatShape(staticShape(meta->shape)), ", expected ",
           formatShape(staticShape(shape)));
    } else if (!isComputeDType(meta->dtype)) {
      fail("tensor \"", name, "\" has dtype ", safetensorsName(meta->dtype),
           "; only F32, F16 and BF16 weights are supported");
    } else {
      dtype = meta->dtype;
    }
    Shape whole = staticShape(shape);
    return g_.addParameter(name, dtype, staticShape(view.empty() ? shape : view),
                           {WeightPiece{name, dtype, whole, Sharding::replicated()}});
  }

  template <class... Parts>
  void fail(Parts&&... parts) {
    if (!error_) error_ = makeError(std::forward<Parts>(parts)...);
  }

  Value* node(OpKind op, llvm::ArrayRef<Value*> operands, const std::string& name, int64_t width,
              Attributes attrs = {}) {
    return g_
        .addNode(op, operands, {ResultSpec{name, act_, {Dim::tokens(), Dim::of(width)}}},
                 std::move(attrs))
        ->result();
  }

  Value* linear(Value* x, Value* w, Value* bias, const std::string& name, int64_t out,
                Attributes attrs = {}) {
    llvm::SmallVector<Value*, 3> ops{x, w};
    if (bias) ops.push_back(bias);
    return node(OpKind::Linear, ops, name, out, std::move(attrs));
  }

  // A linear whose output is split (column-parallel when sharded): its bias splits with it.
  Value* columnLinear(Value* x, const std::string& prefix, int64_t out, int64_t in, bool bias,
                      const std::string& name, Attributes attrs) {
    return linear(x, param(prefix + ".weight", {out, in}),
                  bias ? param(prefix + ".bias", {out}) : nullptr, name, out, std::move(attrs));
  }

  // A linear over a split input (row-parallel when sharded): the bias is its own step, after
  // the all-reduce insert-collectives puts there.
  Value* rowLinear(Value* x, const std::string& prefix, int64_t out, int64_t in, bool bias,
                   const std::string& name) {
    Value* y = linear(x, param(prefix + ".weight", {out, in}), nullptr, name, out);
    if (!bias) return y;
    return node(OpKind::BiasAdd, {y, param(prefix + ".bias", {out})}, name + "_bias", out);
  }

  Value* layerNorm(Value* x, const std::string& prefix, const std::string& name) {
    Attributes a;
    a.setDouble("eps", v_.layerNormEps);
    const int64_t H = v_.hiddenSize;
    return node(OpKind::LayerNorm,
                {x, param(prefix + ".weight", {H}), param(prefix + ".bias", {H})}, name, H, a);
  }

  Value* layer(int64_t l, Value* h) {
    const std::string p = layout_.tower + "encoder.layers." + std::to_string(l) + ".";
    const std::string n = "v" + std::to_string(l) + ".";
    const int64_t H = v_.hiddenSize, I = v_.intermediateSize, d = H / v_.numHeads;
    Value* x = layerNorm(h, p + "layer_norm1", n + "attn_norm");
    Attributes heads = splitAttrs(v_.numHeads, "vision num_attention_heads");
    Value* q = columnLinear(x, p + "self_attn.q_proj", H, H, true, n + "q", heads);
    Value* k = columnLinear(x, p + "self_attn.k_proj", H, H, true, n + "k", heads);
    Value* vv = columnLinear(x, p + "self_attn.v_proj", H, H, true, n + "v", heads);
    Attributes attn;
    attn.setInt("heads", v_.numHeads);
    attn.setInt("head_dim", d);
    attn.setDouble("scale", 1.0 / std::sqrt(static_cast<double>(d)));
    Value* a = node(OpKind::EncoderAttention, {q, k, vv}, n + "attn", H, attn);
    Value* o = rowLinear(a, p + "self_attn.out_proj", H, H, true, n + "o");
    h = node(OpKind::Add, {h, o}, n + "h_attn", H);
    x = layerNorm(h, p + "layer_norm2", n + "mlp_norm");
    Value* up = columnLinear(x, p + "mlp.fc1", I, H, true, n + "fc1",
                             splitAttrs(I, "vision intermediate_size"));
    Value* act = node(OpKind::QuickGelu, {up}, n + "act", I);
    Value* down = rowLinear(act, p + "mlp.fc2", H, I, true, n + "fc2");
    return node(OpKind::Add, {h, down}, n + "h", H);
  }

  Value* projector(Value* x) {
    const int64_t H = v_.hiddenSize, T = spec_.hiddenSize;
    const std::string p = layout_.projector;
    Value* up = columnLinear(x, p + "linear_1", T, H, v_.projectorBias, "proj1",
                             splitAttrs(T, "text hidden_size"));
    Value* act = node(OpKind::Gelu, {up}, "proj_act", T);
    return rowLinear(act, p + "linear_2", T, T, v_.projectorBias, "image_features");
  }

  const ModelSpec& spec_;
  const VisionSpec& v_;
  const TensorLookup& lookup_;
  const LlavaLayout& layout_;
  DType act_;
  Graph g_;
  std::optional<Error> error_;
};

}  // namespace

Expected<Graph> buildVisionGraph(const ModelSpec& spec, const TensorLookup& lookup,
                                 const BuildOptions& options) {
  if (!spec.vision) return makeError("the model has no vision tower");
  if (!isComputeDType(options.computeDType))
    return makeError("compute dtype ", irName(options.computeDType),
                     " is not one of f32, f16, bf16");
  Expected<LlavaLayout> layout = detectLlavaLayout(lookup);
  if (!layout) return layout.takeError();
  return VisionBuilder(spec, lookup, *layout, options.computeDType).build();
}

}  // namespace tpc
