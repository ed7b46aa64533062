// One rank's dataflow as Graphviz. Node ids come from plan indices (s<step>, w<weight>,
// b<buffer>), so the output is stable and two ranks' graphs can be diffed.
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "codegen/PlanDump.h"
#include "codegen/PlanDumpSupport.h"

namespace tpc {
namespace {

using namespace dumpdetail;

// Past this many weights (MoE models hold one per expert and projection) the weight nodes
// bury the dataflow, so they are left out.
constexpr flatbuffers::uoffset_t kMaxWeightNodes = 200;

// A label line for a double-quoted dot string: quotes and backslashes escaped, and bytes
// outside printable ASCII written out, since Graphviz rejects some of them.
std::string dotEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto b = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (b < 0x20 || b >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\\\x%02x", b);
      out += hex;
    } else {
      out += c;
    }
  }
  return out;
}

std::string label(std::initializer_list<std::string> lines) {
  std::string out;
  for (const std::string& l : lines) out += (out.empty() ? "" : "\\n") + dotEscape(l);
  return "\"" + out + "\"";
}

std::string bufferType(const plan::RankProgram& prog, uint32_t index) {
  if (index >= prog.buffers()->size()) return "?";
  const plan::Buffer& b = *prog.buffers()->Get(index);
  return dtypeText(b.dtype()) + shapeText(b.shape()) + " " + shardingText(b.sharding());
}

std::string rawName(const plan::RankProgram& prog, uint32_t index) {
  return index < prog.buffers()->size() ? raw(prog.buffers()->Get(index)->name())
                                        : bufferName(prog, index);
}

}  // namespace

std::string dumpPlanDot(const plan::Plan& p, std::optional<uint32_t> rank) {
  std::vector<const plan::RankProgram*> programs = selectRanks(p, rank.value_or(0));
  std::ostringstream os;
  os << "digraph plan {\n";
  if (programs.empty()) {
    os << "  // rank " << rank.value_or(0) << " is not in this plan\n}\n";
    return os.str();
  }
  const plan::RankProgram& prog = *programs.front();
  const auto& steps = *prog.steps();
  const auto& weights = *prog.weights();
  bool showWeights = weights.size() <= kMaxWeightNodes;
  os << "  // " << dotEscape(raw(p.producer())) << ": rank " << prog.rank() << " of " << p.world()
     << ", " << steps.size() << " steps, " << weights.size() << " weights\n";
  if (!showWeights)
    os << "  // weights left out: " << weights.size() << " is more than " << kMaxWeightNodes
       << " (the dataflow would drown in them)\n";
  os << "  graph [rankdir=TB, fontname=\"Helvetica\", label="
     << label({"rank " + std::to_string(prog.rank())}) << "];\n";
  os << "  node [shape=box, style=rounded, fontname=\"Helvetica\", fontsize=10];\n";
  os << "  edge [fontname=\"Helvetica\", fontsize=8];\n";

  // Which step writes each buffer; the first writer wins on a (malformed) second one.
  std::map<uint32_t, flatbuffers::uoffset_t> producer;
  for (flatbuffers::uoffset_t i = 0; i < steps.size(); ++i)
    for (uint32_t r : *steps.Get(i)->results()) producer.emplace(r, i);

  // Buffers no step writes (the executor's inputs, or leftovers) get a node of their own.
  std::set<uint32_t> sources;
  for (uint32_t i : *prog.inputs()) sources.insert(i);
  for (const plan::Step* step : steps)
    for (const plan::Ref* ref : *step->operands())
      if (ref->kind() == plan::RefKind::Buffer && !producer.count(ref->index()))
        sources.insert(ref->index());
  for (uint32_t b : sources)
    os << "  b" << b
       << " [shape=ellipse, style=solid, label=" << label({rawName(prog, b), bufferType(prog, b)})
       << "];\n";

  for (flatbuffers::uoffset_t i = 0; i < steps.size(); ++i) {
    const plan::Step& step = *steps.Get(i);
    std::string first = "#" + std::to_string(i) + " " + raw(step.op());
    std::string shape =
        step.results()->size() == 0 ? std::string("-") : bufferType(prog, step.results()->Get(0));
    if (step.results()->size() > 1)
      shape += " +" + std::to_string(step.results()->size() - 1) + " more";
    os << "  s" << i << " [label=" << label({first, raw(step.sharding()), shape});
    if (isCollective(step))
      os << ", style=\"rounded,filled\", fillcolor=orange, xlabel="
         << label({bytesText(static_cast<uint64_t>(step.comm_bytes_per_token())) + "/token"});
    os << "];\n";
  }

  if (showWeights) {
    std::set<uint32_t> used;
    for (const plan::Step* step : steps)
      for (const plan::Ref* ref : *step->operands())
        if (ref->kind() == plan::RefKind::Weight && ref->index() < weights.size())
          used.insert(ref->index());
    for (uint32_t w : used) {
      const plan::Weight& weight = *weights.Get(w);
      os << "  w" << w
         << " [shape=note, style=filled, color=grey60, fillcolor=grey92, fontsize=8, label="
         << label({raw(weight.name()), dtypeText(weight.dtype()) + shapeText(weight.shape())})
         << "];\n";
    }
  }

  for (flatbuffers::uoffset_t i = 0; i < steps.size(); ++i) {
    for (const plan::Ref* ref : *steps.Get(i)->operands()) {
      if (ref->kind() == plan::RefKind::Weight) {
        if (showWeights && ref->index() < weights.size())
          os << "  w" << ref->index() << " -> s" << i << " [color=grey60, arrowsize=0.5];\n";
        continue;
      }
      auto from = producer.find(ref->index());
      os << "  "
         << (from == producer.end() ? "b" + std::to_string(ref->index())
                                    : "s" + std::to_string(from->second))
         << " -> s" << i << " [label=" << label({rawName(prog, ref->index())}) << "];\n";
    }
  }

  // The buffers the executor reads back (logits) end in output nodes.
  for (uint32_t o : *prog.outputs()) {
    os << "  out" << o
       << " [shape=ellipse, label=" << label({rawName(prog, o), bufferType(prog, o)}) << "];\n";
    auto from = producer.find(o);
    os << "  "
       << (from == producer.end() ? "b" + std::to_string(o) : "s" + std::to_string(from->second))
       << " -> out" << o << ";\n";
  }
  os << "}\n";
  return os.str();
}

}  // namespace tpc
