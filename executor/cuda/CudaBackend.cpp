#include "executor/cuda/CudaBackend.h"

#include "executor/cuda/CudaBackendImpl.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <optional>

#include "codegen/PlanFormat.h"
#include "executor/MoeGroups.h"
#include "executor/SelectRowsAlias.h"
#include "executor/StepAttrs.h"
#include "executor/WeightLoader.h"
#include "executor/cuda/HostConvert.h"
#include "ir/DType.h"
#include "kernels/cuda/DecodeAttention.h"
#include "kernels/cuda/MoeStreaming.h"
#include "kernels/cuda/SampleRows.h"

namespace tpc {
namespace {

using cuda::ElementType;

constexpr size_t kAlignment = 256;
constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;
// Prefill runs in chunks of at most this many tokens, and no chunk's arena may pass kArenaCap.
constexpr int64_t kPrefillChunkTokens = 2048;
constexpr size_t kArenaCap = size_t{4} << 30;
// Left free for the CUDA Graphs and cuBLAS's own allocations.
constexpr size_t kSlackBytes = size_t{64} << 20;

size_t alignUp(size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

std::string gib(uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GiB", static_cast<double>(bytes) / (1 << 30));
  return text;
}

int64_t product(const flatbuffers::Vector<int64_t>& shape, uint32_t from) {
  int64_t n = 1;
  for (uint32_t i = from; i < shape.size(); ++i) n *= shape.Get(i);
  return n;
}

}  // namespace

CudaBackend::~CudaBackend() {
  for (auto& [tokens, exec] : graphs_) cudaGraphExecDestroy(exec);
  if (ioUploaded_) cudaEventDestroy(ioUploaded_);
  if (stream_) cudaStreamDestroy(stream_);
}

Error CudaBackend::initialize(const BackendOptions& options) {
  int devices = 0;
  TPC_CUDA_TRY(cudaGetDeviceCount(&devices));
  if (devices == 0) return makeError("no CUDA device is visible");
  int device = options.device >= 0 ? options.device : static_cast<int>(rank_) % devices;
  if (device >= devices)
    return makeError("GPU ", device, " does not exist (", devices, " visible)");
  TPC_CUDA_TRY(cudaSetDevice(device));
  TPC_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  TPC_CUDA_TRY(cudaEventCreateWithFlags(&ioUploaded_, cudaEventDisableTiming));
  if (Error e = initializeStages()) return e;
  if (plan_.world() > 1 && pp_ == 1) {
    nccl_ = dynamic_cast<NcclCommunicator*>(&comm_);
    ipc_ = dynamic_cast<IpcCommunicator*>(&comm_);
    if (!nccl_ && !ipc_)
      return makeError("the CUDA backend needs an NCCL or IPC communicator at world > 1");
  }
  std::optional<ElementType> compute = elementTypeOf(plan_.compute_dtype());
  if (!compute) return makeError("the plan's compute dtype is not f32, f16 or bf16");
  computeType_ = *compute;
  vocab_ = planIntAttr(plan_.model(), "vocab_size");
  maxBatch_ = plan_.limits()->max_batch();
  maxContext_ = plan_.limits()->max_context();
  // Boundaries are host calls, which a CUDA Graph cannot hold.
  eager_ = options.eager || pp_ > 1;
  memoryUtilization_ = options.gpuMemoryUtilization;
  if (options.kvBlockSize < 1 || options.kvBlockSize > 1024)
    return makeError("the KV block size ", options.kvBlockSize, " is outside 1..1024");
  if (!(memoryUtilization_ > 0.0 && memoryUtilization_ <= 1.0))
    return makeError("the GPU memory utilization ", memoryUtilization_, " is outside (0, 1]");
  pool_.blockSize = options.kvBlockSize;
  pool_.blocksPerSequence = (maxContext_ + pool_.blockSize - 1) / pool_.blockSize;
  pool_.maxContext = maxContext_;
  pool_.maxBatch = maxBatch_;
  for (uint32_t i = 0; i < prog_.steps()->size(); ++i)
    if (prog_.steps()->Get(i)->op()->string_view() == "select_rows") selectStep_ = i;
  selectMayAlias_ =
      selectStep_ >= 0 && selectRowsMayAlias(prog_, static_cast<uint32_t>(selectStep_));
  for (const plan::Buffer* b : *prog_.buffers()) {
    widths_.push_back(elementsPerToken(*b->shape()));
    bufferTypes_.push_back(elementTypeOf(b->dtype()).value_or(ElementType::F32));
  }
  // Graph buckets: powers of 2 up to the first one holding max_batch.
  graphTokens_ = 1;
  while (graphTokens_ < maxBatch_) graphTokens_ *= 2;
  const auto perToken = static_cast<size_t>(std::max<int64_t>(prog_.arena_bytes_per_token(), 1));
  chunkTokens_ = std::max<int64_t>(
      graphTokens_,
      std::min<int64_t>(kPrefillChunkTokens, static_cast<int64_t>(kArenaCap / perToken)));
  // A boundary carries a whole step, as the CPU stages send and receive it: no chunks.
  if (pp_ > 1)
    chunkTokens_ = std::max(
        chunkTokens_, std::min<int64_t>(maxContext_, static_cast<int64_t>(kArenaCap / perToken)));
  ioTokens_ = chunkTokens_;
  // Block-table rows: the sequences of one step, or a graph bucket's rows.
  tableRows_ = std::max(graphTokens_, maxBatch_);
  // TPC_NO_NORM_FOLD=1 / TPC_NO_ROPE_FOLD=1 keep norms / ropes their own launches at one token
  // instead of folding them into the GEMV / attention after them (to compare, or to bisect).
  oneRow_ = planOneRowFusion(
      plan_, rank_,
      {!cuda::environmentFlag("TPC_NO_NORM_FOLD"), !cuda::environmentFlag("TPC_NO_ROPE_FOLD")});
  // TPC_NO_SPLIT_READS=1 runs the q/k/v and gate/up splits in steps of several decode rows (to
  // compare). A layer whose attention the decode kernel cannot take keeps its split.
  splitReads_ = !cuda::environmentFlag("TPC_NO_SPLIT_READS") && graphTokens_ > 1;
  for (auto it = oneRow_.attentionReadsSplit.begin(); it != oneRow_.attentionReadsSplit.end();) {
    const plan::Step& s = *prog_.steps()->Get(it->first);
    if (cuda::decodeAttentionSupports(bufferTypes_[s.operands()->Get(2)->index()],
                                      stepInt(s, "heads"), stepInt(s, "kv_heads"),
                                      stepInt(s, "head_dim"))) {
      ++it;
      continue;
    }
    for (uint32_t step : {it->second.split, it->second.qRope, it->second.qRope + 1})
      oneRow_.skipInFusedRows[step] = false;
    it = oneRow_.attentionReadsSplit.erase(it);
  }
  for (const plan::Step* s : *prog_.steps())
    if (s->op()->string_view() == "image_rows")
      imageToken_ = static_cast<int32_t>(stepInt(*s, "image_token_index", -1));
  // llava: the tower first, so that the KV pool is sized around it. A node streamed its text
  // weights (no checkpoint) has no tower weights: encodeImage says so.
  if (plan_.vision_tower() && !options.weightSource) {
    Expected<std::unique_ptr<CudaVisionTower>> tower =
        CudaVisionTower::create(plan_, rank_, {computeType_, stream_, nccl_, ipc_}, options);
    if (!tower) return tower.takeError();
    tower_ = std::move(*tower);
  }
  if (Error e = allocate(options, device)) return e;
  return loadWeights(options);
}

Error CudaBackend::allocate(const BackendOptions& options, int device) {
  // Everything this rank needs, added up first so a plan too big for the GPU is one clear error.
  size_t weightBytes = 0;
  for (const plan::Weight* w : *prog_.weights())
    weightBytes +=
        alignUp(static_cast<size_t>(product(*w->shape(), 0)) * cuda::elementBytes(computeType_));
  // The positions a block-table row addresses: the plan's max context in whole blocks.
  const int64_t tableContext = pool_.blocksPerSequence * pool_.blockSize;
  int64_t moeExperts = 0;
  for (const plan::Step* s : *prog_.steps()) {
    std::string_view op = s->op()->string_view();
    if (op == "attention") {
      int64_t kvHeads = stepInt(*s, "kv_heads"), headDim = stepInt(*s, "head_dim");
      attentionWorkspace_ = std::max(
          attentionWorkspace_,
          cuda::attentionWorkspaceBytes(chunkTokens_, stepInt(*s, "heads"), headDim, tableContext));
      decodeWorkspaceBytes_ = std::max(decodeWorkspaceBytes_,
                                       cuda::decodeAttentionWorkspaceBytes(
                                           std::max(graphTokens_, maxBatch_), stepInt(*s, "heads"),
                                           kvHeads, headDim, tableContext));
    } else if (op == "moe_router") {
      attentionWorkspace_ = std::max(
          attentionWorkspace_,
          cuda::moeRouterStreamingWorkspaceBytes(chunkTokens_, weightOf(*s, 1).shape()->Get(0)));
    } else if (op == "moe_experts") {
      int64_t per = stepInt(*s, "params_per_expert");
      int64_t intermediate = weightOf(*s, static_cast<uint32_t>(3 + per - 1)).shape()->Get(1);
      attentionWorkspace_ =
          std::max(attentionWorkspace_,
                   cuda::moeWorkspaceBytes(chunkTokens_, stepInt(*s, "top_k"), intermediate));
      // The grouped path's buffers for the largest chunk (a smaller step's layout is smaller).
      const int64_t experts = stepInt(*s, "experts");
      const int64_t hidden = widths_[s->operands()->Get(0)->index()];
      attentionWorkspace_ =
          std::max(attentionWorkspace_, cuda::moeExpertsStreamingWorkspaceBytes(
                                            operandType(*s, 0), chunkTokens_, stepInt(*s, "top_k"),
                                            hidden, intermediate, experts));
      if (std::optional<MoeGroupedLayout> grouped =
              moeGroupedLayout({chunkTokens_, hidden, intermediate, stepInt(*s, "top_k"), experts,
                                cuda::elementBytes(operandType(*s, 0))}))
        attentionWorkspace_ = std::max(attentionWorkspace_, grouped->bytes);
      moeExperts = std::max(moeExperts, experts);
    }
  }
  const size_t arenaBytes =
      alignUp(static_cast<size_t>(prog_.arena_bytes_per_token() * chunkTokens_));
  const size_t gatherBytes =
      plan_.world() > 1 ? alignUp(static_cast<size_t>(prog_.arena_bytes_per_token() * chunkTokens_))
                        : 0;
  const size_t rowsPrivateBytes =
      splitReads_ ? static_cast<size_t>(oneRow_.rowsPrivateBytesPerToken * graphTokens_) : 0;
  const size_t activationBytes = arenaBytes + gatherBytes + attentionWorkspace_ +
                                 oneRow_.privateBytes + rowsPrivateBytes + decodeWorkspaceBytes_ +
                                 kGemmWorkspaceBytes;
  const size_t needed = weightBytes + activationBytes + kSlackBytes;
  size_t freeBytes = 0, totalBytes = 0;
  TPC_CUDA_TRY(cudaMemGetInfo(&freeBytes, &totalBytes));
  if (needed > freeBytes)
    return makeError("rank ", rank_, " needs ", gib(needed), " on GPU ", device,
                     " before its KV cache (weights ", gib(weightBytes), ", activations ",
                     gib(activationBytes), ") but only ", gib(freeBytes), " of ", gib(totalBytes),
                     " is free; recompile with a smaller --max-batch, or a larger --world");

  TPC_CUDA_TRY(weightMemory_.allocate(weightBytes));
  TPC_CUDA_TRY(arena_.allocate(arenaBytes));
  TPC_CUDA_TRY(oneRowSplitSources_.allocate(oneRow_.privateBytes));
  TPC_CUDA_TRY(decodeRowsPrivate_.allocate(rowsPrivateBytes));
  TPC_CUDA_TRY(workspace_.allocate(attentionWorkspace_));
  TPC_CUDA_TRY(decodeWorkspace_.allocate(decodeWorkspaceBytes_));
  TPC_CUDA_TRY(cudaMemsetAsync(decodeWorkspace_.data(), 0, decodeWorkspaceBytes_, stream_));
  if (gatherBytes) TPC_CUDA_TRY(gather_.allocate(gatherBytes));
  Expected<std::unique_ptr<GemmRunner>> gemm = GemmRunner::create(kGemmWorkspaceBytes);
  if (!gemm) return gemm.takeError();
  gemm_ = std::move(*gemm);

  // The io block (see blockTableFor): four parts of `tokens` each, then the block table.
  const size_t ioBytes =
      static_cast<size_t>(4 * ioTokens_ + tableRows_ * pool_.blocksPerSequence) * sizeof(int32_t);
  TPC_CUDA_TRY(io_.allocate(ioBytes));
  TPC_CUDA_TRY(hostIoMemory_.allocatePinned(ioBytes));
  hostIo_ = reinterpret_cast<int32_t*>(hostIoMemory_.data());
  for (uint32_t b : *prog_.inputs()) {
    std::string_view name = prog_.buffers()->Get(b)->name()->string_view();
    if (name == "image_embeds")  // rows, not ids: in the arena (see uploadImageRows)
      imageInput_ = b;
    else
      ioInputs_[b] = name == "positions" ? 1 : 0;
  }
  if (moeExperts > 0)
    TPC_CUDA_TRY(moeCountsHost_.allocatePinned(static_cast<size_t>(moeExperts) * sizeof(int32_t)));
  if (Error e = findLocalExperts()) return e;
  TPC_CUDA_TRY(pickedHost_.allocateMapped(static_cast<size_t>(ioTokens_) * sizeof(int32_t)));
  const size_t samplingBytes = static_cast<size_t>(ioTokens_) * sizeof(cuda::SamplingRow);
  TPC_CUDA_TRY(deviceSampling_.allocate(samplingBytes));
  TPC_CUDA_TRY(hostSampling_.allocatePinned(samplingBytes));
  void* picked = nullptr;
  TPC_CUDA_TRY(cudaHostGetDevicePointer(&picked, pickedHost_.data(), 0));
  pickedIds_ = static_cast<int32_t*>(picked);

  if (Error e = allocatePool(device,
                             weightBytes + activationBytes + (tower_ ? tower_->deviceBytes() : 0)))
    return e;

  std::vector<float> tables;
  std::vector<std::pair<uint32_t, size_t>> ropeOffsets;
  std::vector<std::pair<uint32_t, size_t>> expertOffsets;
  for (uint32_t i = 0; i < prog_.steps()->size(); ++i) {
    const plan::Step& s = *prog_.steps()->Get(i);
    std::string_view op = s.op()->string_view();
    if (op == "rope") {
      float scaling = 1.0f;
      std::vector<float> inv = cpu::ropeInverseFrequencies(stepRopeParams(s), &scaling);
      ropeOffsets.emplace_back(i, tables.size());
      rope_[i] = {nullptr, scaling};
      tables.insert(tables.end(), inv.begin(), inv.end());
      while (tables.size() % 64) tables.push_back(0.0f);  // keeps every table aligned
    } else if (op == "moe_experts") {
      expertOffsets.emplace_back(i, 0);
    }
  }
  // Expert pointer arrays follow the rope tables in the same small allocation.
  size_t tableBytes = alignUp(tables.size() * sizeof(float));
  size_t pointerCount = 0;
  for (auto& [step, offset] : expertOffsets) {
    offset = pointerCount;
    pointerCount += 3 * static_cast<size_t>(stepInt(*prog_.steps()->Get(step), "experts"));
  }
  TPC_CUDA_TRY(tables_.allocate(tableBytes + pointerCount * sizeof(void*)));
  if (!tables.empty())
    TPC_CUDA_TRY(cudaMemcpy(tables_.data(), tables.data(), tables.size() * sizeof(float),
                            cudaMemcpyHostToDevice));
  for (auto [step, offset] : ropeOffsets)
    rope_[step].first = reinterpret_cast<const float*>(tables_.data()) + offset;
  for (auto [step, offset] : expertOffsets)
    expertPointers_[step] =
        reinterpret_cast<const void* const*>(tables_.data() + tableBytes) + offset;

  // Weight addresses, then the expert pointer arrays that refer to them.
  char* next = weightMemory_.data();
  for (const plan::Weight* w : *prog_.weights()) {
    weights_.push_back(next);
    size_t bytes = static_cast<size_t>(product(*w->shape(), 0)) * cuda::elementBytes(computeType_);
    weightBytes_ += bytes;
    next += alignUp(bytes);
  }
  for (auto [step, offset] : expertOffsets) {
    const plan::Step& s = *prog_.steps()->Get(step);
    int64_t experts = stepInt(s, "experts"), per = stepInt(s, "params_per_expert");
    std::vector<const void*> pointers(3 * static_cast<size_t>(experts), nullptr);
    for (int64_t e = 0; e < experts; ++e) {
      auto base = static_cast<uint32_t>(3 + e * per);
      pointers[static_cast<size_t>(e)] = operand(s, base, 1);
      if (per == 3) pointers[static_cast<size_t>(experts + e)] = operand(s, base + 1, 1);
      pointers[static_cast<size_t>(2 * experts + e)] =
          operand(s, base + static_cast<uint32_t>(per) - 1, 1);
    }
    TPC_CUDA_TRY(cudaMemcpy(tables_.data() + tableBytes + offset * sizeof(void*), pointers.data(),
                            pointers.size() * sizeof(void*), cudaMemcpyHostToDevice));
    hostExpertPointers_[step] = std::move(pointers);
  }
  return cudacheck::check(cudaStreamSynchronize(stream_), "clearing the KV cache");
}

Error CudaBackend::findLocalExperts() {
  const int64_t pp = std::max<int64_t>(planIntAttr(plan_.model(), "pp", 1), 1);
  const int64_t tp = static_cast<int64_t>(plan_.world()) / pp;
  const int64_t tpRank = static_cast<int64_t>(rank_) % tp;
  int64_t choices = 0;
  for (uint32_t i = 0; i < prog_.steps()->size(); ++i) {
    const plan::Step& s = *prog_.steps()->Get(i);
    if (s.op()->string_view() != "moe_experts") continue;
    Expected<LocalExperts> local = localExperts(s, prog_, tp, tpRank);
    if (!local) return local.takeError();
    if (!local->sharded()) continue;
    localExperts_[i] = *local;
    choices = std::max(choices, std::max(chunkTokens_, graphTokens_) * stepInt(s, "top_k"));
  }
  if (choices > 0)
    TPC_CUDA_TRY(localChoices_.allocate(static_cast<size_t>(choices) * sizeof(int32_t)));
  return Error::success();
}

Error CudaBackend::allocatePool(int device, size_t othersBytes) {
  // Per block, over every layer: keys and values of blockSize tokens.
  std::vector<size_t> layerBlockBytes;
  for (const plan::Step* s : *prog_.steps())
    if (s->op()->string_view() == "attention")
      layerBlockBytes.push_back(
          static_cast<size_t>(pool_.blockSize * stepInt(*s, "kv_heads") * stepInt(*s, "head_dim")) *
          cuda::elementBytes(computeType_));
  size_t blockBytes = 0;
  for (size_t b : layerBlockBytes) blockBytes += 2 * b;
  size_t freeBytes = 0, totalBytes = 0;
  TPC_CUDA_TRY(cudaMemGetInfo(&freeBytes, &totalBytes));
  // What the share allows beyond what is in use now (this rank's weights and activations, the
  // context, anyone else on the GPU), less slack for the graphs and cuBLAS's own allocations
  // and each layer's alignment.
  // Ranks that share this GPU (local rank r runs on GPU r mod the visible GPUs) split the share
  // evenly, each less its own weights and activations: what the others have taken so far
  // depends on who got there first.
  int visible = 1;
  TPC_CUDA_TRY(cudaGetDeviceCount(&visible));
  const int64_t sharing = ranksOnDevice(device, visible);
  const double share =
      memoryUtilization_ * static_cast<double>(totalBytes) / static_cast<double>(sharing);
  const double inUse =
      sharing > 1 ? static_cast<double>(othersBytes) : static_cast<double>(totalBytes - freeBytes);
  const double budget = share - inUse - static_cast<double>(kSlackBytes) -
                        static_cast<double>(2 * layerBlockBytes.size() * kAlignment);
  // One block past the usable ones takes the padding rows of a graph bucket.
  const int64_t blocks = blockBytes == 0
                             ? pool_.blocksPerSequence
                             : std::max<int64_t>(0, static_cast<int64_t>(budget / blockBytes) - 1);
  if (blocks < pool_.blocksPerSequence)
    return makeError("rank ", rank_, ": the KV cache gets ", gib(budget > 0 ? uint64_t(budget) : 0),
                     " of GPU ", device, " (", memoryUtilization_, " of its ", gib(totalBytes),
                     " less ", gib(uint64_t(inUse)), " in use, ", gib(othersBytes),
                     " of them this rank's weights and activations): ", blocks, " blocks of ",
                     pool_.blockSize, " tokens at ", blockBytes,
                     " bytes each, but one sequence of "
                     "the plan's max context of ",
                     maxContext_, " tokens needs ", pool_.blocksPerSequence,
                     " blocks; raise --gpu-memory-utilization, or "
                     "recompile with a smaller --max-context or a larger --world");
  pool_.blocks = blocks;
  size_t poolBytes = 0;
  for (size_t b : layerBlockBytes) poolBytes += 2 * alignUp(b * static_cast<size_t>(blocks + 1));
  TPC_CUDA_TRY(kvMemory_.allocate(poolBytes));
  TPC_CUDA_TRY(cudaMemsetAsync(kvMemory_.data(), 0, poolBytes, stream_));
  char* next = kvMemory_.data();
  size_t layer = 0;
  for (const plan::Step* s : *prog_.steps()) {
    if (s->op()->string_view() != "attention") continue;
    cuda::KvCacheView view;
    view.slots = tableRows_;
    view.maxContext = pool_.blocksPerSequence * pool_.blockSize;
    view.kvHeads = stepInt(*s, "kv_heads");
    view.headDim = stepInt(*s, "head_dim");
    view.blockSize = pool_.blockSize;  // the table is the chunk's, set when it runs
    const size_t bytes = alignUp(layerBlockBytes[layer++] * static_cast<size_t>(blocks + 1));
    view.k = next;
    view.v = next + bytes;
    next += 2 * bytes;
    caches_.push_back(view);
  }
  return Error::success();
}

Error CudaBackend::loadWeights(const BackendOptions& options) {
  if (options.syntheticWeights) {
    for (uint32_t i = 0; i < prog_.weights()->size(); ++i) {
      const plan::Weight& w = *prog_.weights()->Get(i);
      int64_t count = product(*w.shape(), 0);
      // Scaled like an initialiser so activations stay finite through every layer.
      float scale = w.shape()->size() > 1
                        ? 1.0f / std::sqrt(static_cast<float>(product(*w.shape(), 1)))
                        : 1.0f;
      TPC_CUDA_TRY(cuda::fillUniform(computeType_, weights_[i], count, scale,
                                     0x9e3779b97f4a7c15ULL * (i + 1) + rank_, stream_));
      if (options.onProgress) options.onProgress();
    }
    // The whole device: allocate()'s table uploads went through the legacy stream (see below).
    return cudacheck::check(cudaDeviceSynchronize(), "making synthetic weights");
  }
  // Weights come from the checkpoint, or from whoever supplies them (the control plane streams
  // a worker's slices when it has no checkpoint).
  std::optional<Checkpoint> checkpoint;
  if (!options.weightSource) {
    Expected<Checkpoint> opened = openPlanCheckpoint(plan_, options.modelDir);
    if (!opened) return opened.takeError();
    checkpoint.emplace(std::move(*opened));
  }
  std::vector<uint8_t> converted;
  for (uint32_t i = 0; i < prog_.weights()->size(); ++i) {
    Expected<std::vector<float>> data = options.weightSource
                                            ? options.weightSource(i)
                                            : loadWeightF32(plan_, rank_, *checkpoint, i);
    if (!data) return data.takeError();
    convertFromF32(data->data(), data->size(), computeType_, converted);
    TPC_CUDA_TRY(
        cudaMemcpy(weights_[i], converted.data(), converted.size(), cudaMemcpyHostToDevice));
    if (options.onProgress) options.onProgress();
  }
  // cudaMemcpy from pageable memory may return before its DMA lands, on the legacy stream, which
  // the non-blocking stream_ does not wait for: the first kernels must not read weights (or the
  // tables allocate() uploaded the same way) still in flight.
  return cudacheck::check(cudaDeviceSynchronize(), "uploading the weights");
}

Error CudaBackend::run(const StepInput& in, const std::function<Error(const Chunk&)>& afterChunk) {
  Expected<PagedStepLayout> layout = layoutPagedStep(in, pool_);
  if (!layout) return layout.takeError();
  layout_ = std::move(*layout);
  allRowsCross_ = pp_ > 1 && in.paged() && !in.logitRows;
  if (pp_ > 1 && in.tokens > chunkTokens_)
    return makeError("a pipeline stage on the GPU runs steps of at most ", chunkTokens_,
                     " tokens, this one has ", in.tokens, " (lower --max-batched-tokens)");
  for (int64_t first = 0; first < in.tokens; first += chunkTokens_) {
    // The pinned staging area is rewritten for every chunk: the previous upload must be done.
    if (first > 0)
      if (Error e = wait("running a prefill chunk")) return e;
    Expected<Chunk> chunk = runChunk(in, first, std::min(chunkTokens_, in.tokens - first));
    if (!chunk) return chunk.takeError();
    if (Error e = afterChunk(*chunk)) return e;
  }
  return Error::success();
}

Expected<CudaBackend::Chunk> CudaBackend::runChunk(const StepInput& in, int64_t first,
                                                   int64_t count) {
  // A decode step: no two tokens of one sequence, so each token's attention reads only cache
  // rows written before this call (plus its own). Graphs are captured for decode steps whose
  // every row samples, so a graph's launches never depend on which rows do.
  chunkFirst_ = first;
  pieces_ = attentionPieces(layout_, in.positions, first, count);
  decodeStep_ = isDecodeStep(pieces_);
  const auto& logitRows = layout_.logitRows;
  const auto lo = std::lower_bound(logitRows.begin(), logitRows.end(), first);
  const auto hi = std::lower_bound(lo, logitRows.end(), first + count);
  const int64_t logits = hi - lo;
  const bool everyRow = logits == count;  // ascending and in range: first .. first + count - 1
  // A chunk with image rows runs eagerly: a graph's image_rows step takes no image. The
  // engine names the rows that take the image (useImageRow): a batch mixes one prompt's image
  // with other sequences' tokens, and a generated image token id keeps its text embedding.
  imageRuns_.clear();
  if (in.imageEmbeds && imageInput_ != UINT32_MAX)
    for (int64_t t = 0; t < count; ++t)
      if (in.useImageRow ? in.useImageRow[first + t] != 0 : in.tokenIds[first + t] == imageToken_) {
        if (imageRuns_.empty() || imageRuns_.back().first + imageRuns_.back().second != t)
          imageRuns_.push_back({t, 0});
        ++imageRuns_.back().second;
      }
  const bool graph =
      !eager_ && decodeStep_ && count <= graphTokens_ && everyRow && imageRuns_.empty();
  int64_t rows = count;
  if (graph)
    for (rows = 1; rows < count;) rows *= 2;
  chunkLogits_ = everyRow ? rows : logits;
  if (selectMayAlias_ && everyRow) {
    const plan::Step& select = *prog_.steps()->Get(static_cast<uint32_t>(selectStep_));
    selectAliasFrom_ = select.results()->Get(0);
    selectAliasTo_ = select.operands()->Get(0)->index();
  } else {
    selectAliasFrom_ = selectAliasTo_ = UINT32_MAX;
  }

  // The io block. A graph's token t uses table row t, so its launches fit every step of its
  // bucket; its padding rows decode token 0 at position 0 of the block past the usable ones.
  const int64_t stride = pool_.blocksPerSequence;
  // The previous call may have returned without waiting (no logit rows): its upload may still be
  // queued behind its predecessor's kernels, reading the staging copy rewritten below.
  TPC_CUDA_TRY(cudaEventSynchronize(ioUploaded_));
  int32_t* table = hostIo_ + 4 * rows;
  for (int64_t t = 0; t < rows; ++t) {
    const bool real = t < count;
    hostIo_[t] = real ? in.tokenIds[first + t] : 0;
    hostIo_[rows + t] = real ? in.positions[first + t] : 0;
    const int32_t row = real ? layout_.rowOf[static_cast<size_t>(first + t)] : 0;
    hostIo_[2 * rows + t] = graph ? static_cast<int32_t>(t) : row;
    if (graph && real)
      std::copy_n(layout_.table.begin() + row * stride, stride, table + t * stride);
    else if (graph)
      std::fill_n(table + t * stride, stride, static_cast<int32_t>(pool_.blocks));
  }
  for (int64_t i = 0; i < logits; ++i) hostIo_[3 * rows + i] = *(lo + i) - int32_t(first);
  // Every row samples (a graph bucket's padding too): a select_rows that copies (its alias being
  // unsafe) takes row i to row i.
  if (everyRow)
    for (int64_t i = logits; i < rows; ++i) hostIo_[3 * rows + i] = static_cast<int32_t>(i);
  const int64_t tableRows = graph ? rows : layout_.rows;
  if (!graph) std::copy(layout_.table.begin(), layout_.table.end(), table);
  TPC_CUDA_TRY(cudaMemcpyAsync(io_.data(), hostIo_,
                               static_cast<size_t>(4 * rows + tableRows * stride) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream_));
  TPC_CUDA_TRY(cudaEventRecord(ioUploaded_, stream_));
  Chunk chunk{first,
              count,
              rows,
              graph,
              lo - logitRows.begin(),
              logits,
              logitRowsOnly() ? chunkLogits_ : rows};
  if (!graph) {
    if (Error e = uploadImageRows(in, first, rows)) return e;
    if (Error e = enqueueSteps(rows)) return e;
    return chunk;
  }
  auto found = graphs_.find(rows);
  if (found == graphs_.end()) {
    // Captured once per bucket; ids, positions and block tables are read from the io block on
    // the device, so the same graph serves every later step of this many rows.
    TPC_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    Error captured = enqueueSteps(rows);
    if (!captured)
      captured = cudacheck::check(
          cuda::argmax(reinterpret_cast<const float*>(address(prog_.outputs()->Get(0), rows)), rows,
                       vocab_, pickedIds_, stream_),
          "argmax");
    cudaGraph_t graphHandle = nullptr;
    cudaError_t ended = cudaStreamEndCapture(stream_, &graphHandle);
    if (captured) {
      if (graphHandle) cudaGraphDestroy(graphHandle);
      return std::move(captured).withContext("capturing the CUDA Graph: ");
    }
    TPC_CUDA_TRY(ended);
    cudaGraphExec_t exec = nullptr;
    cudaError_t instantiated = cudaGraphInstantiate(&exec, graphHandle, 0);
    cudaGraphDestroy(graphHandle);
    TPC_CUDA_TRY(instantiated);
    found = graphs_.emplace(rows, exec).first;
  }
  TPC_CUDA_TRY(cudaGraphLaunch(found->second, stream_));
  return chunk;
}

Expected<const float*> CudaBackend::forward(const StepInput& in) {
  // Each chunk's logit rows are copied out before the next chunk reuses the arena.
  Error e = run(in, [&](const Chunk& c) -> Error {
    if (c.first == 0) hostLogits_.resize(layout_.logitRows.size() * static_cast<size_t>(vocab_));
    const auto* logits =
        reinterpret_cast<const float*>(address(prog_.outputs()->Get(0), c.deviceTokens));
    const size_t rowBytes = static_cast<size_t>(vocab_) * sizeof(float);
    for (int64_t i = 0; i < c.logits;) {
      int64_t run = 1;  // rows that follow each other in the output go in one copy
      while (i + run < c.logits && outputRow(c, i + run) == outputRow(c, i) + run) ++run;
      TPC_CUDA_TRY(cudaMemcpyAsync(hostLogits_.data() + (c.logitFirst + i) * vocab_,
                                   logits + outputRow(c, i) * vocab_, run * rowBytes,
                                   cudaMemcpyDeviceToHost, stream_));
      i += run;
    }
    return Error::success();
  });
  if (e) return e;
  if (Error w = wait("copying the logits")) return w;
  return static_cast<const float*>(hostLogits_.data());
}

Expected<std::vector<int32_t>> CudaBackend::forwardArgmax(const StepInput& in) {
  std::vector<int32_t> ids;
  Error e = run(in, [&](const Chunk& c) -> Error {
    if (c.first == 0) ids.resize(layout_.logitRows.size());
    if (c.logits == 0) return Error::success();
    // A graph replay has already picked its tokens; an eager chunk picks them here.
    if (!c.fromGraph)
      TPC_CUDA_TRY(cuda::argmax(
          reinterpret_cast<const float*>(address(prog_.outputs()->Get(0), c.deviceTokens)),
          c.outputRows, vocab_, pickedIds_, stream_));
    // The picked ids land in mapped host memory: no copy, just the wait.
    if (Error w = wait("picking tokens")) return w;
    const auto* picked = reinterpret_cast<const int32_t*>(pickedHost_.data());
    for (int64_t i = 0; i < c.logits; ++i)
      ids[static_cast<size_t>(c.logitFirst + i)] = picked[outputRow(c, i)];
    return Error::success();
  });
  if (e) return e;
  return ids;
}

Expected<std::vector<int32_t>> CudaBackend::forwardSample(const StepInput& in,
                                                          const RowSampling* rows, int64_t vocab) {
  // Greedy and temperature/top-k/top-p rows pick on the device; a step with a min-p row samples
  // on the host from the logit rows (Backend's default).
  const int64_t count = in.paged() || in.logitRows ? in.logitRowCount : in.tokens;
  bool greedy = true;
  for (int64_t i = 0; i < count; ++i) {
    if (rows[i].minP > 0.0f) return Backend::forwardSample(in, rows, vocab);
    greedy = greedy && rows[i].temperature <= 0.0f;
  }
  if (greedy) return forwardArgmax(in);
  std::vector<int32_t> ids;
  Error e = run(in, [&](const Chunk& c) -> Error {
    if (c.first == 0) ids.resize(layout_.logitRows.size());
    if (c.logits == 0) return Error::success();
    // Parameters per output row; rows that do not sample stay greedy (and are not read).
    auto* params = reinterpret_cast<cuda::SamplingRow*>(hostSampling_.data());
    std::fill_n(params, c.outputRows, cuda::SamplingRow{});
    for (int64_t i = 0; i < c.logits; ++i) {
      const RowSampling& r = rows[c.logitFirst + i];
      params[outputRow(c, i)] = {r.temperature, r.topK, r.topP, r.uniform};
    }
    TPC_CUDA_TRY(cudaMemcpyAsync(deviceSampling_.data(), params,
                                 static_cast<size_t>(c.outputRows) * sizeof(cuda::SamplingRow),
                                 cudaMemcpyHostToDevice, stream_));
    TPC_CUDA_TRY(cuda::sampleRows(
        reinterpret_cast<const float*>(address(prog_.outputs()->Get(0), c.deviceTokens)),
        c.outputRows, vocab_, reinterpret_cast<const cuda::SamplingRow*>(deviceSampling_.data()),
        pickedIds_, stream_));
    if (Error w = wait("sampling tokens")) return w;
    const auto* picked = reinterpret_cast<const int32_t*>(pickedHost_.data());
    for (int64_t i = 0; i < c.logits; ++i)
      ids[static_cast<size_t>(c.logitFirst + i)] = picked[outputRow(c, i)];
    return Error::success();
  });
  if (e) return e;
  return ids;
}

Expected<std::unique_ptr<Backend>> createCudaBackend(const LoadedPlan& plan, uint32_t rank,
                                                     Communicator& comm,
                                                     const BackendOptions& options) {
  const plan::Plan& p = plan.plan();
  auto backend = std::make_unique<CudaBackend>(p, rank, comm);
  if (Error e = backend->initialize(options)) return std::move(e).withContext("cuda: ");
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace tpc
