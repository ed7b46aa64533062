#include "executor/Generation.h"

#include <algorithm>
#include <chrono>
#include <numeric>

namespace tpc {
namespace {

double millisSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

Expected<GenerationResult> generate(Backend& backend, const GenerationRequest& request,
                                    int64_t vocab, int64_t maxContext,
                                    const std::function<void()>& onStep) {
  const int64_t promptLength = static_cast<int64_t>(request.promptIds.size());
  if (promptLength == 0) return makeError("the prompt is empty");
  if (promptLength >= maxContext)
    return makeError("the prompt has ", promptLength, " tokens but the plan's max context is ",
                     maxContext, " (recompile with a larger --max-context)");
  for (int32_t id : request.promptIds)
    if (id < 0 || id >= vocab)
      return makeError("prompt token id ", id, " is outside the vocab of ", vocab);

  GenerationResult result;
  uint64_t rng = request.seed;
  std::vector<int32_t> positions(static_cast<size_t>(promptLength));
  std::iota(positions.begin(), positions.end(), 0);
  std::vector<int32_t> slots(static_cast<size_t>(promptLength), 0);

  auto start = std::chrono::steady_clock::now();
  Expected<const float*> logits =
      backend.forward({request.promptIds.data(), positions.data(), slots.data(), promptLength});
  if (!logits) return logits.takeError();
  if (onStep) onStep();
  result.prefillMs = millisSince(start);
  const float* last = *logits + (promptLength - 1) * vocab;

  auto decodeStart = std::chrono::steady_clock::now();
  int64_t position = promptLength;
  while (true) {
    if (request.keepLogits) result.logits.insert(result.logits.end(), last, last + vocab);
    auto token = static_cast<int32_t>(cpu::sample(last, vocab, request.sampling, rng));
    result.generatedIds.push_back(token);
    if (request.onToken) request.onToken(token);
    if (std::find(request.eosIds.begin(), request.eosIds.end(), token) != request.eosIds.end()) {
      result.stopReason = "eos";
      break;
    }
    if (static_cast<int64_t>(result.generatedIds.size()) >= request.maxNewTokens) {
      result.stopReason = "max_new_tokens";
      break;
    }
    if (position >= maxContext) {
      result.stopReason = "max_context";
      break;
    }
    int32_t pos = static_cast<int32_t>(position++), slot = 0;
    Expected<const float*> next = backend.forward({&token, &pos, &slot, 1});
    if (!next) return next.takeError();
    if (onStep) onStep();
    last = *next;
  }
  size_t decodeSteps = result.generatedIds.size() - 1;
  result.decodeMsPerToken =
      decodeSteps ? millisSince(decodeStart) / static_cast<double>(decodeSteps) : 0.0;
  return result;
}

}  // namespace tpc
