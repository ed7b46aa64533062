#include "executor/process/StageDevices.h"

#include <algorithm>

#include <cstdlib>

#include "codegen/PlanFormat.h"
#include "executor/Backend.h"
#include "executor/process/LocalComm.h"
#include "executor/process/NoNcclDeviceMap.h"

namespace tpc {
namespace {

// The index of "cuda:N", -1 for anything else.
int cudaIndexOf(const std::string& device) {
  if (device.rfind("cuda:", 0) != 0 || device.size() == 5 || device.size() > 9) return -1;
  int index = 0;
  for (char c : device.substr(5)) {
    if (c < '0' || c > '9') return -1;
    index = index * 10 + (c - '0');
  }
  return index;
}

}  // namespace

std::vector<std::string> splitStageDevices(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (!text.empty() && start <= text.size()) {
    size_t comma = text.find(',', start);
    out.push_back(text.substr(start, comma == std::string::npos ? comma : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

StageLayout stageLayoutOf(const plan::Plan& p) {
  StageLayout layout;
  layout.world = static_cast<int>(p.world());
  layout.pp = static_cast<int>(planIntAttr(p.model(), "pp", 1));
  const plan::Attr* a = findPlanAttr(p.model(), "stage_devices");
  if (a && a->string_value()) layout.stageDevices = splitStageDevices(a->string_value()->str());
  return layout;
}

bool mayUseGpus(const StageLayout& layout, const std::string& kind) {
  if (kind == "cuda") return true;
  for (const std::string& d : layout.stageDevices)
    if (d != "cpu") return true;
  return false;
}

std::string backendsLabel(const std::vector<RankDevice>& ranks) {
  std::string out;
  std::string last;
  for (const RankDevice& r : ranks) {
    if (r.kind == last || (out.find(r.kind) != std::string::npos)) continue;
    out += (out.empty() ? "" : "+") + r.kind;
    last = r.kind;
  }
  return out;
}

bool anyCudaRank(const std::vector<RankDevice>& ranks) {
  for (const RankDevice& r : ranks)
    if (r.kind == "cuda") return true;
  return false;
}

Expected<std::vector<RankDevice>> placeLocalRanks(const StageLayout& layout,
                                                  const std::string& kind, int device, int gpus) {
  const int pp = std::max(layout.pp, 1);
  const int tp = layout.world / pp;
  std::vector<RankDevice> ranks(static_cast<size_t>(layout.world));
  if (layout.stageDevices.empty()) {
    for (int r = 0; r < layout.world; ++r) {
      ranks[static_cast<size_t>(r)].kind = kind;
      if (kind == "cuda") ranks[static_cast<size_t>(r)].device = localRankDevice(device, r, gpus);
    }
  } else {
    if (static_cast<int>(layout.stageDevices.size()) != pp)
      return makeError("the plan's stage_devices names ", layout.stageDevices.size(),
                       " devices for its ", pp, " stages");
    for (int s = 0; s < pp; ++s) {
      const std::string& d = layout.stageDevices[static_cast<size_t>(s)];
      RankDevice placed;
      if (d != "cpu") {
        const int index = cudaIndexOf(d);
        if (index < 0)
          return makeError("the plan places stage ", s, " on unknown device '", d, "'");
        if (index >= gpus)
          return makeError("the plan places stage ", s, " on ", d, " but this host has ",
                           gpus == 0 ? std::string("no GPU the CUDA backend can use")
                                     : std::to_string(gpus) + " visible GPU(s)",
                           " (recompile the device map for this host)");
        placed = {"cuda", index};
      }
      for (int r = s * tp; r < (s + 1) * tp; ++r) ranks[static_cast<size_t>(r)] = placed;
    }
  }
  if (pp > 1 && tp > 1 && anyCudaRank(ranks))
    return makeError("the CUDA backend runs pipeline stages of one rank each (this plan has ", tp,
                     " tensor-parallel ranks per stage); compile with --world equal to --pp, or "
                     "use --backend cpu");
  return ranks;
}

Expected<LocalPlacement> placeRanksOnThisHost(const LoadedPlan& plan, const BackendOptions& backend,
                                              const std::string& comm) {
  const StageLayout layout = stageLayoutOf(plan.plan());
  const int gpus = mayUseGpus(layout, backend.kind) ? cudaDeviceCount() : 0;
  if (backend.kind == "cuda" && layout.stageDevices.empty() && gpus == 0)
    return makeError("--backend cuda: no CUDA device is visible on this host");
  Expected<std::vector<RankDevice>> ranks =
      placeLocalRanks(layout, backend.kind, backend.device, gpus);
  if (!ranks) return ranks.takeError();
  LocalPlacement out;
  out.ranks = std::move(*ranks);
  const bool cuda = anyCudaRank(out.ranks);
  for (const RankDevice& r : out.ranks) out.cpuRanks += r.kind == "cpu" ? 1 : 0;
  Expected<std::string> chosen =
      layout.pp > 1
          ? chooseStagedCommunicator(comm)
          : chooseLocalCommunicator(out.ranks[0].kind, comm, layout.world, gpus, ncclDisabled());
  if (!chosen) return chosen.takeError();
  out.comm = *chosen;
  out.gpuComm = out.comm == "nccl" || out.comm == "ipc";
  // NVLink SHARP multicast stays off in every rank this run starts.
  if (cuda) ::setenv("NCCL_NVLS_ENABLE", "0", 1);
  return out;
}

}  // namespace tpc
