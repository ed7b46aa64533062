#include "frontends/SafetensorsWriter.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <new>
#include <set>

#include <nlohmann/json.hpp>

#include "frontends/Checkpoint.h"
#include "frontends/Safetensors.h"
#include "frontends/SafetensorsHeader.h"
#include "frontends/StrictJson.h"
#include "ir/AtomicFile.h"

namespace tpc {
namespace {

using nlohmann::json;

// Progress is reported (and write() called) per chunk, so a 1 GB tensor still shows movement.
constexpr uint64_t kWriteChunkBytes = 64ull << 20;

struct PlacedTensor {
  const TensorToWrite* tensor;
  uint64_t begin;
  uint64_t end;
};

// Checks one tensor and returns its byte length; messages name the tensor but not the file.
Expected<uint64_t> checkedByteLength(const TensorToWrite& t) {
  std::string where = "tensor " + quoteName(t.name) + ": ";
  if (t.name == "__metadata__") return makeError(where, "the name is reserved for metadata");
  if (findInvalidUtf8(t.name) != std::string::npos)
    return makeError(where, "the name is not valid UTF-8");
  uint64_t elements = 1;
  for (int64_t dim : t.shape) {
    if (dim < 0) return makeError(where, "negative dimension ", dim, " in shape");
    auto d = static_cast<uint64_t>(dim);
    if (d != 0 && elements > std::numeric_limits<uint64_t>::max() / d)
      return makeError(where, "element count of shape ", formatShape(t.shape),
                       " overflows 64 bits");
    elements *= d;
  }
  if (elements != 0 && bitWidth(t.dtype) > std::numeric_limits<uint64_t>::max() / elements)
    return makeError(where, "byte size of shape ", formatShape(t.shape), " overflows 64 bits");
  std::optional<uint64_t> bytes = byteSize(t.dtype, elements);
  if (!bytes)
    return makeError(where, elements, " ", safetensorsName(t.dtype),
                     " elements are not a whole number of bytes");
  return *bytes;
}

Expected<std::vector<PlacedTensor>> placeTensors(const std::vector<TensorToWrite>& tensors) {
  std::vector<const TensorToWrite*> order;
  order.reserve(tensors.size());
  for (const TensorToWrite& t : tensors) order.push_back(&t);
  // DType follows the reference crate's Dtype order, which rises with alignment.
  std::sort(order.begin(), order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    return a->dtype != b->dtype ? a->dtype > b->dtype : a->name < b->name;
  });
  std::set<std::string_view> names;
  std::vector<PlacedTensor> placed;
  uint64_t offset = 0;
  for (const TensorToWrite* t : order) {
    if (!names.insert(t->name).second) return makeError("duplicate tensor ", quoteName(t->name));
    Expected<uint64_t> bytes = checkedByteLength(*t);
    if (!bytes) return bytes.takeError();
    if (*bytes > std::numeric_limits<uint64_t>::max() - offset)
      return makeError("tensor ", quoteName(t->name), ": total data size overflows 64 bits");
    placed.push_back({t, offset, offset + *bytes});
    offset += *bytes;
  }
  return placed;
}

// Assembled by hand rather than as one json object: nlohmann sorts object keys, and the
// reference writes __metadata__ first, tensors in data order and fields as dtype, shape,
// data_offsets. Matching it byte for byte keeps our checkpoints identical to Python's (except
// the order of several metadata keys, which the reference takes from a hash map).
Expected<std::string> headerBytes(const std::vector<PlacedTensor>& placed,
                                  const std::map<std::string, std::string>& metadata) {
  std::string text = "{";
  auto appendKey = [&](const std::string& key) {
    if (text.size() > 1) text += ',';
    text += json(key).dump();
    text += ':';
  };
  if (!metadata.empty()) {
    for (const auto& [key, value] : metadata)
      if (findInvalidUtf8(key) != std::string::npos || findInvalidUtf8(value) != std::string::npos)
        return makeError("metadata key ", quoteName(key), ": not valid UTF-8");
    appendKey("__metadata__");
    text += json(metadata).dump();
  }
  for (const PlacedTensor& p : placed) {
    appendKey(p.tensor->name);
    text += "{\"dtype\":\"";
    text += safetensorsName(p.tensor->dtype);
    text += "\",\"shape\":" + json(p.tensor->shape).dump();
    text += ",\"data_offsets\":[" + std::to_string(p.begin) + "," + std::to_string(p.end) + "]}";
  }
  text += '}';
  // Spaces up to a multiple of 8, as the reference writer pads, so the data section is aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  if (text.size() > kMaxSafetensorsHeaderBytes)
    return makeError("header of ", text.size(), " bytes is over the ", kMaxSafetensorsHeaderBytes,
                     "-byte limit readers accept");
  return text;
}

Error writeTensorData(AtomicFile& file, const std::vector<PlacedTensor>& placed,
                      const WriteProgress& progress) {
  uint64_t total = placed.empty() ? 0 : placed.back().end;
  uint64_t largest = 0;
  for (const PlacedTensor& p : placed) largest = std::max(largest, p.end - p.begin);
  std::unique_ptr<uint8_t[]> buffer;
  if (largest > 0) {
    buffer.reset(new (std::nothrow) uint8_t[largest]);
    if (!buffer) return makeError("cannot allocate ", largest, " bytes for the largest tensor");
  }
  if (progress) progress(0, total);
  for (const PlacedTensor& p : placed) {
    uint64_t bytes = p.end - p.begin;
    if (bytes == 0) continue;
    if (p.tensor->fill)
      p.tensor->fill(buffer.get(), bytes);
    else
      std::memset(buffer.get(), 0, bytes);
    for (uint64_t done = 0; done < bytes;) {
      uint64_t chunk = std::min(kWriteChunkBytes, bytes - done);
      if (Error e = file.write(buffer.get() + done, chunk)) return e;
      done += chunk;
      if (progress) progress(p.begin + done, total);
    }
  }
  return Error::success();
}

}  // namespace

