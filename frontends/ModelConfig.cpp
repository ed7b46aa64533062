// config.json → ModelSpec. Reads both key spellings real checkpoints carry (transformers 5 writes
// rope_parameters/dtype, older ones rope_theta+rope_scaling/torch_dtype; qwen3_moe says
// num_experts where mixtral says num_local_experts). Type errors and missing keys are reported
// here; value ranges and relations between keys are left to validateModelSpec, so a spec built
// in code is held to the same rules.
//
// Defaults follow the transformers config classes where they are sane (rope_theta: 1e6 for
// mixtral, 10000 otherwise; bos/eos 1/2 for llama, mistral and mixtral). Where a class default
// is a leftover of one checkpoint (num_key_value_heads 8 or 32, qwen3 head_dim 128, mistral
// sliding_window 4096) we use the neutral value instead: num_key_value_heads =
// num_attention_heads, head_dim = hidden_size / num_attention_heads, no sliding window.
// Published checkpoints always spell these keys out, and writeModelConfig always writes them.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "frontends/ModelSpec.h"
#include "frontends/Printable.h"

namespace tpc {

namespace {

using nlohmann::json;

// A config.json is a few KiB; anything far larger is not one, and is not read whole.
constexpr uintmax_t kMaxConfigBytes = 16u << 20;

// The first failure wins: the readers below record it and hand back defaults, so the parser
// reads straight through and checks once at the end.
struct ParseState {
  const std::string& source;
  Error error = Error::success();

  template <class... Parts>
  void fail(Parts&&... parts) {
    if (!error) error = makeError(source, ": ", std::forward<Parts>(parts)...);
  }
};

// How a wrong value reads in a message. Arrays and objects are not dumped: they may be
// arbitrarily large or deep.
std::string describe(const json& v) {
  if (v.is_string()) return "string \"" + printable(v.get<std::string>()) + "\"";
  if (v.is_number() || v.is_boolean()) return std::string(v.type_name()) + " " + v.dump();
  return v.type_name();
}

// Typed access to the keys of one JSON object. In HF configs a null value means "use the
// default", so the optional readers treat null like an absent key.
class Keys {
 public:
  Keys(const json& object, ParseState& state, std::string prefix)
      : object_(object), state_(state), prefix_(std::move(prefix)) {}

  std::string name(std::string_view key) const { return prefix_ + std::string(key); }

  const json* find(std::string_view key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::optional<int64_t> integer(std::string_view key) {
    const json* v = find(key);
    return v ? toInteger(*v, name(key)) : std::nullopt;
  }
  int64_t integerOr(std::string_view key, int64_t fallback) {
    return integer(key).value_or(fallback);
  }
  int64_t requiredInteger(std::string_view key) {
    if (!present(key, "an integer")) return 0;
    return integer(key).value_or(0);
  }

  std::optional<double> number(std::string_view key) {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) {
      state_.fail(name(key), " must be a number, got ", describe(*v));
      return std::nullopt;
    }
    return v->get<double>();
  }
  double numberOr(std::string_view key, double fallback) { return number(key).value_or(fallback); }
  double requiredNumber(std::string_view key) {
    if (!present(key, "a number")) return 0;
    return number(key).value_or(0);
  }

  bool booleanOr(std::string_view key, bool fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) {
      state_.fail(name(key), " must be a boolean, got ", describe(*v));
      return fallback;
    }
    return v->get<bool>();
  }

  std::optional<std::string> string(std::string_view key) {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) {
      state_.fail(name(key), " must be a string, got ", describe(*v));
      return std::nullopt;
    }
    return v->get<std::string>();
  }

  const json* object(std::string_view key) {
    const json* v = find(key);
    if (v && !v->is_object()) {
      state_.fail(name(key), " must be an object, got ", describe(*v));
      return nullptr;
    }
    return v;
  }

  // A list of integers; `scalarAllowed` also takes a lone integer (eos_token_id).
  std::vector<int64_t> integers(std::string_view key, bool scalarAllowed) {
    const json* v = find(key);
    if (!v) return {};
    if (scalarAllowed && v->is_number()) {
      auto one = toInteger(*v, name(key));
      return one ? std::vector<int64_t>{*one} : std::vector<int64_t>{};
    }
    if (!v->is_array()) {
      state_.fail(name(key),
                  scalarAllowed ? " must be an integer or a list of integers, got "
                                : " must be a list of integers, got ",
                  describe(*v));
      return {};
    }
    std::vector<int64_t> out;
    for (const json& item : *v) {
      auto one = toInteger(item, name(key) + " item");
      if (!one) return {};
      out.push_back(*one);
    }
    return out;
  }

