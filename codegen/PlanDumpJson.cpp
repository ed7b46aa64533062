// The machine view of a plan, laid out as docs/plan-json.md documents. Keys keep insertion
// order (ordered_json), so the document is byte-for-byte stable for a given plan.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "codegen/PlanDump.h"
#include "codegen/PlanDumpSupport.h"
#include "codegen/PlanSummary.h"

namespace tpc {
namespace {

using namespace dumpdetail;
using Json = nlohmann::ordered_json;

// Symbolic dims as their names, so a consumer cannot mistake -1 for a size.
Json shapeJson(const flatbuffers::Vector<int64_t>* shape) {
  Json out = Json::array();
  if (shape)
    for (int64_t d : *shape) out.push_back(d < 0 ? Json(dimText(d)) : Json(d));
  return out;
}

Json attrJson(const plan::Attr& a) {
  switch (a.kind()) {
    case plan::AttrKind::Int:
      return a.int_value();
    case plan::AttrKind::Float:
      return a.float_value();  // NaN and infinities print as null
    case plan::AttrKind::String:
      return raw(a.string_value());
    case plan::AttrKind::Ints: {
      Json out = Json::array();
      if (a.ints())
        for (int64_t v : *a.ints()) out.push_back(v);
      return out;
    }
  }
  return nullptr;
}

Json attrsJson(const flatbuffers::Vector<flatbuffers::Offset<plan::Attr>>* attrs) {
  Json out = Json::object();
  if (attrs)
    for (const plan::Attr* a : *attrs) out[raw(a->key())] = attrJson(*a);
  return out;
}

std::string rawBufferName(const plan::RankProgram& prog, uint32_t index) {
  return index < prog.buffers()->size() ? raw(prog.buffers()->Get(index)->name())
                                        : bufferName(prog, index);
}

Json bufferJson(const plan::RankProgram& prog, uint32_t index) {
  Json out;
  out["name"] = rawBufferName(prog, index);
  if (index >= prog.buffers()->size()) return out;
  const plan::Buffer& b = *prog.buffers()->Get(index);
  out["dtype"] = dtypeText(b.dtype());
  out["shape"] = shapeJson(b.shape());
  out["sharding"] = shardingText(b.sharding());
  out["arena_offset"] = b.arena_offset();
  out["bytes_per_token"] = b.bytes_per_token();
  return out;
}

Json stepJson(const plan::RankProgram& prog, flatbuffers::uoffset_t index) {
  const plan::Step& step = *prog.steps()->Get(index);
  Json out;
  out["index"] = index;
  out["op"] = raw(step.op());
  out["sharding"] = raw(step.sharding());
  Json operands = Json::array();
  for (const plan::Ref* ref : *step.operands()) {
    bool isBuffer = ref->kind() == plan::RefKind::Buffer;
    std::string name;
    if (isBuffer)
      name = rawBufferName(prog, ref->index());
    else if (ref->index() < prog.weights()->size())
      name = raw(prog.weights()->Get(ref->index())->name());
    else
      name = operandName(prog, *ref);
    operands.push_back(Json{{"kind", isBuffer ? "buffer" : "weight"}, {"name", name}});
  }
  out["operands"] = std::move(operands);
  Json results = Json::array();
  for (uint32_t r : *step.results()) results.push_back(bufferJson(prog, r));
  out["results"] = std::move(results);
  out["attrs"] = attrsJson(step.attrs());
  out["comm_bytes_per_token"] = step.comm_bytes_per_token();
  return out;
}

Json weightJson(const plan::Plan& p, const plan::Weight& w) {
  Json out;
  out["name"] = raw(w.name());
  out["dtype"] = dtypeText(w.dtype());
  out["shape"] = shapeJson(w.shape());
  out["sharding"] = shardingText(w.sharding());
  out["bytes"] = w.bytes();
  Json slices = Json::array();
  if (w.slices())
    for (const plan::WeightSlice* s : *w.slices()) {
      Json slice;
      slice["tensor"] = raw(s->tensor());
      bool known = p.checkpoint() && s->file() < p.checkpoint()->size();
      slice["file"] = known ? raw(p.checkpoint()->Get(s->file())->name()) : fileName(p, s->file());
      slice["dim"] = s->dim();
      slice["start"] = s->start();
      slice["length"] = s->length();
      slice["extent"] = s->extent();
      slice["dest_offset"] = s->dest_offset();
      slice["tensor_dtype"] = dtypeText(s->dtype());
      slice["tensor_shape"] = shapeJson(s->shape());
      slices.push_back(std::move(slice));
    }
  out["slices"] = std::move(slices);
  return out;
}

Json namesJson(const plan::RankProgram& prog, const flatbuffers::Vector<uint32_t>* indices) {
  Json out = Json::array();
  if (indices)
    for (uint32_t i : *indices) out.push_back(rawBufferName(prog, i));
  return out;
}

Json rankJson(const plan::Plan& p, const plan::RankProgram& prog) {
  Json out;
  out["rank"] = prog.rank();
  out["weight_bytes"] = prog.weight_bytes();
  out["kv_bytes_per_token"] = prog.kv_bytes_per_token();
  out["arena_bytes_per_token"] = prog.arena_bytes_per_token();
  std::optional<uint64_t> atBatch =
      bytesAtBatch(prog.arena_bytes_per_token(), p.limits()->max_batch());
  out["arena_bytes_at_max_batch"] = atBatch ? Json(*atBatch) : Json(nullptr);
  out["inputs"] = namesJson(prog, prog.inputs());
  out["outputs"] = namesJson(prog, prog.outputs());
  Json steps = Json::array();
  for (flatbuffers::uoffset_t i = 0; i < prog.steps()->size(); ++i)
    steps.push_back(stepJson(prog, i));
  out["steps"] = std::move(steps);
  Json weights = Json::array();
  for (const plan::Weight* w : *prog.weights()) weights.push_back(weightJson(p, *w));
  out["weights"] = std::move(weights);
  CollectiveCounts c = countCollectives(prog);
  out["collectives"] = Json{{"all_reduce", c.allReduces},
                            {"all_gather", c.allGathers},
                            {"bytes_per_token", c.bytesPerToken}};
  return out;
}

Json summaryJson(const PlanSummary& s) {
  Json out;
  out["family"] = s.family;
  out["world"] = s.world;
  out["max_context"] = s.maxContext;
  out["max_batch"] = s.maxBatch;
  Json ranks = Json::array();
  for (const RankSummary& r : s.ranks)
    ranks.push_back(Json{{"rank", r.rank},
                         {"weight_bytes", r.weightBytes},
                         {"kv_bytes_per_token", r.kvBytesPerToken},
                         {"arena_bytes_per_token", r.arenaBytesPerToken},
                         {"steps", r.steps}});
  out["ranks"] = std::move(ranks);
  Json collectives = Json::array();
  for (const CollectiveSummary& c : s.collectives)
    collectives.push_back(
        Json{{"op", c.op}, {"value", c.value}, {"bytes_per_token", c.bytesPerToken}});
  out["collectives"] = std::move(collectives);
  out["all_reduce"] = s.allReduces;
  out["all_gather"] = s.allGathers;
  out["comm_bytes_per_token"] = s.commBytesPerToken;
  if (s.experts > 0)
    out["expert_parallel"] = Json{{"experts", s.experts},
                                  {"experts_per_rank", s.expertsPerRank},
                                  {"exchange", "all_reduce"},
                                  {"exchanges", s.exchanges},
                                  {"exchange_bytes_per_token", s.exchangeBytesPerToken}};
  if (!s.stages.empty()) {
    Json stages = Json::array();
    for (const StageSummary& st : s.stages) {
      Json sends = Json::array();
      for (const auto& [peer, bytes] : st.sendsTo)
        sends.push_back(Json{{"stage", peer}, {"bytes_per_token", bytes}});
      Json one{{"stage", st.stage},          {"first_rank", st.firstRank},
               {"ranks", st.ranks},          {"first_layer", st.firstLayer},
               {"last_layer", st.lastLayer}, {"sends", std::move(sends)}};
      if (!st.device.empty()) one["device"] = st.device;
      stages.push_back(std::move(one));
    }
    out["pipeline"] = Json{{"pp", s.pp}, {"tp", s.tp}, {"stages", std::move(stages)}};
  }
  return out;
}

}  // namespace

std::string dumpPlanJson(const plan::Plan& p, std::optional<uint32_t> rank) {
  Json doc;
  doc["format_version"] = 1;
  doc["producer"] = raw(p.producer());
  doc["schema_version"] = p.schema_version();
  doc["model"] = attrsJson(p.model());
  doc["model_dir"] = raw(p.model_dir());
  doc["world"] = p.world();
  doc["compute_dtype"] = dtypeText(p.compute_dtype());
  doc["limits"] = Json{{"max_context", p.limits()->max_context()},
                       {"max_batch", p.limits()->max_batch()},
                       {"kv_bytes_per_token", p.limits()->kv_bytes_per_token()}};
  Json files = Json::array();
  for (const plan::CheckpointFile* f : *p.checkpoint()) {
    char hash[24];
    std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(f->header_hash()));
    files.push_back(Json{{"name", raw(f->name())}, {"size", f->size()}, {"header_hash", hash}});
  }
  doc["checkpoint"] = std::move(files);
  Json ranks = Json::array();
  for (const plan::RankProgram* prog : selectRanks(p, rank)) ranks.push_back(rankJson(p, *prog));
  doc["ranks"] = std::move(ranks);
  doc["summary"] = summaryJson(summarizePlan(p));
  // Names come from the file unchecked for UTF-8; replacing bad bytes keeps the output valid JSON.
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace tpc
