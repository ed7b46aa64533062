#include "executor/engine/EngineRun.h"

#include <thread>

#include "codegen/PlanFormat.h"
#include "executor/comm/ShmCommunicator.h"
#include "executor/engine/EngineCore.h"
#include "executor/engine/RankRunners.h"
#include "executor/process/LocalComm.h"
#include "executor/process/ProcessGroup.h"
#include "kernels/cpu/Threads.h"

namespace tpc {
namespace {

EngineModel modelOf(const plan::Plan& p) {
  EngineModel m;
  m.maxContext = p.limits()->max_context();
  m.maxBatch = p.limits()->max_batch();
  m.vocabSize = planIntAttr(p.model(), "vocab_size");
  const plan::Attr* eos = findPlanAttr(p.model(), "eos_token_ids");
  if (eos && eos->ints()) m.eosIds.assign(eos->ints()->begin(), eos->ints()->end());
  return m;
}

BackendOptions backendOptionsOf(const EngineRunOptions& o, const std::function<void()>& beat,
                                bool reportProgress) {
  BackendOptions b = o.backend;
  b.kvBlockSize = o.engine.kvBlockSize;
  b.kvCacheBytes = o.engine.kvCacheBytes;
  b.gpuMemoryUtilization = o.engine.gpuMemoryUtilization;
  b.onProgress = [beat, reportProgress, outer = o.backend.onProgress] {
    if (beat) beat();
    if (reportProgress && outer) outer();
  };
  return b;
}

// Rank 0: the engine on this thread, the driver on its own.
Error hostEngine(const LoadedPlan& plan, Communicator& comm, Communicator& control,
                 const EngineRunOptions& options, const std::function<Error(Engine&)>& driver,
                 const std::function<void()>& heartbeat) {
  const plan::Plan& p = plan.plan();
  EngineCore engine(modelOf(p), options.engine);
  engine.onIteration(options.onIteration);
  Error driverError = Error::success();
  std::thread driverThread([&] {
    driverError = driver(engine);
    engine.shutdown();
  });
  auto finish = [&](Error e) -> Error {
    driverThread.join();
    if (e) return e;
    return std::move(driverError);
  };
  Expected<std::unique_ptr<Backend>> backend =
      createBackend(plan, 0, comm, backendOptionsOf(options, heartbeat, true));
  if (!backend) {
    engine.fail(backend.errorMessage());
    return finish(backend.takeError());
  }
  if ((*backend)->kvBlocks() == 0) {
    Error e = makeError("the KV cache holds no block of ", options.engine.kvBlockSize,
                        " tokens (give a larger --kv-cache-memory)");
    engine.fail(e.message());
    return finish(std::move(e));
  }
  // Every rank has its weights before the engine says Ready.
  if (control.world() > 1)
    if (Error e = control.barrier()) {
      engine.fail(e.message());
      return finish(std::move(e));
    }
  LeaderRunner runner(**backend, control, modelOf(p).vocabSize, heartbeat);
  Error e = engine.run(runner, (*backend)->kvBlocks());
  if (!e) e = runner.stop();
  return finish(std::move(e));
}

Error followEngine(const LoadedPlan& plan, uint32_t rank, Communicator& comm, Communicator& control,
                   const EngineRunOptions& options, const std::function<void()>& heartbeat) {
  Expected<std::unique_ptr<Backend>> backend =
      createBackend(plan, rank, comm, backendOptionsOf(options, heartbeat, false));
  if (!backend) return backend.takeError();
  if (Error e = control.barrier()) return e;
  return followIterations(**backend, control, planIntAttr(plan.plan().model(), "vocab_size"),
                          heartbeat);
}

}  // namespace

Error runEngineLocally(const LoadedPlan& plan, const EngineRunOptions& options,
                       const std::function<Error(Engine&)>& driver) {
  const int world = static_cast<int>(plan.plan().world());
  if (options.localWorld != 0 && options.localWorld != world)
    return makeError("--local-world ", options.localWorld, " does not match the plan's world of ",
                     world, " (spreading ranks over several nodes needs the control plane)");
  const bool cuda = options.backend.kind == "cuda";
  const int gpus = cuda ? cudaDeviceCount() : 0;
  if (cuda && gpus == 0) return makeError("--backend cuda: no CUDA device is visible on this host");
  Expected<std::string> commName = chooseLocalCommunicator(
      options.backend.kind, cuda ? options.comm : std::string("auto"), world, gpus);
  if (!commName) return commName.takeError();
  if (world == 1) {
    std::unique_ptr<Communicator> local = createLocalCommunicator();
    std::unique_ptr<Communicator> comm;
    if (options.backend.kind == "cuda") {
      Expected<std::string> id = newNcclUniqueId();
      if (!id) return id.takeError();
      Expected<std::unique_ptr<Communicator>> nccl =
          createNcclCommunicator(0, 1, *id, options.backend.device, options.rankTimeout);
      if (!nccl) return nccl.takeError();
      comm = std::move(*nccl);
    }
    return hostEngine(plan, comm ? *comm : *local, *local, options, driver, {});
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
        Communicator& comm = gpu ? *gpu : **control;
        auto beat = [&] { ctx.heartbeat(); };
        Error failed = rank == 0 ? hostEngine(plan, comm, **control, options, driver, beat)
                                 : followEngine(plan, static_cast<uint32_t>(rank), comm, **control,
                                                options, beat);
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
