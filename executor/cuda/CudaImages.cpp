// llava on the CUDA backend: the vision tower on one image, and the text prefill taking the
// projected image rows at the image tokens' places, as the CPU backend does.
#include <cstring>

#include "executor/cuda/CudaBackendImpl.h"
#include "executor/cuda/HostConvert.h"

namespace tpc {

Expected<const float*> CudaBackend::encodeImage(const float* patches, int64_t rows) {
  if (!tower_)
    return makeError(plan_.vision_tower()
                         ? "the vision tower's weights are not loaded here (its weights come "
                           "only from a checkpoint or --synthetic-weights)"
                         : "this plan has no vision tower");
  if (rows != tower_->rows())
    return makeError("the vision tower takes ", tower_->rows(),
                     " rows (class slot and patches), not ", rows);
  if (Error e = tower_->enqueue(patches, *gemm_)) return e;
  if (Error e = wait("encoding the image")) return e;
  return tower_->features();
}

Error CudaBackend::uploadImageRows(const StepInput& in, int64_t first, int64_t tokens) {
  if (imageRuns_.empty()) return Error::success();
  const int64_t width = widths_[imageInput_];
  const size_t rowBytes =
      static_cast<size_t>(width) * cuda::elementBytes(bufferTypes_[imageInput_]);
  const cuda::ElementType type = bufferTypes_[imageInput_];
  int64_t total = 0;
  for (auto [start, length] : imageRuns_) total += length;
  // Every run converted, then uploaded from pageable memory: each copy has read its rows when
  // the call returns, so the next step may rewrite the staging vector.
  imageStaging_.resize(static_cast<size_t>(total) * rowBytes);
  size_t staged = 0;
  for (auto [start, length] : imageRuns_) {
    convertFromF32(in.imageEmbeds + (first + start) * width, static_cast<size_t>(length * width),
                   type, imageStaging_.data() + staged);
    staged += static_cast<size_t>(length) * rowBytes;
  }
  char* rows = address(imageInput_, tokens);
  staged = 0;
  for (auto [start, length] : imageRuns_) {
    const size_t bytes = static_cast<size_t>(length) * rowBytes;
    TPC_CUDA_TRY(cudaMemcpyAsync(rows + static_cast<size_t>(start) * rowBytes,
                                 imageStaging_.data() + staged, bytes, cudaMemcpyHostToDevice,
                                 stream_));
    staged += bytes;
  }
  return Error::success();
}

Error CudaBackend::enqueueImageRows(const plan::Step& s, int64_t tokens, int64_t rows) {
  const size_t rowBytes = static_cast<size_t>(width(s, 0)) * cuda::elementBytes(resultType(s));
  auto* out = static_cast<char*>(result(s, tokens));
  const auto* embeds = static_cast<const char*>(operand(s, 0, tokens));
  const auto* image = static_cast<const char*>(operand(s, 1, tokens));
  // Rows [from, to) of `source`, unless the result already is that buffer.
  auto copy = [&](const char* source, int64_t from, int64_t to) -> Error {
    if (to <= from || source == out) return Error::success();
    const size_t offset = static_cast<size_t>(from) * rowBytes;
    TPC_CUDA_TRY(cudaMemcpyAsync(out + offset, source + offset,
                                 static_cast<size_t>(to - from) * rowBytes,
                                 cudaMemcpyDeviceToDevice, stream_));
    return Error::success();
  };
  int64_t next = 0;
  for (auto [start, length] : imageRuns_) {
    if (Error e = copy(embeds, next, start)) return e;
    if (Error e = copy(image, start, start + length)) return e;
    next = start + length;
  }
  return copy(embeds, next, rows);
}

}  // namespace tpc
