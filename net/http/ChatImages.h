// Images in chat messages, for vision models: a data: URL's bytes (base64 through Boost.Beast),
// decoded by frontends/Image (libpng, libjpeg-turbo) and prepared for the tower by the function
// the server is given. Each problem is one 400 naming it; nothing here touches other requests.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "executor/engine/Engine.h"
#include "frontends/Image.h"
#include "net/http/Schema.h"

namespace tpc::http {

// What the server knows of a vision model's image input.
struct ServedImages {
  int32_t tokenIndex = -1;  // image_token_index
  int64_t seqLength = 0;    // image_seq_length: the copies one image token expands to
  uint64_t maxBytes = uint64_t{20} << 20;  // one image's encoded (JPEG or PNG) bytes
  int64_t maxPixels = int64_t{4096} * 4096;
  // A decoded image as the tower takes it (preprocessed and patchified).
  std::function<EngineImage(const RgbImage&)> prepare;
};

// The bytes of `data:image/png;base64,...` (or image/jpeg); an ApiError for any other URL, a
// payload that is not base64, or one over `maxBytes`.
std::optional<ApiError> dataUrlBytes(const std::string& url, uint64_t maxBytes,
                                     std::vector<uint8_t>& out);

// The image of `part`, decoded and prepared.
std::optional<ApiError> loadChatImage(const ServedImages& served, const ChatImagePart& part,
                                      std::shared_ptr<const EngineImage>& out);

// A prompt rendered with its image token once (where the template put it) gets seqLength
// copies there, as the llava processor does; an ApiError when the prompt holds the image token
// any other number of times.
std::optional<ApiError> expandImageTokens(const ServedImages& served, std::vector<int32_t>& ids);

}  // namespace tpc::http
