// The preset table. Real shapes are copied from the checkpoints' published config.json files
// (named in each description); tiny and small are ours, chosen to exercise the features the
// compiler must get right: GQA with KV replication at world 4 and 8, a vocabulary that does
// not split evenly (tiny: 500), head_dim != hidden/heads (qwen3), tied embeddings (qwen2),
// llama3 rope scaling (llama), dense and sparse layers in one model (qwen3_moe).
#include "frontends/Presets.h"

#include <array>

namespace tpc {

namespace {

struct Entry {
  Family family;
  const char* name;
  const char* description;
  ModelSpec (*build)();
};

ModelSpec shape(Family f, int64_t vocab, int64_t hidden, int64_t intermediate, int64_t layers,
                int64_t heads, int64_t kvHeads, int64_t headDim) {
  ModelSpec s;
  s.family = f;
  s.vocabSize = vocab;
  s.hiddenSize = hidden;
  s.intermediateSize = intermediate;
  s.numLayers = layers;
  s.numHeads = heads;
  s.numKvHeads = kvHeads;
  s.headDim = headDim;
  s.attentionBias = f == Family::Qwen2;
  s.qkNorm = f == Family::Qwen3 || f == Family::Qwen3Moe;
  s.rope.theta = f == Family::Mixtral ? 1e6 : 1e4;
  return s;
}

void setMoe(ModelSpec& s, int64_t experts, int64_t topK, int64_t expertSize) {
  s.moe.numExperts = experts;
  s.moe.topK = topK;
  s.moe.intermediateSize = expertSize;
  s.moe.normTopkProb = true;
  if (s.family == Family::Mixtral) s.intermediateSize = 0;  // no dense layer
}

void setLlama3Rope(ModelSpec& s, double theta, double factor, int64_t originalPositions) {
  s.rope.type = RopeType::Llama3;
  s.rope.theta = theta;
  s.rope.factor = factor;
  s.rope.lowFreqFactor = 1.0;
  s.rope.highFreqFactor = 4.0;
  s.rope.originalMaxPositionEmbeddings = originalPositions;
}

// tiny: well under 1 MiB of bf16 weights per family.
ModelSpec tiny(Family f) {
  ModelSpec s = shape(f, 500, 128, 256, 2, 8, 2, 16);
  s.maxPositionEmbeddings = 512;
  s.eosTokenIds = {2};
  s.bosTokenId = 1;
  if (f != Family::Llama && f != Family::Mistral) s.rope.theta = 1e6;
  return s;
}

// small: 16 to 25 million parameters, big enough for timings to mean something on a CPU.
ModelSpec small(Family f) {
  ModelSpec s = shape(f, 8192, 512, 1408, 4, 8, 4, 64);
  s.maxPositionEmbeddings = 4096;
  s.eosTokenIds = {2};
  s.bosTokenId = 1;
  if (f != Family::Llama && f != Family::Mistral) s.rope.theta = 1e6;
  if (f == Family::Llama) s.rope.theta = 500000;
  return s;
}

ModelSpec llama3(int64_t hidden, int64_t intermediate, int64_t layers, int64_t heads) {
  ModelSpec s = shape(Family::Llama, 128256, hidden, intermediate, layers, heads, 8, 128);
  s.rmsNormEps = 1e-5;
  s.maxPositionEmbeddings = 131072;
  setLlama3Rope(s, 500000, 8, 8192);
  s.bosTokenId = 128000;
  s.eosTokenIds = {128001, 128009};
  return s;
}

ModelSpec qwen3(Family f, int64_t hidden, int64_t intermediate, int64_t layers, int64_t heads,
                int64_t kvHeads) {
  ModelSpec s = shape(f, 151936, hidden, intermediate, layers, heads, kvHeads, 128);
  s.maxPositionEmbeddings = 40960;
  s.rope.theta = 1e6;
  s.bosTokenId = 151643;
  s.eosTokenIds = {151645};
  return s;
}

ModelSpec qwen25(int64_t vocab, int64_t hidden, int64_t intermediate, int64_t layers, int64_t heads,
                 int64_t kvHeads, int64_t positions) {
  ModelSpec s =
      shape(Family::Qwen2, vocab, hidden, intermediate, layers, heads, kvHeads, hidden / heads);
  s.maxPositionEmbeddings = positions;
  s.rope.theta = 1e6;
  s.bosTokenId = 151643;
  s.eosTokenIds = {151643};
  return s;
}

const std::array kEntries = {
    // llama
    Entry{Family::Llama, "tiny", "2 layers, hidden 128, GQA 8/2, vocab 500, llama3 rope scaling",
          [] {
            ModelSpec s = tiny(Family::Llama);
            setLlama3Rope(s, 1e4, 8, 64);
            return s;
          }},
    Entry{Family::Llama, "small", "4 layers, hidden 512, GQA 8/4, vocab 8192",
          [] { return small(Family::Llama); }},
    Entry{Family::Llama, "llama3-8b", "Llama 3.1 8B shapes: llama3 rope scaling, 128k context",
          [] { return llama3(4096, 14336, 32, 32); }},
    Entry{Family::Llama, "llama3.2-1b", "Llama 3.2 1B shapes: tied embeddings, rope factor 32",
          [] {
            ModelSpec s = llama3(2048, 8192, 16, 32);
            s.headDim = 64;
            s.tieWordEmbeddings = true;
            s.rope.factor = 32;
            s.eosTokenIds = {128001};
            return s;
          }},
    Entry{Family::Llama, "llama3-70b", "Llama 3.1 70B shapes: llama3 rope scaling, 128k context",
          [] { return llama3(8192, 28672, 80, 64); }},
    // mistral
    Entry{Family::Mistral, "tiny", "2 layers, hidden 128, GQA 8/2, vocab 500",
          [] { return tiny(Family::Mistral); }},
    Entry{Family::Mistral, "small", "4 layers, hidden 512, GQA 8/4, vocab 8192",
          [] { return small(Family::Mistral); }},
    Entry{Family::Mistral, "mistral-7b", "Mistral 7B v0.3 shapes (no sliding window)",
          [] {
            ModelSpec s = shape(Family::Mistral, 32768, 4096, 14336, 32, 32, 8, 128);
            s.rmsNormEps = 1e-5;
            s.maxPositionEmbeddings = 32768;
            s.rope.theta = 1e6;
            s.bosTokenId = 1;
            s.eosTokenIds = {2};
            return s;
          }},
    // qwen2
    Entry{Family::Qwen2, "tiny", "2 layers, hidden 128, GQA 8/2, vocab 500, tied embeddings",
          [] {
            ModelSpec s = tiny(Family::Qwen2);
            s.tieWordEmbeddings = true;
            return s;
          }},
    Entry{Family::Qwen2, "small", "4 layers, hidden 512, GQA 8/4, vocab 8192, tied embeddings",
          [] {
            ModelSpec s = small(Family::Qwen2);
            s.tieWordEmbeddings = true;
            return s;
          }},
    Entry{Family::Qwen2, "qwen2.5-0.5b", "Qwen2.5 0.5B shapes: 14 heads, tied embeddings",
          [] {
            ModelSpec s = qwen25(151936, 896, 4864, 24, 14, 2, 32768);
            s.tieWordEmbeddings = true;
            return s;
          }},
    Entry{Family::Qwen2, "qwen2.5-7b", "Qwen2.5 7B shapes: 28 heads, vocab 152064",
          [] { return qwen25(152064, 3584, 18944, 28, 28, 4, 131072); }},
    // qwen3
    Entry{Family::Qwen3, "tiny", "2 layers, hidden 128, GQA 8/2, head_dim 32, vocab 500",
          [] {
            ModelSpec s = tiny(Family::Qwen3);
            s.headDim = 32;
            return s;
          }},
    Entry{Family::Qwen3, "small", "4 layers, hidden 512, GQA 8/4, head_dim 128, vocab 8192",
          [] {
            ModelSpec s = small(Family::Qwen3);
            s.headDim = 128;
            return s;
          }},
    Entry{Family::Qwen3, "qwen3-0.6b", "Qwen3 0.6B shapes: head_dim 128 > hidden/heads, tied",
          [] {
            ModelSpec s = qwen3(Family::Qwen3, 1024, 3072, 28, 16, 8);
            s.tieWordEmbeddings = true;
            return s;
          }},
    Entry{Family::Qwen3, "qwen3-8b", "Qwen3 8B shapes",
          [] { return qwen3(Family::Qwen3, 4096, 12288, 36, 32, 8); }},
    // qwen3_moe
    Entry{Family::Qwen3Moe, "tiny",
          "2 layers (layer 0 dense), hidden 128, 8 experts top-2 of width 32, vocab 500",
          [] {
            ModelSpec s = tiny(Family::Qwen3Moe);
            setMoe(s, 8, 2, 32);
            s.moe.mlpOnlyLayers = {0};
            return s;
          }},
    Entry{Family::Qwen3Moe, "small",
          "4 layers (sparse every 2nd), hidden 512, 8 experts top-2 of width 256, vocab 8192",
          [] {
            ModelSpec s = small(Family::Qwen3Moe);
            setMoe(s, 8, 2, 256);
            s.moe.decoderSparseStep = 2;
            return s;
          }},
    Entry{Family::Qwen3Moe, "qwen3-30b-a3b", "Qwen3 30B-A3B shapes: 128 experts top-8",
          [] {
            ModelSpec s = qwen3(Family::Qwen3Moe, 2048, 6144, 48, 32, 4);
            setMoe(s, 128, 8, 768);
            return s;
          }},
    // mixtral
    Entry{Family::Mixtral, "tiny", "2 layers, hidden 128, 8 experts top-2 of width 32, vocab 500",
          [] {
            ModelSpec s = tiny(Family::Mixtral);
            setMoe(s, 8, 2, 32);
            return s;
          }},
    Entry{Family::Mixtral, "small", "4 layers, hidden 512, 8 experts top-2 of width 256",
          [] {
            ModelSpec s = small(Family::Mixtral);
            setMoe(s, 8, 2, 256);
            return s;
          }},
    Entry{Family::Mixtral, "mixtral-8x7b", "Mixtral 8x7B v0.1 shapes",
          [] {
            ModelSpec s = shape(Family::Mixtral, 32000, 4096, 0, 32, 32, 8, 128);
            setMoe(s, 8, 2, 14336);
            s.moe.routerAuxLossCoef = 0.02;
            s.rmsNormEps = 1e-5;
            s.maxPositionEmbeddings = 32768;
            s.bosTokenId = 1;
            s.eosTokenIds = {2};
            return s;
          }},
};

std::string joinNames(Family family) {
  std::string out;
  for (const std::string& name : presetNames(family)) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

}  // namespace

std::vector<Preset> presets(Family family) {
  std::vector<Preset> out;
  for (const Entry& e : kEntries)
    if (e.family == family) out.push_back({e.name, e.description});
  return out;
}

std::vector<std::string> presetNames(Family family) {
  std::vector<std::string> out;
  for (const Entry& e : kEntries)
    if (e.family == family) out.push_back(e.name);
  return out;
}

Expected<ModelSpec> makePresetSpec(Family family, std::string_view preset, DType dtype) {
  if (configDTypeName(dtype).empty())
    return makeError("dtype ", irName(dtype), " is not a weight dtype (bf16, f16 or f32)");
  for (const Entry& e : kEntries) {
    if (e.family != family || e.name != preset) continue;
    ModelSpec spec = e.build();
    spec.dtype = dtype;
    // A failure here is a bad table entry; the preset tests catch it for every entry.
    if (Error err = validateModelSpec(spec, std::string("preset ") + e.name)) return err;
    return spec;
  }
  for (const Entry& e : kEntries)
    if (e.name == preset)
      return makeError("preset \"", preset, "\" is a ", familyName(e.family), " model, not ",
                       familyName(family), " (", familyName(family),
                       " presets: ", joinNames(family), ")");
  return makeError("preset \"", preset, "\" does not exist for ", familyName(family),
                   " (presets: ", joinNames(family), ")");
}

}  // namespace tpc
