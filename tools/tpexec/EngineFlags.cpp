#include "tools/tpexec/EngineFlags.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace tpc::tpexec {

void addEngineFlags(cli::ArgParser& args, EngineFlags& f) {
  args.option("--max-seqs", &f.maxSeqs, "N",
              "most sequences in one iteration (default: the plan's --max-batch)");
  args.option("--max-batched-tokens", &f.maxBatchedTokens, "N",
              "most tokens in one iteration, decode tokens and prompt chunks (default 2048)");
  args.option("--kv-block-size", &f.kvBlockSize, "N", "tokens per KV block (default 16)");
  args.option("--kv-cache-memory", &f.kvCacheMemory, "BYTES",
              "cpu: the KV pool per rank, e.g. 256MiB (default 64MiB)");
  args.option("--gpu-memory-utilization", &f.gpuMemoryUtilization, "F",
              "cuda: the share of GPU memory for weights, activations and the KV pool "
              "(default 0.90)");
  args.flag("--no-prefix-caching", &f.noPrefixCaching,
            "compute every prompt in full (by default cached prefix blocks are reused)");
  args.option("--micro-batches", &f.microBatches, "N",
              "pipeline stages: split the running sequences into N iterations in flight at once, "
              "so the stages work at the same time (default: the plan's stages; 1: off)");
}

Expected<EngineConfig> engineConfigOf(const EngineFlags& f) {
  EngineConfig c;
  if (f.maxSeqs < 0) return makeError("--max-seqs must not be negative");
  if (f.maxBatchedTokens < 1) return makeError("--max-batched-tokens must be at least 1");
  if (f.kvBlockSize < 1 || f.kvBlockSize > 1024)
    return makeError("--kv-block-size must be in 1..1024");
  if (!(f.gpuMemoryUtilization > 0 && f.gpuMemoryUtilization <= 1))
    return makeError("--gpu-memory-utilization must be in (0, 1]");
  c.maxSeqs = f.maxSeqs;
  c.maxBatchedTokens = f.maxBatchedTokens;
  c.kvBlockSize = f.kvBlockSize;
  c.gpuMemoryUtilization = f.gpuMemoryUtilization;
  c.prefixCaching = !f.noPrefixCaching;
  if (!f.microBatches.empty()) {
    char* end = nullptr;
    const long long n = std::strtoll(f.microBatches.c_str(), &end, 10);
    if (*end != '\0' || n < 1 || n > 1024)
      return makeError("--micro-batches must be a whole number in 1..1024, not '", f.microBatches,
                       "'");
    c.microBatches = n;
  }
  if (!f.kvCacheMemory.empty()) {
    Expected<uint64_t> bytes = parseByteSize(f.kvCacheMemory, "--kv-cache-memory");
    if (!bytes) return bytes.takeError();
    c.kvCacheBytes = *bytes;
  }
  return c;
}

}  // namespace tpc::tpexec
