#include "executor/engine/EngineRun.h"

#include "executor/comm/ShmCommunicator.h"
#include "executor/engine/EngineRanks.h"
#include "executor/process/LocalComm.h"
#include "executor/process/ProcessGroup.h"
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
  const bool cuda = options.backend.kind == "cuda";
  const int gpus = cuda ? cudaDeviceCount() : 0;
  if (cuda && gpus == 0) return makeError("--backend cuda: no CUDA device is visible on this host");
  Expected<std::string> commName = chooseLocalCommunicator(
      options.backend.kind, cuda ? options.comm : std::string("auto"), world, gpus);
  if (!commName) return commName.takeError();
  const EngineRankOptions rankOptions = rankOptionsOf(options);
  if (world == 1) {
    std::unique_ptr<Communicator> local = createLocalCommunicator();
    Expected<std::unique_ptr<Communicator>> comm =
        oneRankCommunicator(options.backend.kind, options.backend.device, options.rankTimeout);
    if (!comm) return comm.takeError();
    MeshLink link(*local);
    Communicator* made = comm->get();
    return hostEngine(
        plan, [made]() -> Expected<Communicator*> { return made; }, link,
        [] { return Error::success(); }, rankOptions, driver, {});
  }
  // The ranks' control mesh (iterations, host values) is shared memory, mapped before the fork;
  // CUDA ranks get a second segment for their GPU communicator's set-up (and host values).
  Expected<std::shared_ptr<ShmSegment>> segment = ShmSegment::create(world);
  if (!segment) return segment.takeError();
  std::shared_ptr<ShmSegment> gpuSegment;
  if (cuda) {
    Expected<std::shared_ptr<ShmSegment>> made = ShmSegment::create(world);
    if (!made) return made.takeError();
    gpuSegment = std::move(*made);
  }
  ProcessGroupOptions group;
  group.heartbeatTimeout = options.rankTimeout;
  Error e = runLocalRanks(
      world,
      [&](int rank, RankContext& ctx) {
        cpu::shareKernelThreads(world);
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
          Expected<std::unique_ptr<Communicator>> made = connectLocalGpus(
              *commName, std::move(*host), localRankDevice(options.backend.device, rank, gpus),
              options.rankTimeout);
          if (!made) return ctx.fail(made.errorMessage());
          gpu = std::move(*made);
          ctx.heartbeat();
        }
        Communicator* comm = gpu ? gpu.get() : control->get();
        auto connect = [comm]() -> Expected<Communicator*> { return comm; };
        auto beat = [&] { ctx.heartbeat(); };
        MeshLink link(**control);
        auto allLoaded = [&] { return (*control)->barrier(); };
        Error failed = rank == 0
                           ? hostEngine(plan, connect, link, allLoaded, rankOptions, driver, beat)
                           : followEngine(plan, static_cast<uint32_t>(rank), connect, link,
                                          allLoaded, rankOptions, beat);
        if (failed) {
          (*control)->abort();
          if (gpu) gpu->abort();
          return ctx.fail(failed.message());
        }
        return 0;
      },
      group);
  return e;
}

}  // namespace tpc
