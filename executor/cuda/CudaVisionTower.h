// The vision tower of a llava plan on the CUDA backend: this rank's tower program (see
// VisionTowerBuilder: patch GEMM, class and position embeddings, pre-layernorm, the encoder
// layers up to the selected hidden state, the projector) with its own weights and arena, run
// eagerly on the backend's stream. Its linears go through the backend's GemmRunner, its
// all-reduces through the backend's communicator, so the tower is split across ranks exactly as
// the plan says. One image per call: the tower's rows are the class slot and the patches.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "executor/Backend.h"
#include "executor/cuda/DeviceMemory.h"
#include "executor/cuda/Gemm.h"
#include "executor/cuda/IpcCommunicator.h"
#include "executor/cuda/NcclCommunicator.h"
#include "kernels/cuda/CudaKernels.h"

namespace tpc {

class CudaVisionTower {
 public:
  // What the tower shares with the text program's backend.
  struct Context {
    cuda::ElementType computeType = cuda::ElementType::BF16;
    cudaStream_t stream = nullptr;
    NcclCommunicator* nccl = nullptr;
    IpcCommunicator* ipc = nullptr;  // the one-node communicator, instead of NCCL
  };

  // Allocates the tower of `rank` and loads its weights (from the checkpoint, or synthetic ones
  // with options.syntheticWeights).
  static Expected<std::unique_ptr<CudaVisionTower>> create(const plan::Plan& plan, uint32_t rank,
                                                           const Context& context,
                                                           const BackendOptions& options);

  // Device bytes the tower holds (weights, arena, the features' f32 copy).
  size_t deviceBytes() const { return deviceBytes_; }
  int64_t rows() const { return rows_; }
  // Enqueues the tower on one image's patches ([rows, patch width] f32, cpu::patchify's layout)
  // and the copy of its features to the host. The caller waits for the stream (through its
  // communicator, which sees a dead peer) before reading features().
  Error enqueue(const float* patches, GemmRunner& gemm);
  // [rows, text hidden] f32, valid after the wait until the next enqueue.
  const float* features() const { return hostFeatures_.data(); }

 private:
  CudaVisionTower(const plan::RankProgram& program, const Context& context)
      : prog_(program), context_(context) {}
  Error allocate();
  Error loadWeights(const plan::Plan& plan, uint32_t rank, const BackendOptions& options);
  Error enqueueStep(const plan::Step& s, GemmRunner& gemm);

  char* buffer(uint32_t index) const {
    return arena_.data() + prog_.buffers()->Get(index)->arena_offset() * rows_;
  }
  const void* operand(const plan::Step& s, uint32_t i) const {
    const plan::Ref* r = s.operands()->Get(i);
    return r->kind() == plan::RefKind::Weight ? weights_[r->index()] : buffer(r->index());
  }
  void* result(const plan::Step& s) const { return buffer(s.results()->Get(0)); }
  int64_t width(const plan::Step& s, uint32_t i) const {
    return widths_[s.operands()->Get(i)->index()];
  }
  const plan::Weight& weightOf(const plan::Step& s, uint32_t i) const {
    return *prog_.weights()->Get(s.operands()->Get(i)->index());
  }

  const plan::RankProgram& prog_;
  Context context_;
  int64_t rows_ = 0;
  std::vector<int64_t> widths_;
  std::vector<cuda::ElementType> bufferTypes_;
  DeviceMemory weightMemory_, arena_, deviceFeatures_;
  std::vector<void*> weights_;
  size_t deviceBytes_ = 0;
  std::vector<uint8_t> staging_;  // the patches in the storage type, on their way up
  std::vector<float> hostFeatures_;
};

}  // namespace tpc