 private:
  // Required keys must be there and not null; `expected` names the type for the message.
  bool present(std::string_view key, const char* expected) {
    auto it = object_.find(key);
    if (it == object_.end()) {
      state_.fail(name(key), " is missing");
      return false;
    }
    if (it->is_null()) {
      state_.fail(name(key), " is null, expected ", expected);
      return false;
    }
    return true;
  }

  std::optional<int64_t> toInteger(const json& v, const std::string& what) {
    if (v.is_number_unsigned()) {
      auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        state_.fail(what, " is too large: ", u);
        return std::nullopt;
      }
      return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    state_.fail(what, " must be an integer, got ", describe(v));
    return std::nullopt;
  }

  const json& object_;
  ParseState& state_;
  std::string prefix_;
};

void readDType(Keys& keys, ParseState& st, ModelSpec& spec) {
  // transformers 5 writes "dtype"; older versions "torch_dtype". "auto" and absent mean the
  // checkpoint's own type, which is bf16 for every family here.
  const char* key = "dtype";
  std::optional<std::string> name = keys.string(key);
  if (!name) {
    key = "torch_dtype";
    name = keys.string(key);
  }
  if (!name || *name == "auto") return;
  for (DType t : {DType::BF16, DType::F16, DType::F32}) {
    if (configDTypeName(t) == *name) {
      spec.dtype = t;
      return;
    }
  }
  st.fail(key, " \"", printable(*name),
          "\" is not supported (supported: bfloat16, float16, float32)");
}

void readRope(Keys& top, ParseState& st, Family family, RopeSpec& rope) {
  rope.theta = family == Family::Mixtral ? 1e6 : 1e4;
  if (auto theta = top.number("rope_theta")) rope.theta = *theta;
  std::string where = "rope_parameters";
  const json* params = top.object(where);
  if (!params) {
    where = "rope_scaling";
    params = top.object(where);
  }
  if (!params) return;
  for (auto it = params->begin(); it != params->end(); ++it) {
    if (it->is_object()) {
      st.fail(where, " holds parameters per layer type (\"", printable(it.key()),
              "\"); a single set is supported");
      return;
    }
  }
  Keys p(*params, st, where + ".");
  if (auto theta = p.number("rope_theta")) rope.theta = *theta;
  std::optional<std::string> type = p.string("rope_type");
  if (!type) type = p.string("type");  // the key's name before transformers 4.45
  if (!type) {
    // transformers 5 always writes rope_type; a bare rope_scaling object is malformed.
    if (where == "rope_scaling") st.fail(where, ".rope_type is missing");
    return;
  }
  if (*type == "default") return;
  if (*type == "linear") {
    rope.type = RopeType::Linear;
  } else if (*type == "llama3") {
    rope.type = RopeType::Llama3;
    rope.lowFreqFactor = p.requiredNumber("low_freq_factor");
    rope.highFreqFactor = p.requiredNumber("high_freq_factor");
    rope.originalMaxPositionEmbeddings = p.requiredInteger("original_max_position_embeddings");
  } else if (*type == "yarn") {
    rope.type = RopeType::Yarn;
    rope.originalMaxPositionEmbeddings = p.integerOr("original_max_position_embeddings", 0);
    rope.betaFast = p.numberOr("beta_fast", rope.betaFast);
    rope.betaSlow = p.numberOr("beta_slow", rope.betaSlow);
    rope.attentionFactor = p.numberOr("attention_factor", 0.0);
    // DeepSeek's yarn variant rescales attention differently; running it as plain yarn would
    // be silently wrong.
    for (const char* key : {"mscale", "mscale_all_dim"})
      if (p.find(key)) st.fail(p.name(key), " is set: DeepSeek-style yarn is not supported");
  } else {
    st.fail(where, ".rope_type \"", printable(*type),
            "\" is not supported (supported: default, linear, llama3, yarn)");
    return;
  }
  rope.factor = p.requiredNumber("factor");
}

