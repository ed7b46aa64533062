#include "codegen/PlanReader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "codegen/PlanFormat.h"
#include "ir/Graph.h"

namespace tpc {
namespace {

constexpr int64_t kMaxDim = int64_t{1} << 40;  // far above any real tensor dim
// Far above any real activation or collective payload per token; the bound keeps the sums
// that the summary and dumps take over a whole program inside int64.
constexpr int64_t kMaxBytesPerToken = int64_t{1} << 40;

// A name from the file as it goes into a message: control bytes spelled \xNN, so a corrupted
// name cannot break the one-line error into several.
std::string nameOf(const flatbuffers::String* s) {
  std::string out;
  for (char c : s->string_view()) {
    auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b != 0x7f) {
      out += c;
    } else {
      const char* hex = "0123456789abcdef";
      out += {'\\', 'x', hex[b >> 4], hex[b & 15]};
    }
  }
  return out;
}

// FlatBuffers 2.0's verifier checks a vector's length field for 4-byte alignment only, so a
// damaged offset can leave the elements of a [long] vector 4 bytes off their alignment, and
// reading them is undefined behaviour (UBSan stops there). A writer never produces that.
bool aligned(const flatbuffers::Vector<int64_t>* v) {
  return !v || v->size() == 0 || reinterpret_cast<uintptr_t>(v->data()) % alignof(int64_t) == 0;
}

// Attributes are read by kind, and Ints ones element by element.
Error checkAttrs(const flatbuffers::Vector<flatbuffers::Offset<plan::Attr>>* attrs) {
  if (!attrs) return Error::success();
  for (const plan::Attr* a : *attrs) {
    if (a->kind() > plan::AttrKind::MAX)
      return makeError("attribute ", nameOf(a->key()), " has an unknown kind");
    if (!aligned(a->ints()))
      return makeError("attribute ", nameOf(a->key()), " has misaligned values");
  }
  return Error::success();
}

class SemanticCheck {
 public:
  explicit SemanticCheck(const plan::Plan& p) : p_(p) {}

  Error run() {
    uint32_t world = p_.world();
    if (world < 1 || world > 1024) return bad("world ", world, " is outside 1..1024");
    if (!p_.ranks() || p_.ranks()->size() != world)
      return bad("holds ", p_.ranks() ? p_.ranks()->size() : 0, " rank programs for world ", world);
    if (!p_.limits() || p_.limits()->max_context() < 1 || p_.limits()->max_batch() < 1)
      return bad("limits are missing or not positive");
    if (!p_.checkpoint()) return bad("has no checkpoint file list");
    if (!validDType(p_.compute_dtype()))
      return bad("compute dtype ", int(p_.compute_dtype()), " is unknown");
    if (Error e = checkAttrs(p_.model())) return std::move(e).withContext("plan model ");
    for (const plan::CheckpointFile* f : *p_.checkpoint())
      if (f->name()->str().empty()) return bad("a checkpoint file has an empty name");
    // Pipeline stages: world / pp tensor-parallel ranks each, rank = stage * tp + tp rank;
    // the ranks of one stage run the same steps.
    int64_t pp = planIntAttr(p_.model(), "pp", 1);
    if (pp < 1 || world % pp != 0) return bad(pp, " pipeline stages do not divide world ", world);
    const uint32_t tp = world / static_cast<uint32_t>(pp);
    // A device map's stages may be any number; each stage's tensor-parallel ranks are a power of 2.
    if ((tp & (tp - 1)) != 0)
      return bad(tp, " tensor-parallel ranks per stage (world ", world, ", ", pp,
                 " stages) is not a power of 2");
    std::vector<std::string> firstOps;
    for (uint32_t r = 0; r < world; ++r) {
      const plan::RankProgram* prog = p_.ranks()->Get(r);
      if (prog->rank() != r) return bad("rank program ", r, " says it is rank ", prog->rank());
      if (Error e = checkRank(*prog))
        return std::move(e).withContext("rank " + std::to_string(r) + ": ");
      std::vector<std::string> ops;
      for (const plan::Step* s : *prog->steps()) ops.push_back(s->op()->str());
      if (r % tp == 0)
        firstOps = ops;
      else if (ops != firstOps)
        return bad("rank ", r, " runs a different step sequence than rank ", r - r % tp);
    }
    if (const auto* tower = p_.vision_tower()) {
      if (tower->size() != world)
        return bad("holds ", tower->size(), " vision tower programs for world ", world);
      for (uint32_t r = 0; r < world; ++r) {
        const plan::RankProgram* prog = tower->Get(r);
        if (Error e = checkRank(*prog))
          return std::move(e).withContext("vision tower rank " + std::to_string(r) + ": ");
        if (prog->rank() != r || prog->inputs()->size() != 1 || prog->outputs()->size() != 1)
          return bad("vision tower program ", r, " is not rank ", r,
                     "'s with one input and output");
      }
    }
    return Error::success();
  }

