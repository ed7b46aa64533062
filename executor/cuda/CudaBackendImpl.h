// The CUDA backend's class, shared by its source files: CudaBackend.cpp (set-up, the paged KV
// pool, steps and graphs) and CudaSteps.cpp (one plan step's kernels).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "executor/Backend.h"
#include "executor/LocalExperts.h"
#include "executor/OneRowFusion.h"
#include "executor/PagedStepLayout.h"
#include "executor/cuda/CudaCheck.h"
#include "executor/cuda/CudaVisionTower.h"
#include "executor/cuda/DeviceMemory.h"
#include "executor/cuda/Gemm.h"
#include "executor/cuda/IpcCommunicator.h"
#include "executor/cuda/NcclCommunicator.h"
#include "kernels/cuda/CudaKernels.h"
#include "kernels/cuda/DecodeAttention.h"
#include "kernels/cuda/Gemv.h"

namespace tpc {

class CudaBackend : public Backend {
 public:
  CudaBackend(const plan::Plan& plan, uint32_t rank, Communicator& comm)
      : plan_(plan), prog_(*plan.ranks()->Get(rank)), rank_(rank), comm_(comm) {}
  ~CudaBackend() override;

  const char* name() const override { return "cuda"; }
  uint64_t residentWeightBytes() const override { return weightBytes_; }
  int64_t kvBlocks() const override { return pool_.blocks; }

  Error initialize(const BackendOptions& options);

  Expected<const float*> forward(const StepInput& in) override;
  Expected<std::vector<int32_t>> forwardArgmax(const StepInput& in) override;
  Expected<std::vector<int32_t>> forwardSample(const StepInput& in, const RowSampling* rows,
                                               int64_t vocab) override;
  // llava (CudaImages.cpp): the rank's vision tower on one image.
  Expected<const float*> encodeImage(const float* patches, int64_t rows) override;
  bool encodesImages() const override { return tower_ != nullptr; }

 private:
  // A piece of one forward call: `count` tokens starting at `first`, run with `deviceTokens`
  // rows (a graph bucket pads them). Its logit rows are layout_.logitRows[logitFirst, +logits);
  // the output holds `outputRows` rows, logit row i at outputRow(i).
  struct Chunk {
    int64_t first, count, deviceTokens;
    bool fromGraph;
    int64_t logitFirst, logits, outputRows;
  };

  Error allocate(const BackendOptions& options, int device);
  Error allocatePool(int device, size_t othersBytes);
  // The sharded moe_experts steps' experts (expert parallelism) and their choices' buffer.
  Error findLocalExperts();
  Error loadWeights(const BackendOptions& options);
  // Runs the step in chunks; `afterChunk` enqueues what must read a chunk's results before the
  // next chunk overwrites them.
  Error run(const StepInput& in, const std::function<Error(const Chunk&)>& afterChunk);
  Expected<Chunk> runChunk(const StepInput& in, int64_t first, int64_t count);
  Error enqueueSteps(int64_t tokens);
  Error enqueue(const plan::Step& s, uint32_t index, size_t& attention, int64_t tokens,
                int64_t rows);
  // A linear step on `T` of `A` rows; `norm`: a norm folded into its one-token GEMV.
  Error enqueueLinear(const plan::Step& s, uint32_t index, const cuda::GemvNorm* norm, int64_t A,
                      int64_t T);
  // `rope`: the layer's rope (and head norms), folded into the decode kernel (one-token steps);
  // `q`, `k` and `v`, when given, replace the step's first operands (the folded steps' inputs);
  // `qkvStride` > 0: they lie in the qkv linear's rows, that many elements apart.
  Error enqueueAttention(const plan::Step& s, const cuda::KvCacheView& cache, int64_t tokens,
                         const cuda::DecodeRope* rope, const void* q = nullptr,
                         const void* k = nullptr, const void* v = nullptr, int64_t qkvStride = 0);
  // llava (CudaImages.cpp): finds the chunk's image-token rows (imageRuns_) and uploads their
  // image rows into the image_embeds input; the image_rows step then takes those rows from it.
  Error uploadImageRows(const StepInput& in, int64_t first, int64_t tokens);
  Error enqueueImageRows(const plan::Step& s, int64_t tokens, int64_t rows);
  // Pipeline stages (executor/cuda/StageTransfer.cpp): a send or recv step's `rows` through host
  // memory and the host communicator; the plan's ranks on this GPU; checks of a staged plan.
  Error transferStage(const plan::Step& s, int64_t tokens, int64_t rows);
  int64_t ranksOnDevice(int device, int visible) const;
  Error initializeStages();
  Error wait(const char* what) {
    if (nccl_) return nccl_->waitFor(stream_, what);
    if (ipc_) return ipc_->waitFor(stream_, what);
    return cudacheck::check(cudaStreamSynchronize(stream_), what);
  }
  // The output row of a chunk's i-th logit row: the plan selected the logit rows itself, or its
  // output holds every token's row.
  int64_t outputRow(const Chunk& c, int64_t i) const {
    return logitRowsOnly() ? i : layout_.logitRows[static_cast<size_t>(c.logitFirst + i)] - c.first;
  }
  // The output holds the chunk's logit rows only: the plan selects them here, or (an earlier
  // pipeline stage) receives them so from the last stage.
  bool logitRowsOnly() const { return selectStep_ >= 0 || logitRecvStep_ >= 0; }

