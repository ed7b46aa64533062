// Where each rank of one host runs: a device map's plan names every pipeline stage's device
// (model attr stage_devices, "cuda:0,cpu"), so its ranks mix backends, each stage on its own
// device; other plans run every rank on the one backend asked for. Stages of a plan talk through
// host memory (a CUDA stage copies its boundary values to the host and back), so a staged plan's
// ranks share a host communicator whatever their backends.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codegen/PlanReader.h"
#include "executor/Backend.h"
#include "ir/Error.h"

namespace tpc {

struct RankDevice {
  std::string kind = "cpu";  // the backend: cpu or cuda
  int device = -1;           // cuda: the GPU; -1 on the CPU
};

// "cuda:0,cpu" as its devices; empty text gives none.
std::vector<std::string> splitStageDevices(const std::string& text);

// The rank layout of a plan, as far as placement needs it.
struct StageLayout {
  int world = 1;
  int pp = 1;
  std::vector<std::string> stageDevices;  // one per stage, or empty: no device map
};
StageLayout stageLayoutOf(const plan::Plan& p);

// Every rank's backend and GPU on a host with `gpus` visible. With a device map each rank runs
// on its stage's device (`kind` is not consulted); a stage on a GPU this host does not have is
// one error naming it. Otherwise every rank runs `kind`, a CUDA rank on GPU `device` when given
// (>= 0), else on its rank mod the visible GPUs. CUDA stages of a staged plan have one rank each.
Expected<std::vector<RankDevice>> placeLocalRanks(const StageLayout& layout,
                                                  const std::string& kind, int device, int gpus);

// How the ranks of one host run a plan: each rank's device, the communicator of the world, and
// whether the ranks build a GPU communicator (nccl, ipc) over the host one.
struct LocalPlacement {
  std::vector<RankDevice> ranks;
  std::string comm;  // local, shm, gloo, nccl or ipc
  bool gpuComm = false;
  int cpuRanks = 0;  // ranks on the CPU backend: they share this host's cores
};
// `backend` gives the kind and GPU asked for, `comm` the communicator (auto, shm, ...). Counts
// the GPUs only when a rank may need one; sets NCCL_NVLS_ENABLE=0 when any rank runs on a GPU.
Expected<LocalPlacement> placeRanksOnThisHost(const LoadedPlan& plan, const BackendOptions& backend,
                                              const std::string& comm);

// "cuda+cpu": the ranks' backends in rank order, each named once.
std::string backendsLabel(const std::vector<RankDevice>& ranks);
// True when any rank runs on a GPU.
bool anyCudaRank(const std::vector<RankDevice>& ranks);
// True when the plan's stages might name a GPU: the host's GPUs must be counted to place them.
bool mayUseGpus(const StageLayout& layout, const std::string& kind);

}  // namespace tpc
