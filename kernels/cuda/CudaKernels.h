// CUDA twins of the reference kernels in kernels/cpu/Kernels.h: same names, same contracts, so
// every test compares one against the other. Storage is f32, bf16 or f16 (`ElementType`);
// arithmetic and every reduction run in f32. Each function only enqueues work on `stream` and
// returns the launch status (cudaGetLastError), so it can be captured into a CUDA Graph: no
// function here allocates, synchronizes or reads device memory from the host, and launch shapes
// depend only on the sizes passed in, never on device-side values such as positions.
//
// This header compiles with the host compiler alone (the backend is plain C++): element types
// are passed as a tag and pointers as void*.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace tpc::cuda {

enum class ElementType : uint8_t { F32, BF16, F16 };
size_t elementBytes(ElementType type);

// Whether an environment switch such as TPC_NO_PDL is on: set, not empty and not "0". Read once by
// each caller (a static), so a step's kernels never change with the environment mid-run.
inline bool environmentFlag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && *v != '0';
}

// Rows of `table` ([rows, hidden]) for vocab ids [firstRow, firstRow + rows); other ids give zero
// rows (vocab-parallel embedding).
cudaError_t embedding(ElementType type, const int32_t* ids, int64_t tokens, const void* table,
                      int64_t rows, int64_t firstRow, int64_t hidden, void* out,
                      cudaStream_t stream);

cudaError_t rmsNorm(ElementType type, const void* x, const void* weight, int64_t tokens,
                    int64_t width, float eps, void* out, cudaStream_t stream);
// sum = x + residual (rounded to `type`); out = rmsNorm(sum). `sum` may alias x or residual.
cudaError_t addRmsNorm(ElementType type, const void* x, const void* residual, const void* weight,
                       int64_t tokens, int64_t width, float eps, void* sum, void* out,
                       cudaStream_t stream);
cudaError_t headRmsNorm(ElementType type, const void* x, const void* weight, int64_t tokens,
                        int64_t heads, int64_t headDim, float eps, void* out, cudaStream_t stream);
cudaError_t add(ElementType type, const void* a, const void* b, int64_t count, void* out,
                cudaStream_t stream);
// out = silu(gate) * up.
cudaError_t swiglu(ElementType type, const void* gate, const void* up, int64_t count, void* out,
                   cudaStream_t stream);
// out[t, j] = silu(x[t, j]) * x[t, width + j] for rows of 2 width elements: the swiglu of a
// gate/up linear's rows read in place of its split's two halves (the same bits as splitColumns
// then swiglu). `out` must not overlap `x`.
cudaError_t swigluHalves(ElementType type, const void* x, int64_t tokens, int64_t width, void* out,
                         cudaStream_t stream);
// out[t, 0:width) = x[t, offset:offset + width) for rows of inWidth: the plan's split and slice.
cudaError_t copyColumns(ElementType type, const void* x, int64_t tokens, int64_t inWidth,
                        int64_t offset, int64_t width, void* out, cudaStream_t stream);
// Every result of a split in one launch: outs[i][t, 0:widths[i]) = x[t, offset_i:offset_i +
// widths[i]), offset_i the widths before i (at most kMaxSplitParts results).
constexpr int kMaxSplitParts = 8;
cudaError_t splitColumns(ElementType type, const void* x, int64_t tokens, int64_t inWidth,
                         const int64_t* widths, void* const* outs, int parts, cudaStream_t stream);
// out[i, :] = x[rows[i], :] for i < count (rows a device array): the iteration's logit rows.
cudaError_t selectRows(ElementType type, const void* x, const int32_t* rows, int64_t count,
                       int64_t width, void* out, cudaStream_t stream);
// Converts `count` elements to f32 (logits leave the GPU as f32).
cudaError_t toFloat(ElementType type, const void* x, int64_t count, float* out,
                    cudaStream_t stream);

// RoPE with rotate_half pairs, as cpu::rope. `inverseFrequencies` is a device array of
// headDim / 2 floats from cpu::ropeInverseFrequencies, which also gives `attentionScaling`
// (cos and sin are multiplied by it). out may alias x. headDim even, at most 1024.
cudaError_t rope(ElementType type, const void* x, const int32_t* positions, int64_t tokens,
                 int64_t heads, int64_t headDim, const float* inverseFrequencies,
                 float attentionScaling, void* out, cudaStream_t stream);

