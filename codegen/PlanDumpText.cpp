// The human view of a plan: what someone checking the compiler's work on their model reads.
// Columns are sized from the content, so the same plan always gives the same bytes.
#include <algorithm>
#include <cstdio>
#include <sstream>

#include "codegen/PlanDump.h"
#include "codegen/PlanDumpSupport.h"
#include "codegen/PlanFormat.h"
#include "codegen/PlanSummary.h"

namespace tpc {
namespace {

using namespace dumpdetail;

// Rows of cells printed as aligned columns, with free lines (weight slices) in between that
// do not take part in the widths. The last cell of a row is never padded.
class Table {
 public:
  explicit Table(std::string indent) : indent_(std::move(indent)) {}
  void row(std::vector<std::string> cells) { rows_.push_back({std::move(cells), {}}); }
  void line(std::string text) { rows_.push_back({{}, std::move(text)}); }

  void print(std::ostream& os) const {
    std::vector<size_t> widths;
    for (const Row& r : rows_)
      for (size_t c = 0; c < r.cells.size(); ++c) {
        if (widths.size() <= c) widths.push_back(0);
        widths[c] = std::max(widths[c], r.cells[c].size());
      }
    for (const Row& r : rows_) {
      std::string text = indent_;
      if (r.cells.empty()) text += r.line;
      for (size_t c = 0; c < r.cells.size(); ++c) {
        text += r.cells[c];
        if (c + 1 < r.cells.size()) text += std::string(widths[c] - r.cells[c].size() + 2, ' ');
      }
      while (!text.empty() && text.back() == ' ') text.pop_back();
      os << text << "\n";
    }
  }

