// plan-memory: places every activation in one arena per rank. A value lives from the step that
// makes it to the last step that reads it; first-fit reuses the space of dead values. Every
// activation is [tokens, ...], so offsets are planned in bytes per token: a step of T tokens
// finds a value at offset * T, and no two live values overlap whatever T is.
#include <algorithm>
#include <map>

#include "passes/Pass.h"
#include "passes/PipelineStages.h"

namespace tpc {
namespace {

constexpr int64_t kAlign = 16;  // bytes per token; keeps every value 16-byte aligned

struct Block {
  int64_t offset, size;
  size_t lastUse;
  int64_t stage;  // -1: a graph input, which every stage holds
};

class PlanMemoryPass : public Pass {
 public:
  const char* name() const override { return "plan-memory"; }

  Error run(Graph& g) override {
    const size_t end = g.nodes().size();
    std::map<const Value*, size_t> lastUse;
    for (size_t i = 0; i < end; ++i)
      for (const Value* v : g.nodes()[i]->operands) lastUse[v] = i;
    for (const Value* v : g.outputs()) lastUse[v] = end;

    // Each pipeline stage runs in processes of its own, with an arena of its own: a value only
    // has to avoid the live values of its stage and the inputs.
    const std::vector<int64_t> stages = nodeStages(g);
    std::vector<Block> live;
    int64_t peak = 0;
    auto place = [&](Value* v, size_t defined, int64_t stage) -> Error {
      if (v->shape.empty() || v->shape[0] != Dim::tokens())
        return makeError("plan-memory: %", v->name, " is not a [tokens, ...] activation");
      std::optional<uint64_t> bytes =
          byteSize(v->dtype, static_cast<uint64_t>(staticElementCount(v->shape)));
      if (!bytes) return makeError("plan-memory: %", v->name, " has no whole byte size");
      int64_t size = (static_cast<int64_t>(*bytes) + kAlign - 1) / kAlign * kAlign;
      auto it = lastUse.find(v);
      size_t dies = it == lastUse.end() ? defined : it->second;
      std::sort(live.begin(), live.end(),
                [](const Block& a, const Block& b) { return a.offset < b.offset; });
      int64_t offset = 0;
      for (const Block& b : live) {
        if (b.stage >= 0 && b.stage != stage) continue;
        if (b.offset - offset >= size) break;
        offset = std::max(offset, b.offset + b.size);
      }
      v->arenaOffset = offset;
      live.push_back({offset, size, dies, stage});
      peak = std::max(peak, offset + size);
      return Error::success();
    };

    for (Value* v : g.inputs())
      if (Error e = place(v, 0, -1)) return e;
    for (size_t i = 0; i < end; ++i) {
      // Operands read by this step stay put until it is done, so results never alias them.
      live.erase(
          std::remove_if(live.begin(), live.end(), [&](const Block& b) { return b.lastUse < i; }),
          live.end());
      for (Value* r : g.nodes()[i]->results)
        if (Error e = place(r, i, stages[i])) return e;
    }
    g.attrs.setInt("arena_bytes_per_token", peak);
    return Error::success();
  }
};

}  // namespace

std::unique_ptr<Pass> createPlanMemoryPass() { return std::make_unique<PlanMemoryPass>(); }

}  // namespace tpc
