#include "executor/engine/Generation.h"

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

  // Greedy without logits kept: the backend picks the token itself (on the GPU for CUDA), so
  // only ids cross back to the host.
  const bool deviceArgmax = request.sampling.temperature <= 0.0f && !request.keepLogits;
  int32_t picked = 0;
  const float* last = nullptr;
  // Runs one step and leaves its last row's choice in `picked` (or its logits in `last`).
  auto step = [&](const StepInput& in) -> Error {
    if (deviceArgmax) {
      Expected<std::vector<int32_t>> ids = backend.forwardArgmax(in);
      if (!ids) return ids.takeError();
      picked = ids->back();
    } else {
      Expected<const float*> logits = backend.forward(in);
      if (!logits) return logits.takeError();
      last = *logits + (in.tokens - 1) * vocab;
    }
    if (onStep) onStep();
    return Error::success();
  };

  StepInput prefill{request.promptIds.data(), positions.data(), slots.data(), promptLength};
  std::vector<float> imageEmbeds;
  if (const PromptImage& image = request.image; !image.patches.empty()) {
    const int64_t want = image.rows - image.firstRow;
    const auto have =
        std::count(request.promptIds.begin(), request.promptIds.end(), image.tokenIndex);
    if (have != want)
      return makeError("the prompt has ", have, " image tokens (id ", image.tokenIndex,
                       ") but the image gives ", want, " rows");
    auto encodeStart = std::chrono::steady_clock::now();
    Expected<const float*> features = backend.encodeImage(image.patches.data(), image.rows);
    if (!features) return features.takeError();
    result.imageEncodeMs = millisSince(encodeStart);
    imageEmbeds.assign(static_cast<size_t>(promptLength * image.hidden), 0.0f);
    int64_t next = image.firstRow;
    for (int64_t t = 0; t < promptLength; ++t)
      if (request.promptIds[static_cast<size_t>(t)] == image.tokenIndex)
        std::copy_n(*features + next++ * image.hidden, image.hidden,
                    imageEmbeds.begin() + t * image.hidden);
    prefill.imageEmbeds = imageEmbeds.data();
  }
  auto start = std::chrono::steady_clock::now();
  if (Error e = step(prefill)) return e;
  result.prefillMs = millisSince(start);

  auto decodeStart = std::chrono::steady_clock::now();
  int64_t position = promptLength;
  while (true) {
    int32_t token = picked;
    if (!deviceArgmax) {
      if (request.keepLogits) result.logits.insert(result.logits.end(), last, last + vocab);
      token = static_cast<int32_t>(cpu::sample(last, vocab, request.sampling, rng));
    }
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
    if (request.stopRequested && request.stopRequested()) {
      result.stopReason = "cancelled";
      break;
    }
    int32_t pos = static_cast<int32_t>(position++), slot = 0;
    if (Error e = step({&token, &pos, &slot, 1})) return e;
  }
  size_t decodeSteps = result.generatedIds.size() - 1;
  result.decodeMsPerToken =
      decodeSteps ? millisSince(decodeStart) / static_cast<double>(decodeSteps) : 0.0;
  return result;
}

}  // namespace tpc