  char* address(uint32_t buffer, int64_t tokens) const {
    if (buffer == selectAliasFrom_) buffer = selectAliasTo_;
    // Inputs live in the io block: ids, then positions, `tokens` each, so one copy uploads a
    // step's inputs (see the io layout below).
    auto fixed = ioInputs_.find(buffer);
    if (fixed != ioInputs_.end())
      return io_.data() + fixed->second * tokens * static_cast<int64_t>(sizeof(int32_t));
    if (tokens == 1) {
      auto alias = oneRow_.views.find(buffer);
      if (alias != oneRow_.views.end())
        return oneRowSplitSources_.data() + alias->second.first + alias->second.second;
    } else if (decodeRowsFused(tokens)) {
      auto own = oneRow_.rowViews.find(buffer);
      if (own != oneRow_.rowViews.end()) return decodeRowsPrivate_.data() + own->second * tokens;
    }
    return arena_.data() + prog_.buffers()->Get(buffer)->arena_offset() * tokens;
  }
  // A step of several decode rows that reads the q/k/v and gate/up linears' rows past their
  // skipped splits (OneRowFusion::attentionReadsSplit, swigluReadsSplit): up to a graph bucket,
  // which the rows' private block is sized for, and what the decode kernel takes.
  bool decodeRowsFused(int64_t tokens) const {
    return splitReads_ && decodeStep_ && tokens > 1 && tokens <= graphTokens_ &&
           tokens <= cuda::kDecodeMaxTokens;
  }
  // The io block of a chunk of `tokens` rows: ids, positions, each token's block-table row,
  // the chunk's logit rows (`tokens` each), then the block table.
  const int32_t* ioPart(int64_t tokens, int part) const {
    return reinterpret_cast<const int32_t*>(io_.data()) + part * tokens;
  }
  const int32_t* tableRowsFor(int64_t tokens) const { return ioPart(tokens, 2); }
  const int32_t* logitRowsFor(int64_t tokens) const { return ioPart(tokens, 3); }
  const int32_t* blockTableFor(int64_t tokens) const { return ioPart(tokens, 4); }

