#include "executor/cuda/CudaVisionTower.h"

#include <cmath>
#include <optional>
#include <string>

#include "codegen/PlanFormat.h"
#include "executor/StepAttrs.h"
#include "executor/WeightLoader.h"
#include "executor/cuda/CudaCheck.h"
#include "executor/cuda/HostConvert.h"
#include "ir/DType.h"

namespace tpc {
namespace {

using cuda::ElementType;

constexpr size_t kAlignment = 256;

size_t alignUp(size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

int64_t elements(const flatbuffers::Vector<int64_t>& shape, uint32_t from = 0) {
  int64_t n = 1;
  for (uint32_t i = from; i < shape.size(); ++i) n *= shape.Get(i);
  return n;
}

}  // namespace

Expected<std::unique_ptr<CudaVisionTower>> CudaVisionTower::create(const plan::Plan& plan,
                                                                   uint32_t rank,
                                                                   const Context& context,
                                                                   const BackendOptions& options) {
  if (!plan.vision_tower()) return makeError("this plan has no vision tower");
  const plan::RankProgram& program = *plan.vision_tower()->Get(rank);
  std::unique_ptr<CudaVisionTower> tower(new CudaVisionTower(program, context));
  tower->rows_ = planIntAttr(plan.model(), "vision_rows");
  if (tower->rows_ < 1) return makeError("the plan's vision tower has no rows (vision_rows)");
  if (Error e = tower->allocate()) return std::move(e).withContext("vision tower: ");
  if (Error e = tower->loadWeights(plan, rank, options))
    return std::move(e).withContext("vision tower: ");
  return tower;
}

Error CudaVisionTower::allocate() {
  for (const plan::Buffer* b : *prog_.buffers()) {
    widths_.push_back(elementsPerToken(*b->shape()));
    std::optional<ElementType> type = elementTypeOf(b->dtype());
    if (!type) return makeError("buffer ", b->name()->str(), " is not f32, f16 or bf16");
    bufferTypes_.push_back(*type);
  }
  const size_t elt = cuda::elementBytes(context_.computeType);
  size_t weightBytes = 0;
  for (const plan::Weight* w : *prog_.weights())
    weightBytes += alignUp(static_cast<size_t>(elements(*w->shape())) * elt);
  const size_t arenaBytes = alignUp(static_cast<size_t>(prog_.arena_bytes_per_token() * rows_));
  const int64_t featureWidth = widths_[prog_.outputs()->Get(0)];
  const size_t featureBytes = static_cast<size_t>(rows_ * featureWidth) * sizeof(float);
  deviceBytes_ = weightBytes + arenaBytes + featureBytes;
  size_t freeBytes = 0, totalBytes = 0;
  TPC_CUDA_TRY(cudaMemGetInfo(&freeBytes, &totalBytes));
  if (deviceBytes_ > freeBytes)
    return makeError("needs ", deviceBytes_, " bytes of GPU memory but only ", freeBytes,
                     " are free");
  TPC_CUDA_TRY(weightMemory_.allocate(weightBytes));
  TPC_CUDA_TRY(arena_.allocate(arenaBytes));
  TPC_CUDA_TRY(deviceFeatures_.allocate(featureBytes));
  char* next = weightMemory_.data();
  for (const plan::Weight* w : *prog_.weights()) {
    weights_.push_back(next);
    next += alignUp(static_cast<size_t>(elements(*w->shape())) * elt);
  }
  hostFeatures_.resize(static_cast<size_t>(rows_ * featureWidth));
  return Error::success();
}

Error CudaVisionTower::loadWeights(const plan::Plan& plan, uint32_t rank,
                                   const BackendOptions& options) {
  if (options.syntheticWeights) {
    for (uint32_t i = 0; i < prog_.weights()->size(); ++i) {
      const plan::Weight& w = *prog_.weights()->Get(i);
      // Scaled as the text program's synthetic weights; seeds of their own.
      const float scale = w.shape()->size() > 1
                              ? 1.0f / std::sqrt(static_cast<float>(elements(*w.shape(), 1)))
                              : 1.0f;
      TPC_CUDA_TRY(cuda::fillUniform(context_.computeType, weights_[i], elements(*w.shape()), scale,
                                     0xc2b2ae3d27d4eb4fULL * (i + 1) + rank, context_.stream));
    }
    return cudacheck::check(cudaStreamSynchronize(context_.stream), "making synthetic weights");
  }
  Expected<Checkpoint> checkpoint = openPlanCheckpoint(plan, options.modelDir);
  if (!checkpoint) return checkpoint.takeError();
  std::vector<uint8_t> converted;
  for (uint32_t i = 0; i < prog_.weights()->size(); ++i) {
    Expected<std::vector<float>> data = loadProgramWeightF32(prog_, *checkpoint, i);
    if (!data) return data.takeError();
    convertFromF32(data->data(), data->size(), context_.computeType, converted);
    TPC_CUDA_TRY(
        cudaMemcpy(weights_[i], converted.data(), converted.size(), cudaMemcpyHostToDevice));
    if (options.onProgress) options.onProgress();
  }
  // cudaMemcpy from pageable memory may return before its DMA lands, on the legacy stream, which
  // the backend's non-blocking stream does not wait for.
  return cudacheck::check(cudaDeviceSynchronize(), "uploading the weights");
}

Error CudaVisionTower::enqueue(const float* patches, GemmRunner& gemm) {
  const uint32_t input = prog_.inputs()->Get(0);
  convertFromF32(patches, static_cast<size_t>(rows_ * widths_[input]), bufferTypes_[input],
                 staging_);
  // From pageable memory: the call returns once staging_ has been read, so it may be reused.
  TPC_CUDA_TRY(cudaMemcpyAsync(buffer(input), staging_.data(), staging_.size(),
                               cudaMemcpyHostToDevice, context_.stream));
  for (const plan::Step* s : *prog_.steps())
    if (Error e = enqueueStep(*s, gemm))
      return std::move(e).withContext("vision tower " + s->op()->str() + ": ");
  const uint32_t output = prog_.outputs()->Get(0);
  const int64_t count = rows_ * widths_[output];
  const void* features = buffer(output);
  if (bufferTypes_[output] != ElementType::F32) {
    TPC_CUDA_TRY(cuda::toFloat(bufferTypes_[output], features, count,
                               reinterpret_cast<float*>(deviceFeatures_.data()), context_.stream));
    features = deviceFeatures_.data();
  }
  TPC_CUDA_TRY(cudaMemcpyAsync(hostFeatures_.data(), features,
                               static_cast<size_t>(count) * sizeof(float), cudaMemcpyDeviceToHost,
                               context_.stream));
  return Error::success();
}

Error CudaVisionTower::enqueueStep(const plan::Step& s, GemmRunner& gemm) {
  const std::string_view op = s.op()->string_view();
  const int64_t T = rows_;
  const ElementType type = bufferTypes_[s.operands()->Get(0)->index()];
  const cudaStream_t st = context_.stream;
  const auto eps = static_cast<float>(stepFloat(s, "eps", 1e-6));
  if (op == "linear") {
    const plan::Weight& w = weightOf(s, 1);
    return gemm.linear(type, bufferTypes_[s.results()->Get(0)], operand(s, 0), operand(s, 1),
                       s.operands()->size() == 3 ? operand(s, 2) : nullptr, T, w.shape()->Get(1),
                       w.shape()->Get(0), result(s), st);
  } else if (op == "split") {  // the fused q/k/v projection's output, back into its parts
    int64_t offset = 0;
    for (uint32_t r = 0; r < s.results()->size(); ++r) {
      const int64_t w = widths_[s.results()->Get(r)];
      TPC_CUDA_TRY(cuda::copyColumns(type, operand(s, 0), T, width(s, 0), offset, w,
                                     buffer(s.results()->Get(r)), st));
      offset += w;
    }
  } else if (op == "vision_embed") {
    if (T != weightOf(s, 2).shape()->Get(0))
      return makeError("the step has ", T, " rows, the position embedding ",
                       weightOf(s, 2).shape()->Get(0));
    TPC_CUDA_TRY(cuda::visionEmbed(type, operand(s, 0), operand(s, 1), operand(s, 2), T,
                                   width(s, 0), result(s), st));
  } else if (op == "layer_norm") {
    TPC_CUDA_TRY(cuda::layerNorm(type, operand(s, 0), operand(s, 1), operand(s, 2), T, width(s, 0),
                                 eps, result(s), st));
  } else if (op == "bias_add") {
    TPC_CUDA_TRY(cuda::biasAdd(type, operand(s, 0), operand(s, 1), T, width(s, 0), result(s), st));
  } else if (op == "add") {
    TPC_CUDA_TRY(cuda::add(type, operand(s, 0), operand(s, 1), T * width(s, 0), result(s), st));
  } else if (op == "gelu") {
    TPC_CUDA_TRY(cuda::gelu(type, operand(s, 0), T * width(s, 0), result(s), st));
  } else if (op == "quick_gelu") {
    TPC_CUDA_TRY(cuda::quickGelu(type, operand(s, 0), T * width(s, 0), result(s), st));
  } else if (op == "encoder_attention") {
    const int64_t heads = stepInt(s, "heads");
    if (heads < 1 || width(s, 0) % heads != 0)
      return makeError(heads, " heads do not divide the width ", width(s, 0));
    TPC_CUDA_TRY(cuda::encoderAttention(type, operand(s, 0), operand(s, 1), operand(s, 2), T, heads,
                                        width(s, 0) / heads,
                                        static_cast<float>(stepFloat(s, "scale")), result(s), st));
  } else if (op == "all_reduce" && context_.ipc) {
    return context_.ipc->allReduceDevice(type, operand(s, 0), T, width(s, 0), result(s), st);
  } else if (op == "all_reduce" && context_.nccl) {
    return context_.nccl->allReduceDevice(
        operand(s, 0), result(s), static_cast<size_t>(T * width(s, 0)), ncclTypeOf(type), st);
  } else {
    return makeError("the CUDA backend has no vision tower kernel for ", op);
  }
  return Error::success();
}

}  // namespace tpc
