#include "frontends/SafetensorsHeader.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>

#include "frontends/StrictJson.h"

namespace tpc {
namespace {

using nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";

std::string describeDuplicate(const std::vector<std::string>& parents, const std::string& key) {
  if (parents.empty())
    return key == kMetadataKey ? "header has \"__metadata__\" twice"
                               : "duplicate tensor " + quoteName(key) + " in the header";
  if (parents.size() == 1 && parents[0] == kMetadataKey)
    return "duplicate key " + quoteName(key) + " in \"__metadata__\"";
  if (parents.size() == 1)
    return "tensor " + quoteName(parents[0]) + ": duplicate field " + quoteName(key);
  return "tensor " + quoteName(parents[0]) + ": duplicate key " + quoteName(key);
}

// Reads a JSON number as a non-negative integer; nlohmann keeps every non-negative integer
// literal as number_unsigned, so negatives, fractions and huge literals (parsed as double) fail.
std::optional<uint64_t> asUnsigned(const json& v) {
  if (!v.is_number_unsigned()) return std::nullopt;
  return v.get<uint64_t>();
}

Error checkMetadata(const json& value, std::map<std::string, std::string>& out) {
  if (!value.is_object())
    return makeError("\"__metadata__\" must be an object of string values, not ",
                     describeJsonKind(value));
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string())
      return makeError("\"__metadata__\" key ", quoteName(key), " has ", describeJsonKind(v),
                       " value; metadata values must be strings");
    out.emplace(key, v.get<std::string>());
  }
  return Error::success();
}

// Structure, dtype and shape of one entry: everything that does not depend on its neighbours.
Expected<TensorInfo> parseEntry(const std::string& name, const json& entry, uint64_t dataSize) {
  std::string tensor = "tensor " + quoteName(name) + ": ";
  if (!entry.is_object())
    return makeError(tensor, "entry must be an object with \"dtype\", \"shape\" and ",
                     "\"data_offsets\", not ", describeJsonKind(entry));
  // Other fields are ignored, as the reference reader does.
  auto dtypeIt = entry.find("dtype");
  auto shapeIt = entry.find("shape");
  auto offsetsIt = entry.find("data_offsets");
  if (dtypeIt == entry.end()) return makeError(tensor, "missing \"dtype\"");
  if (shapeIt == entry.end()) return makeError(tensor, "missing \"shape\"");
  if (offsetsIt == entry.end()) return makeError(tensor, "missing \"data_offsets\"");

  TensorInfo info;
  info.name = name;
  if (!dtypeIt->is_string())
    return makeError(tensor, "\"dtype\" must be a string, not ", describeJsonKind(*dtypeIt));
  const auto& dtypeName = dtypeIt->get_ref<const std::string&>();
  std::optional<DType> dtype = parseSafetensorsDType(dtypeName);
  if (!dtype) return makeError(tensor, "unknown dtype ", quoteName(dtypeName));
  info.dtype = *dtype;

  if (!shapeIt->is_array())
    return makeError(tensor, "\"shape\" must be an array of non-negative integers, not ",
                     describeJsonKind(*shapeIt));
  for (const json& dim : *shapeIt) {
    if (dim.is_number_integer() && !dim.is_number_unsigned())
      return makeError(tensor, "negative dimension ", dim.get<int64_t>(), " in \"shape\"");
    std::optional<uint64_t> d = asUnsigned(dim);
    if (!d)
      return makeError(tensor, "\"shape\" must be an array of non-negative integers, but holds ",
                       describeJsonKind(dim));
    if (*d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return makeError(tensor, "dimension ", *d, " in \"shape\" overflows a signed 64-bit size");
    info.shape.push_back(static_cast<int64_t>(*d));
  }

  const json& offsets = *offsetsIt;
  std::optional<uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) {
    begin = asUnsigned(offsets[0]);
    end = asUnsigned(offsets[1]);
  }
  if (!begin || !end)
    return makeError(tensor, "\"data_offsets\" must be an array of 2 non-negative integers");
  info.dataBegin = *begin;
  info.dataEnd = *end;
  std::string range = "data_offsets [" + std::to_string(*begin) + ", " + std::to_string(*end) + "]";
  if (*end < *begin) return makeError(tensor, range, ": end is before begin");

  uint64_t elements = 1;
  for (int64_t dim : info.shape) {
    auto d = static_cast<uint64_t>(dim);
    if (d != 0 && elements > std::numeric_limits<uint64_t>::max() / d)
      return makeError(tensor, "element count of shape ", formatShape(info.shape),
                       " overflows 64 bits");
    elements *= d;
  }
  if (elements != 0 && bitWidth(info.dtype) > std::numeric_limits<uint64_t>::max() / elements)
    return makeError(tensor, "bit size of ", elements, " ", dtypeName,
                     " elements overflows 64 bits");
  std::optional<uint64_t> bytes = byteSize(info.dtype, elements);
  if (!bytes)
    return makeError(tensor, elements, " ", dtypeName, " elements of ", bitWidth(info.dtype),
                     " bits are not a whole number of bytes");
  if (info.byteLength() != *bytes)
    return makeError(tensor, range, " hold ", info.byteLength(), " bytes but ", dtypeName,
                     " shape ", formatShape(info.shape), " needs ", *bytes, " bytes");
  if (*end > dataSize)
    return makeError(tensor, range, " are out of bounds: the data section has ", dataSize,
                     " bytes");
  return info;
}

