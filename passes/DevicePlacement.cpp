#include "passes/DevicePlacement.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <set>

#include "passes/PipelineStages.h"

namespace tpc {
namespace {

bool isCpu(const std::string& device) { return device == "cpu"; }

// The CUDA index of "cuda:N"; -1 for anything else.
int64_t cudaIndex(const std::string& device) {
  if (device.rfind("cuda:", 0) != 0 || device.size() == 5) return -1;
  int64_t index = 0;
  for (char c : device.substr(5)) {
    if (c < '0' || c > '9') return -1;
    index = index * 10 + (c - '0');
    if (index > 1024) return -1;
  }
  return index;
}

Error checkDevice(const std::string& device) {
  if (isCpu(device) || cudaIndex(device) >= 0) return Error::success();
  return makeError("device map: unknown device '", device, "' (cuda:N or cpu)");
}

// The plan summary's formatter lives in codegen, which passes may not include.
std::string bytesText(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, unit == 0 ? "%.0f %s" : "%.2f %s", value, units[unit]);
  return buf;
}

// What each part of the model costs on a device: its elements at the graph's dtypes on a
// GPU, at 4 bytes each on the CPU (whose backend computes and stores in f32).
class Costs {
 public:
  Costs(const Graph& g, const PlacementLimits& limits) : limits_(limits) {
    const int64_t layers = g.attrs.getInt("num_layers");
    layerElements_.assign(static_cast<size_t>(layers), {});
    kvElements_.assign(static_cast<size_t>(layers), {});
    std::set<std::pair<int64_t, const Value*>> counted;  // (part, parameter)
    bool seenLayer = false;
    for (const Node* n : g.nodes()) {
      int64_t layer = n->results.empty() ? -1 : layerOfName(n->results[0]->name);
      seenLayer |= layer >= 0;
      const int64_t part = layer >= 0 ? layer : (seenLayer ? -2 : -1);
      for (const Value* v : n->operands) {
        if (!v->isParameter() || !counted.insert({part, v}).second) continue;
        Amount a{static_cast<uint64_t>(staticElementCount(v->shape)), v->dtype};
        (part >= 0 ? layerElements_[static_cast<size_t>(part)] : (part == -1 ? head_ : tail_))
            .push_back(a);
      }
      if (n->op == OpKind::Attention && layer >= 0) {
        // K and V of every KV head, for every position of every sequence.
        uint64_t perToken =
            2 * static_cast<uint64_t>(n->attrs.getInt("kv_heads") * n->attrs.getInt("head_dim"));
        kvElements_[static_cast<size_t>(layer)].push_back(
            {perToken * static_cast<uint64_t>(limits.maxContext * limits.maxBatch),
             n->operand(1)->dtype});
      }
    }
    compute_ = parseIrDType(g.attrs.getString("compute_dtype", "f32")).value_or(DType::F32);
  }

  int64_t layers() const { return static_cast<int64_t>(layerElements_.size()); }
  uint64_t layer(int64_t l, const std::string& device) const {
    return bytes(layerElements_[static_cast<size_t>(l)], device) +
           bytes(kvElements_[static_cast<size_t>(l)], device);
  }
  uint64_t head(const std::string& device) const { return bytes(head_, device); }
  uint64_t tail(const std::string& device) const { return bytes(tail_, device); }
  // One step of max-context tokens through the stage's arena.
  uint64_t activations(const std::string& device) const {
    uint64_t perToken = static_cast<uint64_t>(limits_.activationBytesPerToken);
    if (isCpu(device)) perToken = perToken * 4 / std::max<uint64_t>(bitWidth(compute_) / 8, 1);
    return perToken * static_cast<uint64_t>(limits_.maxContext);
  }

 private:
  struct Amount {
    uint64_t elements;
    DType dtype;
  };
  static uint64_t bytes(const std::vector<Amount>& amounts, const std::string& device) {
    uint64_t total = 0;
    for (const Amount& a : amounts)
      total += isCpu(device) ? 4 * a.elements : byteSize(a.dtype, a.elements).value_or(0);
    return total;
  }

