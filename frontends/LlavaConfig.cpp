// config.json of model_type "llava" (the llava-1.5 layout): a text model under text_config, a
// CLIP vision tower under vision_config, and the keys that join them. What this compiler cannot
// run faithfully (another tower, another activation, several feature layers) is refused by name.
#include <nlohmann/json.hpp>

#include "frontends/ModelSpec.h"
#include "frontends/Printable.h"

namespace tpc {
namespace {

using json = nlohmann::json;

// Reads keys of one object, recording the first problem as "`source`: `prefix`key ...".
class LlavaKeys {
 public:
  LlavaKeys(const json& object, std::string prefix, std::optional<Error>& error, std::string source)
      : object_(object), prefix_(std::move(prefix)), error_(error), source_(std::move(source)) {}

  template <class... Parts>
  void fail(Parts&&... parts) {
    if (!error_) error_ = makeError(source_, ": ", prefix_, std::forward<Parts>(parts)...);
  }
  const json* find(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t integer(const char* key, std::optional<int64_t> fallback = std::nullopt) {
    const json* v = find(key);
    if (!v) {
      if (!fallback) fail(key, " is missing");
      return fallback.value_or(0);
    }
    if (!v->is_number_integer()) {
      fail(key, " must be an integer");
      return 0;
    }
    return v->get<int64_t>();
  }
  double number(const char* key, double fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(key, " must be a number");
    return v->is_number() ? v->get<double>() : fallback;
  }
  std::string string(const char* key, const char* fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) fail(key, " must be a string");
    return v->is_string() ? v->get<std::string>() : fallback;
  }
  bool boolean(const char* key, bool fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, " must be a boolean");
    return v->is_boolean() ? v->get<bool>() : fallback;
  }

 private:
  const json& object_;
  std::string prefix_;
  std::optional<Error>& error_;
  std::string source_;
};

void readTower(LlavaKeys& keys, VisionSpec& v) {
  std::string type = keys.string("model_type", "clip_vision_model");
  if (type != "clip_vision_model")
    keys.fail("model_type \"", printable(type), "\" is not supported (only clip_vision_model)");
  v.hiddenSize = keys.integer("hidden_size");
  v.intermediateSize = keys.integer("intermediate_size");
  v.numLayers = keys.integer("num_hidden_layers");
  v.numHeads = keys.integer("num_attention_heads");
  v.numChannels = keys.integer("num_channels", 3);
  v.imageSize = keys.integer("image_size");
  v.patchSize = keys.integer("patch_size");
  v.layerNormEps = keys.number("layer_norm_eps", 1e-5);
  std::string act = keys.string("hidden_act", "quick_gelu");
  if (act != "quick_gelu")
    keys.fail("hidden_act \"", printable(act), "\" is not supported (only quick_gelu)");
  if (v.hiddenSize < 1 || v.numHeads < 1 || v.hiddenSize % v.numHeads != 0)
    keys.fail("hidden_size ", v.hiddenSize, " is not a positive multiple of num_attention_heads ",
              v.numHeads);
  if (v.intermediateSize < 1 || v.numLayers < 1 || v.numChannels < 1 || v.numChannels > 4)
    keys.fail("intermediate_size, num_hidden_layers and num_channels (1..4) must be positive");
  if (v.patchSize < 1 || v.imageSize < v.patchSize || v.imageSize % v.patchSize != 0 ||
      v.imageSize > 4096)
    keys.fail("image_size ", v.imageSize, " must be a multiple of patch_size ", v.patchSize,
              " (at most 4096)");
}

}  // namespace

Expected<ModelSpec> parseLlavaConfig(const std::string& jsonText, const std::string& source) {
  json root = json::parse(jsonText, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) return makeError(source, ": not a JSON object");
  std::optional<Error> error;
  LlavaKeys top(root, "", error, source);
  const json* text = top.find("text_config");
  const json* vision = top.find("vision_config");
  if (!text || !text->is_object() || !vision || !vision->is_object())
    return makeError(source, ": a llava config needs text_config and vision_config objects");
  json textConfig = *text;
  // transformers 5 writes the dtype once, at the top.
  for (const char* key : {"dtype", "torch_dtype"})
    if (root.contains(key) && !textConfig.contains("dtype") && !textConfig.contains("torch_dtype"))
      textConfig[key] = root[key];
  if (!textConfig.contains("model_type"))
    return makeError(source, ": text_config.model_type is missing (supported: llama, mistral)");
  Expected<ModelSpec> spec = parseModelConfig(textConfig.dump(), source + " text_config");
  if (!spec) return spec.takeError();
  if (spec->family != Family::Llama && spec->family != Family::Mistral)
    return makeError(source, ": text_config.model_type \"", familyName(spec->family),
                     "\" is not supported under llava (supported: llama, mistral)");

  VisionSpec v;
  LlavaKeys tower(*vision, "vision_config.", error, source);
  readTower(tower, v);
  v.imageTokenIndex = top.integer("image_token_index", 32000);
  v.featureLayer = top.integer("vision_feature_layer", -2);
  if (const json* layer = top.find("vision_feature_layer"); layer && layer->is_array())
    top.fail("vision_feature_layer lists several layers; only one is supported");
  std::string strategy = top.string("vision_feature_select_strategy", "default");
  if (strategy != "default" && strategy != "full")
    top.fail("vision_feature_select_strategy \"", printable(strategy),
             "\" is not supported (default or full)");
  v.keepClassRow = strategy == "full";
  std::string act = top.string("projector_hidden_act", "gelu");
  if (act != "gelu")
    top.fail("projector_hidden_act \"", printable(act), "\" is not supported (only gelu)");
  v.projectorBias = top.boolean("multimodal_projector_bias", true);
  if (error) return std::move(*error);
  v.imageSeqLength = top.integer("image_seq_length", v.featureRows());
  if (error) return std::move(*error);
  if (v.layersRun() < 0 || v.layersRun() > v.numLayers)
    return makeError(source, ": vision_feature_layer ", v.featureLayer, " is outside the tower's ",
                     v.numLayers, " layers");
  if (v.imageSeqLength != v.featureRows())
    return makeError(source, ": image_seq_length ", v.imageSeqLength, " differs from the ",
                     v.featureRows(), " image rows the tower gives (", v.patchesPerSide(), "x",
                     v.patchesPerSide(), " patches", v.keepClassRow ? " and the class row)" : ")");
  if (v.imageTokenIndex < 0 || v.imageTokenIndex >= spec->vocabSize)
    return makeError(source, ": image_token_index ", v.imageTokenIndex,
                     " is outside the vocabulary of ", spec->vocabSize);
  spec->vision = v;
  return spec;
}

int64_t visionParameterCount(const ModelSpec& spec) {
  if (!spec.vision) return 0;
  const VisionSpec& v = *spec.vision;
  const int64_t H = v.hiddenSize, I = v.intermediateSize, T = spec.hiddenSize;
  int64_t n = H * v.numChannels * v.patchSize * v.patchSize + H + v.rows() * H + 2 * H;
  n += v.numLayers * (4 * (H * H + H) + 2 * (H * I) + I + H + 4 * H);
  n += 2 * H;  // post_layernorm, which llava never runs
  n += H * T + T * T + (v.projectorBias ? 2 * T : 0);
  return n;
}

}  // namespace tpc
