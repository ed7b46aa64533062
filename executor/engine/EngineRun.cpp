#include "executor/engine/EngineRun.h"

#include <algorithm>
#include <optional>

#include "executor/comm/ShmCommunicator.h"
#include "executor/engine/EngineRanks.h"
#include "executor/engine/QueuedLink.h"
#include "executor/process/LocalComm.h"
#include "executor/process/NoNcclDeviceMap.h"
#include "executor/process/ProcessGroup.h"
#include "executor/process/StageDevices.h"
#include "kernels/cpu/Threads.h"

namespace tpc {
namespace {

EngineRankOptions rankOptionsOf(const EngineRunOptions& o) {
  EngineRankOptions r;
  r.backend = o.backend;
  r.engine = o.engine;
  r.onIteration = o.onIteration;
  return r;
}

}  // namespace

Error runEngineLocally(const LoadedPlan& plan, const EngineRunOptions& options,
                       const std::function<Error(Engine&)>& driver) {
  const int world = static_cast<int>(plan.plan().world());
  if (options.localWorld != 0 && options.localWorld != world)
    return makeError("--local-world ", options.localWorld, " does not match the plan's world of ",
                     world, " (spreading ranks over several nodes needs --listen and --workers)");
  // The engine's CPU ranks talk over the control mesh (shared memory) whatever --comm says.
  const bool cudaAsked = options.backend.kind == "cuda";
  Expected<LocalPlacement> placed =
      placeRanksOnThisHost(plan, options.backend, cudaAsked ? options.comm : std::string("auto"));
  if (!placed) return placed.takeError();
  const std::vector<RankDevice>& ranks = placed->ranks;
  const std::string& commName = placed->comm;
  Expected<int64_t> microBatches = microBatchesOf(plan.plan(), options.engine);
  if (!microBatches) return microBatches.takeError();
  bool queueMessages = false;  // see messageSegment below
  // Every rank of a device map takes its own stage's backend and GPU.
  auto rankOptionsFor = [&](int rank) {
    EngineRankOptions r = rankOptionsOf(options);
    r.backend.kind = ranks[static_cast<size_t>(rank)].kind;
    r.backend.device = ranks[static_cast<size_t>(rank)].device;
    r.followersQueueMessages = queueMessages;
    return r;
  };
  if (world == 1) {
    std::unique_ptr<Communicator> local = createLocalCommunicator();
    Expected<std::unique_ptr<Communicator>> comm =
        oneRankCommunicator(ranks[0].kind, ranks[0].device, options.rankTimeout, ncclDisabled());
    if (!comm) return comm.takeError();
    MeshLink link(*local);
    Communicator* made = comm->get();
    return hostEngine(
        plan, [made]() -> Expected<Communicator*> { return made; }, link,
        [] { return Error::success(); }, rankOptionsFor(0), driver, {});
  }
  // The ranks' control mesh (iterations, host values) is shared memory, mapped before the fork;
  // CUDA ranks get a second segment for their GPU communicator's set-up (and host values).
  Expected<std::shared_ptr<ShmSegment>> segment = ShmSegment::create(world);
  if (!segment) return segment.takeError();
  // A staged plan's ranks, CUDA ones included, use the control mesh for their boundaries.
  const bool cuda = placed->gpuComm;
  std::shared_ptr<ShmSegment> gpuSegment;
  if (cuda) {
    Expected<std::shared_ptr<ShmSegment>> made = ShmSegment::create(world);
    if (!made) return made.takeError();
    gpuSegment = std::move(*made);
  }
  // Micro-batches in flight: iteration messages get a mesh of their own, sent point to point,
  // which a thread of every other rank reads as they come (a rank busy with one micro-batch
  // must not hold back rank 0's message for the next). Only the CPU backend begins a step apart
  // from finishing it (Backend::beginForward): with any other rank, micro-batches run one at a
  // time.
  const bool allCpu =
      std::all_of(ranks.begin(), ranks.end(), [](const RankDevice& r) { return r.kind == "cpu"; });
  std::shared_ptr<ShmSegment> messageSegment;
  if (*microBatches > 1 && allCpu) {
    Expected<std::shared_ptr<ShmSegment>> made = ShmSegment::create(world, size_t{1} << 16);
    if (!made) return made.takeError();
    messageSegment = std::move(*made);
    queueMessages = true;
  }
  ProcessGroupOptions group;
  group.heartbeatTimeout = options.rankTimeout;
  Error e = runLocalRanks(
      world,
      [&](int rank, RankContext& ctx) {
        cpu::shareKernelThreads(std::max(placed->cpuRanks, 1));
        ShmOptions shm;
        shm.timeout = options.rankTimeout;
        Expected<std::unique_ptr<Communicator>> control =
            createShmCommunicator(rank, *segment, shm);
        if (!control) return ctx.fail(control.errorMessage());
        ctx.heartbeat();
        std::unique_ptr<Communicator> gpu;
        if (cuda) {
          Expected<std::unique_ptr<Communicator>> host =
              createShmCommunicator(rank, gpuSegment, shm);
          if (!host) return ctx.fail(host.errorMessage());
          Expected<std::unique_ptr<Communicator>> made =
              connectLocalGpus(commName, std::move(*host), ranks[static_cast<size_t>(rank)].device,
                               options.rankTimeout);
          if (!made) return ctx.fail(made.errorMessage());
          gpu = std::move(*made);
          ctx.heartbeat();
        }
        Communicator* comm = gpu ? gpu.get() : control->get();
        auto connect = [comm]() -> Expected<Communicator*> { return comm; };
        auto beat = [&] { ctx.heartbeat(); };
        std::unique_ptr<Communicator> messages;
        if (messageSegment) {
          Expected<std::unique_ptr<Communicator>> made =
              createShmCommunicator(rank, messageSegment, shm);
          if (!made) return ctx.fail(made.errorMessage());
          messages = std::move(*made);
        }
        MeshLink mesh(**control);
        std::optional<PointToPointLink> direct;
        std::optional<QueuedLink> queued;
        if (messages) direct.emplace(*messages);
        if (messages && rank != 0) queued.emplace(*direct, [&] { messages->abort(); });
        IterationLink& link = queued   ? static_cast<IterationLink&>(*queued)
                              : direct ? static_cast<IterationLink&>(*direct)
                                       : mesh;
        auto allLoaded = [&] { return (*control)->barrier(); };
        const EngineRankOptions rankOptions = rankOptionsFor(rank);
        Error failed = rank == 0
                           ? hostEngine(plan, connect, link, allLoaded, rankOptions, driver, beat)
                           : followEngine(plan, static_cast<uint32_t>(rank), connect, link,
                                          allLoaded, rankOptions, beat);
        if (failed) {
          (*control)->abort();
          if (messages) messages->abort();
          if (gpu) gpu->abort();
          return ctx.fail(failed.message());
        }
        return 0;
      },
      group);
  return e;
}

}  // namespace tpc
