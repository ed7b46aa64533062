// tpc compile --device-map: the flags' text to a placement, and the compile settings it gives
// (one pipeline stage of one rank per device that holds layers).
#pragma once

#include <string>
#include <vector>

#include "frontends/GraphBuilder.h"
#include "frontends/ModelSpec.h"
#include "ir/Error.h"
#include "passes/DevicePlacement.h"

namespace tpc::cli {

// "auto" with budgets ("cuda:0=70GiB,cpu=200GiB"), or layer counts ("cuda:0=16,cpu=*").
struct DeviceMapRequest {
  std::string map;     // "auto" or the counts
  std::string memory;  // --device-memory, with auto only
};

Expected<std::vector<DeviceBudget>> parseDeviceMemory(const std::string& text);
Expected<std::vector<DeviceLayers>> parseDeviceLayers(const std::string& text);

// Places the model the builder makes of `spec` as the request says, for plans of `limits`.
Expected<std::vector<StagePlacement>> placeModel(const ModelSpec& spec, const TensorLookup& lookup,
                                                 const BuildOptions& build,
                                                 const DeviceMapRequest& request,
                                                 int64_t maxContext, int64_t maxBatch);

}  // namespace tpc::cli
