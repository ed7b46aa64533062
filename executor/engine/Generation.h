// Prefill then decode, one sequence, on any backend. Every rank runs this same loop on the
// same replicated logits, so with the same seed every rank picks the same tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "executor/Backend.h"
#include "kernels/cpu/Kernels.h"

namespace tpc {

// llava: one image for the prompt. Its features replace the prompt's image tokens in order, so
// the prompt must hold exactly rows - firstRow of them.
struct PromptImage {
  std::vector<float> patches;  // cpu::patchify's layout, `rows` rows
  int64_t rows = 0;            // the tower's: class slot and patches
  int64_t firstRow = 0;        // 1 when the class row is dropped
  int64_t hidden = 0;          // the text model's width
  int32_t tokenIndex = -1;     // image_token_index
};

struct GenerationRequest {
  std::vector<int32_t> promptIds;
  int64_t maxNewTokens = 16;
  cpu::SamplingParams sampling;  // temperature 0: greedy
  uint64_t seed = 0;
  std::vector<int64_t> eosIds;  // generation stops after producing one of these
  bool keepLogits = false;
  PromptImage image;  // no patches: a text-only prompt
  // Asked before each decode step; true ends generation with stop reason "cancelled". Every
  // rank must answer the same at the same step (NodeRun agrees through a collective).
  std::function<bool()> stopRequested;
  // Called with each token as soon as it is sampled (the end-of-sequence one included), so a
  // caller can stream text. Local runs call it in rank 0's process only.
  std::function<void(int32_t)> onToken;
};

struct GenerationResult {
  std::vector<int32_t> generatedIds;
  // keepLogits: one row of vocab floats per generated token; row 0 holds the logits at the last
  // prompt position, row i those after the i-th generated token.
  std::vector<float> logits;
  double prefillMs = 0, decodeMsPerToken = 0;
  double imageEncodeMs = 0;  // the vision tower and projector, when the prompt had an image
  std::string stopReason;    // "eos", "max_new_tokens", "max_context" or "cancelled"
};

// `onStep` runs after every forward step (a heartbeat for the process group).
Expected<GenerationResult> generate(Backend& backend, const GenerationRequest& request,
                                    int64_t vocab, int64_t maxContext,
                                    const std::function<void()>& onStep = {});

}  // namespace tpc
