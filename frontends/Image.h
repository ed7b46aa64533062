// Images for vision models: decoding JPEG and PNG (Debian's libjpeg-turbo and libpng, never a
// decoder of our own) to 8-bit RGB, and the CLIPImageProcessor preprocessing that
// preprocessor_config.json describes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ir/Error.h"

namespace tpc {

struct RgbImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // rows of width * 3 bytes, R G B
};

// Images larger than this (either side) are refused before any pixel is decoded.
inline constexpr int64_t kMaxImageSide = 8192;

// A JPEG or PNG by its signature, converted to RGB as PIL's convert("RGB") does (grey
// replicated, alpha dropped, palettes expanded). `source` names the image in errors; a corrupt,
// truncated, oversized or unknown image is one error naming it. An image of more than
// `maxPixels` pixels is refused from its header, before its pixels are decoded.
Expected<RgbImage> decodeImage(std::span<const uint8_t> bytes, const std::string& source,
                               int64_t maxPixels = kMaxImageSide * kMaxImageSide);
Expected<RgbImage> readImageFile(const std::string& path);

// What preprocessor_config.json says (CLIPImageProcessor keys).
struct ImagePreprocessing {
  bool doResize = true;
  int64_t shortestEdge = 224;
  bool doCenterCrop = true;
  int64_t cropHeight = 224, cropWidth = 224;
  bool doRescale = true;
  double rescaleFactor = 1.0 / 255.0;
  bool doNormalize = true;
  std::vector<double> mean{0.48145466, 0.4578275, 0.40821073};
  std::vector<double> std{0.26862954, 0.26130258, 0.27577711};
};

// Parses preprocessor_config.json text. Only the CLIP image processor with bicubic resampling
// (resample 3) is accepted; other processors and filters are refused by name.
Expected<ImagePreprocessing> parsePreprocessorConfig(const std::string& jsonText,
                                                     const std::string& source);

// pixel_values [3, cropHeight, cropWidth] (channel-major, float) as transformers'
// CLIPImageProcessor makes them: resize so the shortest edge is shortestEdge with PIL's bicubic
// filter (antialiased when shrinking, rounded to 8 bits), centre crop, rescale, normalise.
std::vector<float> preprocessImage(const RgbImage& image, const ImagePreprocessing& p);

// PIL's bicubic resize of 8-bit RGB (Image.resize(..., Image.BICUBIC)): the same support,
// coefficients in 22-bit fixed point, the horizontal pass first, each pass rounded to 8 bits.
RgbImage resizeBicubic(const RgbImage& image, int64_t width, int64_t height);

}  // namespace tpc
