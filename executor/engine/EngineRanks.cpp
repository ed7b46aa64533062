#include "executor/engine/EngineRanks.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "codegen/PlanFormat.h"

namespace tpc {
namespace {

BackendOptions backendOptionsOf(const EngineRankOptions& o, const std::function<void()>& beat,
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

// The blocks the engine may hand out: every rank's pool must hold them. Stages of a device map
// size their pools on different devices (a GPU's share, the CPU's --kv-cache-memory), so a
// staged plan's ranks agree on the smallest; the ranks of one stage's kind size theirs alike.
Expected<int64_t> agreedKvBlocks(const plan::Plan& p, Communicator& comm, int64_t mine) {
  if (planIntAttr(p.model(), "pp", 1) == 1) return mine;
  // Counts travel as two floats each (high and low 24 bits): exact up to 2^48 blocks.
  const auto blocks = static_cast<uint64_t>(mine);
  float own[2] = {static_cast<float>(blocks >> 24), static_cast<float>(blocks & 0xffffff)};
  std::vector<float> all(2 * static_cast<size_t>(comm.world()));
  if (Error e = comm.allGather(own, 2, all.data())) return e;
  int64_t fewest = mine;
  for (size_t r = 0; r < all.size(); r += 2)
    fewest = std::min(fewest, static_cast<int64_t>((static_cast<uint64_t>(all[r]) << 24) +
                                                   static_cast<uint64_t>(all[r + 1])));
  return fewest;
}

}  // namespace

EngineModel engineModelOf(const plan::Plan& p) {
  EngineModel m;
  m.maxContext = p.limits()->max_context();
  m.maxBatch = p.limits()->max_batch();
  m.vocabSize = planIntAttr(p.model(), "vocab_size");
  m.stages = planIntAttr(p.model(), "pp", 1);
  const plan::Attr* eos = findPlanAttr(p.model(), "eos_token_ids");
  if (eos && eos->ints()) m.eosIds.assign(eos->ints()->begin(), eos->ints()->end());
  if (p.vision_tower()) {
    m.imageTokenIndex = static_cast<int32_t>(planIntAttr(p.model(), "image_token_index", -1));
    m.imageRows = planIntAttr(p.model(), "vision_rows");
    m.imageFirstRow = planIntAttr(p.model(), "vision_first_feature_row");
    const int64_t patch = planIntAttr(p.model(), "vision_patch_size");
    m.imagePatchWidth = planIntAttr(p.model(), "vision_num_channels") * patch * patch;
  }
  return m;
}

Expected<int64_t> microBatchesOf(const plan::Plan& p, const EngineConfig& config) {
  const int64_t stages = planIntAttr(p.model(), "pp", 1);
  if (config.microBatches < 0)
    return makeError("--micro-batches must be at least 1, not ", config.microBatches);
  if (config.microBatches > 1 && stages == 1)
    return makeError("--micro-batches ", config.microBatches,
                     " keeps pipeline stages busy, but the plan has one stage (compile it with "
                     "--pp)");
  return config.microBatches > 0 ? config.microBatches : stages;
}

Error hostEngine(const LoadedPlan& plan, const ConnectRank& connect, IterationLink& link,
                 const std::function<Error()>& allLoaded, const EngineRankOptions& options,
                 const std::function<Error(Engine&)>& driver,
                 const std::function<void()>& heartbeat) {
  const EngineModel model = engineModelOf(plan.plan());
  EngineCore engine(model, options.engine);
  engine.onIteration(options.onIteration);
  Expected<int64_t> microBatches = microBatchesOf(plan.plan(), options.engine);
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
  if (!microBatches) {
    engine.fail(microBatches.errorMessage());
    return finish(microBatches.takeError());
  }
  Expected<Communicator*> comm = connect();
  if (!comm) {
    engine.fail(comm.errorMessage());
    return finish(comm.takeError());
  }
  Expected<std::unique_ptr<Backend>> backend =
      createBackend(plan, 0, **comm, backendOptionsOf(options, heartbeat, true));
  if (!backend) {
    engine.fail(backend.errorMessage());
    return finish(backend.takeError());
  }
  Expected<int64_t> blocks = agreedKvBlocks(plan.plan(), **comm, (*backend)->kvBlocks());
  if (!blocks) {
    engine.fail(blocks.errorMessage());
    return finish(blocks.takeError());
  }
  if (*blocks == 0) {
    Error e = makeError("the KV cache holds no block of ", options.engine.kvBlockSize,
                        " tokens (give a larger --kv-cache-memory)");
    engine.fail(e.message());
    return finish(std::move(e));
  }
  // Every rank has its weights before the engine says Ready.
  if (Error e = allLoaded()) {
    engine.fail(e.message());
    return finish(std::move(e));
  }
  engine.acceptImages((*backend)->encodesImages());
  // Micro-batches overlap only where the other ranks take messages as they come and the
  // stages' sends are buffered.
  const int64_t inFlightTokens = *microBatches > 1 && options.followersQueueMessages
                                     ? inFlightTokenLimit(plan.plan(), **comm)
                                     : 0;
  LeaderRunner runner(**backend, link, model.vocabSize,
                      planIntAttr(plan.plan().model(), "hidden_size"), heartbeat, inFlightTokens);
  Error e = engine.run(runner, *blocks);
  if (!e) e = runner.stop();
  return finish(std::move(e));
}

Error followEngine(const LoadedPlan& plan, uint32_t rank, const ConnectRank& connect,
                   IterationLink& link, const std::function<Error()>& allLoaded,
                   const EngineRankOptions& options, const std::function<void()>& heartbeat) {
  Expected<Communicator*> comm = connect();
  if (!comm) return comm.takeError();
  Expected<std::unique_ptr<Backend>> backend =
      createBackend(plan, rank, **comm, backendOptionsOf(options, heartbeat, false));
  if (!backend) return backend.takeError();
  Expected<int64_t> blocks = agreedKvBlocks(plan.plan(), **comm, (*backend)->kvBlocks());
  if (!blocks) return blocks.takeError();
  if (Error e = allLoaded()) return e;
  return followIterations(**backend, link, planIntAttr(plan.plan().model(), "vocab_size"),
                          planIntAttr(plan.plan().model(), "hidden_size"), heartbeat);
}

}  // namespace tpc
