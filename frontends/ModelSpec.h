// What a Hugging Face config.json says about a decoder-only model, normalised across the key
// spellings real checkpoints use (rope_theta/rope_scaling vs rope_parameters, torch_dtype vs
// dtype, num_experts vs num_local_experts).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/DType.h"
#include "ir/Error.h"

namespace tpc {

enum class Family : uint8_t { Llama, Mistral, Qwen2, Qwen3, Qwen3Moe, Mixtral };

// The model_type strings of config.json, in Family order.
std::string_view familyName(Family f);
// Lists the supported model_type values, for error messages: "llama, mistral, ...".
std::string supportedFamilies();

enum class RopeType : uint8_t { Default, Linear, Llama3, Yarn };
std::string_view ropeTypeName(RopeType t);

struct RopeSpec {
  RopeType type = RopeType::Default;
  double theta = 10000.0;
  double factor = 1.0;                        // linear, llama3, yarn
  double lowFreqFactor = 1.0;                 // llama3
  double highFreqFactor = 4.0;                // llama3
  int64_t originalMaxPositionEmbeddings = 0;  // llama3, yarn
  double betaFast = 32.0;                     // yarn
  double betaSlow = 1.0;                      // yarn
  double attentionFactor = 0.0;               // yarn; 0 means "derive from factor"
};

struct MoeSpec {
  int64_t numExperts = 0;  // 0: dense model
  int64_t topK = 0;
  int64_t intermediateSize = 0;  // per expert
  bool normTopkProb = false;
  int64_t decoderSparseStep = 1;
  std::vector<int64_t> mlpOnlyLayers;  // layers that keep a dense MLP
  double routerAuxLossCoef = 0.001;    // written back by make-model only
};

struct ModelSpec {
  Family family = Family::Llama;
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  int64_t intermediateSize = 0;  // dense MLP
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKvHeads = 0;
  int64_t headDim = 0;  // explicit head_dim, or hidden_size / num_attention_heads
  double rmsNormEps = 1e-6;
  int64_t maxPositionEmbeddings = 0;
  RopeSpec rope;
  bool tieWordEmbeddings = false;
  bool attentionBias = false;  // bias on q/k/v (qwen2 always; llama when attention_bias)
  bool qkNorm = false;         // per-head RMSNorm on q and k (qwen3, qwen3_moe)
  int64_t slidingWindow = 0;   // 0: none. Recorded; not applied (full attention).
  DType dtype = DType::BF16;   // torch_dtype / dtype
  std::vector<int64_t> eosTokenIds;
  int64_t bosTokenId = -1;
  MoeSpec moe;

  bool isMoe() const { return moe.numExperts > 0; }
  // Whether layer `i` uses the sparse MoE block (decoder_sparse_step, mlp_only_layers).
  bool layerIsMoe(int64_t i) const;
};

// Parses config.json text; `source` names the file in errors.
Expected<ModelSpec> parseModelConfig(std::string_view jsonText, const std::string& source);
Expected<ModelSpec> loadModelConfig(const std::string& path);

// config.json text for `spec`, in the key forms transformers writes for the family, so
// transformers and our own parser both load it.
std::string writeModelConfig(const ModelSpec& spec);

}  // namespace tpc
