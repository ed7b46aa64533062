// The figures a user asks of a plan first: bytes per rank, collectives per step and what they
// move. Shared by `tpc compile` (printed after writing) and `tpc dump`.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "codegen/plan_generated.h"

namespace tpc {

struct RankSummary {
  uint32_t rank = 0;
  uint64_t weightBytes = 0;
  uint64_t kvBytesPerToken = 0;  // K and V of one token, all layers of the rank
  int64_t arenaBytesPerToken = 0;
  size_t steps = 0;
};

struct CollectiveSummary {
  std::string op;     // all_reduce, all_reduce_add_rms_norm, all_gather
  std::string value;  // the buffer it produces
  int64_t bytesPerToken = 0;
};

// One pipeline stage: its ranks (stage * tp .. + tp - 1), its layers and, for each later or
// earlier stage it sends to, the bytes per token its sends move (the hidden state forward,
// the logits back).
struct StageSummary {
  int64_t stage = 0;
  std::string device;  // a device map's ("cuda:0", "cpu"); empty otherwise
  uint32_t firstRank = 0, ranks = 1;
  int64_t firstLayer = -1, lastLayer = -1;           // -1: no layer
  std::vector<std::pair<int64_t, int64_t>> sendsTo;  // (peer stage, bytes per token), by peer
};

struct PlanSummary {
  uint32_t world = 1;
  int64_t pp = 1, tp = 1;
  std::vector<StageSummary> stages;  // empty at pp 1
  int64_t maxContext = 0, maxBatch = 0;
  std::string family;
  std::vector<RankSummary> ranks;
  // Rank 0's sequence; the reader checks every rank runs the same steps.
  std::vector<CollectiveSummary> collectives;
  int64_t allReduces = 0, allGathers = 0;
  int64_t commBytesPerToken = 0;
  // Expert parallelism (0 experts when the plan has none): whole experts per rank, and the
  // token exchange: the all-reduces that sum every rank's experts' contribution.
  int64_t experts = 0, expertsPerRank = 0;
  int64_t exchanges = 0, exchangeBytesPerToken = 0;
};

PlanSummary summarizePlan(const plan::Plan& plan);
// "1.50 KiB": binary units, two decimals above 1 KiB. The one byte formatter of the project.
std::string formatBytes(uint64_t bytes);
// A few human lines: one per rank (weights, KV cache, arena) and the collective totals.
std::string formatPlanSummary(const PlanSummary& summary);

}  // namespace tpc
