// Read-only access to a .safetensors file: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the tensor bytes. The whole file is
// mapped, but opening reads only the header pages: a compiler inspects 16 GB checkpoints and
// must not page in weights it never uses. Every rule the reference Rust crate enforces is
// checked at open, so later code can trust the offsets.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ir/DType.h"
#include "ir/Error.h"

namespace tpc {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  // Byte offsets relative to the start of the data section, as the header writes them.
  uint64_t dataBegin = 0;
  uint64_t dataEnd = 0;

  // Product of the dims (1 for a scalar); open() has checked it does not overflow.
  uint64_t numElements() const;
  uint64_t byteLength() const { return dataEnd - dataBegin; }
};

// Header lengths over this are refused unread, as the reference implementation does.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

class SafetensorsFile {
 public:
  // Maps `path` and validates its header; any fault comes back as an Error naming the file and,
  // where there is one, the tensor.
  static Expected<SafetensorsFile> open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  uint64_t fileSize() const { return fileSize_; }
  // 8 + header length: where tensor data starts in the file.
  uint64_t dataOffset() const { return dataOffset_; }
  // In file order (by dataBegin; zero-size tensors sharing an offset by name).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // Binary search over names; nullptr when absent.
  const TensorInfo* find(std::string_view name) const;
  // The "__metadata__" object (empty when the header has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // `t` must come from this file's tensors(). The pages are read only when the span is read;
  // if another process truncates the file meanwhile, that read raises SIGBUS, as with any mmap.
  std::span<const uint8_t> bytes(const TensorInfo& t) const;
  // FNV-1a of the 8 length bytes and the header bytes: changes whenever any tensor's name,
  // dtype, shape or placement does, so plans can record which checkpoint they were built for.
  uint64_t headerHash() const { return headerHash_; }

 private:
  SafetensorsFile() = default;
  void release();

  std::string path_;
  const uint8_t* mapping_ = nullptr;
  uint64_t fileSize_ = 0;
  uint64_t dataOffset_ = 0;
  uint64_t headerHash_ = 0;
  std::vector<TensorInfo> tensors_;
  std::vector<uint32_t> byName_;  // indexes into tensors_, sorted by name
  std::map<std::string, std::string> metadata_;
};

}  // namespace tpc
