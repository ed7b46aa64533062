#include "codegen/PlanSummary.h"

#include <map>

#include "codegen/PlanFormat.h"

#include <algorithm>
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

std::vector<StageSummary> summarizeStages(const plan::Plan& p, int64_t pp, int64_t tp) {
  std::vector<StageSummary> out;
  std::vector<std::string> devices;
  if (const plan::Attr* a = findPlanAttr(p.model(), "stage_devices"); a && a->string_value()) {
    std::string text = a->string_value()->str();
    for (size_t start = 0; start <= text.size();) {
      size_t comma = text.find(',', start);
      devices.push_back(text.substr(start, comma == std::string::npos ? comma : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  for (int64_t stage = 0; stage < pp; ++stage) {
    StageSummary st;
    st.stage = stage;
    if (static_cast<size_t>(stage) < devices.size())
      st.device = devices[static_cast<size_t>(stage)];
    st.firstRank = static_cast<uint32_t>(stage * tp);
    st.ranks = static_cast<uint32_t>(tp);
    std::map<int64_t, int64_t> sends;
    for (const plan::Step* step : *p.ranks()->Get(st.firstRank)->steps()) {
      std::string_view op = step->op()->string_view();
      if (op == "attention") {
        int64_t layer = planIntAttr(step->attrs(), "layer");
        if (st.firstLayer < 0) st.firstLayer = layer;
        st.lastLayer = layer;
      } else if (op == "send") {
        sends[planIntAttr(step->attrs(), "peer_stage")] += step->comm_bytes_per_token();
      }
    }
    st.sendsTo.assign(sends.begin(), sends.end());
    out.push_back(st);
  }
  return out;
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
  s.pp = planIntAttr(p.model(), "pp", 1);
  s.tp = s.world / s.pp;
  if (s.pp > 1 || findPlanAttr(p.model(), "stage_devices"))
    s.stages = summarizeStages(p, s.pp, s.tp);
  const plan::RankProgram* first = p.ranks()->Get(0);
  std::vector<uint32_t> expertSums;  // buffers written by expert-parallel steps
  for (const plan::Step* step : *first->steps()) {
    std::string op = step->op()->str();
    // The fused all-reduce + add + RMSNorm still sends an all-reduce's bytes.
    const bool reduce = op == "all_reduce" || op == "all_reduce_add_rms_norm";
    if (op == "moe_experts" && step->sharding()->string_view() == "expert-parallel") {
      s.expertsPerRank = planIntAttr(step->attrs(), "experts");
      s.experts = planIntAttr(step->attrs(), "global_experts");
      expertSums.push_back(step->results()->Get(0));
    }
    if (reduce && std::find(expertSums.begin(), expertSums.end(),
                            step->operands()->Get(0)->index()) != expertSums.end()) {
      ++s.exchanges;
      s.exchangeBytesPerToken += step->comm_bytes_per_token();
    }
    if (!reduce && op != "all_gather") continue;
    const plan::Buffer* out = first->buffers()->Get(step->results()->Get(0));
    s.collectives.push_back({op, out->name()->str(), step->comm_bytes_per_token()});
    (reduce ? s.allReduces : s.allGathers)++;
    s.commBytesPerToken += step->comm_bytes_per_token();
  }
  return s;
}

std::string formatPlanSummary(const PlanSummary& s) {
  std::ostringstream os;
  os << "world " << s.world << ", max context " << s.maxContext << ", max batch " << s.maxBatch
     << "\n";
  if (!s.stages.empty()) {
    os << "grid: " << s.pp << " pipeline stages x " << s.tp
       << " tensor-parallel ranks (rank = stage * " << s.tp << " + tp rank)\n";
    for (const StageSummary& st : s.stages) {
      os << "  stage " << st.stage;
      if (!st.device.empty()) os << " on " << st.device;
      os << ": ranks " << st.firstRank;
      if (st.ranks > 1) os << ".." << st.firstRank + st.ranks - 1;
      os << ", layers ";
      if (st.firstLayer < 0)
        os << "none";
      else
        os << st.firstLayer << ".." << st.lastLayer;
      if (st.stage == 0) os << " + embedding";
      if (st.stage == s.pp - 1) os << " + final norm, lm_head";
      for (const auto& [peer, bytes] : st.sendsTo)
        os << "; to stage " << peer << " " << bytesText(static_cast<double>(bytes)) << "/token";
      os << "\n";
    }
  }
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
  if (s.experts > 0)
    os << "expert parallel: " << s.expertsPerRank << " of " << s.experts
       << " experts per rank; token exchange: " << s.exchanges << " all-reduce, "
       << bytesText(static_cast<double>(s.exchangeBytesPerToken)) << " per token per rank\n";
  return os.str();
}

}  // namespace tpc
