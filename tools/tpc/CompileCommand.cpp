#include <cstdio>
#include <filesystem>

#include "codegen/Lowering.h"
#include "codegen/PlanReader.h"
#include "codegen/PlanSummary.h"
#include "frontends/ModelSource.h"
#include "ir/AtomicFile.h"
#include "ir/Printer.h"
#include "passes/Pass.h"
#include "tools/common/Args.h"
#include "tools/tpc/Commands.h"

namespace tpc::cli {

int runCompile(int argc, char** argv) {
  std::string model, output = "plan.fb", dtype, printAfter;
  int64_t world = 1, maxContext = 0, maxBatch = 8;
  bool quiet = false, expertParallel = false, unfusedAllReduce = false;
  ArgParser args(
      "tpc compile",
      "Shards MODEL for a world of ranks and writes one plan holding a program per rank.\n"
      "Reads only checkpoint headers, never weight bytes.");
  args.positional("MODEL", &model,
                  "model folder (config.json + *.safetensors) or a .safetensors file");
  args.option("--world", &world, "N", "number of ranks, a power of 2 (default 1)");
  args.option("-o", &output, "FILE", "plan to write (default plan.fb)");
  args.choice("--dtype", &dtype, {"bf16", "f16", "f32"},
              "activation dtype (default: the checkpoint's)");
  args.option("--max-context", &maxContext, "N",
              "longest sequence, prompt + generated (default min(model max, 8192))");
  args.option("--max-batch", &maxBatch, "N", "most sequences decoded at once (default 8)");
  std::string passNames;
  for (const std::string& p : pipelinePassNames()) passNames += (passNames.empty() ? "" : ", ") + p;
  args.option("--print-after", &printAfter, "PASS", "print the IR after a pass: " + passNames);
  args.flag("--expert-parallel", &expertParallel,
            "MoE: whole experts per rank (experts / world each), attention tensor-parallel");
  args.flag("--unfused-all-reduce", &unfusedAllReduce,
            "keep each all_reduce apart from the add_rms_norm it feeds (to compare with the "
            "fused step)");
  args.flag("--quiet", &quiet, "print nothing but errors");
  args.epilog("example:\n  tpc compile models/llama3-8b --world 8 -o llama3-8b.w8.fb");
  if (Error e = args.parse(argc, argv, 2)) return fail(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  if (Error e = checkWorld(world)) return fail(e.message(), 2);
  if (!printAfter.empty() && !createPass(printAfter, {}))
    return fail("--print-after: no pass named '" + printAfter + "' (passes: " + passNames + ")", 2);
  if (args.seen("--max-context") && maxContext < 1)
    return fail("--max-context must be at least 1", 2);
  if (maxBatch < 1) return fail("--max-batch must be at least 1", 2);

  Expected<ModelSource> source = openModel(model);
  if (!source) return fail(source.errorMessage());
  const ModelSpec& spec = source->spec;
  if (expertParallel && !spec.isMoe())
    return fail("--expert-parallel: " + model + " has no experts (family " +
                    std::string(familyName(spec.family)) + ")",
                2);
  BuildOptions build;
  build.computeDType = dtype.empty() ? (isComputeDType(spec.dtype) ? spec.dtype : DType::BF16)
                                     : *parseIrDType(dtype);
  Expected<Graph> graph = buildGraph(spec, source->lookup(), build);
  if (!graph) return fail(graph.errorMessage());
  PassOptions passes{world, {}, !unfusedAllReduce};
  if (expertParallel) passes.preferredRules.push_back("expert-parallel");
  Error piped = runPipeline(*graph, passes, [&](const std::string& pass, const Graph& g) {
    if (pass == printAfter) std::fputs(printGraph(g).c_str(), stdout);
  });
  if (piped) return fail(piped.message());

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
  limits.maxBatch = maxBatch;
  int64_t modelMax = spec.maxPositionEmbeddings > 0 ? spec.maxPositionEmbeddings : 8192;
  limits.maxContext = args.seen("--max-context") ? maxContext : std::min<int64_t>(modelMax, 8192);
  Expected<std::vector<uint8_t>> bytes = lowerToPlan(*graph, planSource, limits);
  if (!bytes) return fail(bytes.errorMessage());
  // Read the plan back exactly as tpexec will: a plan this build cannot load is never written.
  Expected<LoadedPlan> check = LoadedPlan::fromBytes(*bytes, output);
  if (!check) return fail("internal: the compiled plan does not verify: " + check.errorMessage());
  if (Error e = writeFileAtomically(
          output, std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size())))
    return fail(e.message());
  if (!quiet)
    std::printf("wrote %s (%s, %s)\n%s", output.c_str(),
                std::string(familyName(spec.family)).c_str(), formatBytes(bytes->size()).c_str(),
                formatPlanSummary(summarizePlan(check->plan())).c_str());
  return 0;
}

}  // namespace tpc::cli
