#include "tools/common/CompileModel.h"

#include <filesystem>
#include <optional>

#include "codegen/Lowering.h"
#include "codegen/PlanReader.h"
#include "frontends/ModelSource.h"
#include "passes/Pass.h"
#include "tools/common/DeviceMap.h"

namespace tpc::cli {

Expected<CompiledModel> compileModel(const std::string& model, const CompileSettings& settings) {
  Expected<ModelSource> source = openModel(model);
  if (!source) return source.takeError();
  const ModelSpec& spec = source->spec;
  BuildOptions build;
  build.computeDType = settings.dtype.empty()
                           ? (isComputeDType(spec.dtype) ? spec.dtype : DType::BF16)
                           : *parseIrDType(settings.dtype);
  Expected<Graph> graph = buildGraph(spec, source->lookup(), build);
  if (!graph) return graph.takeError();
  // The vision tower runs whole on every rank of one tensor-parallel group; stages would have to
  // say where its image rows go, which the pipeline pass does not yet know.
  if (spec.vision && (settings.pp != 1 || !settings.deviceMap.empty()))
    return makeError("a vision model (", model,
                     ") compiles for tensor parallelism only: leave out --pp and --device-map");
  PassOptions passes{settings.world, {}, settings.fuseAllReduce, settings.pp, settings.stageLayers};
  PlanLimits limits;
  limits.maxBatch = settings.maxBatch;
  int64_t modelMax = spec.maxPositionEmbeddings > 0 ? spec.maxPositionEmbeddings : 8192;
  limits.maxContext =
      settings.maxContext > 0 ? settings.maxContext : std::min<int64_t>(modelMax, 8192);
  if (!settings.deviceMap.empty()) {
    if (settings.world != 1 || settings.pp != 1 || !settings.stageLayers.empty())
      return makeError(
          "--device-map places one rank per device: leave out --world, --pp and "
          "--stage-layers");
    Expected<std::vector<StagePlacement>> stages =
        placeModel(spec, source->lookup(), build, {settings.deviceMap, settings.deviceMemory},
                   limits.maxContext, limits.maxBatch);
    if (!stages) return stages.takeError();
    passes.world = passes.pp = static_cast<int64_t>(stages->size());
    if (stages->size() > 1)
      for (const StagePlacement& s : *stages) passes.stageLayers.push_back(s.layers);
    graph->attrs.setString("stage_devices", stageDevicesText(*stages));
  }
  if (settings.expertParallel) passes.preferredRules.push_back("expert-parallel");
  if (Error e = runPipeline(*graph, passes, [&](const std::string& pass, const Graph& g) {
        if (settings.afterPass) settings.afterPass(pass, g);
      }))
    return e;
  // llava: the vision tower is its own graph, through the same passes for the same world.
  std::optional<Graph> tower;
  if (spec.vision) {
    Expected<Graph> vision = buildVisionGraph(spec, source->lookup(), build);
    if (!vision) return vision.takeError();
    if (Error e = runPipeline(*vision, passes, [&](const std::string& pass, const Graph& g) {
          if (settings.afterPass) settings.afterPass(pass, g);
        }))
      return std::move(e).withContext("vision tower: ");
    tower = std::move(*vision);
  }
  PlanSource planSource;
  planSource.modelDir = source->directory;
  for (const SafetensorsFile& f : source->checkpoint.files())
    planSource.files.push_back(
        {std::filesystem::path(f.path()).filename().string(), f.fileSize(), f.headerHash()});
  planSource.fileOf = [&](const std::string& tensor) -> std::optional<size_t> {
    const Checkpoint::Entry* e = source->checkpoint.find(tensor);
    if (!e) return std::nullopt;
    return e->file;
  };
  Expected<std::vector<uint8_t>> bytes =
      lowerToPlan(*graph, planSource, limits, tower ? &*tower : nullptr);
  if (!bytes) return bytes.takeError();
  // Read the plan back exactly as tpexec will: a plan this build cannot load is never used.
  Expected<LoadedPlan> check = LoadedPlan::fromBytes(*bytes, model);
  if (!check)
    return makeError("internal: the compiled plan does not verify: ", check.errorMessage());
  return CompiledModel{std::move(*bytes), std::string(familyName(spec.family))};
}

}  // namespace tpc::cli
