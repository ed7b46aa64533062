#include <cstdio>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "codegen/PlanSummary.h"
#include "frontends/ModelSource.h"
#include "tools/common/Args.h"
#include "tools/tpc/Commands.h"

namespace tpc::cli {
namespace {

struct Tally {
  uint64_t parameters = 0, bytes = 0;
  void add(const TensorInfo& t) {
    parameters += t.numElements();
    bytes += t.byteLength();
  }
};

// "model.layers.12.mlp..." → 12 (under llava's language_model. prefixes too); -1 for tensors
// outside the layers.
int64_t layerOf(const std::string& name) {
  const std::string prefix = "layers.";
  size_t at = name.find(prefix);
  if (at == std::string::npos || (at > 0 && name[at - 1] != '.')) return -1;
  return std::strtoll(name.c_str() + at + prefix.size(), nullptr, 10);
}

std::string ropeText(const RopeSpec& r) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s, theta %g", std::string(ropeTypeName(r.type)).c_str(),
                r.theta);
  std::string s = buf;
  if (r.type != RopeType::Default) s += ", factor " + nlohmann::json(r.factor).dump();
  return s;
}

}  // namespace

int runInspect(int argc, char** argv) {
  std::string model, format = "text";
  ArgParser args("tpc inspect",
                 "Shows a checkpoint's architecture, parameter count and bytes by dtype, and a\n"
                 "per-layer table. Checks every tensor the model needs against its headers.");
  args.positional("MODEL", &model,
                  "model folder (config.json + *.safetensors) or a .safetensors file");
  args.choice("--format", &format, {"text", "json"}, "output format (default text)");
  if (Error e = args.parse(argc, argv, 2)) return fail(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  Expected<ModelSource> source = openModel(model);
  if (!source) return fail(source.errorMessage());
  const ModelSpec& s = source->spec;
  Expected<Graph> graph = buildGraph(s, source->lookup(), BuildOptions{});
  if (!graph) return fail(source->directory + ": " + graph.errorMessage());

  std::set<std::string> used, vision;
  for (const Value* p : graph->parameters())
    for (const WeightPiece& piece : p->pieces) used.insert(piece.tensor);
  if (s.vision) {
    Expected<Graph> tower = buildVisionGraph(s, source->lookup(), BuildOptions{});
    if (!tower) return fail(source->directory + ": " + tower.errorMessage());
    for (const Value* p : tower->parameters())
      for (const WeightPiece& piece : p->pieces) vision.insert(piece.tensor);
    used.insert(vision.begin(), vision.end());
  }
  Tally total, outside, towerTally, projectorTally;
  std::map<std::string, Tally> byDtype;
  std::map<int64_t, Tally> byLayer;
  std::vector<std::string> unused;
  for (const std::string& name : source->checkpoint.tensorNames()) {
    const TensorInfo& t = *source->checkpoint.find(name)->info;
    if (!used.count(name)) {
      unused.push_back(name);
      continue;
    }
    total.add(t);
    byDtype[std::string(safetensorsName(t.dtype))].add(t);
    if (vision.count(name)) {
      (name.find("multi_modal_projector.") != std::string::npos ? projectorTally : towerTally)
          .add(t);
      continue;
    }
    int64_t layer = layerOf(name);
    (layer < 0 ? outside : byLayer[layer]).add(t);
  }

  if (format == "json") {
    nlohmann::ordered_json j;
    j["model"] = source->directory;
    j["family"] = familyName(s.family);
    j["config"] = {{"vocab_size", s.vocabSize},
                   {"hidden_size", s.hiddenSize},
                   {"num_layers", s.numLayers},
                   {"num_attention_heads", s.numHeads},
                   {"num_key_value_heads", s.numKvHeads},
                   {"head_dim", s.headDim},
                   {"intermediate_size", s.intermediateSize},
                   {"max_position_embeddings", s.maxPositionEmbeddings},
                   {"rope_type", ropeTypeName(s.rope.type)},
                   {"rope_theta", s.rope.theta},
                   {"tie_word_embeddings", s.tieWordEmbeddings},
                   {"attention_bias", s.attentionBias},
                   {"qk_norm", s.qkNorm},
                   {"dtype", irName(s.dtype)}};
    if (s.isMoe())
      j["config"]["moe"] = {{"num_experts", s.moe.numExperts},
                            {"num_experts_per_tok", s.moe.topK},
                            {"moe_intermediate_size", s.moe.intermediateSize},
                            {"norm_topk_prob", s.moe.normTopkProb}};
    if (s.vision) {
      const VisionSpec& v = *s.vision;
      j["vision_tower"] = {{"kind", "clip_vision_model"},
                           {"hidden_size", v.hiddenSize},
                           {"num_layers", v.numLayers},
                           {"layers_run", v.layersRun()},
                           {"num_attention_heads", v.numHeads},
                           {"intermediate_size", v.intermediateSize},
                           {"image_size", v.imageSize},
                           {"patch_size", v.patchSize},
                           {"rows", v.rows()},
                           {"parameters", towerTally.parameters},
                           {"bytes", towerTally.bytes}};
      j["projector"] = {{"in", v.hiddenSize},
                        {"out", s.hiddenSize},
                        {"act", "gelu"},
                        {"bias", v.projectorBias},
                        {"parameters", projectorTally.parameters},
                        {"bytes", projectorTally.bytes}};
      j["image_token_index"] = v.imageTokenIndex;
      j["image_seq_length"] = v.imageSeqLength;
    }
    j["parameters"] = total.parameters;
    j["bytes"] = total.bytes;
    for (const auto& [dtype, t] : byDtype)
      j["by_dtype"][dtype] = {{"parameters", t.parameters}, {"bytes", t.bytes}};
    j["layers"] = nlohmann::ordered_json::array();
    for (const auto& [layer, t] : byLayer)
      j["layers"].push_back({{"index", layer},
                             {"kind", s.layerIsMoe(layer) ? "moe" : "dense"},
                             {"parameters", t.parameters},
                             {"bytes", t.bytes}});
    j["outside_layers"] = {{"parameters", outside.parameters}, {"bytes", outside.bytes}};
    j["unused_tensors"] = unused;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }

  std::printf("%s: %s%s, %zu checkpoint file(s)\n", source->directory.c_str(),
              s.vision ? "llava, text model " : "", std::string(familyName(s.family)).c_str(),
              source->checkpoint.files().size());
  std::printf(
      "  vocab %lld, hidden %lld, %lld layers, %lld heads (%lld KV, head_dim %lld), intermediate "
      "%lld\n",
      (long long)s.vocabSize, (long long)s.hiddenSize, (long long)s.numLayers,
      (long long)s.numHeads, (long long)s.numKvHeads, (long long)s.headDim,
      (long long)s.intermediateSize);
  if (s.isMoe())
    std::printf("  %lld experts, top-%lld, expert intermediate %lld%s\n",
                (long long)s.moe.numExperts, (long long)s.moe.topK,
                (long long)s.moe.intermediateSize,
                s.moe.normTopkProb ? ", top-k renormalised" : "");
  std::printf("  rope %s; max positions %lld; %s%s%s\n", ropeText(s.rope).c_str(),
              (long long)s.maxPositionEmbeddings,
              s.tieWordEmbeddings ? "tied embeddings" : "separate lm_head",
              s.attentionBias ? ", q/k/v bias" : "", s.qkNorm ? ", q/k norm" : "");
  if (s.vision) {
    const VisionSpec& v = *s.vision;
    std::printf(
        "  vision tower: CLIP, hidden %lld, %lld layers (runs %lld: hidden state %lld), %lld "
        "heads, intermediate %lld; image %lld px, patch %lld: %lld rows; %s parameters (%s)\n",
        (long long)v.hiddenSize, (long long)v.numLayers, (long long)v.layersRun(),
        (long long)v.featureLayer, (long long)v.numHeads, (long long)v.intermediateSize,
        (long long)v.imageSize, (long long)v.patchSize, (long long)v.rows(),
        std::to_string(towerTally.parameters).c_str(), formatBytes(towerTally.bytes).c_str());
    std::printf(
        "  projector: linear %lld -> %lld, gelu, linear %lld -> %lld%s; %s parameters (%s)\n",
        (long long)v.hiddenSize, (long long)s.hiddenSize, (long long)s.hiddenSize,
        (long long)s.hiddenSize, v.projectorBias ? " (biased)" : "",
        std::to_string(projectorTally.parameters).c_str(),
        formatBytes(projectorTally.bytes).c_str());
    std::printf("  image token %lld x %lld (%s); text model below\n", (long long)v.imageTokenIndex,
                (long long)v.imageSeqLength,
                v.keepClassRow ? "class row kept" : "class row dropped");
  }
  std::printf("parameters %s (%s)\n", std::to_string(total.parameters).c_str(),
              formatBytes(total.bytes).c_str());
  for (const auto& [dtype, t] : byDtype)
    std::printf("  %-5s %s parameters, %s\n", dtype.c_str(), std::to_string(t.parameters).c_str(),
                formatBytes(t.bytes).c_str());
  std::printf("%-8s %-6s %14s %12s\n", "layer", "kind", "parameters", "bytes");
  for (const auto& [layer, t] : byLayer)
    std::printf("%-8lld %-6s %14llu %12s\n", (long long)layer,
                s.layerIsMoe(layer) ? "moe" : "dense", (unsigned long long)t.parameters,
                formatBytes(t.bytes).c_str());
  std::printf("%-8s %-6s %14llu %12s\n", "other", "-", (unsigned long long)outside.parameters,
              formatBytes(outside.bytes).c_str());
  if (!unused.empty())
    std::printf("%zu checkpoint tensor(s) not used by the model, e.g. %s\n", unused.size(),
                unused[0].c_str());
  return 0;
}

}  // namespace tpc::cli
