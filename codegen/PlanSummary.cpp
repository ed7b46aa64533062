#include "codegen/PlanSummary.h"

#include "codegen/PlanFormat.h"

#include <cstdio>
#include <sstream>

namespace tpc {
std::string formatBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 6) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f %s" : "%.2f %s", value, units[unit]);
  return buf;
}

namespace {

std::string bytesText(double bytes) {
  return formatBytes(bytes < 0 ? 0 : static_cast<uint64_t>(bytes));
}

}  // namespace

PlanSummary summarizePlan(const plan::Plan& p) {
  PlanSummary s;
  s.world = p.world();
  s.maxContext = p.limits()->max_context();
  s.maxBatch = p.limits()->max_batch();
  if (const plan::Attr* family = findPlanAttr(p.model(), "family");
      family && family->string_value())
    s.family = family->string_value()->str();
  for (const plan::RankProgram* r : *p.ranks())
    s.ranks.push_back({r->rank(), r->weight_bytes(), r->kv_bytes_per_token(),
                       r->arena_bytes_per_token(), r->steps()->size()});
  const plan::RankProgram* first = p.ranks()->Get(0);
  for (const plan::Step* step : *first->steps()) {
    std::string op = step->op()->str();
    if (op != "all_reduce" && op != "all_gather") continue;
    const plan::Buffer* out = first->buffers()->Get(step->results()->Get(0));
    s.collectives.push_back({op, out->name()->str(), step->comm_bytes_per_token()});
    (op == "all_reduce" ? s.allReduces : s.allGathers)++;
    s.commBytesPerToken += step->comm_bytes_per_token();
  }
  return s;
}

std::string formatPlanSummary(const PlanSummary& s) {
  std::ostringstream os;
  os << "world " << s.world << ", max context " << s.maxContext << ", max batch " << s.maxBatch
     << "\n";
  for (const RankSummary& r : s.ranks) {
    os << "  rank " << r.rank << ": weights " << bytesText(static_cast<double>(r.weightBytes))
       << ", KV " << bytesText(static_cast<double>(r.kvBytesPerToken)) << "/token, activations "
       << bytesText(static_cast<double>(r.arenaBytesPerToken)) << "/token ("
       << bytesText(static_cast<double>(r.arenaBytesPerToken) * static_cast<double>(s.maxBatch))
       << " at batch " << s.maxBatch << "), " << r.steps << " steps\n";
  }
  os << "collectives per step: " << s.allReduces << " all-reduce, " << s.allGathers
     << " all-gather; " << bytesText(static_cast<double>(s.commBytesPerToken))
     << " per token per rank\n";
  return os.str();
}

}  // namespace tpc