  PlacementLimits limits_;
  std::vector<std::vector<Amount>> layerElements_, kvElements_;
  std::vector<Amount> head_, tail_;
  DType compute_ = DType::F32;
};

// The bytes of a stage holding layers [first, first + count) on `device`.
uint64_t stageBytes(const Costs& c, const std::string& device, int64_t first, int64_t count) {
  uint64_t total = c.activations(device);
  for (int64_t l = first; l < first + count; ++l) total += c.layer(l, device);
  if (first == 0) total += c.head(device);
  if (first + count == c.layers()) total += c.tail(device);
  return total;
}

}  // namespace

Expected<std::vector<StagePlacement>> placeByBudget(const Graph& whole,
                                                    std::vector<DeviceBudget> budgets,
                                                    const PlacementLimits& limits) {
  if (budgets.empty()) return makeError("--device-memory names no device");
  std::set<std::string> seen;
  for (const DeviceBudget& b : budgets) {
    if (Error e = checkDevice(b.device)) return e;
    if (!seen.insert(b.device).second)
      return makeError("--device-memory names ", b.device, " twice");
  }
  // GPUs first, by index, then the CPU.
  std::stable_sort(
      budgets.begin(), budgets.end(), [](const DeviceBudget& a, const DeviceBudget& b) {
        auto rank = [](const std::string& d) { return isCpu(d) ? INT64_MAX : cudaIndex(d); };
        return rank(a.device) < rank(b.device);
      });
  Costs costs(whole, limits);
  const int64_t layers = costs.layers();
  std::vector<StagePlacement> stages;
  int64_t next = 0;
  for (size_t d = 0; d < budgets.size() && next < layers; ++d) {
    const DeviceBudget& b = budgets[d];
    const bool last = d + 1 == budgets.size();
    int64_t count = 0;
    // The last device takes everything left, and says by how much it falls short.
    while (next + count < layers &&
           (last || stageBytes(costs, b.device, next, count + 1) <= b.bytes))
      ++count;
    if (count == 0) continue;
    uint64_t need = stageBytes(costs, b.device, next, count);
    if (need > b.bytes)
      return makeError("device map: ", b.device, " would need ", bytesText(need), " for layers ",
                       next, "..", next + count - 1, next + count == layers ? " and lm_head" : "",
                       " (weights, KV cache, activations) but its budget is ", bytesText(b.bytes),
                       ": ", bytesText(need - b.bytes), " missing");
    stages.push_back({b.device, next, count, need});
    next += count;
  }
  return stages;
}

Expected<std::vector<StagePlacement>> placeByCounts(const Graph& whole,
                                                    const std::vector<DeviceLayers>& counts,
                                                    const PlacementLimits& limits) {
  if (counts.empty()) return makeError("--device-map names no device");
  Costs costs(whole, limits);
  const int64_t layers = costs.layers();
  int64_t given = 0, rest = 0;
  for (const DeviceLayers& d : counts) {
    if (Error e = checkDevice(d.device)) return e;
    if (d.layers == -1)
      ++rest;
    else if (d.layers < 1)
      return makeError("--device-map: ", d.device, " needs at least one layer, got ", d.layers);
    else
      given += d.layers;
  }
  if (rest > 1) return makeError("--device-map: only one device may take the rest (*)");
  if (given > layers || (rest == 0 && given != layers) || (rest == 1 && given == layers))
    return makeError("--device-map places ", given, rest ? " layers and the rest" : " layers",
                     " but the model has ", layers);
  std::vector<StagePlacement> stages;
  int64_t next = 0;
  for (const DeviceLayers& d : counts) {
    int64_t count = d.layers == -1 ? layers - given : d.layers;
    stages.push_back({d.device, next, count, stageBytes(costs, d.device, next, count)});
    next += count;
  }
  return stages;
}

std::string stageDevicesText(const std::vector<StagePlacement>& stages) {
  std::string out;
  for (const StagePlacement& s : stages) out += (out.empty() ? "" : ",") + s.device;
  return out;
}

}  // namespace tpc
