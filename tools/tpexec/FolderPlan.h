// The plan tpexec and tpexec serve run: a plan file as it is, or a checkpoint folder compiled in
// memory for the GPUs visible (the largest power of 2 the model allows; one CPU rank without a
// GPU). Without NCCL (TPC_NO_NCCL=1 or --no-nccl) a folder on a host with GPUs gets a device map
// over them and the CPU instead of tensor parallelism, and one line says so.
#pragma once

#include <cstdint>
#include <string>

#include "codegen/PlanReader.h"
#include "ir/Error.h"

namespace tpc::tpexec {

struct FolderPlanOptions {
  const char* tool = "tpexec";  // names the line that says what was compiled
  int64_t world = 0;            // 0: from the GPUs visible
  int64_t maxContext = 0, maxBatch = 8;
  bool cuda = false;  // the run is on GPUs (--backend cuda)
  double gpuMemoryUtilization = 0.90;
};

Expected<LoadedPlan> planToRun(const std::string& path, const FolderPlanOptions& options);

}  // namespace tpc::tpexec