// Either spelling of the expert count is accepted for either family; if both appear they
// must agree.
int64_t readExpertCount(Keys& keys, ParseState& st, Family family) {
  const char* own = family == Family::Mixtral ? "num_local_experts" : "num_experts";
  const char* other = family == Family::Mixtral ? "num_experts" : "num_local_experts";
  std::optional<int64_t> a = keys.integer(own), b = keys.integer(other);
  if (a && b && *a != *b) st.fail(own, " (", *a, ") and ", other, " (", *b, ") disagree");
  if (a) return *a;
  if (b) return *b;
  st.fail(own, " is missing (or ", other, ")");
  return 0;
}

void readMoe(Keys& keys, ParseState& st, ModelSpec& spec) {
  MoeSpec& moe = spec.moe;
  moe.numExperts = readExpertCount(keys, st, spec.family);
  moe.topK = keys.requiredInteger("num_experts_per_tok");
  moe.routerAuxLossCoef = keys.numberOr("router_aux_loss_coef", moe.routerAuxLossCoef);
  if (spec.family == Family::Mixtral) {
    moe.intermediateSize = keys.requiredInteger("intermediate_size");
    moe.normTopkProb = true;  // MixtralSparseMoeBlock always renormalises the top-k weights
    return;
  }
  moe.intermediateSize = keys.requiredInteger("moe_intermediate_size");
  spec.intermediateSize = keys.integerOr("intermediate_size", 0);
  moe.normTopkProb = keys.booleanOr("norm_topk_prob", false);
  moe.decoderSparseStep = keys.integerOr("decoder_sparse_step", 1);
  moe.mlpOnlyLayers = keys.integers("mlp_only_layers", /*scalarAllowed=*/false);
}

void readAttention(Keys& keys, ParseState& st, ModelSpec& spec) {
  spec.numHeads = keys.requiredInteger("num_attention_heads");
  spec.numKvHeads = keys.integerOr("num_key_value_heads", spec.numHeads);
  if (auto headDim = keys.integer("head_dim")) {
    spec.headDim = *headDim;
  } else if (spec.hiddenSize > 0 && spec.numHeads > 0) {
    if (spec.hiddenSize % spec.numHeads != 0)
      st.fail("hidden_size (", spec.hiddenSize, ") is not divisible by num_attention_heads (",
              spec.numHeads, ") and head_dim is not given");
    spec.headDim = spec.hiddenSize / spec.numHeads;
  }
  switch (spec.family) {
    case Family::Qwen2:
      spec.attentionBias = true;  // Qwen2Attention: bias on q/k/v, never on o_proj
      break;
    case Family::Llama:
    case Family::Qwen3:
    case Family::Qwen3Moe:
      if (keys.booleanOr("attention_bias", false))
        st.fail("attention_bias is true, which in ", familyName(spec.family),
                " puts a bias on o_proj as well as q/k/v: not supported");
      break;
    case Family::Mistral:
    case Family::Mixtral:
      break;  // transformers hard-codes bias=False for these and ignores the key
  }
  spec.qkNorm = spec.family == Family::Qwen3 || spec.family == Family::Qwen3Moe;
}

void readSlidingWindow(Keys& keys, ModelSpec& spec) {
  switch (spec.family) {
    case Family::Qwen2:
    case Family::Qwen3:
    case Family::Qwen3Moe:
      // Qwen checkpoints carry a window size even when it is off; only use_sliding_window
      // turns it on (transformers drops sliding_window otherwise).
      if (keys.booleanOr("use_sliding_window", false))
        spec.slidingWindow = keys.integerOr("sliding_window", 0);
      break;
    case Family::Mistral:
    case Family::Mixtral:
      spec.slidingWindow = keys.integerOr("sliding_window", 0);
      break;
    case Family::Llama:
      break;
  }
}

// Settings this compiler cannot honour are refused by name instead of being run wrongly.
void refuseUnsupported(Keys& keys, ParseState& st) {
  if (const json* q = keys.find("quantization_config")) {
    std::string method;
    if (q->is_object() && q->contains("quant_method") && (*q)["quant_method"].is_string())
      method = " (quant_method \"" + printable((*q)["quant_method"].get<std::string>()) + "\")";
    st.fail("quantization_config is present", method, ": quantized checkpoints are not supported");
  }
  if (auto act = keys.string("hidden_act"); act && *act != "silu")
    st.fail("hidden_act \"", printable(*act), "\" is not supported (only \"silu\")");
  if (keys.booleanOr("mlp_bias", false)) st.fail("mlp_bias is true: MLP biases are not supported");
}

}  // namespace

