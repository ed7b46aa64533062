// JSON parsing for files whose silent misreadings would be dangerous: nlohmann keeps the last
// of two equal keys without a word, which would let a checkpoint name a tensor twice and have
// a different reader pick the other copy. Internal to tpc_frontends (nlohmann is private there).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ir/Error.h"

namespace tpc {

// Deeper nesting is refused before it costs memory; real headers and indexes nest 3 levels.
inline constexpr size_t kMaxJsonDepth = 128;

// Words a duplicate key in the object reached through `parents` (keys of the enclosing objects,
// "[]" for an array element), so each file format can say "duplicate tensor" in its own terms.
using DuplicateKeyDescriber =
    std::function<std::string(const std::vector<std::string>& parents, const std::string& key)>;

// Parses `text`, refusing duplicate keys in any object, nesting over kMaxJsonDepth, comments
// and trailing garbage. Failure messages start with `subject` ("header is not valid JSON: ...")
// but name no file; callers prefix it.
Expected<nlohmann::json> parseStrictJson(std::string_view text, std::string_view subject,
                                         const DuplicateKeyDescriber& describeDuplicate);

// Byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates and code points
// over U+10FFFF are invalid, as in Rust's str::from_utf8), or npos when `s` is valid.
size_t findInvalidUtf8(std::string_view s);

// `s` in double quotes for an error message: control bytes escaped so the message stays one
// line, and very long names shortened.
std::string quoteName(std::string_view s);

// A JSON value's kind in words ("a string", "an array") for error messages.
std::string describeJsonKind(const nlohmann::json& value);

}  // namespace tpc
