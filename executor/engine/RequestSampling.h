// How a request turns its logits row into a token on the host: penalties, the request's own
// draw, log-probabilities. Devices that sample themselves get the same choice from RowSampling
// and the same draw (cpu::sampleWithDraw is the reference both follow).
#pragma once

#include <cstdint>

#include "executor/Backend.h"
#include "executor/engine/Sequence.h"

namespace tpc {

// The uniform draw for a request's n-th generated token (n from 0): the n-th value of the
// splitmix64 stream cpu::sample would draw from `seed`, computed without the n before it, so it
// depends on nothing but the seed and n.
double drawFor(uint64_t seed, int64_t n);

RowSampling rowSamplingOf(const Sequence& seq);

// Penalties, log-probabilities and returned logits need the logits row on the host.
bool needsHostSampling(const EngineRequest& r);

// The request's penalties applied to its logits row in place: repetition (transformers': a
// positive logit divided, a negative one multiplied) over the prompt and the generated
// tokens; presence and frequency (OpenAI's: subtracted) over the generated tokens.
void applyPenalties(const Sequence& seq, float* logits, int64_t vocab);

// Picks the token of `logits` (penalties already applied) for the sequence's next position.
int32_t pickToken(const Sequence& seq, const float* logits, int64_t vocab);

// The chosen token's log-probability and the `top` most likely alternatives, from the log
// softmax of `logits` (after penalties, before temperature and the filters).
void fillLogprobs(const float* logits, int64_t vocab, int32_t token, int top, EngineEvent& event);

}  // namespace tpc
