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
#include "tools/common/CompileModel.h"
#include "tools/tpc/Commands.h"

namespace tpc::cli {

int runCompile(int argc, char** argv) {
  std::string model, output = "plan.fb", dtype, printAfter;
  int64_t world = 1, maxContext = 0, maxBatch = 8, pp = 1;
  std::string stageLayersText, deviceMap, deviceMemory;
  bool quiet = false, expertParallel = false, unfusedAllReduce = false;
  ArgParser args(
      "tpc compile",
      "Shards MODEL for a world of ranks and writes one plan holding a program per rank.\n"
      "Reads only checkpoint headers, never weight bytes.");
  args.positional("MODEL", &model,
                  "model folder (config.json + *.safetensors) or a .safetensors file");
  args.option("--world", &world, "N", "number of ranks, a power of 2 (default 1)");
  args.option("--pp", &pp, "S",
              "pipeline stages, each of world / S tensor-parallel ranks (default 1)");
  args.option("--stage-layers", &stageLayersText, "N,N,...",
              "with --pp: layers per stage, first to last (default: balanced by weight bytes)");
  args.option("--device-map", &deviceMap, "MAP",
              "one pipeline stage per device instead of tensor parallelism: auto (fill GPU 0, "
              "GPU 1, ..., then the CPU up to --device-memory) or layer counts such as "
              "cuda:0=16,cuda:1=16,cpu=*");
  args.option("--device-memory", &deviceMemory, "BUDGETS",
              "with --device-map auto: bytes per device for weights, KV cache and activations, "
              "e.g. cuda:0=70GiB,cpu=200GiB");
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
  std::vector<int64_t> stageLayers;
  if (!stageLayersText.empty()) {
    Expected<std::vector<int64_t>> parsed = parseIntList(stageLayersText, "--stage-layers");
    if (!parsed) return fail(parsed.errorMessage(), 2);
    stageLayers = *parsed;
  }
  if (Error e = checkPipeline(world, pp, stageLayers)) return fail(e.message(), 2);
  if (!printAfter.empty() && !createPass(printAfter, {}))
    return fail("--print-after: no pass named '" + printAfter + "' (passes: " + passNames + ")", 2);
  if (args.seen("--max-context") && maxContext < 1)
    return fail("--max-context must be at least 1", 2);
  if (maxBatch < 1) return fail("--max-batch must be at least 1", 2);

  if (expertParallel) {
    // A usage error, before any compiling: the flag needs experts to place.
    Expected<ModelSource> source = openModel(model);
    if (!source) return fail(source.errorMessage());
    if (!source->spec.isMoe())
      return fail("--expert-parallel: " + model + " has no experts (family " +
                      std::string(familyName(source->spec.family)) + ")",
                  2);
  }
  CompileSettings settings;
  settings.world = world;
  settings.dtype = dtype;
  settings.maxContext = args.seen("--max-context") ? maxContext : 0;
  settings.maxBatch = maxBatch;
  settings.expertParallel = expertParallel;
  settings.fuseAllReduce = !unfusedAllReduce;
  settings.pp = pp;
  settings.stageLayers = stageLayers;
  settings.deviceMap = deviceMap;
  settings.deviceMemory = deviceMemory;
  if (deviceMap.empty() && !deviceMemory.empty())
    return fail("--device-memory goes with --device-map auto", 2);
  settings.afterPass = [&](const std::string& pass, const Graph& g) {
    if (pass == printAfter) std::fputs(printGraph(g).c_str(), stdout);
  };
  Expected<CompiledModel> compiled = compileModel(model, settings);
  if (!compiled) return fail(compiled.errorMessage());
  std::vector<uint8_t>* bytes = &compiled->bytes;
  Expected<LoadedPlan> check = LoadedPlan::fromBytes(*bytes, output);
  if (!check) return fail(check.errorMessage());
  if (Error e = writeFileAtomically(
          output, std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size())))
    return fail(e.message());
  if (!quiet)
    std::printf("wrote %s (%s, %s)\n%s", output.c_str(), compiled->family.c_str(),
                formatBytes(bytes->size()).c_str(),
                formatPlanSummary(summarizePlan(check->plan())).c_str());
  return 0;
}

}  // namespace tpc::cli
