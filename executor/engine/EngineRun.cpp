#include "executor/engine/EngineRun.h"

#include "executor/comm/ShmCommunicator.h"
#include "executor/engine/EngineRanks.h"
#include "executor/process/ProcessGroup.h"
#include "executor/process/RankComms.h"
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
  if (options.backend.kind == "cuda" && cudaDeviceCount() == 0)
    return makeError("--backend cuda: no CUDA device is visible on this host");
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
  // The ranks' control mesh (iterations, host values) is shared memory, mapped before the fork.
  Expected<std::shared_ptr<ShmSegment>> segment = ShmSegment::create(world);
  if (!segment) return segment.takeError();
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
        std::unique_ptr<Communicator> nccl;
        if (options.backend.kind == "cuda") {
          Expected<std::unique_ptr<Communicator>> made =
              ncclBesideMesh(**control, rank, world, options.rankTimeout);
          if (!made) return ctx.fail(made.errorMessage());
          nccl = std::move(*made);
          ctx.heartbeat();
        }
        Communicator* comm = nccl ? nccl.get() : control->get();
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
          if (nccl) nccl->abort();
          return ctx.fail(failed.message());
        }
        return 0;
      },
      group);
  return e;
}

}  // namespace tpc
