#include "executor/process/LocalRun.h"

#include "codegen/PlanFormat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <tuple>

#include "executor/comm/ShmCommunicator.h"
#include "executor/process/LocalComm.h"
#include "executor/process/NoNcclDeviceMap.h"
#include "executor/process/ProcessGroup.h"
#include "executor/process/StageDevices.h"
#include "kernels/cpu/Threads.h"

namespace tpc {
namespace {

// Generation on one rank; every rank runs it, rank 0 reports.
Error runRank(const LoadedPlan& plan, uint32_t rank, Communicator& comm,
              const std::string& commName, const LocalRunOptions& options,
              const std::function<void()>& heartbeat,
              const std::function<Error(const RunReport&)>& report) {
  BackendOptions backendOptions = options.backend;
  backendOptions.onProgress = [&] {
    if (heartbeat) heartbeat();
    if (rank == 0 && options.backend.onProgress) options.backend.onProgress();
  };
  Expected<std::unique_ptr<Backend>> backend = createBackend(plan, rank, comm, backendOptions);
  if (!backend) return backend.takeError();
  if (heartbeat) heartbeat();
  const plan::Plan& p = plan.plan();
  GenerationRequest request = options.request;
  if (rank != 0) request.onToken = nullptr;  // one process streams, the one that reports
  Expected<GenerationResult> result =
      generate(**backend, request, planIntAttr(p.model(), "vocab_size"), p.limits()->max_context(),
               heartbeat);
  if (!result) return result.takeError();
  // Weight bytes travel as two floats each (high and low 24 bits): exact up to 2^48 bytes.
  uint64_t bytes = (*backend)->residentWeightBytes();
  float mine[2] = {static_cast<float>(bytes >> 24), static_cast<float>(bytes & 0xffffff)};
  std::vector<float> all(2 * p.world());
  if (Error e = comm.allGather(mine, 2, all.data())) return e;
  if (rank != 0) return Error::success();
  RunReport out;
  out.world = p.world();
  out.backend = (*backend)->name();
  out.communicator = commName;
  out.result = std::move(*result);
  for (uint32_t r = 0; r < p.world(); ++r)
    out.weightBytesPerRank.push_back((static_cast<uint64_t>(all[2 * r]) << 24) +
                                     static_cast<uint64_t>(all[2 * r + 1]));
  return report(out);
}

// A listening socket on an ephemeral loopback port, bound before the ranks are forked so each
// knows the store's port with no race; rank 0 serves the store on it.
Expected<std::pair<int, int>> listenOnLoopback() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return makeError("cannot create the rendezvous socket: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 1024) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::string why = std::strerror(errno);
    ::close(fd);
    return makeError("cannot listen for the rendezvous store: ", why);
  }
  return std::make_pair(fd, static_cast<int>(ntohs(addr.sin_port)));
}

}  // namespace

Error runPlanLocally(const LoadedPlan& plan, const LocalRunOptions& options,
                     const std::function<Error(const RunReport&)>& report) {
  const int world = static_cast<int>(plan.plan().world());
  if (options.localWorld != 0 && options.localWorld != world)
    return makeError("--local-world ", options.localWorld, " does not match the plan's world of ",
                     world, " (spreading ranks over several nodes needs the control plane)");
  Expected<LocalPlacement> placed = placeRanksOnThisHost(plan, options.backend, options.comm);
  if (!placed) return placed.takeError();
  const std::vector<RankDevice>& ranks = placed->ranks;
  const std::string& commName = placed->comm;
  // Every rank of a device map takes its own stage's backend and GPU.
  LocalRunOptions rankOptions = options;
  auto optionsOf = [&](int rank) {
    rankOptions.backend.kind = ranks[static_cast<size_t>(rank)].kind;
    rankOptions.backend.device = ranks[static_cast<size_t>(rank)].device;
    return rankOptions;
  };
  // A device map's report names every backend its stages run ("cuda+cpu").
  const std::string label = backendsLabel(ranks);
  auto labelled = [&](const RunReport& r) -> Error {
    if (label == r.backend) return report(r);
    RunReport named = r;
    named.backend = label;
    return report(named);
  };
  if (world == 1) {
    Expected<std::unique_ptr<Communicator>> comm =
        oneRankCommunicator(ranks[0].kind, ranks[0].device, options.rankTimeout, ncclDisabled());
    if (!comm) return comm.takeError();
    return runRank(plan, 0, **comm, commName, optionsOf(0), {}, labelled);
  }
  // Shared memory carries the collectives of CPU ranks and rank 0's NCCL id for GPU ranks;
  // Gloo, when asked for, rendezvouses through a store on a socket bound before the fork.
  const bool useGloo = commName == "gloo";
  std::shared_ptr<ShmSegment> segment;
  int fd = -1, port = 0;
  if (useGloo) {
    Expected<std::pair<int, int>> listener = listenOnLoopback();
    if (!listener) return listener.takeError();
    std::tie(fd, port) = *listener;
  } else {
    Expected<std::shared_ptr<ShmSegment>> made = ShmSegment::create(world);
    if (!made) return made.takeError();
    segment = std::move(*made);
  }
  ProcessGroupOptions group;
  group.heartbeatTimeout = options.rankTimeout;
  Error e = runLocalRanks(
      world,
      [&](int rank, RankContext& ctx) {
        // The ranks share this host's cores; OpenBLAS would give each of them all of them.
        cpu::shareKernelThreads(std::max(placed->cpuRanks, 1));
        Expected<std::unique_ptr<Communicator>> comm = makeError("no communicator");
        if (useGloo) {
          GlooOptions gloo;
          gloo.storePort = port;
          gloo.storeListenFd = fd;
          gloo.timeout = options.rankTimeout;
          comm = createGlooCommunicator(rank, world, gloo);
        } else {
          ShmOptions shm;
          shm.timeout = options.rankTimeout;
          comm = createShmCommunicator(rank, segment, shm);
        }
        if (!comm) return ctx.fail(comm.errorMessage());
        ctx.heartbeat();
        if (placed->gpuComm) {
          // Shared memory carries rank 0's NCCL id, or becomes the IPC communicator's host.
          comm = connectLocalGpus(commName, std::move(*comm),
                                  ranks[static_cast<size_t>(rank)].device, options.rankTimeout);
          if (!comm) return ctx.fail(comm.errorMessage());
          ctx.heartbeat();
        }
        Error failed = runRank(
            plan, static_cast<uint32_t>(rank), **comm, commName, optionsOf(rank),
            [&] { ctx.heartbeat(); }, labelled);
        if (failed) {
          (*comm)->abort();
          return ctx.fail(failed.message());
        }
        return 0;
      },
      group);
  if (fd >= 0) ::close(fd);
  return e;
}

}  // namespace tpc