// The data section must be tiled exactly: no gap, no overlap, nothing after the last tensor.
// Gaps would hide bytes no reader accounts for, and the reference rejects them too.
Error checkLayout(std::vector<TensorInfo>& tensors, uint64_t dataSize) {
  std::sort(tensors.begin(), tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.dataBegin, a.dataEnd, a.name) < std::tie(b.dataBegin, b.dataEnd, b.name);
  });
  uint64_t end = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& t : tensors) {
    if (!previous && t.dataBegin != 0)
      return makeError("first tensor ", quoteName(t.name), " begins at byte ", t.dataBegin,
                       " of the data section, not at 0");
    if (t.dataBegin < end)
      return makeError("tensor ", quoteName(t.name), " (data_offsets [", t.dataBegin, ", ",
                       t.dataEnd, "]) overlaps tensor ", quoteName(previous->name),
                       " (data_offsets [", previous->dataBegin, ", ", previous->dataEnd, "])");
    if (t.dataBegin > end)
      return makeError("tensor ", quoteName(t.name), " is not contiguous: it begins at ",
                       t.dataBegin, " but the previous tensor ", quoteName(previous->name),
                       " ends at ", end);
    end = t.dataEnd;
    previous = &t;
  }
  if (end < dataSize)
    return makeError(dataSize - end, " trailing bytes after the last tensor: tensors end at ", end,
                     " but the data section has ", dataSize, " bytes");
  return Error::success();
}

}  // namespace

std::string formatShape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

Expected<SafetensorsHeader> parseSafetensorsHeader(std::string_view text, uint64_t dataSize,
                                                   const std::string& path) {
  auto fail = [&](Error e) { return std::move(e).withContext(path + ": "); };
  if (size_t bad = findInvalidUtf8(text); bad != std::string_view::npos)
    return fail(makeError("header is not valid UTF-8 (bad byte at header offset ", bad, ")"));
  // The reference refuses anything but an object here, leading spaces included; trailing spaces
  // are the padding writers use to align the data section.
  if (text.empty() || text.front() != '{') return fail(makeError("header does not start with '{'"));
  Expected<json> parsed = parseStrictJson(text, "header", describeDuplicate);
  if (!parsed) return fail(parsed.takeError());
  const json& root = *parsed;
  if (!root.is_object()) return fail(makeError("header is not a JSON object"));

  SafetensorsHeader header;
  header.tensors.reserve(root.size());
  for (const auto& [name, value] : root.items()) {
    if (name == kMetadataKey) {
      if (Error e = checkMetadata(value, header.metadata)) return fail(std::move(e));
      continue;
    }
    Expected<TensorInfo> info = parseEntry(name, value, dataSize);
    if (!info) return fail(info.takeError());
    header.tensors.push_back(std::move(*info));
  }
  if (Error e = checkLayout(header.tensors, dataSize)) return fail(std::move(e));
  return header;
}

}  // namespace tpc
