// The three dumps of compiled plans, checked against facts taken from the spec and from the
// plan's own tables (never against text the dumper produced).
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "codegen/PlanDump.h"
#include "tests/support/Fixtures.h"

namespace tpc {
namespace {

using Json = nlohmann::json;
using test::compileSpec;
using test::presetSpec;

const int64_t kWorlds[] = {2, 8};

LoadedPlan compile(const ModelSpec& spec, int64_t world) {
  Expected<LoadedPlan> plan = compileSpec(spec, world);
  if (!plan) throw std::runtime_error(plan.errorMessage());
  return std::move(*plan);
}

int64_t countOp(const plan::RankProgram& rank, std::string_view op) {
  int64_t n = 0;
  for (const plan::Step* s : *rank.steps()) n += s->op()->string_view() == op;
  return n;
}

// A line split at spaces, the leading indent dropped.
std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// "s12" for prefix 's': a dot node id; "12" for prefix 0: a step row's index.
bool isId(const std::string& word, char prefix) {
  size_t digits = prefix ? 1 : 0;
  if (word.size() <= digits || (prefix && word[0] != prefix)) return false;
  return word.find_first_not_of("0123456789", digits) == std::string::npos;
}

// Lines of `text` for which `match(words, line)` holds.
template <class Match>
int64_t countLines(const std::string& text, Match match) {
  std::istringstream in(text);
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) n += match(words(line), line);
  return n;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Text rows of a step table: indented, starting with the step index and the op.
auto stepRow(const std::string& op = "") {
  return [op](const std::vector<std::string>& w, const std::string& line) {
    return line.rfind("    ", 0) == 0 && w.size() >= 2 && isId(w[0], 0) &&
           (op.empty() || w[1] == op);
  };
}

// Dot lines "ID [..." or "FROM -> TO [...".
auto dotNode(char prefix, const std::string& attr = "") {
  return [=](const std::vector<std::string>& w, const std::string& line) {
    return w.size() >= 2 && isId(w[0], prefix) && w[1][0] == '[' && contains(line, attr);
  };
}
auto dotEdge(const std::string& from, char to, const std::string& attr = "") {
  return [=](const std::vector<std::string>& w, const std::string& line) {
    bool fromOk = w.size() >= 3 &&
                  std::any_of(from.begin(), from.end(), [&](char p) { return isId(w[0], p); });
    return fromOk && w[1] == "->" && isId(w[2], to) && contains(line, attr);
  };
}

// Bytes of a weight from its shape and dtype (every preset here is bf16).
uint64_t bf16Bytes(const plan::Weight& w) {
  uint64_t n = 2;
  for (int64_t d : *w.shape()) n *= static_cast<uint64_t>(d);
  return n;
}

TEST(PlanDump, TextShowsEveryStepWeightAndCollective) {
  ModelSpec spec = presetSpec(Family::Llama);
  for (int64_t world : kWorlds) {
    SCOPED_TRACE("world " + std::to_string(world));
    LoadedPlan loaded = compile(spec, world);
    const plan::Plan& p = loaded.plan();
    std::string all = dumpPlanText(p, std::nullopt);
    EXPECT_NE(all.find("model.safetensors"), std::string::npos);
    EXPECT_NE(all.find("0x0000000000005eed"), std::string::npos)
        << "the fixture's header hash, in hex";
    EXPECT_NE(all.find("world       " + std::to_string(world) + " ranks"), std::string::npos);
    for (const plan::RankProgram* rank : *p.ranks()) {
      SCOPED_TRACE("rank " + std::to_string(rank->rank()));
      std::string text = dumpPlanText(p, rank->rank());
      uint64_t weightBytes = 0;
      for (const plan::Weight* w : *rank->weights()) {
        weightBytes += bf16Bytes(*w);
        EXPECT_NE(text.find(w->name()->str()), std::string::npos) << w->name()->str();
      }
      ASSERT_EQ(weightBytes, rank->weight_bytes());
      EXPECT_NE(text.find("rank " + std::to_string(rank->rank()) + ": weights"), std::string::npos);
      EXPECT_NE(text.find("(" + std::to_string(weightBytes) + " B)"), std::string::npos);
      EXPECT_NE(text.find("steps (" + std::to_string(rank->steps()->size()) + ")"),
                std::string::npos);
      // One table row per step: its index, then its op.
      EXPECT_EQ(countLines(text, stepRow()), static_cast<int64_t>(rank->steps()->size()));
      // The embedding's all-reduce stands alone; fuse joins the others to their add_rms_norm.
      EXPECT_EQ(countLines(text,
                           [](const auto& w, const std::string& line) {
                             return stepRow("all_reduce")(w, line) &&
                                    contains(line, "comm 256 B/token");
                           }),
                1);
      EXPECT_EQ(countLines(text,
                           [](const auto& w, const std::string& line) {
                             return stepRow("all_reduce_add_rms_norm")(w, line) &&
                                    contains(line, "comm 256 B/token");
                           }),
                2 * spec.numLayers);
      EXPECT_EQ(countLines(text, stepRow("all_gather")), 1);
      std::string totals = "collectives per step: " + std::to_string(2 * spec.numLayers + 1) +
                           " all_reduce, 1 all_gather";
      EXPECT_NE(text.find(totals), std::string::npos);
      // Only the asked rank is shown.
      uint32_t other = (rank->rank() + 1) % world;
      EXPECT_EQ(text.find("\nrank " + std::to_string(other) + ":"), std::string::npos);
    }
  }
}

TEST(PlanDump, JsonHoldsEveryRankWithItsStepsWeightsAndCollectives) {
  ModelSpec spec = presetSpec(Family::Llama);
  for (int64_t world : kWorlds) {
    SCOPED_TRACE("world " + std::to_string(world));
    LoadedPlan loaded = compile(spec, world);
    const plan::Plan& p = loaded.plan();
    Json doc = Json::parse(dumpPlanJson(p, std::nullopt));
    EXPECT_EQ(doc["format_version"], 1);
    EXPECT_EQ(doc["world"], world);
    EXPECT_EQ(doc["model"]["vocab_size"], spec.vocabSize);
    EXPECT_EQ(doc["model"]["num_layers"], spec.numLayers);
    EXPECT_EQ(doc["compute_dtype"], "bf16");
    EXPECT_EQ(doc["checkpoint"][0]["header_hash"], "0000000000005eed");
    ASSERT_EQ(doc["ranks"].size(), static_cast<size_t>(world));
    for (int64_t r = 0; r < world; ++r) {
      const Json& rank = doc["ranks"][r];
      const plan::RankProgram& prog = *p.ranks()->Get(static_cast<uint32_t>(r));
      EXPECT_EQ(rank["rank"], r);
      EXPECT_EQ(rank["collectives"]["all_reduce"], 2 * spec.numLayers + 1);
      EXPECT_EQ(rank["collectives"]["all_gather"], 1);
      // bf16 hidden states reduced; f32 logits gathered over the vocab padded to the world.
      int64_t paddedVocab = (spec.vocabSize + world - 1) / world * world;
      EXPECT_EQ(rank["collectives"]["bytes_per_token"],
                (2 * spec.numLayers + 1) * spec.hiddenSize * 2 + paddedVocab * 4);
      ASSERT_EQ(rank["steps"].size(), prog.steps()->size());
      int64_t reduces = 0;
      for (size_t i = 0; i < prog.steps()->size(); ++i) {
        const Json& step = rank["steps"][i];
        EXPECT_EQ(step["op"], prog.steps()->Get(static_cast<uint32_t>(i))->op()->str());
        EXPECT_EQ(step["results"][0]["shape"][0], "tokens") << "activations are [tokens, ...]";
        reduces += step["op"] == "all_reduce" || step["op"] == "all_reduce_add_rms_norm";
      }
      EXPECT_EQ(reduces, 2 * spec.numLayers + 1);
      EXPECT_EQ(rank["steps"][0]["operands"][0], (Json{{"kind", "buffer"}, {"name", "token_ids"}}));
      ASSERT_EQ(rank["weights"].size(), prog.weights()->size());
      for (const Json& w : rank["weights"]) {
        int64_t rows = 0;
        for (const Json& s : w["slices"]) {
          EXPECT_EQ(s["file"], "model.safetensors");
          if (s["dim"] != 1) rows += s["extent"].get<int64_t>();
        }
        if (w["slices"][0]["dim"] != 1) {
          EXPECT_EQ(rows, w["shape"][0]) << w["name"] << ": slices fill every row";
        }
      }
    }
    // A vocab split across the world shows as split(0,world) on the embedding.
    EXPECT_EQ(doc["ranks"][0]["weights"][0]["sharding"], "split(0," + std::to_string(world) + ")");
    for (uint32_t r : {0u, static_cast<uint32_t>(world - 1)}) {
      Json one = Json::parse(dumpPlanJson(p, r));
      ASSERT_EQ(one["ranks"].size(), 1u);
      EXPECT_EQ(one["ranks"][0]["rank"], r);
      EXPECT_EQ(one["ranks"][0], doc["ranks"][r]);
    }
  }
}

// Expert parallelism: the summary names the experts per rank and the token exchange with its
// bytes per token, worked out here from the spec: one all_reduce of the bf16 hidden state per
// MoE layer.
TEST(PlanDump, ExpertParallelShowsTheTokenExchangeAndItsBytes) {
  ModelSpec spec = presetSpec(Family::Mixtral);
  const int64_t experts = spec.moe.numExperts;
  const int64_t exchangeBytes = spec.numLayers * spec.hiddenSize * 2;
  for (int64_t world : {2, 4, 8}) {
    SCOPED_TRACE("world " + std::to_string(world));
    Expected<LoadedPlan> loaded = compileSpec(spec, world, {"expert-parallel"});
    ASSERT_TRUE(loaded) << loaded.errorMessage();
    const plan::Plan& p = loaded->plan();
    const int64_t local = experts / world;
    std::string text = dumpPlanText(p, std::nullopt);
    EXPECT_TRUE(contains(
        text, "expert parallel: " + std::to_string(local) + " of " + std::to_string(experts) +
                  " experts per rank; token exchange: " + std::to_string(spec.numLayers) +
                  " all-reduce, " + std::to_string(exchangeBytes) + " B per token per rank"))
        << text.substr(text.rfind("summary:"));
    EXPECT_EQ(countLines(text,
                         [](const std::vector<std::string>& w, const std::string& line) {
                           return stepRow("moe_experts")(w, line) && w[2] == "expert-parallel" &&
                                  contains(line, "global_experts=8");
                         }),
              world * spec.numLayers);
    Json doc = Json::parse(dumpPlanJson(p, std::nullopt));
    const Json& ep = doc["summary"]["expert_parallel"];
    EXPECT_EQ(ep["experts"], experts);
    EXPECT_EQ(ep["experts_per_rank"], local);
    EXPECT_EQ(ep["exchange"], "all_reduce");
    EXPECT_EQ(ep["exchanges"], spec.numLayers);
    EXPECT_EQ(ep["exchange_bytes_per_token"], exchangeBytes);
    // Each rank's expert weights are whole checkpoint experts of its own group.
    for (const Json& rank : doc["ranks"]) {
      int64_t whole = 0;
      for (const Json& w : rank["weights"]) {
        std::string tensor = w["slices"][0]["tensor"];
        size_t at = tensor.find("experts.");
        if (at == std::string::npos) continue;
        ASSERT_EQ(w["slices"].size(), 1u);
        EXPECT_EQ(w["slices"][0]["dim"], -1);
        EXPECT_EQ(std::stoll(tensor.substr(at + 8)) / local, rank["rank"].get<int64_t>());
        ++whole;
      }
      EXPECT_EQ(whole, 3 * local * spec.numLayers);
    }
  }
  // Tensor-parallel plans of the same model have no expert-parallel summary.
  Json tp = Json::parse(dumpPlanJson(compile(spec, 2).plan(), std::nullopt));
  EXPECT_FALSE(tp["summary"].contains("expert_parallel"));
  EXPECT_FALSE(contains(dumpPlanText(compile(spec, 2).plan(), std::nullopt), "expert parallel"));
}

TEST(PlanDump, DotHasOneNodePerStepAndOneEdgePerOperand) {
  ModelSpec spec = presetSpec(Family::Llama);
  for (int64_t world : kWorlds) {
    SCOPED_TRACE("world " + std::to_string(world));
    LoadedPlan loaded = compile(spec, world);
    const plan::Plan& p = loaded.plan();
    for (uint32_t r : {0u, static_cast<uint32_t>(world - 1)}) {
      const plan::RankProgram& prog = *p.ranks()->Get(r);
      std::string dot = dumpPlanDot(p, r);
      ASSERT_EQ(dot.rfind("digraph", 0), 0u);
      EXPECT_EQ(countLines(dot, dotNode('s', "[label=")),
                static_cast<int64_t>(prog.steps()->size()));
      EXPECT_EQ(countLines(dot, dotNode('s', "fillcolor=orange")),
                countOp(prog, "all_reduce") + countOp(prog, "all_reduce_add_rms_norm") +
                    countOp(prog, "all_gather"));
      int64_t bufferOperands = 0, weightOperands = 0;
      for (const plan::Step* s : *prog.steps())
        for (const plan::Ref* ref : *s->operands())
          (ref->kind() == plan::RefKind::Buffer ? bufferOperands : weightOperands)++;
      EXPECT_EQ(countLines(dot, dotEdge("bs", 's', "[label=")), bufferOperands);
      EXPECT_EQ(countLines(dot, dotEdge("w", 's')), weightOperands);
      EXPECT_EQ(countLines(dot, dotNode('b', "[shape=ellipse")),
                static_cast<int64_t>(prog.inputs()->size()));
      EXPECT_NE(dot.find("label=\"token_ids"), std::string::npos);
    }
    EXPECT_EQ(dumpPlanDot(p, std::nullopt), dumpPlanDot(p, 0)) << "rank 0 when none is given";
  }
}

TEST(PlanDump, DotLeavesOutWeightsOfLargeModels) {
  ModelSpec spec = presetSpec(Family::Mixtral);
  spec.moe.numExperts = 64;  // 2 layers x 64 experts x 2 fused projections: over 200 weights
  LoadedPlan loaded = compile(spec, 2);
  ASSERT_GT(loaded.plan().ranks()->Get(0)->weights()->size(), 200u);
  std::string dot = dumpPlanDot(loaded.plan(), 1);
  EXPECT_EQ(countLines(dot, [](const auto& w,
                               const std::string&) { return !w.empty() && isId(w[0], 'w'); }),
            0);
  EXPECT_EQ(countLines(dot,
                       [](const auto&, const std::string& line) {
                         return line.rfind("  // weights left out: ", 0) == 0;
                       }),
            1);
  EXPECT_EQ(countLines(dot, dotNode('s', "[label=")),
            static_cast<int64_t>(loaded.plan().ranks()->Get(1)->steps()->size()));
}

TEST(PlanDump, EveryFamilyDumpsTheSameBytesTwice) {
  for (Family family : test::kAllFamilies) {
    ModelSpec spec = presetSpec(family);
    for (int64_t world : {1, 4}) {
      SCOPED_TRACE(std::string(familyName(family)) + " world " + std::to_string(world));
      LoadedPlan a = compile(spec, world), b = compile(spec, world);
      for (std::optional<uint32_t> rank : {std::optional<uint32_t>(), std::optional<uint32_t>(0)}) {
        std::string text = dumpPlanText(a.plan(), rank), json = dumpPlanJson(a.plan(), rank);
        std::string dot = dumpPlanDot(a.plan(), rank);
        EXPECT_EQ(text, dumpPlanText(a.plan(), rank));
        EXPECT_EQ(json, dumpPlanJson(a.plan(), rank));
        EXPECT_EQ(dot, dumpPlanDot(a.plan(), rank));
        // A second compile of the same model dumps the same bytes too.
        EXPECT_EQ(text, dumpPlanText(b.plan(), rank));
        EXPECT_EQ(json, dumpPlanJson(b.plan(), rank));
        EXPECT_EQ(dot, dumpPlanDot(b.plan(), rank));
        Json doc = Json::parse(json);
        EXPECT_EQ(doc["ranks"].size(), rank ? 1u : static_cast<size_t>(world));
        EXPECT_EQ(doc["model"]["family"], familyName(family));
      }
    }
  }
}

TEST(PlanDump, RankOutsideTheWorldGivesAnEmptyViewNotACrash) {
  LoadedPlan loaded = compile(presetSpec(Family::Llama), 2);
  EXPECT_EQ(Json::parse(dumpPlanJson(loaded.plan(), 2))["ranks"].size(), 0u);
  EXPECT_NE(dumpPlanText(loaded.plan(), 99).find("rank 99 is not in this plan"), std::string::npos);
  EXPECT_NE(dumpPlanDot(loaded.plan(), 99).find("rank 99 is not in this plan"), std::string::npos);
}

}  // namespace
}  // namespace tpc
