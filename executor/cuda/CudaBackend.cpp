#include "executor/cuda/CudaBackend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <optional>

#include "codegen/PlanFormat.h"
#include "executor/OneRowFusion.h"
#include "executor/StepAttrs.h"
#include "executor/WeightLoader.h"
#include "executor/cuda/CudaCheck.h"
#include "executor/cuda/DeviceMemory.h"
#include "executor/cuda/Gemm.h"
#include "executor/cuda/IpcCommunicator.h"
#include "executor/cuda/NcclCommunicator.h"
#include "ir/DType.h"
#include "ir/Float16.h"
#include "kernels/cuda/AttentionPrefill.h"
#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DecodeAttention.h"
#include "kernels/cuda/Gemv.h"

namespace tpc {
namespace {

using cuda::ElementType;

constexpr size_t kAlignment = 256;
constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;
// Prefill runs in chunks of at most this many tokens, and no chunk's arena may pass kArenaCap.
constexpr int64_t kPrefillChunkTokens = 2048;
constexpr size_t kArenaCap = size_t{4} << 30;

size_t alignUp(size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

std::optional<ElementType> elementType(uint8_t dtype) {
  switch (static_cast<DType>(dtype)) {
    case DType::F32:
      return ElementType::F32;
    case DType::BF16:
      return ElementType::BF16;
    case DType::F16:
      return ElementType::F16;
    default:
      return std::nullopt;
  }
}

ncclDataType_t ncclType(ElementType t) {
  switch (t) {
    case ElementType::BF16:
      return ncclBfloat16;
    case ElementType::F16:
      return ncclFloat16;
    default:
      return ncclFloat32;
  }
}

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

// Converts one f32 weight to its storage type on the host, ready to upload.
void convertWeight(const std::vector<float>& in, ElementType type, std::vector<uint8_t>& out) {
  out.resize(in.size() * cuda::elementBytes(type));
  if (type == ElementType::F32) {
    std::memcpy(out.data(), in.data(), out.size());
    return;
  }
  auto* dst = reinterpret_cast<uint16_t*>(out.data());
  for (size_t i = 0; i < in.size(); ++i)
    dst[i] = type == ElementType::BF16 ? f32ToBf16(in[i]) : f32ToF16(in[i]);
}

class CudaBackend : public Backend {
 public:
  CudaBackend(const plan::Plan& plan, uint32_t rank, Communicator& comm)
      : plan_(plan), prog_(*plan.ranks()->Get(rank)), rank_(rank), comm_(comm) {}

  ~CudaBackend() override {
    for (auto& [tokens, exec] : graphs_) cudaGraphExecDestroy(exec);
    if (stream_) cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "cuda"; }
  uint64_t residentWeightBytes() const override { return weightBytes_; }

  Error initialize(const BackendOptions& options);

  Expected<const float*> forward(const StepInput& in) override {
    hostLogits_.resize(static_cast<size_t>(in.tokens * vocab_));
    // The logits buffer is [tokens, vocab] f32 in every plan; each chunk's rows are copied out
    // before the next chunk reuses the arena.
    Error e = run(in, [&](const Chunk& c) {
      return cudacheck::check(cudaMemcpyAsync(hostLogits_.data() + c.first * vocab_,
                                              address(prog_.outputs()->Get(0), c.deviceTokens),
                                              static_cast<size_t>(c.count * vocab_) * sizeof(float),
                                              cudaMemcpyDeviceToHost, stream_),
                              "copying the logits");
    });
    if (e) return e;
    if (Error w = wait("copying the logits")) return w;
    return static_cast<const float*>(hostLogits_.data());
  }

  Expected<std::vector<int32_t>> forwardArgmax(const StepInput& in) override {
    std::vector<int32_t> ids(static_cast<size_t>(in.tokens));
    Error e = run(in, [&](const Chunk& c) -> Error {
      // A graph replay has already picked its tokens; an eager chunk picks them here.
      if (!c.fromGraph)
        TPC_CUDA_TRY(cuda::argmax(
            reinterpret_cast<const float*>(address(prog_.outputs()->Get(0), c.deviceTokens)),
            c.count, vocab_, pickedIds_, stream_));
      // The picked ids land in mapped host memory: no copy, just the wait.
      if (Error w = wait("picking tokens")) return w;
      std::memcpy(ids.data() + c.first, pickedHost_.data(),
                  static_cast<size_t>(c.count) * sizeof(int32_t));
      return Error::success();
    });
    if (e) return e;
    return ids;
  }

 private:
  // A piece of one forward call: `count` tokens starting at `first`, run with `deviceTokens`
  // rows (a graph bucket pads them).
  struct Chunk {
    int64_t first, count, deviceTokens;
    bool fromGraph;
  };

  Error allocate(const BackendOptions& options, int device);
  Error loadWeights(const BackendOptions& options);
  // Runs the step in chunks; `afterChunk` enqueues what must read a chunk's results before the
  // next chunk overwrites them.
  Error run(const StepInput& in, const std::function<Error(const Chunk&)>& afterChunk);
  Expected<Chunk> runChunk(const StepInput& in, int64_t first, int64_t count);
  Error enqueueSteps(int64_t tokens);
  Error enqueue(const plan::Step& s, uint32_t index, size_t& attention, int64_t tokens);
  Error wait(const char* what) {
    if (nccl_) return nccl_->waitFor(stream_, what);
    if (ipc_) return ipc_->waitFor(stream_, what);
    return cudacheck::check(cudaStreamSynchronize(stream_), what);
  }

  char* address(uint32_t buffer, int64_t tokens) const {
    // Inputs live in the io block: ids, then positions, then slots, `tokens` each, so one copy
    // uploads a step's inputs.
    auto fixed = ioInputs_.find(buffer);
    if (fixed != ioInputs_.end())
      return io_.data() + fixed->second * tokens * static_cast<int64_t>(sizeof(int32_t));
    if (tokens == 1) {
      auto alias = oneRow_.views.find(buffer);
      if (alias != oneRow_.views.end())
        return oneRowSplitSources_.data() + alias->second.first + alias->second.second;
    }
    return arena_.data() + prog_.buffers()->Get(buffer)->arena_offset() * tokens;
  }
  const void* operand(const plan::Step& s, uint32_t i, int64_t tokens) const {
    const plan::Ref* r = s.operands()->Get(i);
    return r->kind() == plan::RefKind::Weight ? weights_[r->index()] : address(r->index(), tokens);
  }
  ElementType operandType(const plan::Step& s, uint32_t i) const {
    const plan::Ref* r = s.operands()->Get(i);
    return r->kind() == plan::RefKind::Weight ? computeType_ : bufferTypes_[r->index()];
  }
  const plan::Weight& weightOf(const plan::Step& s, uint32_t i) const {
    return *prog_.weights()->Get(s.operands()->Get(i)->index());
  }
  int64_t width(const plan::Step& s, uint32_t i) const {
    return widths_[s.operands()->Get(i)->index()];
  }
  void* result(const plan::Step& s, int64_t tokens, uint32_t i = 0) const {
    return address(s.results()->Get(i), tokens);
  }
  ElementType resultType(const plan::Step& s, uint32_t i = 0) const {
    return bufferTypes_[s.results()->Get(i)];
  }

  const plan::Plan& plan_;
  const plan::RankProgram& prog_;
  uint32_t rank_;
  Communicator& comm_;
  NcclCommunicator* nccl_ = nullptr;
  IpcCommunicator* ipc_ = nullptr;  // the one-node communicator, instead of NCCL
  ElementType computeType_ = ElementType::BF16;
  int64_t vocab_ = 0, maxBatch_ = 1, maxContext_ = 0;
  int64_t graphTokens_ = 1, chunkTokens_ = 1, ioTokens_ = 1;
  bool eager_ = false;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<GemmRunner> gemm_;

  std::vector<ElementType> bufferTypes_;
  std::vector<int64_t> widths_;
  std::map<uint32_t, int64_t> ioInputs_;  // input buffer -> its part of the io block (0 or 1)
  const int32_t* slotsFor(int64_t tokens) const {
    return reinterpret_cast<const int32_t*>(io_.data()) + 2 * tokens;
  }
  // One-token views and fusions (executor/OneRowFusion.h); the private block holds the split
  // operands the views point into.
  OneRowFusion oneRow_;
  DeviceMemory oneRowSplitSources_;
  DeviceMemory weightMemory_, arena_, kvMemory_, workspace_, io_, gather_, tables_;
  DeviceMemory hostIoMemory_;
  int32_t* hostIo_ = nullptr;     // pinned: ids, positions, slots, picked ids
  DeviceMemory pickedHost_;       // mapped: argmax writes the picked ids straight to the host
  int32_t* pickedIds_ = nullptr;  // its device address
  std::vector<void*> weights_;
  uint64_t weightBytes_ = 0;
  std::vector<cuda::KvCacheView> caches_;
  size_t attentionWorkspace_ = 0;
  // Decode steps (every token a different sequence) use cuda::decodeAttention, one launch per
  // layer; its workspace holds counters that must start at zero.
  DeviceMemory decodeWorkspace_;
  size_t decodeWorkspaceBytes_ = 0;
  bool decodeStep_ = false;
  // A prefill chunk (one sequence, consecutive positions, known here on the host) uses the
  // tensor-core cuda::prefillAttention.
  bool prefillChunk_ = false;
  int64_t prefillStart_ = 0;
  int32_t prefillSlot_ = 0;
  std::map<uint32_t, std::pair<const float*, float>> rope_;  // step: inverse freqs, scaling
  std::map<uint32_t, const void* const*> expertPointers_;    // step: gate, up, down arrays
  std::vector<float> hostLogits_;
  std::map<int64_t, cudaGraphExec_t> graphs_;
};

Error CudaBackend::initialize(const BackendOptions& options) {
  int devices = 0;
  TPC_CUDA_TRY(cudaGetDeviceCount(&devices));
  if (devices == 0) return makeError("no CUDA device is visible");
  int device = options.device >= 0 ? options.device : static_cast<int>(rank_) % devices;
  if (device >= devices)
    return makeError("GPU ", device, " does not exist (", devices, " visible)");
  TPC_CUDA_TRY(cudaSetDevice(device));
  TPC_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  if (plan_.world() > 1) {
    nccl_ = dynamic_cast<NcclCommunicator*>(&comm_);
    ipc_ = dynamic_cast<IpcCommunicator*>(&comm_);
    if (!nccl_ && !ipc_)
      return makeError("the CUDA backend needs an NCCL or IPC communicator at world > 1");
  }
  std::optional<ElementType> compute = elementType(plan_.compute_dtype());
  if (!compute) return makeError("the plan's compute dtype is not f32, f16 or bf16");
  computeType_ = *compute;
  vocab_ = planIntAttr(plan_.model(), "vocab_size");
  maxBatch_ = plan_.limits()->max_batch();
  maxContext_ = plan_.limits()->max_context();
  eager_ = options.eager;
  for (const plan::Buffer* b : *prog_.buffers()) {
    widths_.push_back(elementsPerToken(*b->shape()));
    bufferTypes_.push_back(elementType(b->dtype()).value_or(ElementType::F32));
  }
  // Graph buckets: powers of 2 up to the first one holding max_batch.
  graphTokens_ = 1;
  while (graphTokens_ < maxBatch_) graphTokens_ *= 2;
  const auto perToken = static_cast<size_t>(std::max<int64_t>(prog_.arena_bytes_per_token(), 1));
  chunkTokens_ = std::max<int64_t>(
      graphTokens_,
      std::min<int64_t>(kPrefillChunkTokens, static_cast<int64_t>(kArenaCap / perToken)));
  ioTokens_ = chunkTokens_;
  oneRow_ = planOneRowFusion(plan_, rank_);
  if (Error e = allocate(options, device)) return e;
  return loadWeights(options);
}

Error CudaBackend::allocate(const BackendOptions& options, int device) {
  // Everything this rank needs, added up first so a plan too big for the GPU is one clear error.
  size_t weightBytes = 0;
  for (const plan::Weight* w : *prog_.weights())
    weightBytes +=
        alignUp(static_cast<size_t>(product(*w->shape(), 0)) * cuda::elementBytes(computeType_));
  size_t kvBytes = 0;
  for (const plan::Step* s : *prog_.steps()) {
    std::string_view op = s->op()->string_view();
    if (op == "attention") {
      int64_t kvHeads = stepInt(*s, "kv_heads"), headDim = stepInt(*s, "head_dim");
      kvBytes +=
          2 * alignUp(static_cast<size_t>((maxBatch_ + 1) * maxContext_ * kvHeads * headDim) *
                      cuda::elementBytes(computeType_));
      attentionWorkspace_ = std::max(
          attentionWorkspace_,
          cuda::attentionWorkspaceBytes(chunkTokens_, stepInt(*s, "heads"), headDim, maxContext_));
      decodeWorkspaceBytes_ =
          std::max(decodeWorkspaceBytes_,
                   cuda::decodeAttentionWorkspaceBytes(graphTokens_, stepInt(*s, "heads"), kvHeads,
                                                       headDim, maxContext_));
    } else if (op == "moe_experts") {
      int64_t per = stepInt(*s, "params_per_expert");
      int64_t intermediate = weightOf(*s, static_cast<uint32_t>(3 + per - 1)).shape()->Get(1);
      attentionWorkspace_ =
          std::max(attentionWorkspace_,
                   cuda::moeWorkspaceBytes(chunkTokens_, stepInt(*s, "top_k"), intermediate));
    }
  }
  const size_t arenaBytes =
      alignUp(static_cast<size_t>(prog_.arena_bytes_per_token() * chunkTokens_));
  const size_t gatherBytes =
      plan_.world() > 1 ? alignUp(static_cast<size_t>(prog_.arena_bytes_per_token() * chunkTokens_))
                        : 0;
  const size_t needed = weightBytes + kvBytes + arenaBytes + gatherBytes + attentionWorkspace_ +
                        oneRow_.privateBytes + decodeWorkspaceBytes_ + kGemmWorkspaceBytes +
                        (size_t{64} << 20);
  size_t freeBytes = 0, totalBytes = 0;
  TPC_CUDA_TRY(cudaMemGetInfo(&freeBytes, &totalBytes));
  if (needed > freeBytes)
    return makeError("rank ", rank_, " needs ", gib(needed), " on GPU ", device, " (weights ",
                     gib(weightBytes), ", KV cache ", gib(kvBytes), ", activations ",
                     gib(arenaBytes + gatherBytes + attentionWorkspace_), ") but only ",
                     gib(freeBytes), " of ", gib(totalBytes),
                     " is free; recompile with a smaller --max-context or --max-batch, or a "
                     "larger --world");

  TPC_CUDA_TRY(weightMemory_.allocate(weightBytes));
  TPC_CUDA_TRY(kvMemory_.allocate(kvBytes));
  TPC_CUDA_TRY(cudaMemsetAsync(kvMemory_.data(), 0, kvBytes, stream_));
  TPC_CUDA_TRY(arena_.allocate(arenaBytes));
  TPC_CUDA_TRY(oneRowSplitSources_.allocate(oneRow_.privateBytes));
  TPC_CUDA_TRY(workspace_.allocate(attentionWorkspace_));
  TPC_CUDA_TRY(decodeWorkspace_.allocate(decodeWorkspaceBytes_));
  TPC_CUDA_TRY(cudaMemsetAsync(decodeWorkspace_.data(), 0, decodeWorkspaceBytes_, stream_));
  if (gatherBytes) TPC_CUDA_TRY(gather_.allocate(gatherBytes));
  Expected<std::unique_ptr<GemmRunner>> gemm = GemmRunner::create(kGemmWorkspaceBytes);
  if (!gemm) return gemm.takeError();
  gemm_ = std::move(*gemm);

  // The io block: a step's token ids, positions and slots (`tokens` each, see address()).
  TPC_CUDA_TRY(io_.allocate(3 * static_cast<size_t>(ioTokens_) * sizeof(int32_t)));
  TPC_CUDA_TRY(hostIoMemory_.allocatePinned(4 * static_cast<size_t>(ioTokens_) * sizeof(int32_t)));
  hostIo_ = reinterpret_cast<int32_t*>(hostIoMemory_.data());
  for (uint32_t b : *prog_.inputs()) {
    std::string_view name = prog_.buffers()->Get(b)->name()->string_view();
    ioInputs_[b] = name == "positions" ? 1 : 0;
  }
  TPC_CUDA_TRY(pickedHost_.allocateMapped(static_cast<size_t>(ioTokens_) * sizeof(int32_t)));
  void* picked = nullptr;
  TPC_CUDA_TRY(cudaHostGetDevicePointer(&picked, pickedHost_.data(), 0));
  pickedIds_ = static_cast<int32_t*>(picked);

  char* kv = kvMemory_.data();
  std::vector<float> tables;
  std::vector<std::pair<uint32_t, size_t>> ropeOffsets;
  std::vector<std::pair<uint32_t, size_t>> expertOffsets;
  for (uint32_t i = 0; i < prog_.steps()->size(); ++i) {
    const plan::Step& s = *prog_.steps()->Get(i);
    std::string_view op = s.op()->string_view();
    if (op == "attention") {
      cuda::KvCacheView view;
      view.slots = maxBatch_ + 1;
      view.maxContext = maxContext_;
      view.kvHeads = stepInt(s, "kv_heads");
      view.headDim = stepInt(s, "head_dim");
      size_t bytes =
          alignUp(static_cast<size_t>(view.slots * view.maxContext * view.kvHeads * view.headDim) *
                  cuda::elementBytes(computeType_));
      view.k = kv;
      view.v = kv + bytes;
      kv += 2 * bytes;
      caches_.push_back(view);
    } else if (op == "rope") {
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
  }
  return cudacheck::check(cudaStreamSynchronize(stream_), "clearing the KV cache");
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
    return cudacheck::check(cudaStreamSynchronize(stream_), "making synthetic weights");
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
    convertWeight(*data, computeType_, converted);
    TPC_CUDA_TRY(
        cudaMemcpy(weights_[i], converted.data(), converted.size(), cudaMemcpyHostToDevice));
    if (options.onProgress) options.onProgress();
  }
  return Error::success();
}

Error CudaBackend::run(const StepInput& in, const std::function<Error(const Chunk&)>& afterChunk) {
  if (in.tokens < 1) return makeError("a forward step needs at least one token");
  for (int64_t t = 0; t < in.tokens; ++t) {
    if (in.slots[t] < 0 || in.slots[t] >= maxBatch_)
      return makeError("sequence slot ", in.slots[t], " is outside the plan's max batch of ",
                       maxBatch_);
    if (in.positions[t] < 0 || in.positions[t] >= maxContext_)
      return makeError("position ", in.positions[t], " is outside the plan's max context of ",
                       maxContext_);
  }
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
  // rows written before this call (plus its own). Graphs are captured for decode steps only.
  decodeStep_ = count <= graphTokens_;
  for (int64_t t = 0; t < count && decodeStep_; ++t)
    for (int64_t u = 0; u < t && decodeStep_; ++u)
      decodeStep_ = in.slots[first + t] != in.slots[first + u];
  const bool graph = !eager_ && decodeStep_;
  prefillChunk_ = !decodeStep_;
  for (int64_t t = 1; t < count && prefillChunk_; ++t)
    prefillChunk_ = in.slots[first + t] == in.slots[first] &&
                    in.positions[first + t] == in.positions[first + t - 1] + 1;
  prefillStart_ = in.positions[first];
  prefillSlot_ = in.slots[first];
  int64_t rows = count;
  if (graph)
    for (rows = 1; rows < count;) rows *= 2;
  // Padding rows decode token 0 at position 0 of the spare slot, which no sequence uses.
  for (int64_t t = 0; t < rows; ++t) {
    bool real = t < count;
    hostIo_[t] = real ? in.tokenIds[first + t] : 0;
    hostIo_[rows + t] = real ? in.positions[first + t] : 0;
    hostIo_[2 * rows + t] = real ? in.slots[first + t] : static_cast<int32_t>(maxBatch_);
  }
  TPC_CUDA_TRY(cudaMemcpyAsync(io_.data(), hostIo_, 3 * static_cast<size_t>(rows) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream_));
  Chunk chunk{first, count, rows, graph};
  if (!graph) {
    if (Error e = enqueueSteps(rows)) return e;
    return chunk;
  }
  auto found = graphs_.find(rows);
  if (found == graphs_.end()) {
    // Captured once per bucket; positions, slots and ids are read from the io block on the
    // device, so the same graph serves every later step of this many rows.
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

Error CudaBackend::enqueueSteps(int64_t tokens) {
  size_t attention = 0;
  for (uint32_t i = 0; i < prog_.steps()->size(); ++i) {
    const plan::Step& s = *prog_.steps()->Get(i);
    if (tokens == 1 && oneRow_.skip[i]) continue;
    if (Error e = enqueue(s, i, attention, tokens))
      return std::move(e).withContext(std::string(s.op()->string_view()) + ": ");
  }
  return Error::success();
}

Error CudaBackend::enqueue(const plan::Step& s, uint32_t index, size_t& attention, int64_t tokens) {
  std::string_view op = s.op()->string_view();
  const int64_t T = tokens;
  const ElementType type = operandType(s, 0);
  auto eps = static_cast<float>(stepFloat(s, "eps", 1e-6));
  cudaStream_t st = stream_;
  if (op == "embedding") {
    const plan::Weight& table = weightOf(s, 1);
    const plan::WeightSlice* slice = table.slices()->Get(0);
    int64_t firstRow = slice->dim() == 0 ? slice->start() : 0;
    TPC_CUDA_TRY(cuda::embedding(computeType_, static_cast<const int32_t*>(operand(s, 0, T)), T,
                                 operand(s, 1, T), table.shape()->Get(0), firstRow,
                                 table.shape()->Get(1), result(s, T), st));
  } else if (op == "rms_norm") {
    TPC_CUDA_TRY(cuda::rmsNorm(type, operand(s, 0, T), operand(s, 1, T), T, width(s, 0), eps,
                               result(s, T), st));
  } else if (op == "add_rms_norm") {
    TPC_CUDA_TRY(cuda::addRmsNorm(type, operand(s, 0, T), operand(s, 1, T), operand(s, 2, T), T,
                                  width(s, 0), eps, result(s, T, 0), result(s, T, 1), st));
  } else if (op == "head_rms_norm") {
    int64_t d = stepInt(s, "head_dim");
    TPC_CUDA_TRY(cuda::headRmsNorm(type, operand(s, 0, T), operand(s, 1, T), T, width(s, 0) / d, d,
                                   eps, result(s, T), st));
  } else if (op == "add") {
    TPC_CUDA_TRY(
        cuda::add(type, operand(s, 0, T), operand(s, 1, T), T * width(s, 0), result(s, T), st));
  } else if (op == "linear" && T == 1 && oneRow_.swigluInto.count(index)) {
    const plan::Weight& w = weightOf(s, 1);
    const plan::Step& swiglu = *prog_.steps()->Get(oneRow_.swigluInto.at(index));
    TPC_CUDA_TRY(cuda::gemvSwiglu(type, operand(s, 0, T), operand(s, 1, T),
                                  s.operands()->size() == 3 ? operand(s, 2, T) : nullptr,
                                  w.shape()->Get(1), w.shape()->Get(0) / 2, result(swiglu, T), st));
  } else if (op == "linear") {
    const plan::Weight& w = weightOf(s, 1);
    if (Error e = gemm_->linear(type, resultType(s), operand(s, 0, T), operand(s, 1, T),
                                s.operands()->size() == 3 ? operand(s, 2, T) : nullptr, T,
                                w.shape()->Get(1), w.shape()->Get(0), result(s, T), st))
      return e;
  } else if (op == "rope") {
    auto [inverse, scaling] = rope_.at(index);
    int64_t d = stepInt(s, "head_dim");
    auto fused = oneRow_.fusedRopeHeads.find(index);
    const int64_t heads =
        T == 1 && fused != oneRow_.fusedRopeHeads.end() ? fused->second : width(s, 0) / d;
    TPC_CUDA_TRY(cuda::rope(type, operand(s, 0, T), static_cast<const int32_t*>(operand(s, 1, T)),
                            T, heads, d, inverse, scaling, result(s, T), st));
  } else if (op == "attention") {
    if (attention >= caches_.size()) return makeError("more attention steps than KV caches");
    const cuda::KvCacheView& cache = caches_[attention];
    if (decodeStep_ && T <= cuda::kDecodeMaxTokens &&
        cuda::decodeAttentionSupports(type, stepInt(s, "heads"), cache.kvHeads, cache.headDim)) {
      ++attention;
      TPC_CUDA_TRY(cuda::decodeAttention(type, operand(s, 0, T), operand(s, 1, T), operand(s, 2, T),
                                         static_cast<const int32_t*>(operand(s, 3, T)), slotsFor(T),
                                         T, stepInt(s, "heads"),
                                         static_cast<float>(stepFloat(s, "scale")), cache,
                                         decodeWorkspace_.data(), result(s, T), st));
      return Error::success();
    }
    if (prefillChunk_ && cuda::prefillAttentionSupports(type, cache.headDim)) {
      ++attention;
      TPC_CUDA_TRY(cuda::prefillAttention(type, operand(s, 0, T), operand(s, 1, T),
                                          operand(s, 2, T), T, stepInt(s, "heads"), prefillStart_,
                                          prefillSlot_, static_cast<float>(stepFloat(s, "scale")),
                                          cache, result(s, T), st));
      return Error::success();
    }
    TPC_CUDA_TRY(cuda::attention(type, operand(s, 0, T), operand(s, 1, T), operand(s, 2, T),
                                 static_cast<const int32_t*>(operand(s, 3, T)), slotsFor(T), T,
                                 stepInt(s, "heads"), static_cast<float>(stepFloat(s, "scale")),
                                 caches_[attention++], workspace_.data(), result(s, T), st));
  } else if (op == "swiglu") {
    TPC_CUDA_TRY(
        cuda::swiglu(type, operand(s, 0, T), operand(s, 1, T), T * width(s, 0), result(s, T), st));
  } else if (op == "split") {
    int64_t in = width(s, 0), offset = 0;
    for (uint32_t r = 0; r < s.results()->size(); ++r) {
      int64_t w = widths_[s.results()->Get(r)];
      TPC_CUDA_TRY(
          cuda::copyColumns(type, operand(s, 0, T), T, in, offset, w, result(s, T, r), st));
      offset += w;
    }
  } else if (op == "slice") {
    TPC_CUDA_TRY(cuda::copyColumns(type, operand(s, 0, T), T, width(s, 0), stepInt(s, "start"),
                                   stepInt(s, "length"), result(s, T), st));
  } else if (op == "moe_router") {
    const plan::Weight& gate = weightOf(s, 1);
    TPC_CUDA_TRY(cuda::moeRouter(
        type, operand(s, 0, T), operand(s, 1, T), T, width(s, 0), gate.shape()->Get(0),
        stepInt(s, "top_k"), stepInt(s, "norm_topk_prob") != 0,
        static_cast<float*>(result(s, T, 0)), static_cast<int32_t*>(result(s, T, 1)), st));
  } else if (op == "moe_experts") {
    int64_t experts = stepInt(s, "experts"), per = stepInt(s, "params_per_expert");
    int64_t intermediate = weightOf(s, static_cast<uint32_t>(3 + per - 1)).shape()->Get(1);
    int64_t hidden = width(s, 0);
    const void* const* pointers = expertPointers_.at(index);
    TPC_CUDA_TRY(cudaMemsetAsync(result(s, T), 0,
                                 static_cast<size_t>(T * hidden) * cuda::elementBytes(type), st));
    TPC_CUDA_TRY(
        cuda::moeExperts(type, operand(s, 0, T), static_cast<const float*>(operand(s, 1, T)),
                         static_cast<const int32_t*>(operand(s, 2, T)), T, hidden, intermediate,
                         stepInt(s, "top_k"), pointers, per == 3 ? pointers + experts : nullptr,
                         pointers + 2 * experts, workspace_.data(), result(s, T), st));
  } else if (op == "all_reduce" && ipc_) {
    return ipc_->allReduceDevice(type, operand(s, 0, T), T, width(s, 0), result(s, T), st);
  } else if (op == "all_reduce_add_rms_norm" && ipc_) {
    // One kernel: peers' partial rows summed in rank order, the residual added, the row normed.
    return ipc_->allReduceAddRmsNormDevice(type, operand(s, 0, T), operand(s, 1, T),
                                           operand(s, 2, T), T, width(s, 0), eps, result(s, T, 0),
                                           result(s, T, 1), st);
  } else if (op == "all_reduce_add_rms_norm") {
    // NCCL has no fused form: reduce into the gather scratch (room for any activation), then the
    // add_rms_norm kernel the unfused plan would have run.
    if (Error e = nccl_->allReduceDevice(operand(s, 0, T), gather_.data(),
                                         static_cast<size_t>(T * width(s, 0)), ncclType(type), st))
      return e;
    TPC_CUDA_TRY(cuda::addRmsNorm(type, operand(s, 1, T), gather_.data(), operand(s, 2, T), T,
                                  width(s, 0), eps, result(s, T, 0), result(s, T, 1), st));
  } else if (op == "all_gather" && ipc_) {
    return ipc_->allGatherDevice(type, operand(s, 0, T), T, width(s, 0), result(s, T), st);
  } else if (op == "all_reduce") {
    return nccl_->allReduceDevice(operand(s, 0, T), result(s, T),
                                  static_cast<size_t>(T * width(s, 0)), ncclType(type), st);
  } else if (op == "all_gather") {
    const int64_t w = width(s, 0), world = plan_.world();
    const size_t elt = cuda::elementBytes(type);
    if (T == 1)  // one row: rank order is already the gathered row's layout
      return nccl_->allGatherDevice(operand(s, 0, T), result(s, T), static_cast<size_t>(w),
                                    ncclType(type), st);
    if (Error e = nccl_->allGatherDevice(operand(s, 0, T), gather_.data(),
                                         static_cast<size_t>(T * w), ncclType(type), st))
      return e;
    for (int64_t r = 0; r < world; ++r)
      TPC_CUDA_TRY(cudaMemcpy2DAsync(
          static_cast<char*>(result(s, T)) + r * w * elt, static_cast<size_t>(world * w) * elt,
          gather_.data() + r * T * w * elt, static_cast<size_t>(w) * elt,
          static_cast<size_t>(w) * elt, static_cast<size_t>(T), cudaMemcpyDeviceToDevice, st));
  } else {
    return makeError("the CUDA backend has no kernel for ", op);
  }
  return Error::success();
}

}  // namespace

Expected<std::unique_ptr<Backend>> createCudaBackend(const LoadedPlan& plan, uint32_t rank,
                                                     Communicator& comm,
                                                     const BackendOptions& options) {
  const plan::Plan& p = plan.plan();
  auto backend = std::make_unique<CudaBackend>(p, rank, comm);
  if (Error e = backend->initialize(options)) return std::move(e).withContext("cuda: ");
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace tpc
