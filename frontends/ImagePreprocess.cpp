// CLIPImageProcessor's preprocessing. The resize is PIL's bicubic filter (Resample.c) written
// again here: no packaged C/C++ library reproduces PIL's coefficients and 8-bit rounding, and
// transformers' reference pixel values depend on them.
#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "frontends/Image.h"

namespace tpc {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

struct Coefficients {
  int64_t taps = 0;
  std::vector<int64_t> first;  // per output pixel
  std::vector<int64_t> count;
  std::vector<int32_t> weights;  // [out][taps], fixed point
};

// PIL's precompute_coeffs and normalize_coeffs_8bpc for one axis.
Coefficients coefficients(int64_t inSize, int64_t outSize) {
  const double scale = static_cast<double>(inSize) / static_cast<double>(outSize);
  const double filterScale = std::max(scale, 1.0);
  const double support = 2.0 * filterScale;
  Coefficients c;
  c.taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.weights.assign(static_cast<size_t>(outSize * c.taps), 0);
  std::vector<double> k(static_cast<size_t>(c.taps));
  for (int64_t xx = 0; xx < outSize; ++xx) {
    const double center = (static_cast<double>(xx) + 0.5) * scale;
    const double ss = 1.0 / filterScale;
    // PIL truncates toward zero here, (int)(center - support + 0.5).
    auto xmin = static_cast<int64_t>(std::trunc(center - support + 0.5));
    xmin = std::max<int64_t>(xmin, 0);
    auto xmax = static_cast<int64_t>(std::trunc(center + support + 0.5));
    xmax = std::min(xmax, inSize) - xmin;
    double total = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      k[x] = bicubic((static_cast<double>(x + xmin) - center + 0.5) * ss);
      total += k[x];
    }
    for (int64_t x = 0; x < xmax; ++x) {
      const double w = total != 0.0 ? k[x] / total : 0.0;
      c.weights[xx * c.taps + x] =
          static_cast<int32_t>(w < 0 ? std::trunc(-0.5 + w * (1 << kPrecisionBits))
                                     : std::trunc(0.5 + w * (1 << kPrecisionBits)));
    }
    c.first.push_back(xmin);
    c.count.push_back(xmax);
  }
  return c;
}

uint8_t clip8(int64_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255));
}

RgbImage resizeHorizontal(const RgbImage& in, int64_t width) {
  Coefficients c = coefficients(in.width, width);
  RgbImage out{width, in.height, std::vector<uint8_t>(static_cast<size_t>(width * in.height * 3))};
  for (int64_t y = 0; y < in.height; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (int64_t ch = 0; ch < 3; ++ch) {
        int64_t sum = int64_t{1} << (kPrecisionBits - 1);
        for (int64_t t = 0; t < c.count[x]; ++t)
          sum += static_cast<int64_t>(in.pixels[(y * in.width + c.first[x] + t) * 3 + ch]) *
                 c.weights[x * c.taps + t];
        out.pixels[(y * width + x) * 3 + ch] = clip8(sum);
      }
  return out;
}

RgbImage resizeVertical(const RgbImage& in, int64_t height) {
  Coefficients c = coefficients(in.height, height);
  RgbImage out{in.width, height, std::vector<uint8_t>(static_cast<size_t>(in.width * height * 3))};
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < in.width; ++x)
      for (int64_t ch = 0; ch < 3; ++ch) {
        int64_t sum = int64_t{1} << (kPrecisionBits - 1);
        for (int64_t t = 0; t < c.count[y]; ++t)
          sum += static_cast<int64_t>(in.pixels[((c.first[y] + t) * in.width + x) * 3 + ch]) *
                 c.weights[y * c.taps + t];
        out.pixels[(y * in.width + x) * 3 + ch] = clip8(sum);
      }
  return out;
}

}  // namespace

RgbImage resizeBicubic(const RgbImage& image, int64_t width, int64_t height) {
  RgbImage out = image;
  if (width != image.width) out = resizeHorizontal(out, width);
  if (height != image.height) out = resizeVertical(out, height);
  return out;
}

