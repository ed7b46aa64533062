// Names, the MoE layer rule, validation and parameter counting for ModelSpec. Validation speaks
// in config.json key names because a spec's user-facing form is always a config.json.
#include "frontends/ModelSpec.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "frontends/Printable.h"

namespace tpc {

namespace {

constexpr std::array<Family, 6> kFamilies = {Family::Llama, Family::Mistral,  Family::Qwen2,
                                             Family::Qwen3, Family::Qwen3Moe, Family::Mixtral};

// Bounds that keep every product of two sizes (and the parameter count of any sane model) far
// from int64 overflow, so later passes can multiply shapes without checking.
constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxPositions = int64_t{1} << 31;

// The config.json key holding the per-expert MLP width.
const char* expertSizeKey(Family f) {
  return f == Family::Qwen3Moe ? "moe_intermediate_size" : "intermediate_size";
}
const char* expertCountKey(Family f) {
  return f == Family::Mixtral ? "num_local_experts" : "num_experts";
}

bool isQwen3(Family f) { return f == Family::Qwen3 || f == Family::Qwen3Moe; }

}  // namespace

std::string_view familyName(Family f) {
  switch (f) {
    case Family::Llama:
      return "llama";
    case Family::Mistral:
      return "mistral";
    case Family::Qwen2:
      return "qwen2";
    case Family::Qwen3:
      return "qwen3";
    case Family::Qwen3Moe:
      return "qwen3_moe";
    case Family::Mixtral:
      return "mixtral";
  }
  return "?";
}

std::string supportedFamilies() {
  std::string out;
  for (Family f : kFamilies) {
    if (!out.empty()) out += ", ";
    out += familyName(f);
  }
  return out;
}

Expected<Family> parseFamily(std::string_view modelType) {
  for (Family f : kFamilies)
    if (familyName(f) == modelType) return f;
  return makeError("model_type \"", printable(modelType),
                   "\" is not supported (supported: ", supportedFamilies(), ")");
}

bool isMoeFamily(Family f) { return f == Family::Qwen3Moe || f == Family::Mixtral; }

std::string_view ropeTypeName(RopeType t) {
  switch (t) {
    case RopeType::Default:
      return "default";
    case RopeType::Linear:
      return "linear";
    case RopeType::Llama3:
      return "llama3";
    case RopeType::Yarn:
      return "yarn";
  }
  return "?";
}

std::string_view configDTypeName(DType t) {
  switch (t) {
    case DType::BF16:
      return "bfloat16";
    case DType::F16:
      return "float16";
    case DType::F32:
      return "float32";
    default:
      return "";
  }
}

bool ModelSpec::layerIsMoe(int64_t i) const {
  if (!isMoe() || moe.decoderSparseStep < 1) return false;
  if (std::find(moe.mlpOnlyLayers.begin(), moe.mlpOnlyLayers.end(), i) != moe.mlpOnlyLayers.end())
    return false;
  return (i + 1) % moe.decoderSparseStep == 0;
}

namespace {

// Collects the first failure so the checks below read as a flat list.
class Checker {
 public:
  explicit Checker(const std::string& source) : source_(source) {}

  template <class... Parts>
  void fail(Parts&&... parts) {
    if (!error_) error_ = makeError(source_, ": ", std::forward<Parts>(parts)...);
  }
  void range(const char* key, int64_t value, int64_t min, int64_t max) {
    if (value < min) {
      if (min == 1)
        fail(key, " must be positive, got ", value);
      else
        fail(key, " must be at least ", min, ", got ", value);
    } else if (value > max) {
      fail(key, " is too large: ", value, " (limit ", max, ")");
    }
  }
  void positiveReal(const char* key, double value) {
    if (!std::isfinite(value) || value <= 0) fail(key, " must be a positive number, got ", value);
  }
  bool failed() const { return static_cast<bool>(error_); }
  Error take() { return std::move(error_); }

