// Reference kernels of the vision tower (CLIP, as LLaVA uses it) and its projector, in fp32 as
// transformers computes them. Rows are an image's class slot followed by its patches.
#pragma once

#include <cstdint>

namespace tpc::cpu {

// torch.nn.LayerNorm: (x - mean) / sqrt(var + eps) * w + b per row of `width`, the biased
// variance. Mean and variance are accumulated in double so the result does not depend on the
// summation order. out may alias x.
void layerNorm(const float* x, const float* w, const float* b, int64_t rows, int64_t width,
               float eps, float* out);
// out[r] = x[r] + bias. out may alias x.
void biasAdd(const float* x, const float* bias, int64_t rows, int64_t width, float* out);
// torch's exact GELU, 0.5 x (1 + erf(x / sqrt 2)) (transformers' "gelu").
void gelu(const float* x, int64_t count, float* out);
// CLIP's quick_gelu, x * sigmoid(1.702 x).
void quickGelu(const float* x, int64_t count, float* out);

// The convolution of CLIP's patch embedding (kernel = stride = patch, no padding, no bias) as a
// GEMM: pixels[channels, size, size] (one image, channel-major as pixel_values) become rows of
// [channels * patch * patch], in the order of the conv weight's [out, channels, patch, patch]
// flattening, one row per patch in raster order, after a leading zero row: the class slot, so
// that the GEMM's output already has the tower's row layout. out has (size/patch)^2 + 1 rows.
void patchify(const float* pixels, int64_t channels, int64_t size, int64_t patch, float* out);

// out = x + position[rows, width], with classEmbedding added to row 0 as well.
void visionEmbed(const float* x, const float* classEmbedding, const float* position, int64_t rows,
                 int64_t width, float* out);

// Every row attends over all rows (no mask, no cache): q, k, v, out are [rows, heads * headDim].
void encoderAttention(const float* q, const float* k, const float* v, int64_t rows, int64_t heads,
                      int64_t headDim, float scale, float* out);

}  // namespace tpc::cpu
