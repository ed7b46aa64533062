#include "net/http/ChatImages.h"

#include <algorithm>

#include <boost/beast/core/detail/base64.hpp>

namespace tpc::http {
namespace {

const char kServedForms[] =
    "only data: URLs are served (data:image/png;base64,... or "
    "data:image/jpeg;base64,...)";

bool startsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

std::optional<ApiError> dataUrlBytes(const std::string& url, uint64_t maxBytes,
                                     std::vector<uint8_t>& out) {
  if (!startsWith(url, "data:")) {
    const std::string scheme = url.substr(0, std::min(url.find(':'), size_t{16}));
    return badRequest("image_url '" + scheme + ":...': " + kServedForms, "messages");
  }
  const size_t comma = url.find(',');
  if (comma == std::string::npos)
    return badRequest("image_url: the data: URL has no ',' before its payload", "messages");
  const std::string header = url.substr(5, comma - 5);
  if (header != "image/png;base64" && header != "image/jpeg;base64" && header != "image/jpg;base64")
    return badRequest("image_url 'data:" + header.substr(0, 40) + "': " + kServedForms, "messages");
  namespace base64 = boost::beast::detail::base64;
  const char* payload = url.data() + comma + 1;
  const size_t length = url.size() - comma - 1;
  if (base64::decoded_size(length) > maxBytes + 2)
    return badRequest("image_url: the image is over the limit of " + std::to_string(maxBytes) +
                          " bytes (--max-image-bytes)",
                      "messages");
  out.resize(base64::decoded_size(length));
  auto [written, read] = base64::decode(out.data(), payload, length);
  // Beast stops at the first character outside the alphabet or at '=': all that may follow
  // is the padding that makes the length a multiple of 4.
  const size_t padding = length - read;
  const bool padded = padding <= 2 && std::all_of(payload + read, payload + length,
                                                  [](char c) { return c == '='; });
  if (length == 0 || !padded || length % 4 != 0)
    return badRequest("image_url: the data: URL's payload is not valid base64", "messages");
  out.resize(written);
  if (out.size() > maxBytes)
    return badRequest("image_url: the image is over the limit of " + std::to_string(maxBytes) +
                          " bytes (--max-image-bytes)",
                      "messages");
  return std::nullopt;
}

std::optional<ApiError> loadChatImage(const ServedImages& served, const ChatImagePart& part,
                                      std::shared_ptr<const EngineImage>& out) {
  std::vector<uint8_t> bytes;
  if (auto e = dataUrlBytes(part.url, served.maxBytes, bytes)) return e;
  Expected<RgbImage> image = decodeImage(bytes, "image_url", served.maxPixels);
  if (!image) return badRequest(image.errorMessage(), "messages");
  out = std::make_shared<const EngineImage>(served.prepare(*image));
  return std::nullopt;
}

std::optional<ApiError> expandImageTokens(const ServedImages& served, std::vector<int32_t>& ids) {
  const auto count = std::count(ids.begin(), ids.end(), served.tokenIndex);
  if (count == served.seqLength) return std::nullopt;
  if (count != 1)
    return badRequest("the rendered prompt holds the image token (id " +
                          std::to_string(served.tokenIndex) + ") " + std::to_string(count) +
                          " times; one image takes it once (or " +
                          std::to_string(served.seqLength) + " times)",
                      "messages");
  auto at = std::find(ids.begin(), ids.end(), served.tokenIndex);
  ids.insert(at, static_cast<size_t>(served.seqLength - 1), served.tokenIndex);
  return std::nullopt;
}

}  // namespace tpc::http
