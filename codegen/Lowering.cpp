#include "codegen/Lowering.h"

#include <algorithm>
#include <map>
#include <set>

#include "codegen/PlanFormat.h"
#include "passes/PipelineStages.h"

namespace tpc {
namespace {

using flatbuffers::FlatBufferBuilder;
using flatbuffers::Offset;

Offset<flatbuffers::Vector<Offset<plan::Attr>>> encodeAttrs(FlatBufferBuilder& fb,
                                                            const Attributes& attrs,
                                                            const char* skip = nullptr) {
  std::vector<Offset<plan::Attr>> out;
  for (const auto& [key, value] : attrs.entries()) {
    if (skip && key == skip) continue;
    auto k = fb.CreateString(key);
    if (auto* i = std::get_if<int64_t>(&value)) {
      out.push_back(plan::CreateAttr(fb, k, plan::AttrKind::Int, *i));
    } else if (auto* d = std::get_if<double>(&value)) {
      out.push_back(plan::CreateAttr(fb, k, plan::AttrKind::Float, 0, *d));
    } else if (auto* s = std::get_if<std::string>(&value)) {
      out.push_back(plan::CreateAttr(fb, k, plan::AttrKind::String, 0, 0, fb.CreateString(*s)));
    } else {
      auto ints = fb.CreateVector(std::get<std::vector<int64_t>>(value));
      out.push_back(plan::CreateAttr(fb, k, plan::AttrKind::Ints, 0, 0, 0, ints));
    }
  }
  return fb.CreateVector(out);
}

std::vector<int64_t> encodeShape(const Shape& s) {
  std::vector<int64_t> out;
  for (const Dim& d : s) out.push_back(encodeDim(d));
  return out;
}

class RankLowering {
 public:
  // Rank `rank` of a grid of `pp` stages of world / pp tensor-parallel ranks: rank =
  // stage * tp + tp rank. Its program holds its stage's nodes; its weights are its tp rank's.
  RankLowering(FlatBufferBuilder& fb, const Graph& g, const PlanSource& source,
               const PlanLimits& limits, int64_t rank, int64_t world, int64_t pp,
               const std::vector<int64_t>& stages)
      : fb_(fb),
        g_(g),
        source_(source),
        limits_(limits),
        rank_(rank),
        tp_(world / pp),
        tpRank_(rank % (world / pp)),
        stage_(rank / (world / pp)),
        pp_(pp) {
    for (size_t i = 0; i < g.nodes().size(); ++i)
      if (stages[i] == stage_) nodes_.push_back(g.nodes()[i]);
  }