Error writeSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata,
                       const WriteProgress& progress) {
  std::string context = path + ": ";
  Expected<std::vector<PlacedTensor>> placed = placeTensors(tensors);
  if (!placed) return placed.takeError().withContext(context);
  Expected<std::string> header = headerBytes(*placed, metadata);
  if (!header) return header.takeError().withContext(context);

  Expected<AtomicFile> file = AtomicFile::create(path);
  if (!file) return file.takeError();
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(header->size() >> (8 * i));
  if (Error e = file->write(length, sizeof length)) return e;
  if (Error e = file->write(header->data(), header->size())) return e;
  if (Error e = writeTensorData(*file, *placed, progress)) return std::move(e).withContext(context);
  return file->commit();
}

Error writeSafetensorsIndex(const std::string& dir,
                            const std::map<std::string, std::string>& weightMap) {
  std::string indexPath = (std::filesystem::path(dir) / kSafetensorsIndexName).string();
  std::map<std::string, std::set<std::string>> tensorsByShard;
  for (const auto& [tensor, shard] : weightMap) {
    // Tensor names need no UTF-8 check: each must be found in a shard header, which has one.
    if (!isPlainShardFileName(shard) || findInvalidUtf8(shard) != std::string::npos)
      return makeError(indexPath, ": tensor ", quoteName(tensor), " maps to ", quoteName(shard),
                       ", which is not a plain UTF-8 file name in the directory");
    tensorsByShard[shard].insert(tensor);
  }
  uint64_t totalSize = 0;
  for (const auto& [shard, names] : tensorsByShard) {
    Expected<SafetensorsFile> file =
        SafetensorsFile::open((std::filesystem::path(dir) / shard).string());
    if (!file) return file.takeError().withContext(indexPath + ": ");
    for (const std::string& name : names) {
      const TensorInfo* info = file->find(name);
      if (!info)
        return makeError(indexPath, ": tensor ", quoteName(name), " maps to shard ",
                         quoteName(shard), ", which does not hold it");
      totalSize += info->byteLength();
    }
    for (const TensorInfo& t : file->tensors())
      if (!names.count(t.name))
        return makeError(indexPath, ": shard ", quoteName(shard), " holds tensor ",
                         quoteName(t.name), ", which the weight map does not list");
  }
  json index = {{"metadata", {{"total_size", totalSize}}}, {"weight_map", weightMap}};
  return writeFileAtomically(indexPath, index.dump(2) + "\n");
}

}  // namespace tpc
