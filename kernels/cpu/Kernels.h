// Reference kernels: plain C++ in fp32, one function per op of the plan (ir/Ops.def). They are
// the numerical truth: the CPU backend runs them, and every CUDA kernel is tested against the
// twin of the same name here. Activations are row-major [tokens, width]; weights follow the
// Hugging Face layout ([out, in] for linear). Nothing here allocates per call except where noted;
// working memory (attention scores, MoE activations, sampling candidates) comes from per-thread
// buffers that grow to the largest call seen and are then reused.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tpc::cpu {

// Rows of `table` ([rows, hidden]) holding vocab ids [firstRow, firstRow + rows); an id outside
// that range gives a zero row (vocab-parallel embedding: another rank holds it).
void embedding(const int32_t* ids, int64_t tokens, const float* table, int64_t rows,
               int64_t firstRow, int64_t hidden, float* out);

// out = x * rsqrt(mean(x^2) + eps) * w, per row of `width`.
void rmsNorm(const float* x, const float* w, int64_t tokens, int64_t width, float eps, float* out);
// sum = x + residual; out = rmsNorm(sum). `sum` may alias x or residual.
void addRmsNorm(const float* x, const float* residual, const float* w, int64_t tokens,
                int64_t width, float eps, float* sum, float* out);
// rmsNorm over each headDim slice of x[tokens, heads * headDim] with the shared w[headDim].
void headRmsNorm(const float* x, const float* w, int64_t tokens, int64_t heads, int64_t headDim,
                 float eps, float* out);
void add(const float* a, const float* b, int64_t count, float* out);

// y[tokens, out] = x[tokens, in] @ w[out, in]^T (+ bias[out]); bias may be null. OpenBLAS sgemm.
void linear(const float* x, const float* w, const float* bias, int64_t tokens, int64_t in,
            int64_t out, float* y);

// RoPE as Hugging Face computes it (rotate_half: the first and second halves of each head are
// the pairs), for the rope types of frontends/ModelSpec.h.
struct RopeParams {
  std::string type = "default";  // default, linear, llama3, yarn
  double theta = 10000.0;
  int64_t headDim = 0;
  double factor = 1.0;
  double lowFreqFactor = 1.0, highFreqFactor = 4.0;
  // llama3, yarn: must be > 0; the caller resolves yarn's missing value to max_position_embeddings.
  int64_t originalMaxPosition = 0;
  double betaFast = 32.0, betaSlow = 1.0;
  double attentionFactor = 0.0;  // yarn; 0: derived from factor as transformers does
  // yarn: rope_scaling "truncate" (transformers' default true) floors/ceils the correction range.
  bool truncate = true;
};
// inv_freq[headDim / 2] and the factor cos/sin are scaled by (1 except yarn), as transformers'
// rope init functions return them.
std::vector<float> ropeInverseFrequencies(const RopeParams& p, float* attentionScaling);
// x[tokens, heads * headDim] rotated at positions[tokens]. out may alias x.
void rope(const float* x, const int32_t* positions, int64_t tokens, int64_t heads,
          const RopeParams& p, float* out);

// One layer's KV cache: [slots][maxContext][kvHeads][headDim] for keys and for values.
struct KvCache {
  float* k = nullptr;
  float* v = nullptr;
  int64_t slots = 1, maxContext = 0, kvHeads = 0, headDim = 0;
};
// Causal GQA attention. Writes each token's k and v into its slot at its position, then each
// query token t attends over positions [0, positions[t]] of slots[t] (so the tokens of one
// prompt in one step see each other causally). q[tokens, heads*headDim], k/v[tokens,
// kvHeads*headDim], out[tokens, heads*headDim]. Query head h uses KV head h / (heads / kvHeads).
void attention(const float* q, const float* k, const float* v, const int32_t* positions,
               const int32_t* slots, int64_t tokens, int64_t heads, float scale, KvCache& cache,
               float* out);

