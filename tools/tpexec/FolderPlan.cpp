#include "tools/tpexec/FolderPlan.h"

#include <cstdio>
#include <filesystem>

#include "executor/Backend.h"
#include "executor/process/NoNcclDeviceMap.h"
#include "tools/common/CompileModel.h"

namespace tpc::tpexec {

Expected<LoadedPlan> planToRun(const std::string& path, const FolderPlanOptions& options) {
  if (!std::filesystem::is_directory(path)) return LoadedPlan::readFile(path);
  cli::CompileSettings settings;
  settings.maxContext = options.maxContext;
  settings.maxBatch = options.maxBatch;
  const int gpus = options.cuda ? cudaDeviceCount() : 0;
  // Without NCCL the GPUs hold consecutive layers each (a given --world keeps tensor
  // parallelism, over the one-node communicator).
  if (options.cuda && options.world == 0 && ncclDisabled()) {
    FolderPlacement placed =
        placeFolder(true, cudaFreeMemory(), availableHostBytes(), options.gpuMemoryUtilization);
    if (placed.deviceMap) {
      settings.deviceMap = "auto";
      settings.deviceMemory = placed.deviceMemory;
      Expected<cli::CompiledModel> compiled = cli::compileModel(path, settings);
      if (!compiled) return compiled.takeError();
      Expected<LoadedPlan> plan = LoadedPlan::fromBytes(std::move(compiled->bytes), path);
      if (!plan) return plan.takeError();
      std::fprintf(stderr, "%s: compiled %s (%s), %s\n", options.tool, path.c_str(),
                   compiled->family.c_str(), deviceMapLine(plan->plan()).c_str());
      return plan;
    }
  }
  int64_t tryWorld = options.world;
  if (tryWorld == 0) {
    tryWorld = 1;
    while (tryWorld * 2 <= gpus) tryWorld *= 2;
  }
  while (true) {
    settings.world = tryWorld;
    Expected<cli::CompiledModel> compiled = cli::compileModel(path, settings);
    if (compiled) {
      std::fprintf(stderr, "%s: compiled %s (%s) for world %lld (%s)\n", options.tool, path.c_str(),
                   compiled->family.c_str(), static_cast<long long>(tryWorld),
                   options.world > 0 ? "--world"
                   : gpus > 0        ? (std::to_string(gpus) +
                                 " GPUs visible; the largest power of 2 the model allows")
                                    .c_str()
                              : "no GPU visible: one CPU rank");
      return LoadedPlan::fromBytes(std::move(compiled->bytes), path);
    }
    // A world the dimensions do not split into is tried smaller; other failures are final.
    if (options.world > 0 || tryWorld == 1) return compiled.takeError();
    tryWorld /= 2;
  }
}

}  // namespace tpc::tpexec