std::vector<float> preprocessImage(const RgbImage& image, const ImagePreprocessing& p) {
  RgbImage img = image;
  if (p.doResize) {
    // transformers' get_resize_output_image_size(default_to_square=False): the short side
    // becomes shortestEdge, the long side int(shortestEdge * long / short).
    const bool wide = img.width >= img.height;
    const int64_t shortSide = wide ? img.height : img.width,
                  longSide = wide ? img.width : img.height;
    const auto newLong =
        static_cast<int64_t>(static_cast<double>(p.shortestEdge) * static_cast<double>(longSide) /
                             static_cast<double>(shortSide));
    img = wide ? resizeBicubic(img, newLong, p.shortestEdge)
               : resizeBicubic(img, p.shortestEdge, newLong);
  }
  int64_t top = 0, left = 0, height = img.height, width = img.width;
  if (p.doCenterCrop) {
    // The numpy path's (size - crop) // 2; a crop larger than the image pads with zeros.
    height = p.cropHeight;
    width = p.cropWidth;
    top = (img.height - height) / 2 - ((img.height - height) % 2 < 0 ? 1 : 0);
    left = (img.width - width) / 2 - ((img.width - width) % 2 < 0 ? 1 : 0);
  }
  std::vector<float> out(static_cast<size_t>(3 * height * width));
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) {
        const int64_t sy = y + top, sx = x + left;
        double v = sy >= 0 && sy < img.height && sx >= 0 && sx < img.width
                       ? img.pixels[(sy * img.width + sx) * 3 + c]
                       : 0.0;
        if (p.doRescale) v *= p.rescaleFactor;
        if (p.doNormalize) v = (v - p.mean[c]) / p.std[c];
        out[(c * height + y) * width + x] = static_cast<float>(v);
      }
  return out;
}

Expected<ImagePreprocessing> parsePreprocessorConfig(const std::string& jsonText,
                                                     const std::string& source) {
  using nlohmann::json;
  json j = json::parse(jsonText, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return makeError(source, ": not a JSON object");
  ImagePreprocessing p;
  try {
    std::string type = j.value("image_processor_type", "CLIPImageProcessor");
    if (type != "CLIPImageProcessor" && type != "CLIPImageProcessorFast")
      return makeError(source, ": image_processor_type \"", type,
                       "\" is not supported (only CLIPImageProcessor)");
    if (j.value("resample", 3) != 3)
      return makeError(source, ": resample ", j.value("resample", 3),
                       " is not supported (only 3, bicubic)");
    p.doResize = j.value("do_resize", true);
    if (p.doResize) {
      if (!j.contains("size") || !j["size"].contains("shortest_edge"))
        return makeError(source, ": size.shortest_edge is missing (other sizes are not supported)");
      p.shortestEdge = j["size"]["shortest_edge"].get<int64_t>();
    }
    p.doCenterCrop = j.value("do_center_crop", true);
    if (p.doCenterCrop) {
      const json& crop = j.at("crop_size");
      p.cropHeight = crop.is_number() ? crop.get<int64_t>() : crop.at("height").get<int64_t>();
      p.cropWidth = crop.is_number() ? crop.get<int64_t>() : crop.at("width").get<int64_t>();
    }
    p.doRescale = j.value("do_rescale", true);
    p.rescaleFactor = j.value("rescale_factor", 1.0 / 255.0);
    p.doNormalize = j.value("do_normalize", true);
    if (j.contains("image_mean")) p.mean = j["image_mean"].get<std::vector<double>>();
    if (j.contains("image_std")) p.std = j["image_std"].get<std::vector<double>>();
  } catch (const json::exception& e) {
    return makeError(source, ": ", e.what());
  }
  if (p.mean.size() != 3 || p.std.size() != 3 ||
      std::any_of(p.std.begin(), p.std.end(), [](double s) { return !(s > 0); }))
    return makeError(source, ": image_mean and image_std must hold 3 values (std positive)");
  if ((p.doResize && (p.shortestEdge < 1 || p.shortestEdge > kMaxImageSide)) ||
      (p.doCenterCrop && (p.cropHeight < 1 || p.cropWidth < 1 || p.cropHeight > kMaxImageSide ||
                          p.cropWidth > kMaxImageSide)))
    return makeError(source, ": size and crop_size must be in 1..", kMaxImageSide);
  return p;
}

}  // namespace tpc
