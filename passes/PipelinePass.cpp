// pipeline: places contiguous layer ranges on `pp` stages (each of world / pp tensor-parallel
// ranks), the nodes before the first layer (the embedding) on the first stage and those after
// the last (final norm, lm_head) on the last. Every node gets a `stage`; a value read on
// another stage than the one that makes it crosses through a send on its stage and a recv on
// the reader's, and the outputs (the logits) go back to every other stage, so that every rank
// ends an iteration with them. Runs after insert-collectives: what crosses is then exactly the
// layout each side computes with (the hidden state between layers, replicated), and no
// collective spans two stages.
#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <tuple>

#include "passes/Pass.h"
#include "passes/PipelineStages.h"

namespace tpc {

int64_t layerOfName(const std::string& name) {
  if (name.size() < 3 || name[0] != 'l' || !std::isdigit(static_cast<unsigned char>(name[1])))
    return -1;
  size_t dot = name.find('.');
  if (dot == std::string::npos) return -1;
  for (size_t i = 1; i < dot; ++i)
    if (!std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
  return std::stoll(name.substr(1, dot - 1));
}

std::vector<int64_t> nodeStages(const Graph& g) {
  std::vector<int64_t> stages;
  int64_t current = 0;
  for (const Node* n : g.nodes()) {
    current = n->attrs.getInt("stage", current);
    stages.push_back(current);
  }
  return stages;
}

namespace {

uint64_t parameterBytes(const Value* p) {
  return byteSize(p->dtype, static_cast<uint64_t>(staticElementCount(p->shape))).value_or(0);
}

// Contiguous layer counts, one per stage (each at least 1), that minimise the heaviest stage;
// the first stage also carries `head` bytes, the last `tail`. Ties go to the earliest cut, so
// the choice is deterministic.
std::vector<int64_t> balanceStages(const std::vector<uint64_t>& layerBytes, int64_t stages,
                                   uint64_t head, uint64_t tail) {
  const auto layers = static_cast<int64_t>(layerBytes.size());
  std::vector<uint64_t> prefix(static_cast<size_t>(layers) + 1, 0);
  for (int64_t l = 0; l < layers; ++l)
    prefix[static_cast<size_t>(l) + 1] = prefix[static_cast<size_t>(l)] + layerBytes[l];
  auto cost = [&](int64_t stage, int64_t from, int64_t to) {
    uint64_t c = prefix[static_cast<size_t>(to)] - prefix[static_cast<size_t>(from)];
    if (stage == 0) c += head;
    if (stage == stages - 1) c += tail;
    return c;
  };
  const uint64_t kNone = UINT64_MAX;
  // best[s][i]: the lightest heaviest stage placing the first i layers on stages 0..s.
  std::vector<std::vector<uint64_t>> best(
      static_cast<size_t>(stages), std::vector<uint64_t>(static_cast<size_t>(layers) + 1, kNone));
  std::vector<std::vector<int64_t>> cut(static_cast<size_t>(stages),
                                        std::vector<int64_t>(static_cast<size_t>(layers) + 1, 0));
  for (int64_t i = 1; i <= layers; ++i) best[0][static_cast<size_t>(i)] = cost(0, 0, i);
  for (int64_t s = 1; s < stages; ++s)
    for (int64_t i = s + 1; i <= layers; ++i)
      for (int64_t j = s; j < i; ++j) {
        uint64_t before = best[static_cast<size_t>(s - 1)][static_cast<size_t>(j)];
        if (before == kNone) continue;
        uint64_t c = std::max(before, cost(s, j, i));
        if (c < best[static_cast<size_t>(s)][static_cast<size_t>(i)]) {
          best[static_cast<size_t>(s)][static_cast<size_t>(i)] = c;
          cut[static_cast<size_t>(s)][static_cast<size_t>(i)] = j;
        }
      }
  std::vector<int64_t> counts(static_cast<size_t>(stages));
  int64_t end = layers;
  for (int64_t s = stages - 1; s > 0; --s) {
    int64_t begin = cut[static_cast<size_t>(s)][static_cast<size_t>(end)];
    counts[static_cast<size_t>(s)] = end - begin;
    end = begin;
  }
  counts[0] = end;
  return counts;
}

class PipelinePass : public Pass {
 public:
  PipelinePass(int64_t pp, std::vector<int64_t> stageLayers)
      : pp_(pp), stageLayers_(std::move(stageLayers)) {}
  const char* name() const override { return "pipeline"; }

  Error run(Graph& g) override {
    if (pp_ == 1 && stageLayers_.empty()) return Error::success();
    const int64_t tp = g.attrs.getInt("world", 1);
    if (Error e = checkPipeline(tp * pp_, pp_, stageLayers_)) return e;
    if (g.attrs.has("pp")) return makeError("pipeline: the graph already has stages");
    for (const Node* n : g.nodes())
      if (!n->attrs.has("sharding")) return makeError("pipeline: run shard first");
    Expected<std::vector<int64_t>> layerOfNode = findLayers(g);
    if (!layerOfNode) return layerOfNode.takeError();
    const int64_t layers = g.attrs.getInt("num_layers");
    if (layers < pp_)
      return makeError("pipeline: ", layers, " layers cannot fill ", pp_,
                       " stages (every stage needs at least one layer)");
    std::vector<int64_t> counts = stageLayers_;
    if (counts.empty()) {
      counts = balanceByBytes(g, *layerOfNode, layers);
    } else {
      int64_t total = 0;
      for (int64_t c : counts) total += c;
      if (total != layers)
        return makeError("--stage-layers adds up to ", total, " layers but the model has ", layers);
    }
    std::vector<int64_t> stageOfLayer;
    for (int64_t s = 0; s < pp_; ++s)
      stageOfLayer.insert(stageOfLayer.end(), static_cast<size_t>(counts[s]), s);

    // Nodes before the first layer take stage 0; others follow the last layer seen.
    int64_t current = 0;
    for (size_t i = 0; i < g.nodes().size(); ++i) {
      int64_t layer = (*layerOfNode)[i];
      if (layer >= 0) current = stageOfLayer[static_cast<size_t>(layer)];
      g.nodes()[i]->attrs.setInt("stage", current);
    }
    if (Error e = insertBoundaries(g)) return e;
    g.attrs.setInt("pp", pp_);
    g.attrs.setInt("world", tp * pp_);
    g.attrs.setInts("stage_layers", counts);
    return Error::success();
  }

 private:
  // The layer of each node from its first result's name ("l3.q" is layer 3), -1 for the
  // nodes outside every layer; the layers must run 0, 1, ... in program order.
  static Expected<std::vector<int64_t>> findLayers(const Graph& g) {
    std::vector<int64_t> out;
    int64_t last = -1;
    for (const Node* n : g.nodes()) {
      int64_t layer = n->results.empty() ? -1 : layerOfName(n->results[0]->name);
      if (layer >= 0 && layer != last && layer != last + 1)
        return makeError("pipeline: layer ", layer, " follows layer ", last,
                         " in program order; stages need contiguous layers");
      if (layer >= 0) last = layer;
      out.push_back(layer);
    }
    if (last + 1 != g.attrs.getInt("num_layers"))
      return makeError("pipeline: the graph has ", last + 1, " layers but num_layers says ",
                       g.attrs.getInt("num_layers"));
    return out;
  }

  // Weight bytes per layer (one rank's slices); the embedding's on the first stage, the final
  // norm's and lm_head's on the last (a tied table counts on both, as both load it).
  std::vector<int64_t> balanceByBytes(const Graph& g, const std::vector<int64_t>& layerOfNode,
                                      int64_t layers) const {
    std::vector<uint64_t> layerBytes(static_cast<size_t>(layers), 0);
    uint64_t head = 0, tail = 0;
    std::set<std::pair<int64_t, const Value*>> counted;  // (layer, parameter); -1 head, -2 tail
    bool seenLayer = false;
    for (size_t i = 0; i < g.nodes().size(); ++i) {
      int64_t layer = layerOfNode[i];
      seenLayer |= layer >= 0;
      int64_t where = layer >= 0 ? layer : (seenLayer ? -2 : -1);
      for (const Value* v : g.nodes()[i]->operands) {
        if (!v->isParameter() || !counted.insert({where, v}).second) continue;
        uint64_t bytes = parameterBytes(v);
        if (where >= 0)
          layerBytes[static_cast<size_t>(where)] += bytes;
        else
          (where == -1 ? head : tail) += bytes;
      }
    }
    return balanceStages(layerBytes, pp_, head, tail);
  }

  struct Crossing {
    Value* value;
    int64_t from, to;
    size_t order;  // the producer's place in program order, then the result's index
  };

  Error insertBoundaries(Graph& g) {
    std::vector<int64_t> stage = nodeStages(g);
    std::map<const Node*, int64_t> stageOf;
    std::vector<Node*> first(static_cast<size_t>(pp_), nullptr), last(first);
    for (size_t i = 0; i < g.nodes().size(); ++i) {
      Node* n = g.nodes()[i];
      stageOf[n] = stage[i];
      if (!first[static_cast<size_t>(stage[i])]) first[static_cast<size_t>(stage[i])] = n;
      last[static_cast<size_t>(stage[i])] = n;
    }
    // Values computed on or after a select_rows hold the logit rows only.
    std::set<const Value*> logitRows;
    for (const Node* n : g.nodes()) {
      bool selected = n->op == OpKind::SelectRows;
      for (const Value* v : n->operands) selected |= logitRows.count(v) > 0;
      if (selected) logitRows.insert(n->results.begin(), n->results.end());
    }

    std::vector<Crossing> crossings;
    std::set<std::pair<const Value*, int64_t>> seen;
    for (Node* n : g.nodes())
      for (Value* v : n->operands) {
        if (!v->producer || stageOf[v->producer] == stageOf[n]) continue;
        if (stageOf[v->producer] > stageOf[n])
          return makeError("pipeline: %", v->name, " flows back from stage ", stageOf[v->producer],
                           " to stage ", stageOf[n]);
        if (seen.insert({v, stageOf[n]}).second)
          crossings.push_back({v, stageOf[v->producer], stageOf[n], orderOf(g, v)});
      }
    std::sort(crossings.begin(), crossings.end(), [](const Crossing& a, const Crossing& b) {
      return std::tie(a.from, a.to, a.order) < std::tie(b.from, b.to, b.order);
    });
    // Sends go after the last node of their stage, recvs before the first node of theirs,
    // both in the same order, so every pair of stages agrees on what comes next.
    std::vector<Node*> sendAfter(last);
    std::map<std::pair<const Value*, int64_t>, Value*> received;
    for (const Crossing& c : crossings) {
      sendAfter[static_cast<size_t>(c.from)] =
          g.insertAfter(sendAfter[static_cast<size_t>(c.from)], OpKind::Send, {c.value}, {},
                        boundaryAttrs(*c.value, c.from, c.to, false, logitRows));
      received[{c.value, c.to}] =
          g.insertBefore(first[static_cast<size_t>(c.to)], OpKind::Recv, {},
                         {ResultSpec{g.uniqueName(c.value->name + ".recv"), c.value->dtype,
                                     c.value->shape, c.value->sharding}},
                         boundaryAttrs(*c.value, c.to, c.from, true, logitRows))
              ->result();
    }
    for (Node* n : g.nodes())
      if (n->op != OpKind::Recv)
        for (Value*& v : n->operands) {
          auto it = received.find({v, n->attrs.getInt("stage")});
          if (it != received.end()) v = it->second;
        }

    // Every stage ends with the outputs: the stage that makes them sends them to the others.
    std::vector<Value*> outputs(g.outputs().begin(), g.outputs().end());
    if (outputs.size() != 1)
      return makeError("pipeline: the graph has ", outputs.size(), " outputs, not the one logits");
    std::vector<Value*> staged;
    for (Value* out : outputs) {
      int64_t from = out->producer ? stageOf[out->producer] : 0;
      Node* after = sendAfter[static_cast<size_t>(from)];
      for (int64_t to = 0; to < pp_; ++to) {
        if (to == from) continue;
        after = g.insertAfter(after, OpKind::Send, {out}, {},
                              boundaryAttrs(*out, from, to, false, logitRows));
      }
      sendAfter[static_cast<size_t>(from)] = after;
      for (int64_t to = 0; to < pp_; ++to) {
        if (to == from) {
          staged.push_back(out);
          continue;
        }
        staged.push_back(g.addNode(OpKind::Recv, {},
                                   {ResultSpec{g.uniqueName(out->name + ".recv"), out->dtype,
                                               out->shape, out->sharding}},
                                   boundaryAttrs(*out, to, from, true, logitRows))
                             ->result());
      }
    }
    // One output per stage, in stage order: lowering gives each rank its own stage's.
    g.replaceOutput(outputs[0], staged[0]);
    for (size_t i = 1; i < staged.size(); ++i) g.addOutput(staged[i]);
    return Error::success();
  }

  static size_t orderOf(const Graph& g, const Value* v) {
    size_t index = g.indexOf(v->producer) * 16;
    for (size_t r = 0; r < v->producer->results.size(); ++r)
      if (v->producer->results[r] == v) index += r;
    return index;
  }

  static Attributes boundaryAttrs(const Value& v, int64_t stage, int64_t peer, bool recv,
                                  const std::set<const Value*>& logitRows) {
    Attributes a;
    a.setString("sharding", v.sharding.isReplicated() ? "replicated"
                            : v.sharding.isSplit()    ? "follows-input"
                                                      : "partial");
    a.setInt("stage", stage);
    a.setInt("peer_stage", peer);
    if (recv && logitRows.count(&v)) a.setInt("logit_rows", 1);
    return a;
  }

  int64_t pp_;
  std::vector<int64_t> stageLayers_;
};

}  // namespace

std::unique_ptr<Pass> createPipelinePass(int64_t pp, std::vector<int64_t> stageLayers) {
  return std::make_unique<PipelinePass>(pp, std::move(stageLayers));
}

}  // namespace tpc
