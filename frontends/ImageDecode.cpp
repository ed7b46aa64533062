// JPEG through libjpeg(-turbo), PNG through libpng's simplified API. libjpeg reports errors by
// calling error_exit, which must not return: it longjmps back here, so no C++ object with a
// destructor may live between setjmp and the libjpeg calls.
#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <fstream>

#include <jpeglib.h>
#include <png.h>

#include "frontends/Image.h"

namespace tpc {
namespace {

bool isPng(std::span<const uint8_t> b) {
  static const uint8_t kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return b.size() >= 8 && std::equal(kSig, kSig + 8, b.begin());
}
bool isJpeg(std::span<const uint8_t> b) {
  return b.size() >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff;
}

Error checkSize(int64_t width, int64_t height, const std::string& source, int64_t maxPixels) {
  if (width < 1 || height < 1) return makeError(source, ": the image has no pixels");
  if (width > kMaxImageSide || height > kMaxImageSide)
    return makeError(source, ": image ", width, "x", height, " is larger than the ", kMaxImageSide,
                     "x", kMaxImageSide, " limit");
  if (width * height > maxPixels)
    return makeError(source, ": image ", width, "x", height, " has ", width * height,
                     " pixels, more than the limit of ", maxPixels);
  return Error::success();
}

Expected<RgbImage> decodePng(std::span<const uint8_t> bytes, const std::string& source,
                             int64_t maxPixels) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
    return makeError(source, ": corrupt PNG (", image.message, ")");
  if (Error e = checkSize(image.width, image.height, source, maxPixels)) {
    png_image_free(&image);
    return e;
  }
  // RGBA, then the alpha dropped: PIL's convert("RGB") discards alpha without compositing,
  // which libpng's RGB output would do against a background.
  image.format = PNG_FORMAT_RGBA;
  std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, rgba.data(), 0, nullptr))
    return makeError(source, ": corrupt PNG (", image.message, ")");
  RgbImage out{image.width, image.height, {}};
  out.pixels.resize(static_cast<size_t>(out.width * out.height * 3));
  for (size_t i = 0, n = static_cast<size_t>(out.width * out.height); i < n; ++i)
    for (size_t c = 0; c < 3; ++c) out.pixels[i * 3 + c] = rgba[i * 4 + c];
  return out;
}

struct JpegErrors {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpegErrorExit(j_common_ptr info) {
  auto* errors = reinterpret_cast<JpegErrors*>(info->err);
  (*info->err->format_message)(info, errors->message);
  std::longjmp(errors->jump, 1);
}

// A warning (a truncated file, which libjpeg would fill with grey) is a corrupt image too.
void jpegEmitMessage(j_common_ptr info, int level) {
  if (level < 0) jpegErrorExit(info);
}

// Plain C data only in here (see the file comment). Returns false with errors->message set.
bool decodeJpegInto(std::span<const uint8_t> bytes, JpegErrors* errors, jpeg_decompress_struct* d,
                    std::vector<uint8_t>* out, int64_t* width, int64_t* height, int64_t maxPixels) {
  d->err = jpeg_std_error(&errors->manager);
  errors->manager.error_exit = jpegErrorExit;
  errors->manager.emit_message = jpegEmitMessage;
  if (setjmp(errors->jump)) {
    jpeg_destroy_decompress(d);
    return false;
  }
  jpeg_create_decompress(d);
  jpeg_mem_src(d, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(d, TRUE);
  *width = d->image_width;
  *height = d->image_height;
  if (*width > kMaxImageSide || *height > kMaxImageSide || *width < 1 || *height < 1 ||
      *width * *height > maxPixels) {
    jpeg_destroy_decompress(d);
    return true;  // the caller reports the size
  }
  d->out_color_space = JCS_RGB;  // grey is replicated, YCbCr converted, as PIL does
  jpeg_start_decompress(d);
  out->resize(static_cast<size_t>(*width * *height * 3));
  while (d->output_scanline < d->output_height) {
    JSAMPROW row = out->data() + static_cast<size_t>(d->output_scanline) * *width * 3;
    jpeg_read_scanlines(d, &row, 1);
  }
  jpeg_finish_decompress(d);
  jpeg_destroy_decompress(d);
  return true;
}

Expected<RgbImage> decodeJpeg(std::span<const uint8_t> bytes, const std::string& source,
                              int64_t maxPixels) {
  JpegErrors errors{};
  jpeg_decompress_struct d{};
  RgbImage out;
  if (!decodeJpegInto(bytes, &errors, &d, &out.pixels, &out.width, &out.height, maxPixels))
    return makeError(source, ": corrupt JPEG (", errors.message, ")");
  if (Error e = checkSize(out.width, out.height, source, maxPixels)) return e;
  return out;
}

}  // namespace

Expected<RgbImage> decodeImage(std::span<const uint8_t> bytes, const std::string& source,
                               int64_t maxPixels) {
  if (isPng(bytes)) return decodePng(bytes, source, maxPixels);
  if (isJpeg(bytes)) return decodeJpeg(bytes, source, maxPixels);
  return makeError(source, ": not a JPEG or PNG image");
}

Expected<RgbImage> readImageFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return makeError(path, ": cannot open");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  // A compressed image far beyond the pixel limit is refused before it is read.
  if (size > (std::streamoff{256} << 20)) return makeError(path, ": image file is over 256 MiB");
  in.seekg(0);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  if (!in.read(reinterpret_cast<char*>(bytes.data()), size))
    return makeError(path, ": read failed");
  return decodeImage(bytes, path);
}

}  // namespace tpc