// One layer's KV cache in the attention's element type. Without a block table it is laid out as
// cpu::KvCache ([slots][maxContext][kvHeads][headDim]). With one it is a paged pool
// ([blocks][blockSize][kvHeads][headDim]) and a "slot" names a row of the block table (a
// sequence): position p of sequence s lives at pool row
// blockTable[s * (maxContext / blockSize) + p / blockSize] * blockSize + p % blockSize, where
// maxContext is a multiple of blockSize (the positions a table row can address). The table is a
// device array read only on the device, so a captured graph stays valid when it changes.
struct KvCacheView {
  void* k = nullptr;
  void* v = nullptr;
  int64_t slots = 1, maxContext = 0, kvHeads = 0, headDim = 0;
  const int32_t* blockTable = nullptr;  // [slots][maxContext / blockSize]; null: contiguous slots
  int64_t blockSize = 0;
};
// Scratch bytes `attention` needs for any call with at most this many tokens (partial results
// of the context splits; 0 when every such call uses a single chunk). The split is chosen from
// tokens and maxContext alone (kernels/cuda/AttentionPlan.h).
size_t attentionWorkspaceBytes(int64_t tokens, int64_t heads, int64_t headDim, int64_t maxContext);
// cpu::attention's contract: each token's k and v are written into its slot at its position,
// then query token t attends over positions [0, positions[t]] of slots[t]. positions and slots
// are device arrays read only on the device, so a captured graph stays valid when they change.
// The context is split into chunks processed by separate blocks and combined, so one decode
// token still fills the GPU. headDim at most 256; heads a multiple of kvHeads.
cudaError_t attention(ElementType type, const void* q, const void* k, const void* v,
                      const int32_t* positions, const int32_t* slots, int64_t tokens, int64_t heads,
                      float scale, const KvCacheView& cache, void* workspace, void* out,
                      cudaStream_t stream);

// cpu::moeRouter: softmax over x @ gate^T, top-k (ties: lower index), optional renormalise.
// numExperts at most 8192.
cudaError_t moeRouter(ElementType type, const void* x, const void* gate, int64_t tokens,
                      int64_t hidden, int64_t numExperts, int64_t topK, bool normTopkProb,
                      float* weights, int32_t* experts, cudaStream_t stream);
size_t moeWorkspaceBytes(int64_t tokens, int64_t topK, int64_t intermediate);
// cpu::moeExperts: the three pointer arrays are device arrays of numExperts device pointers
// (up may be null when gateOrGateUp holds [2*I, hidden] gate-then-up weights). Accumulates into
// out, which the caller zeroes. hidden and intermediate at most 524280. The workspace holds the f32
// activations silu(gate x) * (up x) of every (token, choice).
cudaError_t moeExperts(ElementType type, const void* x, const float* weights,
                       const int32_t* experts, int64_t tokens, int64_t hidden, int64_t intermediate,
                       int64_t topK, const void* const* gateOrGateUp, const void* const* up,
                       const void* const* down, void* workspace, void* out, cudaStream_t stream);

// cpu::moeLocalExperts: the choices renumbered to experts [first, first + count), -1 elsewhere.
// Every expert kernel skips a choice of -1.
cudaError_t moeLocalExperts(const int32_t* experts, int64_t assignments, int64_t first,
                            int64_t count, int32_t* local, cudaStream_t stream);

// Per row of logits [rows, vocab]: the index of the largest (ties: the lowest index).
cudaError_t argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                   cudaStream_t stream);
// cpu::sample per row (temperature, top-k with ties kept, top-p), where uniforms[row] is the
// draw in [0, 1) that cpu::sample takes from its RNG state (cpu::drawUniform). temperature <= 0
// is argmax. The workspace is currently unused (0 bytes; shared memory suffices).
size_t sampleWorkspaceBytes(int64_t rows, int64_t vocab);
cudaError_t sample(const float* logits, int64_t rows, int64_t vocab, float temperature,
                   int64_t topK, float topP, const double* uniforms, void* workspace, int32_t* out,
                   cudaStream_t stream);

// Reads `bytes` (a multiple of 16, 16-byte aligned) once with 16-byte loads and writes the
// wrapping sum of its 32-bit words to *sum: a kernel that only reads, as decode does, to measure
// the read bandwidth.
cudaError_t readSum(const void* data, size_t bytes, uint32_t* sum, cudaStream_t stream);

// Fills `count` elements with uniform values in [-scale, scale) from a counter-based hash of
// (seed, index): synthetic weights for benchmarks of shapes with no checkpoint. The host can
// compute the same values with fillUniformValue (kernels/cuda/FillHash.h).
cudaError_t fillUniform(ElementType type, void* out, int64_t count, float scale, uint64_t seed,
                        cudaStream_t stream);

// The vision tower (kernels/cpu/Vision.h): LayerNorm with bias per row (out may alias x),
// x + bias per row, exact (erf) GELU and quick_gelu.
cudaError_t layerNorm(ElementType type, const void* x, const void* weight, const void* bias,
                      int64_t rows, int64_t width, float eps, void* out, cudaStream_t stream);
cudaError_t biasAdd(ElementType type, const void* x, const void* bias, int64_t rows, int64_t width,
                    void* out, cudaStream_t stream);
cudaError_t gelu(ElementType type, const void* x, int64_t count, void* out, cudaStream_t stream);
cudaError_t quickGelu(ElementType type, const void* x, int64_t count, void* out,
                      cudaStream_t stream);
// cpu::visionEmbed: out = x + position (rows of width), row 0 plus the class embedding too.
cudaError_t visionEmbed(ElementType type, const void* x, const void* classEmbedding,
                        const void* position, int64_t rows, int64_t width, void* out,
                        cudaStream_t stream);
// cpu::encoderAttention: every row attends over all rows (no mask, no cache); q, k, v and out are
// [rows, heads * headDim]. rows at most about 12,000 (one row's scores in shared memory; more is
// cudaErrorInvalidValue).
cudaError_t encoderAttention(ElementType type, const void* q, const void* k, const void* v,
                             int64_t rows, int64_t heads, int64_t headDim, float scale, void* out,
                             cudaStream_t stream);

}  // namespace tpc::cuda
