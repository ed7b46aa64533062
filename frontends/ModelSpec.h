// What a Hugging Face config.json says about a decoder-only model, normalised across the key
// spellings real checkpoints use (rope_theta/rope_scaling vs rope_parameters, torch_dtype vs
// dtype, num_experts vs num_local_experts).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ir/DType.h"
#include "ir/Error.h"

namespace tpc {

enum class Family : uint8_t { Llama, Mistral, Qwen2, Qwen3, Qwen3Moe, Mixtral };

// The model_type strings of config.json, in Family order.
std::string_view familyName(Family f);
// Lists the supported model_type values, for error messages: "llama, mistral, ...".
std::string supportedFamilies();
// A config.json model_type ("qwen3_moe") as a Family; the error lists the supported ones.
Expected<Family> parseFamily(std::string_view modelType);
// The sparse-MoE families: their MLP is (mostly) a mixture of experts.
bool isMoeFamily(Family f);

enum class RopeType : uint8_t { Default, Linear, Llama3, Yarn };
std::string_view ropeTypeName(RopeType t);

struct RopeSpec {
  RopeType type = RopeType::Default;
  double theta = 10000.0;
  double factor = 1.0;                        // linear, llama3, yarn
  double lowFreqFactor = 1.0;                 // llama3
  double highFreqFactor = 4.0;                // llama3
  int64_t originalMaxPositionEmbeddings = 0;  // llama3, yarn (0: max_position_embeddings)
  double betaFast = 32.0;                     // yarn
  double betaSlow = 1.0;                      // yarn
  double attentionFactor = 0.0;               // yarn; 0 means "derive from factor"

  bool operator==(const RopeSpec&) const = default;
};

struct MoeSpec {
  int64_t numExperts = 0;  // 0: dense model
  int64_t topK = 0;
  int64_t intermediateSize = 0;  // per expert
  bool normTopkProb = false;
  int64_t decoderSparseStep = 1;
  std::vector<int64_t> mlpOnlyLayers;  // layers that keep a dense MLP
  double routerAuxLossCoef = 0.001;    // written back by make-model only

  bool operator==(const MoeSpec&) const = default;
};

// A LLaVA (llava-1.5 layout) checkpoint's CLIP vision tower, projector and image tokens; the
// text model is the rest of the ModelSpec holding it.
struct VisionSpec {
  int64_t hiddenSize = 0;
  int64_t intermediateSize = 0;
  int64_t numLayers = 0;  // in the checkpoint; the tower runs only up to the selected one
  int64_t numHeads = 0;
  int64_t numChannels = 3;
  int64_t imageSize = 0;
  int64_t patchSize = 0;
  double layerNormEps = 1e-5;
  int64_t imageTokenIndex = 0;
  int64_t imageSeqLength = 0;
  int64_t featureLayer = -2;  // index into the tower's hidden states (0: the embeddings)
  bool keepClassRow = false;  // vision_feature_select_strategy "full"; "default" drops it
  bool projectorBias = true;  // multimodal_projector_bias

  int64_t patchesPerSide() const { return imageSize / patchSize; }
  // The tower's rows: the class slot, then the patches in raster order.
  int64_t rows() const { return patchesPerSide() * patchesPerSide() + 1; }
  // Encoder layers run: hidden state featureLayer is the output of that many layers.
  int64_t layersRun() const {
    return featureLayer < 0 ? numLayers + 1 + featureLayer : featureLayer;
  }
  // The image rows a prompt holds, one per image token.
  int64_t featureRows() const { return keepClassRow ? rows() : rows() - 1; }

  bool operator==(const VisionSpec&) const = default;
};

struct ModelSpec {
  Family family = Family::Llama;
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  // Dense MLP width. Mixtral has no dense layer, so 0 there (its expert width is in moe);
  // qwen3_moe uses it only for layers where layerIsMoe is false, and it may be 0 if none is.
  int64_t intermediateSize = 0;
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t numKvHeads = 0;
  int64_t headDim = 0;  // explicit head_dim, or hidden_size / num_attention_heads
  double rmsNormEps = 1e-6;
  int64_t maxPositionEmbeddings = 0;
  RopeSpec rope;
  bool tieWordEmbeddings = false;
  // Bias on q/k/v but not o_proj: qwen2 only. attention_bias: true in llama/qwen3 configs
  // biases o_proj too, which no builder handles, so the parser refuses it.
  bool attentionBias = false;
  bool qkNorm = false;        // per-head RMSNorm on q and k (qwen3, qwen3_moe)
  int64_t slidingWindow = 0;  // 0: none. Recorded; not applied (full attention).
  DType dtype = DType::BF16;  // torch_dtype / dtype
  std::vector<int64_t> eosTokenIds;
  int64_t bosTokenId = -1;
  MoeSpec moe;
  // model_type llava: the vision tower beside this text model.
  std::optional<VisionSpec> vision;

  bool isMoe() const { return moe.numExperts > 0; }
  // Whether layer `i` uses the sparse MoE block (decoder_sparse_step, mlp_only_layers).
  bool layerIsMoe(int64_t i) const;

  bool operator==(const ModelSpec&) const = default;
};

// Checks the value ranges and the relations between fields (heads divisible by KV heads, top-k
// within the expert count, flags that match the family) for a spec from any source. Messages
// use the config.json key names, prefixed by "`source`: ".
Error validateModelSpec(const ModelSpec& spec, const std::string& source);

// Weight count of the checkpoint `spec` describes (embeddings, lm_head unless tied, norms,
// biases, routers, experts). For a spec that validateModelSpec accepts; saturates at INT64_MAX.
int64_t parameterCount(const ModelSpec& spec);

// Parses config.json text; `source` names the file in errors. The result has passed
// validateModelSpec. Checkpoints this cannot run faithfully are refused rather than
// approximated: rope types other than default/linear/llama3/yarn, hidden_act other than silu,
// attention_bias (it puts a bias on o_proj too), mlp_bias, quantization_config.
Expected<ModelSpec> parseModelConfig(std::string_view jsonText, const std::string& source);
// A model_type "llava" config.json (already parsed): text_config through parseModelConfig, the
// tower and image keys into ModelSpec::vision. Only a llama or mistral text model, a CLIP
// tower with quick_gelu, a gelu projector and one selected feature layer are accepted.
Expected<ModelSpec> parseLlavaConfig(const std::string& jsonText, const std::string& source);
// Weights of the tower and projector (the text model's are parameterCount's).
int64_t visionParameterCount(const ModelSpec& spec);

// `path` is a config.json, or a model folder holding one.
Expected<ModelSpec> loadModelConfig(const std::string& path);

// config.json text for `spec`, in the key forms transformers writes for the family, so
// transformers and our own parser both load it. Keys sorted, 2-space indent, final newline.
// `spec` must pass validateModelSpec.
std::string writeModelConfig(const ModelSpec& spec);

// The torch dtype name config.json uses for a compute dtype: "bfloat16", "float16", "float32";
// empty for any other dtype.
std::string_view configDTypeName(DType t);

}  // namespace tpc