Expected<ModelSpec> parseModelConfig(std::string_view jsonText, const std::string& source) {
  json root;
  try {
    root = json::parse(jsonText.begin(), jsonText.end());
  } catch (const json::exception& e) {
    // what() reads "[json.exception.parse_error.101] parse error at line 1, column 5: ...".
    std::string_view what = e.what();
    if (size_t bracket = what.find("] ");
        !what.empty() && what.front() == '[' && bracket != what.npos)
      what.remove_prefix(bracket + 2);
    return makeError(source, ": not valid JSON: ", printable(what, 200));
  }
  if (!root.is_object()) return makeError(source, ": expected a JSON object, got ", describe(root));

  ParseState st{source};
  Keys keys(root, st, "");
  std::optional<std::string> modelType = keys.string("model_type");
  if (!modelType) {
    if (st.error) return std::move(st.error);
    return makeError(source, ": model_type is missing (supported: ", supportedFamilies(), ")");
  }
  if (*modelType == "llava") return parseLlavaConfig(std::string(jsonText), source);
  Expected<Family> family = parseFamily(*modelType);
  if (!family) return family.takeError().withContext(source + ": ");

  ModelSpec spec;
  spec.family = *family;
  refuseUnsupported(keys, st);
  spec.vocabSize = keys.requiredInteger("vocab_size");
  spec.hiddenSize = keys.requiredInteger("hidden_size");
  spec.numLayers = keys.requiredInteger("num_hidden_layers");
  if (!isMoeFamily(spec.family)) spec.intermediateSize = keys.requiredInteger("intermediate_size");
  readAttention(keys, st, spec);
  if (isMoeFamily(spec.family)) readMoe(keys, st, spec);

  const bool llamaLike = spec.family == Family::Llama || spec.family == Family::Mistral ||
                         spec.family == Family::Mixtral;
  spec.rmsNormEps = keys.numberOr("rms_norm_eps", spec.family == Family::Mixtral ? 1e-5 : 1e-6);
  int64_t defaultPositions = 32768;
  if (spec.family == Family::Llama) defaultPositions = 2048;
  if (spec.family == Family::Mistral || spec.family == Family::Mixtral) defaultPositions = 131072;
  spec.maxPositionEmbeddings = keys.integerOr("max_position_embeddings", defaultPositions);
  spec.tieWordEmbeddings = keys.booleanOr("tie_word_embeddings", false);
  readSlidingWindow(keys, spec);
  readDType(keys, st, spec);
  readRope(keys, st, spec.family, spec.rope);

  // An absent key takes the class default; an explicit null means "no such token".
  if (root.contains("bos_token_id"))
    spec.bosTokenId = keys.integerOr("bos_token_id", -1);
  else
    spec.bosTokenId = llamaLike ? 1 : -1;
  if (root.contains("eos_token_id"))
    spec.eosTokenIds = keys.integers("eos_token_id", /*scalarAllowed=*/true);
  else if (llamaLike)
    spec.eosTokenIds = {2};

  if (st.error) return std::move(st.error);
  if (Error e = validateModelSpec(spec, source)) return e;
  return spec;
}

Expected<ModelSpec> loadModelConfig(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) file = (fs::path(path) / "config.json").string();
  fs::file_status status = fs::status(file, ec);
  if (ec || !fs::exists(status))
    return makeError(file, ": cannot read (", ec ? ec.message() : "no such file", ")");
  if (!fs::is_regular_file(status)) return makeError(file, ": not a regular file");
  uintmax_t size = fs::file_size(file, ec);
  if (ec) return makeError(file, ": cannot read (", ec.message(), ")");
  if (size > kMaxConfigBytes)
    return makeError(file, ": ", size, " bytes is too large for a config.json (limit ",
                     kMaxConfigBytes, ")");
  std::ifstream in(file, std::ios::binary);
  if (!in) return makeError(file, ": cannot open");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return makeError(file, ": read failed");
  return parseModelConfig(text, file);
}

}  // namespace tpc