 private:
  struct Row {
    std::vector<std::string> cells;
    std::string line;
  };
  std::string indent_;
  std::vector<Row> rows_;
};

// The model sizes a reader looks for first, in this order, with the words the header uses.
const std::pair<const char*, const char*> kKeySizes[] = {
    {"vocab_size", "vocab"},
    {"hidden_size", "hidden"},
    {"num_layers", "layers"},
    {"num_heads", "heads"},
    {"num_kv_heads", "kv heads"},
    {"head_dim", "head dim"},
    {"intermediate_size", "intermediate"},
    {"num_experts", "experts"},
    {"num_experts_per_tok", "experts per token"},
    {"moe_intermediate_size", "expert intermediate"},
};

void printHeader(std::ostream& os, const plan::Plan& p) {
  os << "plan        " << printable(p.producer()) << ", schema version " << p.schema_version()
     << "\n";
  const plan::Attr* family = findPlanAttr(p.model(), "family");
  std::string sizes;
  for (const auto& [key, label] : kKeySizes)
    if (const plan::Attr* a = findPlanAttr(p.model(), key))
      sizes += (sizes.empty() ? "" : ", ") + std::string(label) + " " + attrValueText(*a);
  os << "model       " << (family ? attrValueText(*family) : std::string("(no family)"));
  os << (sizes.empty() ? "" : ": " + sizes) << "\n";
  std::string other;
  if (p.model())
    for (const plan::Attr* a : *p.model()) {
      std::string_view key = a->key()->string_view();
      bool shown = key == "family" || std::any_of(std::begin(kKeySizes), std::end(kKeySizes),
                                                  [&](const auto& k) { return key == k.first; });
      if (!shown)
        other += (other.empty() ? "" : ", ") + printable(key) + "=" + attrValueText(*a, 16);
    }
  if (!other.empty()) os << "            " << other << "\n";
  os << "model dir   " << printable(p.model_dir()) << "\n";
  os << "world       " << p.world() << (p.world() == 1 ? " rank" : " ranks") << "\n";
  os << "compute     " << dtypeText(p.compute_dtype()) << "\n";
  os << "limits      max context " << p.limits()->max_context() << ", max batch "
     << p.limits()->max_batch() << ", KV " << bytesText(p.limits()->kv_bytes_per_token())
     << "/token per rank\n";
  os << "checkpoint  " << p.checkpoint()->size()
     << (p.checkpoint()->size() == 1 ? " file" : " files") << "\n";
  Table files("  ");
  for (flatbuffers::uoffset_t i = 0; i < p.checkpoint()->size(); ++i) {
    const plan::CheckpointFile* f = p.checkpoint()->Get(i);
    char hash[32];
    std::snprintf(hash, sizeof hash, "0x%016llx",
                  static_cast<unsigned long long>(f->header_hash()));
    files.row({std::to_string(i), printable(f->name()), bytesText(f->size()),
               std::string("header hash ") + hash});
  }
  files.print(os);
}

// "a, b, c"; a long list (a MoE step's expert weights) is cut to its first names and a count,
// so that one step does not widen the whole table.
std::string operandsText(const plan::RankProgram& prog, const plan::Step& step) {
  const auto& ops = *step.operands();
  constexpr flatbuffers::uoffset_t kAll = 6, kShown = 3;
  std::string out;
  for (flatbuffers::uoffset_t i = 0; i < ops.size() && (ops.size() <= kAll || i < kShown); ++i)
    out += (i ? ", " : "") + operandName(prog, *ops.Get(i));
  if (ops.size() > kAll) out += ", +" + std::to_string(ops.size() - kShown) + " more";
  return out;
}

// Step attributes a reader checks the sharding against; the rest (rope parameters repeated
// on every layer, vocab split bookkeeping) is counted here and spelled out in the JSON dump.
constexpr std::string_view kNotableAttrs[] = {
    "layer",     "heads",        "kv_heads",       "head_dim",  "eps",   "scale",
    "sizes",     "dim",          "start",          "length",    "top_k", "experts",
    "rope_type", "global_width", "global_experts", "peer_stage"};

std::string attrsText(const plan::Step& step) {
  std::string out;
  if (isCollective(step) || step.comm_bytes_per_token() != 0)
    out = "comm " + bytesText(static_cast<uint64_t>(step.comm_bytes_per_token())) + "/token";
  int hidden = 0;
  if (step.attrs())
    for (const plan::Attr* a : *step.attrs()) {
      std::string_view key = a->key()->string_view();
      if (std::find(std::begin(kNotableAttrs), std::end(kNotableAttrs), key) ==
          std::end(kNotableAttrs)) {
        ++hidden;
        continue;
      }
      out += (out.empty() ? "" : "  ") + printable(key) + "=" + attrValueText(*a, 8);
    }
  if (hidden)
    out += (out.empty() ? "" : "  ") + std::string("(+") + std::to_string(hidden) + " more)";
  return out;
}

void printSteps(std::ostream& os, const plan::RankProgram& prog) {
  os << "  steps (" << prog.steps()->size() << ")\n";
  Table t("    ");
  t.row({"#", "op", "rule", "result", "type", "sharding", "operands", "attrs"});
  for (flatbuffers::uoffset_t i = 0; i < prog.steps()->size(); ++i) {
    const plan::Step& step = *prog.steps()->Get(i);
    const auto& results = *step.results();
    if (results.size() == 0)  // a send: it writes nothing here
      t.row({std::to_string(i), printable(step.op()), printable(step.sharding()), "-", "", "",
             operandsText(prog, step), attrsText(step)});
    for (flatbuffers::uoffset_t r = 0; r < results.size(); ++r) {
      uint32_t index = results.Get(r);
      std::string type = "?", sharding = "?";
      if (index < prog.buffers()->size()) {
        const plan::Buffer& b = *prog.buffers()->Get(index);
        type = dtypeText(b.dtype()) + shapeText(b.shape());
        sharding = shardingText(b.sharding());
      }
      if (r == 0)
        t.row({std::to_string(i), printable(step.op()), printable(step.sharding()),
               bufferName(prog, index), type, sharding, operandsText(prog, step), attrsText(step)});
      else
        t.row({"", "", "", bufferName(prog, index), type, sharding});
    }
  }
  t.print(os);
}

std::string sliceText(const plan::Plan& p, const plan::WeightSlice& s) {
  std::string out = "<- " + printable(s.tensor());
  if (s.dim() == 0 || s.dim() == 1)
    out += std::string(s.dim() == 0 ? "[rows " : "[cols ") + std::to_string(s.start()) + ":" +
           std::to_string(s.start() + s.length()) + "]";
  else
    out += " (whole)";
  if (s.dim() != 1 && s.extent() > s.length())
    out += " (+pad " + std::to_string(s.extent() - s.length()) + ")";
  int64_t rows =
      s.dim() == 1 && s.shape() && s.shape()->size() > 0 ? s.shape()->Get(0) : s.extent();
  out +=
      " -> rows " + std::to_string(s.dest_offset()) + ":" + std::to_string(s.dest_offset() + rows);
  return out + "  " + dtypeText(s.dtype()) + shapeText(s.shape()) + " in " + fileName(p, s.file());
}

void printWeights(std::ostream& os, const plan::Plan& p, const plan::RankProgram& prog) {
  os << "  weights (" << prog.weights()->size() << ")\n";
  Table t("    ");
  t.row({"name", "dtype", "shape", "sharding", "bytes"});
  for (const plan::Weight* w : *prog.weights()) {
    t.row({printable(w->name()), dtypeText(w->dtype()), shapeText(w->shape()),
           shardingText(w->sharding()), bytesText(w->bytes())});
    if (w->slices())
      for (const plan::WeightSlice* s : *w->slices()) t.line("  " + sliceText(p, *s));
  }
  t.print(os);
}

std::string namesText(const plan::RankProgram& prog, const flatbuffers::Vector<uint32_t>* indices) {
  std::string out;
  if (indices)
    for (uint32_t i : *indices) out += (out.empty() ? "" : ", ") + bufferName(prog, i);
  return out.empty() ? "(none)" : out;
}

void printRank(std::ostream& os, const plan::Plan& p, const plan::RankProgram& prog,
               bool visionTower = false) {
  int64_t batch = p.limits()->max_batch();
  std::optional<uint64_t> atBatch = bytesAtBatch(prog.arena_bytes_per_token(), batch);
  os << (visionTower ? "\nvision tower, rank " : "\nrank ") << prog.rank() << ": weights "
     << bytesText(prog.weight_bytes()) << ", KV " << bytesText(prog.kv_bytes_per_token())
     << "/token"
     << ", arena "
     << bytesText(static_cast<uint64_t>(std::max<int64_t>(prog.arena_bytes_per_token(), 0)))
     << "/token, " << (atBatch ? bytesText(*atBatch) : std::string("(too large)")) << " at batch "
     << batch << "\n";
  os << "  inputs " << namesText(prog, prog.inputs()) << "; outputs "
     << namesText(prog, prog.outputs()) << "\n";
  printSteps(os, prog);
  printWeights(os, p, prog);
  CollectiveCounts c = countCollectives(prog);
  os << "  collectives per step: " << c.allReduces << " all_reduce, " << c.allGathers
     << " all_gather; " << bytesText(c.bytesPerToken) << " per token\n";
}

}  // namespace

std::string dumpPlanText(const plan::Plan& p, std::optional<uint32_t> rank) {
  std::ostringstream os;
  printHeader(os, p);
  std::vector<const plan::RankProgram*> programs = selectRanks(p, rank);
  if (programs.empty())
    os << "\nrank " << (rank ? std::to_string(*rank) : "") << " is not in this plan\n";
  for (const plan::RankProgram* prog : programs) {
    // llava: the rank's vision tower program (one image per step: its rows are the class slot
    // and the patches), then its text program.
    if (p.vision_tower()) printRank(os, p, *p.vision_tower()->Get(prog->rank()), true);
    printRank(os, p, *prog);
  }
  // The same closing lines `tpc compile` prints, for the ranks shown.
  PlanSummary summary = summarizePlan(p);
  std::erase_if(summary.ranks, [&](const RankSummary& r) { return rank && r.rank != *rank; });
  os << "\nsummary: " << formatPlanSummary(summary);
  return os.str();
}

}  // namespace tpc