  const void* operand(const plan::Step& s, uint32_t i, int64_t tokens) const {
    const plan::Ref* r = s.operands()->Get(i);
    return r->kind() == plan::RefKind::Weight ? weights_[r->index()] : address(r->index(), tokens);
  }
  cuda::ElementType operandType(const plan::Step& s, uint32_t i) const {
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
  cuda::ElementType resultType(const plan::Step& s, uint32_t i = 0) const {
    return bufferTypes_[s.results()->Get(i)];
  }

  const plan::Plan& plan_;
  const plan::RankProgram& prog_;
  uint32_t rank_;
  Communicator& comm_;
  NcclCommunicator* nccl_ = nullptr;
  IpcCommunicator* ipc_ = nullptr;  // the one-node communicator, instead of NCCL
  cuda::ElementType computeType_ = cuda::ElementType::BF16;
  int64_t vocab_ = 0, maxBatch_ = 1, maxContext_ = 0;
  int64_t graphTokens_ = 1, chunkTokens_ = 1, ioTokens_ = 1, tableRows_ = 1;
  bool eager_ = false;
  double memoryUtilization_ = 0.9;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<GemmRunner> gemm_;

  std::vector<cuda::ElementType> bufferTypes_;
  std::vector<int64_t> widths_;
  std::map<uint32_t, int64_t> ioInputs_;  // input buffer -> its part of the io block (0 or 1)
  // One-token views and fusions (executor/OneRowFusion.h); the private block holds the split
  // operands the views point into.
  OneRowFusion oneRow_;
  DeviceMemory oneRowSplitSources_;
  DeviceMemory decodeRowsPrivate_;  // the rows' private block, at graphTokens_ rows
  bool splitReads_ = true;
  DeviceMemory weightMemory_, arena_, kvMemory_, workspace_, io_, gather_, tables_;
  DeviceMemory hostIoMemory_;
  int32_t* hostIo_ = nullptr;     // pinned: the io block's staging copy
  DeviceMemory pickedHost_;       // mapped: argmax writes the picked ids straight to the host
  int32_t* pickedIds_ = nullptr;  // its device address
  DeviceMemory deviceSampling_, hostSampling_;  // per output row: cuda::SamplingRow
  std::vector<void*> weights_;
  uint64_t weightBytes_ = 0;

  // The paged KV pool: per attention step a view of [blocks + 1][blockSize][kvHeads][headDim]
  // keys and values; the block past the usable ones absorbs the padding rows of a graph bucket.
  KvPoolShape pool_;
  std::vector<cuda::KvCacheView> caches_;
  size_t attentionWorkspace_ = 0;
  // Decode steps (every token a different sequence) use cuda::decodeAttention, one launch per
  // layer; its workspace holds counters that must start at zero.
  DeviceMemory decodeWorkspace_;
  size_t decodeWorkspaceBytes_ = 0;

  // The step being run and its chunk's attention pieces (runs of one sequence), which pick the
  // kernels: one decode launch for a decode step, the tensor-core prefill for a prompt chunk.
  PagedStepLayout layout_;
  std::vector<AttentionPiece> pieces_;
  int64_t chunkFirst_ = 0;
  bool decodeStep_ = false;
  // The plan's select_rows step (-1: none): later steps run on the chunk's logit rows only. When
  // those are every row it is skipped and its result aliases its operand.
  int64_t selectStep_ = -1;
  // Pipeline stages: stages and ranks per stage, and the recv of the logit rows from the last
  // stage (-1: none), past which steps run on the logit rows as after a select_rows. A
  // boundary crosses through host memory, in f32 whatever its dtype on the device.
  int64_t pp_ = 1, tp_ = 1;
  int64_t logitRecvStep_ = -1;
  // A paged step that gives no logit rows pointer: the CPU stages then carry every row's logits
  // across the boundary (its cpu::select_rows keeps all rows), so this stage carries as many.
  bool allRowsCross_ = false;
  std::vector<float> stageHost_;
  std::vector<uint16_t> stageHalf_;
  int64_t chunkLogits_ = 0;
  uint32_t selectAliasFrom_ = UINT32_MAX, selectAliasTo_ = UINT32_MAX;
  bool selectMayAlias_ = false;  // selectRowsMayAlias (executor/SelectRowsAlias.h)

  std::map<uint32_t, std::pair<const float*, float>> rope_;  // step: inverse freqs, scaling
  std::map<uint32_t, const void* const*> expertPointers_;    // step: gate, up, down arrays
  // The same pointers on the host, for the grouped path's per-expert GEMMs, and the pinned
  // buffer its expert counts come back to (room for the step with the most experts).
  std::map<uint32_t, std::vector<const void*>> hostExpertPointers_;
  DeviceMemory moeCountsHost_;
  // Expert parallelism: each sharded moe_experts step's experts, and the device buffer its
  // renumbered choices go to (room for the largest chunk's choices).
  std::map<uint32_t, LocalExperts> localExperts_;
  DeviceMemory localChoices_;
  std::vector<float> hostLogits_;

  // llava: the vision tower (null for text plans, and where its weights are not loaded), the text
  // program's image_embeds input, the image token, and the current chunk's runs of image-token
  // rows (first, count), empty when the step has no image.
  std::unique_ptr<CudaVisionTower> tower_;
  uint32_t imageInput_ = UINT32_MAX;
  int32_t imageToken_ = -1;
  std::vector<std::pair<int64_t, int64_t>> imageRuns_;
  std::vector<uint8_t> imageStaging_;
  std::map<int64_t, cudaGraphExec_t> graphs_;
  // Recorded after each upload of hostIo_: the host rewrites the staging copy only once the
  // previous upload has read it (a call that picks no token returns without waiting).
  cudaEvent_t ioUploaded_ = nullptr;
};

}  // namespace tpc
