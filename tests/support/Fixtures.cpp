#include "tests/support/Fixtures.h"

#include <filesystem>
#include <map>
#include <stdexcept>

#include "codegen/Lowering.h"
#include "frontends/GraphBuilder.h"
#include "frontends/ModelSource.h"
#include "frontends/Presets.h"
#include "passes/Pass.h"

namespace tpc::test {

ModelSpec presetSpec(Family family, const std::string& preset, DType dtype) {
  Expected<ModelSpec> spec = makePresetSpec(family, preset, dtype);
  if (!spec) throw std::runtime_error(spec.errorMessage());
  return *spec;
}

Graph buildSpecGraph(const ModelSpec& spec) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const ExpectedTensor& t : expectedTensors(spec)) shapes[t.name] = t.shape;
  TensorLookup lookup = [&](const std::string& name) -> std::optional<TensorMeta> {
    auto it = shapes.find(name);
    if (it == shapes.end()) return std::nullopt;
    return TensorMeta{spec.dtype, it->second};
  };
  Expected<Graph> g = buildGraph(spec, lookup, BuildOptions{});
  if (!g) throw std::runtime_error(g.errorMessage());
  return std::move(*g);
}

Graph compiledGraph(const ModelSpec& spec, int64_t world) {
  Graph g = buildSpecGraph(spec);
  if (Error e = runPipeline(g, PassOptions{world})) throw std::runtime_error(e.message());
  return g;
}

Expected<LoadedPlan> compileSpec(const ModelSpec& spec, int64_t world,
                                 const std::vector<std::string>& preferredRules) {
  Graph g = buildSpecGraph(spec);
  if (Error e = runPipeline(g, PassOptions{world, preferredRules})) return e;
  return lowerPassedGraph(g, "test-plan.fb");
}

Expected<LoadedPlan> lowerPassedGraph(const Graph& g, const std::string& planName) {
  PlanSource source;
  source.modelDir = "model";
  source.files.push_back({"model.safetensors", 1234, 0x5eed});
  source.fileOf = [](const std::string&) -> std::optional<size_t> { return 0; };
  Expected<std::vector<uint8_t>> bytes = lowerToPlan(g, source, PlanLimits{256, 4});
  if (!bytes) return bytes.takeError();
  return LoadedPlan::fromBytes(std::move(*bytes), planName);
}

Expected<LoadedPlan> compileModelDir(const std::string& dir, int64_t world, DType dtype,
                                     int64_t maxContext, int64_t maxBatch, int64_t pp) {
  Expected<ModelSource> source = openModel(dir);
  if (!source) return source.takeError();
  BuildOptions build;
  build.computeDType = dtype;
  Expected<Graph> graph = buildGraph(source->spec, source->lookup(), build);
  if (!graph) return graph.takeError();
  PassOptions passes{world};
  passes.pp = pp;
  if (Error e = runPipeline(*graph, passes)) return e;
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
      lowerToPlan(*graph, planSource, PlanLimits{maxContext, maxBatch});
  if (!bytes) return bytes.takeError();
  return LoadedPlan::fromBytes(std::move(*bytes), dir + "/plan.fb");
}

}  // namespace tpc::test