  Expected<Offset<plan::RankProgram>> lower() {
    std::vector<Offset<plan::Buffer>> buffers;
    int64_t arenaEnd = 0;
    auto addBuffer = [&](const Value* v) {
      index_[v] = {plan::RefKind::Buffer, static_cast<uint32_t>(buffers.size())};
      auto bytes = byteSize(v->dtype, static_cast<uint64_t>(staticElementCount(v->shape)));
      arenaEnd = std::max(arenaEnd, v->arenaOffset + static_cast<int64_t>(bytes.value_or(0)));
      plan::Sharding sh = encodeSharding(v->sharding);
      buffers.push_back(
          plan::CreateBuffer(fb_, fb_.CreateString(v->name), static_cast<uint8_t>(v->dtype),
                             fb_.CreateVector(encodeShape(v->shape)), &sh, v->arenaOffset,
                             static_cast<int64_t>(bytes.value_or(0))));
    };
    for (const Value* v : g_.inputs()) addBuffer(v);
    for (const Node* n : nodes_)
      for (const Value* r : n->results) addBuffer(r);

    std::set<const Value*> used;
    for (const Node* n : nodes_) used.insert(n->operands.begin(), n->operands.end());
    std::vector<Offset<plan::Weight>> weights;
    uint64_t weightBytes = 0;
    for (const Value* p : g_.parameters()) {
      if (!used.count(p)) continue;  // another stage's
      Expected<Offset<plan::Weight>> w = lowerWeight(*p, weightBytes);
      if (!w) return w.takeError();
      index_[p] = {plan::RefKind::Weight, static_cast<uint32_t>(weights.size())};
      weights.push_back(*w);
    }

    std::vector<Offset<plan::Step>> steps;
    uint64_t kvBytes = 0;
    for (const Node* n : nodes_) {
      std::vector<plan::Ref> operands;
      for (const Value* v : n->operands)
        operands.push_back(plan::Ref(index_[v].first, index_[v].second));
      std::vector<uint32_t> results;
      for (const Value* r : n->results) results.push_back(index_[r].second);
      int64_t comm = 0;
      if (n->op == OpKind::AllReduce || n->op == OpKind::AllGather ||
          n->op == OpKind::AllReduceAddRmsNorm)
        comm = static_cast<int64_t>(
            byteSize(n->result()->dtype, staticElementCount(n->result()->shape)).value_or(0));
      if (n->op == OpKind::Send || n->op == OpKind::Recv) {
        const Value* v = n->op == OpKind::Send ? n->operand(0) : n->result();
        comm = static_cast<int64_t>(byteSize(v->dtype, staticElementCount(v->shape)).value_or(0));
      }
      if (n->op == OpKind::Attention) {
        // K and V of one token for every local KV head: the paged pool is sized at run time
        // from the memory left, so the plan says only what a token costs.
        uint64_t perPosition = 2 * n->attrs.getInt("kv_heads") * n->attrs.getInt("head_dim");
        kvBytes += byteSize(n->operand(1)->dtype, perPosition).value_or(0);
      }
      steps.push_back(plan::CreateStep(
          fb_, fb_.CreateString(opName(n->op)), fb_.CreateString(n->attrs.getString("sharding")),
          fb_.CreateVectorOfStructs(operands), fb_.CreateVector(results),
          encodeAttrs(fb_, n->attrs, "sharding"), comm));
    }
    kvBytesPerToken_ = kvBytes;
    std::vector<uint32_t> inputs, outputs;
    for (const Value* v : g_.inputs()) inputs.push_back(index_[v].second);
    for (const Value* v : g_.outputs())
      if (index_.count(v)) outputs.push_back(index_[v].second);
    // A stage's values are all it needs room for; one stage keeps the planned arena as it is.
    int64_t arena = pp_ == 1 ? g_.attrs.getInt("arena_bytes_per_token") : arenaEnd;
    return plan::CreateRankProgram(fb_, static_cast<uint32_t>(rank_), fb_.CreateVector(steps),
                                   fb_.CreateVector(buffers), fb_.CreateVector(weights),
                                   fb_.CreateVector(inputs), fb_.CreateVector(outputs), arena,
                                   weightBytes, kvBytes);
  }

 private:
  Expected<Offset<plan::Weight>> lowerWeight(const Value& p, uint64_t& total) {
    std::vector<Offset<plan::WeightSlice>> slices;
    int64_t destRow = 0;
    // A stack of every rank's weight (whole pieces under a split parameter): this rank's rows
    // of the concatenation, [stackBegin, stackEnd).
    bool stacked = p.sharding.isSplit();
    int64_t stackRows = 0;
    for (const WeightPiece& piece : p.pieces) {
      stacked = stacked && piece.sharding.isReplicated();
      stackRows += piece.shape[0].size;
    }
    int64_t stackBegin = 0, stackEnd = 0, pieceBegin = 0;
    if (stacked) {
      SliceRange mine = sliceOf(stackRows, p.sharding.parts, p.sharding.pieceOf(tpRank_, tp_));
      stackBegin = mine.start;
      stackEnd = mine.start + mine.length;
    }
    for (const WeightPiece& piece : p.pieces) {
      std::optional<size_t> file = source_.fileOf(piece.tensor);
      if (!file) return makeError("tensor \"", piece.tensor, "\" is in no checkpoint file");
      int dim = -1;
      SliceRange range{0, piece.shape[0].size, piece.shape[0].size};
      if (stacked) {
        int64_t rows = piece.shape[0].size;
        int64_t begin = std::max(stackBegin, pieceBegin),
                end = std::min(stackEnd, pieceBegin + rows);
        pieceBegin += rows;
        if (begin >= end) continue;  // another rank's
        if (end - begin < rows) {
          dim = 0;
          range = {begin - (pieceBegin - rows), end - begin, end - begin};
        }
      } else if (piece.sharding.isSplit()) {
        dim = piece.sharding.dim;
        range = sliceOf(piece.shape[dim].size, piece.sharding.parts,
                        piece.sharding.pieceOf(tpRank_, tp_));
      }
      slices.push_back(plan::CreateWeightSlice(
          fb_, fb_.CreateString(piece.tensor), static_cast<uint32_t>(*file),
          static_cast<uint8_t>(piece.dtype), fb_.CreateVector(encodeShape(piece.shape)), dim,
          range.start, range.length, range.extent, destRow));
      destRow += dim == 0 || dim == -1 ? range.extent : piece.shape[0].size;
    }
    uint64_t bytes =
        byteSize(p.dtype, static_cast<uint64_t>(staticElementCount(p.shape))).value_or(0);
    total += bytes;
    plan::Sharding sh = encodeSharding(p.sharding);
    return plan::CreateWeight(fb_, fb_.CreateString(p.name), static_cast<uint8_t>(p.dtype),
                              fb_.CreateVector(encodeShape(p.shape)), &sh, fb_.CreateVector(slices),
                              bytes);
  }

