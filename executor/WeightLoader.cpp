#include "executor/WeightLoader.h"

#include <cstring>

#include "ir/DType.h"
#include "ir/Float16.h"

namespace tpc {
namespace {

float readElement(const uint8_t* p, DType dtype) {
  switch (dtype) {
    case DType::F32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return bf16ToF32(h);
    }
    default: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return f16ToF32(h);
    }
  }
}

int64_t product(const flatbuffers::Vector<int64_t>& shape, uint32_t from) {
  int64_t n = 1;
  for (uint32_t i = from; i < shape.size(); ++i) n *= shape.Get(i);
  return n;
}

}  // namespace

Expected<Checkpoint> openPlanCheckpoint(const plan::Plan& plan, const std::string& modelDir) {
  std::string dir = modelDir.empty() && plan.model_dir() ? plan.model_dir()->str() : modelDir;
  Expected<Checkpoint> checkpoint = Checkpoint::open(dir);
  if (!checkpoint) return checkpoint.takeError();
  for (const plan::CheckpointFile* want : *plan.checkpoint()) {
    const SafetensorsFile* found = nullptr;
    for (const SafetensorsFile& f : checkpoint->files()) {
      std::string path = f.path();
      std::string name = path.substr(path.find_last_of('/') + 1);
      if (name == want->name()->str()) found = &f;
    }
    if (!found)
      return makeError(dir, ": checkpoint file ", want->name()->str(),
                       " that the plan was compiled from is missing");
    if (found->fileSize() != want->size() || found->headerHash() != want->header_hash())
      return makeError(found->path(), " changed since the plan was compiled (",
                       found->fileSize() != want->size() ? "size" : "header",
                       " differs); recompile the plan");
  }
  return checkpoint;
}

Expected<std::vector<float>> loadWeightF32(const plan::Plan& plan, uint32_t rank,
                                           const Checkpoint& checkpoint, uint32_t weight) {
  return loadProgramWeightF32(*plan.ranks()->Get(rank), checkpoint, weight);
}

Expected<std::vector<float>> loadProgramWeightF32(const plan::RankProgram& program,
                                                  const Checkpoint& checkpoint, uint32_t weight) {
  const plan::Weight* w = program.weights()->Get(weight);
  int64_t rows = w->shape()->Get(0), cols = product(*w->shape(), 1);
  std::vector<float> data(static_cast<size_t>(rows * cols), 0.0f);
  for (const plan::WeightSlice* s : *w->slices()) {
    const Checkpoint::Entry* entry = checkpoint.find(s->tensor()->string_view());
    if (!entry)
      return makeError("tensor \"", s->tensor()->str(), "\" of weight ", w->name()->str(),
                       " is not in the checkpoint");
    const TensorInfo& info = *entry->info;
    std::vector<int64_t> planShape(s->shape()->begin(), s->shape()->end());
    if (info.shape != planShape || static_cast<uint8_t>(info.dtype) != s->dtype())
      return makeError("tensor \"", info.name,
                       "\" differs from the plan's record of it; recompile the plan");
    if (!isComputeDType(info.dtype))
      return makeError("tensor \"", info.name, "\" is not f32, f16 or bf16");
    int64_t srcRows = planShape[0], srcCols = product(*s->shape(), 1);
    // Rows (dim 0) or columns (dim 1) of the source that this rank holds; the rest is padding.
    int64_t rowBegin = 0, rowCount = srcRows, colBegin = 0, colCount = srcCols;
    if (s->dim() == 0) {
      rowBegin = s->start();
      rowCount = s->length();
    } else if (s->dim() == 1) {
      colBegin = s->start();
      colCount = s->length();
    }
    if (s->dest_offset() + rowCount > rows || colCount > cols)
      return makeError("weight ", w->name()->str(), ": slice of ", info.name, " does not fit");
    std::span<const uint8_t> bytes = checkpoint.files()[entry->file].bytes(info);
    size_t width = bitWidth(info.dtype) / 8;
    for (int64_t r = 0; r < rowCount; ++r) {
      const uint8_t* src = bytes.data() + ((rowBegin + r) * srcCols + colBegin) * width;
      float* dst = data.data() + (s->dest_offset() + r) * cols;
      for (int64_t c = 0; c < colCount; ++c) dst[c] = readElement(src + c * width, info.dtype);
    }
  }
  return data;
}

Expected<std::vector<std::vector<float>>> loadWeightsF32(const plan::Plan& plan, uint32_t rank,
                                                         const Checkpoint& checkpoint,
                                                         const std::function<void()>& onWeight) {
  const uint32_t count = plan.ranks()->Get(rank)->weights()->size();
  std::vector<std::vector<float>> out;
  out.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    Expected<std::vector<float>> data = loadWeightF32(plan, rank, checkpoint, i);
    if (!data) return data.takeError();
    out.push_back(std::move(*data));
    if (onWeight) onWeight();
  }
  return out;
}

}  // namespace tpc
