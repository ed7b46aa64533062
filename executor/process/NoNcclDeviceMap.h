// Without NCCL (TPC_NO_NCCL=1, or --no-nccl, which sets it for the process and its ranks), a
// checkpoint folder is not compiled for tensor parallelism over the host's GPUs: it gets a device
// map instead, layers filled into GPU 0, GPU 1, ..., then the CPU, one stage each, the stages
// talking through host memory. The decision takes the host's GPUs and memory as arguments, so
// it is tested without a GPU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codegen/PlanReader.h"

namespace tpc {

// True when TPC_NO_NCCL is set to anything but empty or "0".
bool ncclDisabled();

// What a checkpoint folder compiles to on this host.
struct FolderPlacement {
  bool deviceMap = false;    // false: tensor parallelism, as without the flag
  std::string deviceMemory;  // with deviceMap: --device-memory text, e.g. "cuda:0=1000MiB,cpu=..."
};

// `gpuFreeBytes`: each visible GPU's free memory; `cpuBytes`: the host memory available. A GPU
// budget is its free memory times `gpuUtilization`, the CPU's 90% of what is available.
FolderPlacement placeFolder(bool noNccl, const std::vector<uint64_t>& gpuFreeBytes,
                            uint64_t cpuBytes, double gpuUtilization);

// The one line that says what a no-NCCL device map did: "no NCCL: a device map instead of
// tensor parallelism: cuda:0 layers 0..15, cuda:1 layers 16..31, cpu layers 32..39".
std::string deviceMapLine(const plan::Plan& p);

// The host memory this process may still take (MemAvailable), 0 when unknown.
uint64_t availableHostBytes();

}  // namespace tpc