 private:
  template <class... Parts>
  Error bad(Parts&&... parts) const {
    return makeError("plan ", std::forward<Parts>(parts)...);
  }
  static bool validDType(uint8_t d) { return d <= static_cast<uint8_t>(DType::U64); }

  static Error checkShape(const flatbuffers::Vector<int64_t>* shape, const char* what,
                          bool allowSymbolic) {
    if (!shape || shape->size() > 8) return makeError(what, " has no valid shape");
    if (!aligned(shape)) return makeError(what, " has a misaligned shape");
    for (int64_t d : *shape)
      if (d > kMaxDim || d < (allowSymbolic ? kContextDim : 0))
        return makeError(what, " has dim ", d, " out of range");
    return Error::success();
  }

  Error checkRank(const plan::RankProgram& prog) const {
    if (!prog.steps() || !prog.buffers() || !prog.weights() || !prog.inputs() || !prog.outputs())
      return makeError("program is missing steps, buffers, weights, inputs or outputs");
    int64_t arena = prog.arena_bytes_per_token();
    if (arena < 0 || arena > kMaxBytesPerToken)
      return makeError("arena size ", arena, " per token is out of range");
    for (const plan::Buffer* b : *prog.buffers()) {
      std::string what = "buffer " + nameOf(b->name());
      if (!validDType(b->dtype())) return makeError(what, " has an unknown dtype");
      if (Error e = checkShape(b->shape(), what.c_str(), true)) return e;
      if (b->arena_offset() < 0 || b->bytes_per_token() < 0 || b->arena_offset() > arena ||
          b->bytes_per_token() > arena - b->arena_offset())
        return makeError(what, " lies outside the arena (", b->arena_offset(), " + ",
                         b->bytes_per_token(), " > ", arena, ")");
    }
    uint32_t files = p_.checkpoint()->size();
    for (const plan::Weight* w : *prog.weights()) {
      std::string what = "weight " + nameOf(w->name());
      if (!validDType(w->dtype())) return makeError(what, " has an unknown dtype");
      if (Error e = checkShape(w->shape(), what.c_str(), false)) return e;
      if (w->shape()->size() == 0 || !w->slices() || w->slices()->size() == 0)
        return makeError(what, " has no slices");
      int64_t rows = w->shape()->Get(0);
      for (const plan::WeightSlice* s : *w->slices()) {
        std::string sw = what + " slice of " + nameOf(s->tensor());
        if (s->file() >= files)
          return makeError(sw, " names checkpoint file ", s->file(), " of ", files);
        if (!validDType(s->dtype())) return makeError(sw, " has an unknown dtype");
        if (Error e = checkShape(s->shape(), sw.c_str(), false)) return e;
        int64_t dims = s->shape()->size();
        if (dims == 0 || s->dim() < -1 || s->dim() >= dims)
          return makeError(sw, " splits dim ", s->dim(), " of a ", dims, "-d tensor");
        int64_t size = s->shape()->Get(s->dim() < 0 ? 0 : s->dim());
        if (s->start() < 0 || s->length() < 0 || s->start() > size ||
            s->length() > size - s->start() || s->extent() < s->length() || s->extent() > kMaxDim)
          return makeError(sw, " range ", s->start(), "+", s->length(), " is outside ", size);
        int64_t destRows = s->dim() == 1 ? s->shape()->Get(0) : s->extent();
        if (s->dest_offset() < 0 || s->dest_offset() > rows || destRows > rows - s->dest_offset())
          return makeError(sw, " lands outside the weight's ", rows, " rows");
      }
    }
    uint32_t nBuffers = prog.buffers()->size(), nWeights = prog.weights()->size();
    int64_t commTotal = 0;
    for (const plan::Step* s : *prog.steps()) {
      const OpInfo* info = findOp(s->op()->string_view());
      if (!info) return makeError("step op \"", nameOf(s->op()), "\" is unknown");
      int64_t comm = s->comm_bytes_per_token();
      if (comm < 0 || comm > kMaxBytesPerToken - commTotal)
        return makeError("a ", info->name, " step moves ", comm, " bytes per token, out of range");
      commTotal += comm;
      if (!s->operands() || !s->results())
        return makeError("a ", info->name, " step has no operands or results");
      int ops = static_cast<int>(s->operands()->size()),
          res = static_cast<int>(s->results()->size());
      if (ops < info->minOperands || (info->maxOperands >= 0 && ops > info->maxOperands) ||
          (info->results >= 0 && res != info->results) || (res == 0 && info->results != 0))
        return makeError("a ", info->name, " step has ", ops, " operands and ", res, " results");
      for (const plan::Ref* ref : *s->operands()) {
        bool isBuffer = ref->kind() == plan::RefKind::Buffer;
        if (ref->kind() > plan::RefKind::MAX || ref->index() >= (isBuffer ? nBuffers : nWeights))
          return makeError("a ", info->name, " step reads ", isBuffer ? "buffer " : "weight ",
                           ref->index(), " which does not exist");
      }
      for (uint32_t r : *s->results())
        if (r >= nBuffers)
          return makeError("a ", info->name, " step writes buffer ", r, " which does not exist");
      if (Error e = checkAttrs(s->attrs()))
        return std::move(e).withContext("a " + std::string(info->name) + " step's ");
    }
    for (uint32_t i : *prog.inputs())
      if (i >= nBuffers) return makeError("input buffer ", i, " does not exist");
    for (uint32_t i : *prog.outputs())
      if (i >= nBuffers) return makeError("output buffer ", i, " does not exist");
    return Error::success();
  }

