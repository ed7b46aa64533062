#include "executor/process/NoNcclDeviceMap.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "codegen/PlanFormat.h"
#include "executor/process/StageDevices.h"

namespace tpc {
namespace {

std::string mib(uint64_t bytes) { return std::to_string(bytes >> 20) + "MiB"; }

}  // namespace

bool ncclDisabled() {
  const char* v = std::getenv("TPC_NO_NCCL");
  return v && *v && std::string(v) != "0";
}

FolderPlacement placeFolder(bool noNccl, const std::vector<uint64_t>& gpuFreeBytes,
                            uint64_t cpuBytes, double gpuUtilization) {
  FolderPlacement out;
  // CPU ranks never use NCCL: without a GPU the folder compiles as it always does.
  if (!noNccl || gpuFreeBytes.empty()) return out;
  out.deviceMap = true;
  for (size_t g = 0; g < gpuFreeBytes.size(); ++g)
    out.deviceMemory +=
        "cuda:" + std::to_string(g) + "=" +
        mib(static_cast<uint64_t>(static_cast<double>(gpuFreeBytes[g]) * gpuUtilization)) + ",";
  out.deviceMemory += "cpu=" + mib(std::max<uint64_t>(cpuBytes / 10 * 9, uint64_t{1} << 20));
  return out;
}

std::string deviceMapLine(const plan::Plan& p) {
  const StageLayout layout = stageLayoutOf(p);
  std::vector<int64_t> counts;
  if (const plan::Attr* a = findPlanAttr(p.model(), "stage_layers"); a && a->ints())
    counts.assign(a->ints()->begin(), a->ints()->end());
  if (counts.empty()) counts.push_back(planIntAttr(p.model(), "num_layers", 0));
  std::string line = "no NCCL: a device map instead of tensor parallelism:";
  int64_t first = 0;
  for (size_t s = 0; s < layout.stageDevices.size() && s < counts.size(); ++s) {
    line += (s ? ", " : " ") + layout.stageDevices[s] + " layers " + std::to_string(first) + ".." +
            std::to_string(first + counts[s] - 1);
    first += counts[s];
  }
  return line;
}

uint64_t availableHostBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  unsigned long long kib = 0;
  while (std::getline(meminfo, line))
    if (std::sscanf(line.c_str(), "MemAvailable: %llu kB", &kib) == 1) return kib * 1024;
  const long pages = ::sysconf(_SC_AVPHYS_PAGES), size = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(size) : 0;
}

}  // namespace tpc
