#include "tools/common/DeviceMap.h"

#include "passes/Pass.h"
#include "tools/common/Args.h"

namespace tpc::cli {
namespace {

// "a=1,b=2" as (a, 1), (b, 2); errors name `flag`.
Expected<std::vector<std::pair<std::string, std::string>>> splitPairs(const std::string& text,
                                                                      const std::string& flag) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      return makeError(flag, ": '", item, "' is not DEVICE=VALUE (e.g. cuda:0=16 or cpu=200GiB)");
    out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

Expected<std::vector<DeviceBudget>> parseDeviceMemory(const std::string& text) {
  Expected<std::vector<std::pair<std::string, std::string>>> pairs =
      splitPairs(text, "--device-memory");
  if (!pairs) return pairs.takeError();
  std::vector<DeviceBudget> out;
  for (const auto& [device, size] : *pairs) {
    Expected<uint64_t> bytes = parseByteSize(size, "--device-memory " + device);
    if (!bytes) return bytes.takeError();
    out.push_back({device, *bytes});
  }
  return out;
}

Expected<std::vector<DeviceLayers>> parseDeviceLayers(const std::string& text) {
  Expected<std::vector<std::pair<std::string, std::string>>> pairs =
      splitPairs(text, "--device-map");
  if (!pairs) return pairs.takeError();
  std::vector<DeviceLayers> out;
  for (const auto& [device, count] : *pairs) {
    if (count == "*") {
      out.push_back({device, -1});
      continue;
    }
    Expected<std::vector<int64_t>> n = parseIntList(count, "--device-map " + device);
    if (!n) return n.takeError();
    if (n->size() != 1) return makeError("--device-map ", device, ": one layer count or *");
    out.push_back({device, n->front()});
  }
  return out;
}

Expected<std::vector<StagePlacement>> placeModel(const ModelSpec& spec, const TensorLookup& lookup,
                                                 const BuildOptions& build,
                                                 const DeviceMapRequest& request,
                                                 int64_t maxContext, int64_t maxBatch) {
  if (request.map != "auto" && !request.memory.empty())
    return makeError(
        "--device-memory goes with --device-map auto (explicit layer counts need "
        "no budgets)");
  if (request.map == "auto" && request.memory.empty())
    return makeError("--device-map auto needs --device-memory (e.g. cuda:0=70GiB,cpu=200GiB)");
  Expected<Graph> whole = buildGraph(spec, lookup, build);
  if (!whole) return whole.takeError();
  // The activations a stage needs: the memory plan of the whole model on one rank, which no
  // stage's exceeds.
  Expected<Graph> planned = buildGraph(spec, lookup, build);
  if (!planned) return planned.takeError();
  if (Error e = runPipeline(*planned, PassOptions{})) return e;
  PlacementLimits limits;
  limits.maxContext = maxContext;
  limits.maxBatch = maxBatch;
  limits.activationBytesPerToken = planned->attrs.getInt("arena_bytes_per_token");
  if (request.map == "auto") {
    Expected<std::vector<DeviceBudget>> budgets = parseDeviceMemory(request.memory);
    if (!budgets) return budgets.takeError();
    return placeByBudget(*whole, *budgets, limits);
  }
  Expected<std::vector<DeviceLayers>> counts = parseDeviceLayers(request.map);
  if (!counts) return counts.takeError();
  return placeByCounts(*whole, *counts, limits);
}

}  // namespace tpc::cli
