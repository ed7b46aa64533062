// Pipeline stages on the CUDA backend. Every stage is a rank with one GPU (or the CPU: a
// device map mixes backends), and what crosses a boundary goes through host memory and the
// ranks' host communicator: a send copies the value to the host and sends it, a recv receives
// it on the host and copies it up. It travels as f32, as the CPU backend computes, whatever its
// dtype on the device, so a GPU stage and a CPU stage agree on every boundary.
#include <algorithm>
#include <string>

#include "codegen/PlanFormat.h"
#include "executor/StepAttrs.h"
#include "executor/cuda/CudaBackendImpl.h"
#include "ir/Float16.h"

namespace tpc {

using cuda::ElementType;

Error CudaBackend::initializeStages() {
  pp_ = std::max<int64_t>(planIntAttr(plan_.model(), "pp", 1), 1);
  if (pp_ == 1) return Error::success();
  tp_ = static_cast<int64_t>(plan_.world()) / pp_;
  if (tp_ != 1)
    return makeError("the CUDA backend runs pipeline stages of one rank each (this plan has ", tp_,
                     " tensor-parallel ranks per stage); compile with --world equal to --pp");
  if (dynamic_cast<NcclCommunicator*>(&comm_))
    return makeError(
        "pipeline stages on the GPU talk through a host communicator (shm or gloo), not NCCL");
  for (uint32_t i = 0; i < prog_.steps()->size(); ++i) {
    const plan::Step& s = *prog_.steps()->Get(i);
    if (s.op()->string_view() == "recv" && stepInt(s, "logit_rows") != 0) {
      logitRecvStep_ = i;
      break;
    }
  }
  return Error::success();
}

int64_t CudaBackend::ranksOnDevice(int device, int visible) const {
  // A device map names each stage's GPU; other plans put local rank r on GPU r mod visible.
  const plan::Attr* a = findPlanAttr(plan_.model(), "stage_devices");
  if (!a || !a->string_value())
    return std::max<int64_t>(1, (plan_.world() + visible - 1) / visible);
  const std::string devices = a->string_value()->str() + ",",
                    mine = "cuda:" + std::to_string(device);
  int64_t stages = 0;
  for (size_t start = 0, comma; (comma = devices.find(',', start)) != std::string::npos;
       start = comma + 1)
    stages += devices.compare(start, comma - start, mine) == 0 ? 1 : 0;
  return std::max<int64_t>(1, stages * tp_);
}

Error CudaBackend::transferStage(const plan::Step& s, int64_t tokens, int64_t rows) {
  const bool send = s.op()->string_view() == "send";
  const ElementType type = send ? operandType(s, 0) : resultType(s);
  const int64_t w = send ? width(s, 0) : widths_[s.results()->Get(0)];
  const auto count = static_cast<size_t>(rows * w);
  const int peer = static_cast<int>(stepInt(s, "peer_stage") * tp_ + rank_ % tp_);
  const bool f32 = type == ElementType::F32;
  const bool bf16 = type == ElementType::BF16;
  if (stageHost_.size() < count) stageHost_.resize(count);
  if (!f32 && stageHalf_.size() < count) stageHalf_.resize(count);
  const size_t bytes = count * cuda::elementBytes(type);
  if (send) {
    void* staging = f32 ? static_cast<void*>(stageHost_.data()) : stageHalf_.data();
    if (count > 0)
      TPC_CUDA_TRY(
          cudaMemcpyAsync(staging, operand(s, 0, tokens), bytes, cudaMemcpyDeviceToHost, stream_));
    if (Error e = wait("copying a stage boundary to the host")) return e;
    if (!f32)
      for (size_t i = 0; i < count; ++i)
        stageHost_[i] = bf16 ? bf16ToF32(stageHalf_[i]) : f16ToF32(stageHalf_[i]);
    return comm_.send(stageHost_.data(), count, peer);
  }
  if (Error e = comm_.recv(stageHost_.data(), count, peer)) return e;
  if (count == 0) return Error::success();
  if (!f32)
    for (size_t i = 0; i < count; ++i)
      stageHalf_[i] = bf16 ? f32ToBf16(stageHost_[i]) : f32ToF16(stageHost_[i]);
  // From pageable memory the copy has left the buffer when the call returns, so the next
  // boundary may reuse it while the GPU still works.
  const void* source = f32 ? static_cast<const void*>(stageHost_.data()) : stageHalf_.data();
  TPC_CUDA_TRY(cudaMemcpyAsync(result(s, tokens), source, bytes, cudaMemcpyHostToDevice, stream_));
  return Error::success();
}

}  // namespace tpc