// One layer's paged KV pool: [blocks][blockSize][kvHeads][headDim] for keys and for values.
// Physical slot `block * blockSize + offset` holds one token's row.
struct KvPool {
  float* k = nullptr;
  float* v = nullptr;
  int64_t blocks = 0, blockSize = 16, kvHeads = 0, headDim = 0;
};
// One iteration's tokens grouped by sequence (StepInput's paged form): sequence s owns tokens
// [seqStarts[s], seqStarts[s + 1]) at consecutive positions, and its blocks, in position order,
// are blockTables[s * blockTableStride ...].
struct PagedBatch {
  const int32_t* positions = nullptr;  // [tokens]
  const int32_t* kvSlots = nullptr;    // [tokens]: where each token's k and v are written
  int64_t tokens = 0;
  int64_t sequences = 0;
  const int32_t* seqStarts = nullptr;    // [sequences + 1]
  const int32_t* blockTables = nullptr;  // [sequences * blockTableStride]
  int64_t blockTableStride = 0;
};
// attention() over a paged pool: writes every token's k and v at its kvSlots entry first, then
// each token t attends over positions [0, positions[t]] of its sequence through the sequence's
// block table. Shapes of q, k, v and out as for attention().
void pagedAttention(const float* q, const float* k, const float* v, const PagedBatch& batch,
                    int64_t heads, float scale, KvPool& pool, float* out);

// out = silu(gate) * up.
void swiglu(const float* gate, const float* up, int64_t count, float* out);

// Router: softmax over experts of x @ gate^T, keep the topK largest (ties: lower expert index),
// renormalise them to sum 1 when normTopkProb. weights[tokens, topK], experts[tokens, topK].
void moeRouter(const float* x, const float* gate, int64_t tokens, int64_t hidden,
               int64_t numExperts, int64_t topK, bool normTopkProb, float* weights,
               int32_t* experts);
// Per token: sum over its topK experts e of weights * down_e(silu(gate_e x) * up_e x).
// gateUp[e] is either one [2*I, hidden] weight (gate rows then up rows) with up == nullptr, or
// gate [I, hidden] and up [I, hidden] separately; down[e] is [hidden, I]. Accumulates into out
// (which the caller zeroes), so a rank holding a slice of I produces a partial sum. A choice
// whose expert id is negative (an expert another rank holds: moeLocalExperts) adds nothing.
void moeExperts(const float* x, const float* weights, const int32_t* experts, int64_t tokens,
                int64_t hidden, int64_t intermediate, int64_t topK,
                const float* const* gateOrGateUp, const float* const* up, const float* const* down,
                float* out);

// Expert parallelism: a rank holding experts [first, first + count) renumbers the router's
// choices to its own, local[a] = experts[a] - first, and -1 for an expert held elsewhere.
void moeLocalExperts(const int32_t* experts, int64_t assignments, int64_t first, int64_t count,
                     int32_t* local);

// Index of the largest logit (ties: the lowest index).
int64_t argmax(const float* logits, int64_t vocab);

// Temperature, top-k (0: off), top-p (1: off), min-p (0: off) sampling with a caller-owned RNG
// state. temperature <= 0 means greedy. Deterministic for a given state. As in transformers, top-k
// keeps every token tied with the k-th logit; top-p keeps the smallest highest-first prefix
// whose probability reaches p (at least one token).
struct SamplingParams {
  float temperature = 0.0f;
  int64_t topK = 0;
  float topP = 1.0f;
  float minP = 0.0f;  // 0: off
};
int64_t sample(const float* logits, int64_t vocab, const SamplingParams& p, uint64_t& rngState);
// The draw in [0, 1) that sample takes from rngState (splitmix64, top 53 bits), advancing it: a
// GPU sampler fed this value picks what sample would. sample draws only when temperature > 0.
double drawUniform(uint64_t& state);
// sample() with its draw given: `uniform` in [0, 1) picks among the tokens that survive
// temperature, top-k, top-p and min-p (in that order, as transformers' warpers). The engine
// gives each request's n-th token a draw that depends only on its seed and n; a GPU sampler is
// tested against this.
int64_t sampleWithDraw(const float* logits, int64_t vocab, const SamplingParams& p, double uniform);

}  // namespace tpc::cpu
