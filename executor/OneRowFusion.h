// What a backend may fuse when a step has one token. Each row of a buffer is then contiguous,
// so the plan's column copies and some elementwise steps can be folded into their neighbours:
// - a split's results become byte ranges (views) of its operand, and the split is skipped; the
//   operand then needs storage of its own outside the arena, where the memory plan might reuse
//   its bytes while a view is still to be read;
// - a gate/up linear whose split halves feed only a swiglu can write the swiglu's result itself,
//   which then gets storage of its own beside the views (the memory plan may give it the bytes of
//   the linear's input, still being read while the result is written);
// - a rope whose input view has no other reader rotates in place, and the q and k ropes of a
//   layer, adjacent in the qkv buffer, become one launch;
// - an rms_norm or add_rms_norm whose normed row feeds only the linear right after it is folded
//   into that linear's GEMV (which computes the norm itself and stores add_rms_norm's sum), so
//   the norm's own launch - one latency-bound block - is skipped (`folds.norms`);
// - a layer's fused q/k rope whose rotated views only the attention after it reads is folded into
//   that attention, which rotates what it reads (`folds.ropes`); where the attention's result
//   shares no bytes with the split's q and k, also in steps of several decode rows (ropeIntoRows);
// - in steps of several decode rows, the q/k/v and gate/up splits are skipped where the attention
//   and the swiglu read the linear's rows themselves (attentionReadsSplit, swigluReadsSplit);
// - likewise a layer's per-head q/k norms and the ropes after them (Qwen3), when those four steps
//   run right before the attention and only it reads their results: the attention norms and
//   rotates what it reads (`folds.ropes`).
// Plain host code (no CUDA), so it is tested on any machine.
#pragma once

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "codegen/PlanReader.h"

namespace tpc {

struct OneRowFusion {
  // Buffer -> (offset of its storage in the private block, byte offset of its range there).
  // A split operand maps to its own storage at range offset 0.
  std::map<uint32_t, std::pair<int64_t, int64_t>> views;
  size_t privateBytes = 0;                     // the private block, each operand 256-byte aligned
  std::vector<bool> skip;                      // per step: nothing to run at one token
  std::map<uint32_t, uint32_t> swigluInto;     // gate/up linear step -> the swiglu step it writes
  std::map<uint32_t, int64_t> fusedRopeHeads;  // first rope step -> heads of both ropes
  std::map<uint32_t, uint32_t> normInto;       // linear step -> the norm step folded into it
  std::map<uint32_t, uint32_t> ropeInto;       // attention step -> the rope step folded into it
  // The entries of ropeInto whose attention may also take its ropes' inputs at more than one
  // token (a step of decode rows, which the decode kernel rotates as it reads): there the inputs
  // are the split's own buffers, and the attention's result shares no arena bytes with them.
  std::map<uint32_t, uint32_t> ropeIntoRows;
  std::vector<bool> skipInDecodeRows;  // per step: a rope of ropeIntoRows (both of each pair)
  struct NormedRopes {
    uint32_t qNorm, kNorm, qRope, kRope;  // steps
  };
  std::map<uint32_t, NormedRopes> normedRopesInto;  // attention step -> the steps folded into it

  // Steps of several decode rows, up to a graph bucket (CudaBackend::decodeRowsFused): a layer's
  // q/k/v split and its two ropes are skipped where the attention (the decode kernel) reads q, k
  // and v straight from the qkv rows, with the qkv width as their row stride, and rotates q and
  // k as it reads; a gate/up split is skipped where the swiglu reads both halves of the gate/up
  // rows. Their results then get storage of their own, since the memory plan puts them on the
  // bytes they read in most layers: per token in the rows' private block (rowViews; all layers
  // share one slot per kind, each layer's result read before the next layer writes it).
  struct SplitRead {
    uint32_t split;  // the q/k/v split step
    uint32_t qRope;  // the q rope step; the k rope is the step after it
  };
  std::map<uint32_t, SplitRead> attentionReadsSplit;  // attention step -> what it reads through
  std::map<uint32_t, uint32_t> swigluReadsSplit;      // swiglu step -> the gate/up split step
  std::map<uint32_t, int64_t> rowViews;  // buffer -> its per-token offset in the rows' block
  int64_t rowsPrivateBytesPerToken = 0;
  std::vector<bool> skipInFusedRows;  // per step: a split or rope skipped so
};

// Which neighbours' work the one-token kernels take over.
struct OneRowFolds {
  bool norms = true;
  bool ropes = true;
};

OneRowFusion planOneRowFusion(const plan::Plan& plan, uint32_t rank, OneRowFolds folds = {});

}  // namespace tpc