  const plan::Plan& p_;
};

}  // namespace

Expected<LoadedPlan> LoadedPlan::fromBytes(std::vector<uint8_t> bytes, const std::string& source) {
  auto fail = [&](const std::string& what) { return makeError(source, ": ", what); };
  if (bytes.size() < 8)
    return fail("not a tpc plan (file is only " + std::to_string(bytes.size()) + " bytes)");
  if (!plan::PlanBufferHasIdentifier(bytes.data())) {
    std::string id(reinterpret_cast<const char*>(bytes.data()) + 4, 4);
    for (char& c : id)
      if (c < 32 || c > 126) c = '?';
    return fail("not a tpc plan (file identifier \"" + id + "\", expected \"TPCP\")");
  }
  flatbuffers::Verifier verifier(bytes.data(), bytes.size(), /*max_depth=*/64,
                                 /*max_tables=*/50'000'000);
  if (!plan::VerifyPlanBuffer(verifier))
    return fail("plan is corrupted or truncated (FlatBuffers verification failed)");
  const plan::Plan* p = plan::GetPlan(bytes.data());
  if (p->schema_version() > kPlanSchemaVersion)
    return fail("plan schema version " + std::to_string(p->schema_version()) +
                " is newer than this build reads (" + std::to_string(kPlanSchemaVersion) +
                "); recompile the plan or update tpc");
  if (p->schema_version() == 0) return fail("plan has no schema version");
  if (Error e = SemanticCheck(*p).run()) return std::move(e).withContext(source + ": ");
  LoadedPlan out;
  out.bytes_ = std::move(bytes);
  out.source_ = source;
  return out;
}

Expected<LoadedPlan> LoadedPlan::readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return makeError(path, ": cannot open (", std::strerror(errno), ")");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad()) return makeError(path, ": read failed");
  return fromBytes(std::move(bytes), path);
}

}  // namespace tpc
