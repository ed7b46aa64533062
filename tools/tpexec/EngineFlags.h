// The engine's flags, shared by `tpexec PLAN --requests` and `tpexec bench`: how the scheduler
// batches and how the KV pool is sized.
#pragma once

#include <string>

#include "executor/engine/Engine.h"
#include "tools/common/Args.h"

namespace tpc::tpexec {

struct EngineFlags {
  int64_t maxSeqs = 0, maxBatchedTokens = 2048, kvBlockSize = 16;
  std::string kvCacheMemory;
  double gpuMemoryUtilization = 0.90;
  bool noPrefixCaching = false;
  std::string microBatches;  // empty: as many as the plan's pipeline stages
};

void addEngineFlags(cli::ArgParser& args, EngineFlags& f);
// The checked configuration; errors name the flag.
Expected<EngineConfig> engineConfigOf(const EngineFlags& f);
using cli::parseByteSize;

}  // namespace tpc::tpexec
