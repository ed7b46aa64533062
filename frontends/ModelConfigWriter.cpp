// ModelSpec → config.json, in the key forms each family's own checkpoints use: rope_theta +
// rope_scaling and torch_dtype (transformers 5 still reads them, and so do older versions),
// num_experts for qwen3_moe and num_local_experts for mixtral. Every key parseModelConfig
// reads is written explicitly, so no class default of any transformers version matters.
#include <cassert>
#include <nlohmann/json.hpp>

#include "frontends/ModelSpec.h"

namespace tpc {

namespace {

using nlohmann::json;

const char* architecture(Family f) {
  switch (f) {
    case Family::Llama:
      return "LlamaForCausalLM";
    case Family::Mistral:
      return "MistralForCausalLM";
    case Family::Qwen2:
      return "Qwen2ForCausalLM";
    case Family::Qwen3:
      return "Qwen3ForCausalLM";
    case Family::Qwen3Moe:
      return "Qwen3MoeForCausalLM";
    case Family::Mixtral:
      return "MixtralForCausalLM";
  }
  return "?";
}

json ropeScaling(const RopeSpec& r) {
  if (r.type == RopeType::Default) return nullptr;
  json j = {{"rope_type", std::string(ropeTypeName(r.type))}, {"factor", r.factor}};
  if (r.type == RopeType::Llama3) {
    j["low_freq_factor"] = r.lowFreqFactor;
    j["high_freq_factor"] = r.highFreqFactor;
    j["original_max_position_embeddings"] = r.originalMaxPositionEmbeddings;
  } else if (r.type == RopeType::Yarn) {
    j["beta_fast"] = r.betaFast;
    j["beta_slow"] = r.betaSlow;
    if (r.originalMaxPositionEmbeddings > 0)
      j["original_max_position_embeddings"] = r.originalMaxPositionEmbeddings;
    if (r.attentionFactor > 0) j["attention_factor"] = r.attentionFactor;
  }
  return j;
}

json windowOrNull(int64_t window) { return window > 0 ? json(window) : json(nullptr); }

void writeQwenWindow(json& j, const ModelSpec& s) {
  // transformers applies the window only when use_sliding_window is set, and then only from
  // layer max_window_layers on; 0 makes every layer slide, as the spec means.
  j["use_sliding_window"] = s.slidingWindow > 0;
  j["sliding_window"] = windowOrNull(s.slidingWindow);
  if (s.family != Family::Qwen3Moe) j["max_window_layers"] = s.slidingWindow > 0 ? 0 : s.numLayers;
}

}  // namespace

std::string writeModelConfig(const ModelSpec& s) {
  assert(!validateModelSpec(s, "writeModelConfig") && "writeModelConfig needs a valid spec");
  json j = json::object();
  j["architectures"] = json::array({architecture(s.family)});
  j["model_type"] = std::string(familyName(s.family));
  j["vocab_size"] = s.vocabSize;
  j["hidden_size"] = s.hiddenSize;
  j["num_hidden_layers"] = s.numLayers;
  j["num_attention_heads"] = s.numHeads;
  j["num_key_value_heads"] = s.numKvHeads;
  j["head_dim"] = s.headDim;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = s.rmsNormEps;
  j["max_position_embeddings"] = s.maxPositionEmbeddings;
  j["rope_theta"] = s.rope.theta;
  j["rope_scaling"] = ropeScaling(s.rope);
  j["torch_dtype"] = std::string(configDTypeName(s.dtype));
  j["tie_word_embeddings"] = s.tieWordEmbeddings;
  j["bos_token_id"] = s.bosTokenId >= 0 ? json(s.bosTokenId) : json(nullptr);
  if (s.eosTokenIds.empty())
    j["eos_token_id"] = nullptr;
  else if (s.eosTokenIds.size() == 1)
    j["eos_token_id"] = s.eosTokenIds[0];
  else
    j["eos_token_id"] = s.eosTokenIds;
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;

  switch (s.family) {
    case Family::Llama:
      j["intermediate_size"] = s.intermediateSize;
      j["attention_bias"] = false;
      j["mlp_bias"] = false;
      break;
    case Family::Mistral:
      j["intermediate_size"] = s.intermediateSize;
      j["sliding_window"] = windowOrNull(s.slidingWindow);
      break;
    case Family::Qwen2:
      j["intermediate_size"] = s.intermediateSize;
      writeQwenWindow(j, s);
      break;
    case Family::Qwen3:
      j["intermediate_size"] = s.intermediateSize;
      j["attention_bias"] = false;
      writeQwenWindow(j, s);
      break;
    case Family::Qwen3Moe:
      // Dense layers only exist through mlp_only_layers or decoder_sparse_step; without any,
      // the dense width is unused and left out rather than written as 0.
      if (s.intermediateSize > 0) j["intermediate_size"] = s.intermediateSize;
      j["attention_bias"] = false;
      writeQwenWindow(j, s);
      j["num_experts"] = s.moe.numExperts;
      j["num_experts_per_tok"] = s.moe.topK;
      j["moe_intermediate_size"] = s.moe.intermediateSize;
      j["norm_topk_prob"] = s.moe.normTopkProb;
      j["decoder_sparse_step"] = s.moe.decoderSparseStep;
      j["mlp_only_layers"] = s.moe.mlpOnlyLayers;
      j["router_aux_loss_coef"] = s.moe.routerAuxLossCoef;
      j["output_router_logits"] = false;
      break;
    case Family::Mixtral:
      j["intermediate_size"] = s.moe.intermediateSize;
      j["num_local_experts"] = s.moe.numExperts;
      j["num_experts_per_tok"] = s.moe.topK;
      j["router_aux_loss_coef"] = s.moe.routerAuxLossCoef;
      j["output_router_logits"] = false;
      j["sliding_window"] = windowOrNull(s.slidingWindow);
      break;
  }
  return j.dump(2) + "\n";
}

}  // namespace tpc
