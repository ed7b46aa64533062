// Image decoding (libpng, libjpeg-turbo) and CLIPImageProcessor preprocessing against
// transformers 5.17's CLIPImageProcessor (tests/data/images, made by make_llava_golden.py; its
// PIL-based and torchvision-based classes gave identical values there). Bound: one 8-bit level
// after normalisation, 1 / 255 / min(std) = 0.0146, on any value (resampling rounds to 8 bits,
// and the JPEG decoders may differ by a level); the mean error must stay far below that.
#include <gtest/gtest.h>

#include <cmath>

#include "executor/Npy.h"
#include "frontends/Image.h"
#include "tests/support/TestSupport.h"

namespace tpc {
namespace {

ImagePreprocessing tinySettings() {
  std::string path = test::dataDir() + "/hf/llava-tiny/preprocessor_config.json";
  Expected<ImagePreprocessing> p = parsePreprocessorConfig(test::readFile(path), path);
  EXPECT_TRUE(p) << p.errorMessage();
  return p ? *p : ImagePreprocessing{};
}

TEST(ImagePreprocess, MatchesTransformersClipImageProcessor) {
  const ImagePreprocessing settings = tinySettings();
  const double oneLevel = 1.0 / 255.0 / 0.26130258 + 1e-5;
  for (const char* name :
       {"exact-32x32.png", "wide-57x41.jpg", "small-rgba-19x27.png", "gray-40x70.jpg"}) {
    SCOPED_TRACE(name);
    std::string path = test::dataDir() + "/images/" + name;
    Expected<RgbImage> image = readImageFile(path);
    ASSERT_TRUE(image) << image.errorMessage();
    Expected<NpyArray> want = readNpyF32(path + ".pixels.npy");
    ASSERT_TRUE(want) << want.errorMessage();
    ASSERT_EQ(want->shape, (std::vector<int64_t>{3, 32, 32}));
    std::vector<float> ours = preprocessImage(*image, settings);
    ASSERT_EQ(ours.size(), want->data.size());
    double worst = 0, total = 0;
    for (size_t i = 0; i < ours.size(); ++i) {
      double d = std::fabs(ours[i] - want->data[i]);
      worst = std::max(worst, d);
      total += d;
    }
    EXPECT_LE(worst, oneLevel);
    EXPECT_LT(total / static_cast<double>(ours.size()), oneLevel / 20);
    std::printf("%s: max |diff| %.3g, mean %.3g\n", name, worst,
                total / static_cast<double>(ours.size()));
  }
}

TEST(ImagePreprocess, ExactSizeIsOnlyRescaledAndNormalised) {
  Expected<RgbImage> image = readImageFile(test::dataDir() + "/images/exact-32x32.png");
  ASSERT_TRUE(image) << image.errorMessage();
  RgbImage same = resizeBicubic(*image, 32, 32);
  EXPECT_EQ(same.pixels, image->pixels);
  std::vector<float> out = preprocessImage(*image, tinySettings());
  EXPECT_NEAR(out[0], (image->pixels[0] / 255.0 - 0.48145466) / 0.26862954, 1e-6);
}

std::vector<uint8_t> fileBytes(const std::string& name) {
  std::string text = test::readFile(test::dataDir() + "/images/" + name);
  return {text.begin(), text.end()};
}

TEST(ImageDecode, CorruptTruncatedOversizedAndUnknownAreOneError) {
  auto expectError = [](std::vector<uint8_t> bytes, const std::string& words) {
    Expected<RgbImage> image = decodeImage(bytes, "img");
    ASSERT_FALSE(image) << "decoded an image that should fail with " << words;
    EXPECT_NE(image.errorMessage().find(words), std::string::npos) << image.errorMessage();
    EXPECT_EQ(image.errorMessage().find('\n'), std::string::npos);
  };
  std::vector<uint8_t> png = fileBytes("exact-32x32.png"), jpeg = fileBytes("wide-57x41.jpg");
  expectError({png.begin(), png.begin() + static_cast<long>(png.size() / 2)}, "img: corrupt PNG");
  expectError({jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() / 2)},
              "img: corrupt JPEG");
  std::vector<uint8_t> flipped = png;
  flipped[40] ^= 0xff;  // inside the compressed data: a CRC error
  expectError(flipped, "img: corrupt PNG");
  expectError({'G', 'I', 'F', '8', '9', 'a'}, "img: not a JPEG or PNG image");
  expectError({}, "img: not a JPEG or PNG image");
  // The JPEG's frame header says 16384 x 16384: refused before any pixel is decoded.
  std::vector<uint8_t> huge = jpeg;
  for (size_t i = 0; i + 8 < huge.size(); ++i)
    if (huge[i] == 0xff && huge[i + 1] == 0xc0) {
      huge[i + 5] = 0x40, huge[i + 6] = 0x00, huge[i + 7] = 0x40, huge[i + 8] = 0x00;
      break;
    }
  expectError(huge, "img: image 16384x16384 is larger than the 8192x8192 limit");
}

// The caller's pixel limit (the server's --max-image-pixels), for both formats.
TEST(ImageDecode, AnImageOverThePixelLimitIsRefused) {
  Expected<RgbImage> png = decodeImage(fileBytes("exact-32x32.png"), "img", 1023);
  ASSERT_FALSE(png);
  EXPECT_EQ(png.errorMessage(), "img: image 32x32 has 1024 pixels, more than the limit of 1023");
  Expected<RgbImage> jpeg = decodeImage(fileBytes("wide-57x41.jpg"), "img", 2336);
  ASSERT_FALSE(jpeg);
  EXPECT_NE(jpeg.errorMessage().find("57x41 has 2337 pixels"), std::string::npos);
  EXPECT_TRUE(decodeImage(fileBytes("exact-32x32.png"), "img", 1024));
}

TEST(ImagePreprocess, RefusesOtherProcessors) {
  Expected<ImagePreprocessing> p =
      parsePreprocessorConfig(R"({"resample": 2, "size": {"shortest_edge": 32}})", "pre.json");
  ASSERT_FALSE(p);
  EXPECT_NE(p.errorMessage().find("resample 2 is not supported"), std::string::npos);
  p = parsePreprocessorConfig(R"({"image_processor_type": "SiglipImageProcessor"})", "pre.json");
  ASSERT_FALSE(p);
  EXPECT_NE(p.errorMessage().find("SiglipImageProcessor"), std::string::npos);
}

}  // namespace
}  // namespace tpc