 private:
  const std::string& source_;
  Error error_ = Error::success();
};

void checkRope(Checker& c, const RopeSpec& r) {
  c.positiveReal("rope_theta", r.theta);
  if (r.type == RopeType::Default) return;
  c.positiveReal("rope_scaling.factor", r.factor);
  if (r.type == RopeType::Llama3) {
    c.positiveReal("rope_scaling.low_freq_factor", r.lowFreqFactor);
    c.positiveReal("rope_scaling.high_freq_factor", r.highFreqFactor);
    // The llama3 ramp divides by (high - low); equal factors would divide by zero.
    if (!(r.highFreqFactor > r.lowFreqFactor))
      c.fail("rope_scaling.high_freq_factor (", r.highFreqFactor,
             ") must be greater than rope_scaling.low_freq_factor (", r.lowFreqFactor, ")");
    c.range("rope_scaling.original_max_position_embeddings", r.originalMaxPositionEmbeddings, 1,
            kMaxPositions);
  }
  if (r.type == RopeType::Yarn) {
    // 0 means "use max_position_embeddings", as transformers does when the key is absent.
    c.range("rope_scaling.original_max_position_embeddings", r.originalMaxPositionEmbeddings, 0,
            kMaxPositions);
    c.positiveReal("rope_scaling.beta_fast", r.betaFast);
    c.positiveReal("rope_scaling.beta_slow", r.betaSlow);
    if (!std::isfinite(r.attentionFactor) || r.attentionFactor < 0)
      c.fail("rope_scaling.attention_factor must be a non-negative number, got ",
             r.attentionFactor);
  }
}

void checkMoe(Checker& c, const ModelSpec& s) {
  const MoeSpec& m = s.moe;
  if (!isMoeFamily(s.family)) {
    if (m.numExperts != 0)
      c.fail(familyName(s.family), " is a dense family but the spec has ", m.numExperts,
             " experts");
    return;
  }
  c.range(expertCountKey(s.family), m.numExperts, 1, kMaxDim);
  c.range("num_experts_per_tok", m.topK, 1, kMaxDim);
  if (!c.failed() && m.topK > m.numExperts)
    c.fail("num_experts_per_tok (", m.topK, ") exceeds ", expertCountKey(s.family), " (",
           m.numExperts, ")");
  c.range(expertSizeKey(s.family), m.intermediateSize, 1, kMaxDim);
  c.range("decoder_sparse_step", m.decoderSparseStep, 1, kMaxDim);
  if (!std::isfinite(m.routerAuxLossCoef) || m.routerAuxLossCoef < 0)
    c.fail("router_aux_loss_coef must be a non-negative number, got ", m.routerAuxLossCoef);
  for (int64_t layer : m.mlpOnlyLayers)
    if (layer < 0 || layer >= s.numLayers)
      c.fail("mlp_only_layers names layer ", layer, ", outside 0..", s.numLayers - 1);
  if (s.family == Family::Mixtral) {
    // Mixtral's router always renormalises its top-k and every layer is sparse; the spec
    // carries these as data only so one layerIsMoe rule serves both families.
    if (!m.normTopkProb || m.decoderSparseStep != 1 || !m.mlpOnlyLayers.empty())
      c.fail(
          "mixtral has a sparse MLP in every layer with normalised top-k weights; "
          "norm_topk_prob, decoder_sparse_step and mlp_only_layers cannot change that");
    if (s.intermediateSize != 0)
      c.fail(
          "mixtral has no dense MLP, so the spec's dense intermediate size must be 0 (the "
          "expert width goes in moe.intermediateSize)");
    return;
  }
  if (c.failed()) return;
  for (int64_t i = 0; i < s.numLayers; ++i) {
    if (!s.layerIsMoe(i) && s.intermediateSize <= 0) {
      c.fail("layer ", i, " has a dense MLP (decoder_sparse_step, mlp_only_layers) but ",
             "intermediate_size is ", s.intermediateSize);
      return;
    }
  }
}

}  // namespace

Error validateModelSpec(const ModelSpec& s, const std::string& source) {
  Checker c(source);
  c.range("vocab_size", s.vocabSize, 1, kMaxDim);
  c.range("hidden_size", s.hiddenSize, 1, kMaxDim);
  c.range("num_hidden_layers", s.numLayers, 1, kMaxDim);
  c.range("num_attention_heads", s.numHeads, 1, kMaxDim);
  c.range("num_key_value_heads", s.numKvHeads, 1, kMaxDim);
  c.range("head_dim", s.headDim, 1, kMaxDim);
  if (s.family != Family::Mixtral && s.family != Family::Qwen3Moe)
    c.range("intermediate_size", s.intermediateSize, 1, kMaxDim);
  else
    c.range("intermediate_size", s.intermediateSize, 0, kMaxDim);
  if (c.failed()) return c.take();
  if (s.numHeads % s.numKvHeads != 0)
    c.fail("num_attention_heads (", s.numHeads, ") is not a multiple of num_key_value_heads (",
           s.numKvHeads, ")");
  // Rotary embeddings rotate pairs of channels.
  if (s.headDim % 2 != 0) c.fail("head_dim must be even, got ", s.headDim);
  c.positiveReal("rms_norm_eps", s.rmsNormEps);
  c.range("max_position_embeddings", s.maxPositionEmbeddings, 1, kMaxPositions);
  c.range("sliding_window", s.slidingWindow, 0, kMaxPositions);
  if (configDTypeName(s.dtype).empty())
    c.fail("dtype ", irName(s.dtype), " is not a weight dtype (bfloat16, float16 or float32)");
  for (int64_t id : s.eosTokenIds) c.range("eos_token_id", id, 0, kMaxPositions);
  c.range("bos_token_id", s.bosTokenId, -1, kMaxPositions);
  checkRope(c, s.rope);
  if (s.attentionBias != (s.family == Family::Qwen2))
    c.fail("q/k/v bias without o_proj bias is what qwen2 has and no other family; ",
           familyName(s.family), " with attentionBias=", s.attentionBias ? "true" : "false",
           " cannot be written as a config.json");
  if (s.qkNorm != isQwen3(s.family))
    c.fail("q/k RMSNorm belongs to qwen3 and qwen3_moe only; ", familyName(s.family),
           " with qkNorm=", s.qkNorm ? "true" : "false", " cannot be written as a config.json");
  checkMoe(c, s);
  return c.take();
}

int64_t parameterCount(const ModelSpec& s) {
  using Wide = __int128;
  const Wide h = s.hiddenSize, q = Wide(s.numHeads) * s.headDim,
             kv = Wide(s.numKvHeads) * s.headDim;
  Wide attention = h * q + 2 * h * kv + q * h + 2 * h;  // q, k, v, o, two layer norms
  if (s.attentionBias) attention += q + 2 * kv;
  if (s.qkNorm) attention += 2 * Wide(s.headDim);
  const Wide dense = 3 * h * s.intermediateSize;
  const Wide sparse =
      Wide(s.moe.numExperts) * 3 * h * s.moe.intermediateSize + h * s.moe.numExperts;
  Wide total = Wide(s.vocabSize) * h * (s.tieWordEmbeddings ? 1 : 2) + h;  // + final norm
  for (int64_t i = 0; i < s.numLayers; ++i) total += attention + (s.layerIsMoe(i) ? sparse : dense);
  const Wide limit = std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(std::min(total, limit));
}

}  // namespace tpc
