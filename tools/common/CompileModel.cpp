#include "tools/common/CompileModel.h"

#include <filesystem>
#include <optional>

#include "codegen/Lowering.h"
#include "codegen/PlanReader.h"
#include "frontends/ModelSource.h"
#include "passes/Pass.h"

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
  PassOptions passes{settings.world, {}, settings.fuseAllReduce};
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
  PlanLimits limits;
  limits.maxBatch = settings.maxBatch;
  int64_t modelMax = spec.maxPositionEmbeddings > 0 ? spec.maxPositionEmbeddings : 8192;
  limits.maxContext =
      settings.maxContext > 0 ? settings.maxContext : std::min<int64_t>(modelMax, 8192);
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