 public:
  uint64_t kvBytesPerToken() const { return kvBytesPerToken_; }

 private:
  FlatBufferBuilder& fb_;
  const Graph& g_;
  const PlanSource& source_;
  const PlanLimits& limits_;
  int64_t rank_, tp_, tpRank_, stage_, pp_;
  std::vector<const Node*> nodes_;
  std::map<const Value*, std::pair<plan::RefKind, uint32_t>> index_;
  uint64_t kvBytesPerToken_ = 0;
};

}  // namespace

Expected<std::vector<uint8_t>> lowerToPlan(const Graph& g, const PlanSource& source,
                                           const PlanLimits& limits, const Graph* visionTower) {
  int64_t world = g.attrs.getInt("world", 1), pp = g.attrs.getInt("pp", 1);
  if (pp < 1 || world % pp != 0)
    return makeError("lowering: ", pp, " stages do not divide world ", world);
  std::vector<int64_t> stages = nodeStages(g);
  if (!g.attrs.has("arena_bytes_per_token"))
    return makeError("lowering needs a memory-planned graph");
  if (limits.maxContext < 1 || limits.maxBatch < 1)
    return makeError("max context and max batch must be positive");
  FlatBufferBuilder fb(1 << 16);
  std::vector<Offset<plan::RankProgram>> ranks;
  uint64_t kvBytesPerToken = 0;
  for (int64_t r = 0; r < world; ++r) {
    RankLowering lowering(fb, g, source, limits, r, world, pp, stages);
    Expected<Offset<plan::RankProgram>> program = lowering.lower();
    if (!program) return program.takeError();
    ranks.push_back(*program);
    kvBytesPerToken = std::max(kvBytesPerToken, lowering.kvBytesPerToken());
  }
  std::vector<Offset<plan::RankProgram>> tower;
  if (visionTower) {
    if (visionTower->attrs.getInt("world", 1) != world ||
        !visionTower->attrs.has("arena_bytes_per_token"))
      return makeError("the vision tower must be sharded and planned for world ", world);
    // The tower is one stage: every rank runs it whole (compileModel refuses stages for it).
    const std::vector<int64_t> towerStages(visionTower->nodes().size(), 0);
    for (int64_t r = 0; r < world; ++r) {
      Expected<Offset<plan::RankProgram>> program =
          RankLowering(fb, *visionTower, source, limits, r, world, 1, towerStages).lower();
      if (!program) return program.takeError().withContext("vision tower: ");
      tower.push_back(*program);
    }
  }
  std::vector<Offset<plan::CheckpointFile>> files;
  for (const CheckpointFileInfo& f : source.files)
    files.push_back(plan::CreateCheckpointFile(fb, fb.CreateString(f.name), f.size, f.headerHash));
  DType compute = parseIrDType(g.attrs.getString("compute_dtype", "f32")).value_or(DType::F32);
  auto root = plan::CreatePlan(
      fb, kPlanSchemaVersion, fb.CreateString(kPlanProducer), encodeAttrs(fb, g.attrs),
      fb.CreateString(source.modelDir), static_cast<uint32_t>(world), static_cast<uint8_t>(compute),
      plan::CreateLimits(fb, limits.maxContext, limits.maxBatch, kvBytesPerToken),
      fb.CreateVector(files), fb.CreateVector(ranks), visionTower ? fb.CreateVector(tower) : 0);
  plan::FinishPlanBuffer(fb, root);
  return std::vector<uint8_t>(fb.GetBufferPointer(), fb.GetBufferPointer() + fb.GetSize());
}

}  // namespace tpc
