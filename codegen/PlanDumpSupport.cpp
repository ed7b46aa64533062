#include "codegen/PlanDumpSupport.h"

#include "codegen/PlanSummary.h"

#include <charconv>
#include <cstdio>

#include "codegen/PlanFormat.h"
#include "ir/DType.h"

namespace tpc::dumpdetail {

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b != 0x7f) {
      out += c;
      continue;
    }
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02x", b);
    out += hex;
  }
  return out;
}

std::string printable(const flatbuffers::String* s) {
  return s ? printable(s->string_view()) : std::string();
}

std::string raw(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

std::string dimText(int64_t dim) {
  if (dim == kTokensDim) return "tokens";
  if (dim == kContextDim) return "context";
  return std::to_string(dim);
}

std::string shapeText(const flatbuffers::Vector<int64_t>* shape) {
  std::string out = "[";
  if (shape)
    for (flatbuffers::uoffset_t i = 0; i < shape->size(); ++i)
      out += (i ? ", " : "") + dimText(shape->Get(i));
  return out + "]";
}

std::string shardingText(const plan::Sharding* s) {
  if (!s) return "replicated";
  switch (s->kind()) {
    case plan::ShardingKind::Replicated:
      return "replicated";
    case plan::ShardingKind::Split:
      return "split(" + std::to_string(s->dim()) + "," + std::to_string(s->parts()) + ")";
    case plan::ShardingKind::Partial:
      return "partial";
  }
  return "sharding(" + std::to_string(static_cast<int>(s->kind())) + ")";
}

std::string dtypeText(uint8_t dtype) {
  if (dtype > static_cast<uint8_t>(DType::U64)) return "dtype(" + std::to_string(dtype) + ")";
  return std::string(irName(static_cast<DType>(dtype)));
}

std::string bytesText(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  return formatBytes(bytes) + " (" + std::to_string(bytes) + " B)";
}

std::string doubleText(double value) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) return "?";
  return std::string(buf, end);
}

std::string attrValueText(const plan::Attr& a, size_t maxInts) {
  switch (a.kind()) {
    case plan::AttrKind::Int:
      return std::to_string(a.int_value());
    case plan::AttrKind::Float:
      return doubleText(a.float_value());
    case plan::AttrKind::String:
      return printable(a.string_value());
    case plan::AttrKind::Ints: {
      std::string out = "[";
      size_t n = a.ints() ? a.ints()->size() : 0;
      for (size_t i = 0; i < n && i < maxInts; ++i)
        out +=
            (i ? ", " : "") + std::to_string(a.ints()->Get(static_cast<flatbuffers::uoffset_t>(i)));
      if (n > maxInts) out += ", ... " + std::to_string(n - maxInts) + " more";
      return out + "]";
    }
  }
  return "?";
}

std::optional<uint64_t> bytesAtBatch(int64_t bytesPerToken, int64_t batch) {
  uint64_t out = 0;
  if (bytesPerToken < 0 || batch < 0 ||
      __builtin_mul_overflow(static_cast<uint64_t>(bytesPerToken), static_cast<uint64_t>(batch),
                             &out))
    return std::nullopt;
  return out;
}

std::vector<const plan::RankProgram*> selectRanks(const plan::Plan& plan,
                                                  std::optional<uint32_t> rank) {
  std::vector<const plan::RankProgram*> out;
  if (!plan.ranks()) return out;
  for (const plan::RankProgram* program : *plan.ranks())
    if (!rank || program->rank() == *rank) out.push_back(program);
  return out;
}

bool isCollective(const plan::Step& step) {
  std::string_view op = step.op()->string_view();
  return op == "all_reduce" || op == "all_reduce_add_rms_norm" || op == "all_gather";
}

CollectiveCounts countCollectives(const plan::RankProgram& program) {
  CollectiveCounts c;
  for (const plan::Step* step : *program.steps()) {
    std::string_view op = step->op()->string_view();
    if (op == "all_reduce" || op == "all_reduce_add_rms_norm")
      ++c.allReduces;
    else if (op == "all_gather")
      ++c.allGathers;
    else
      continue;
    c.bytesPerToken += static_cast<uint64_t>(step->comm_bytes_per_token());
  }
  return c;
}

std::string bufferName(const plan::RankProgram& program, uint32_t index) {
  if (index >= program.buffers()->size()) return "buffer#" + std::to_string(index);
  return printable(program.buffers()->Get(index)->name());
}

std::string operandName(const plan::RankProgram& program, const plan::Ref& ref) {
  if (ref.kind() == plan::RefKind::Buffer) return bufferName(program, ref.index());
  if (ref.index() >= program.weights()->size()) return "weight#" + std::to_string(ref.index());
  return printable(program.weights()->Get(ref.index())->name());
}

std::string fileName(const plan::Plan& plan, uint32_t file) {
  if (!plan.checkpoint() || file >= plan.checkpoint()->size())
    return "file#" + std::to_string(file);
  return printable(plan.checkpoint()->Get(file)->name());
}

}  // namespace tpc::dumpdetail
