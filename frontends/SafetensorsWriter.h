// Writing .safetensors checkpoints (for `tpc make-model`, whose random checkpoints run to many
// GB): the header first, then each tensor's bytes produced on demand, so memory holds at most
// one tensor, never the file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ir/DType.h"
#include "ir/Error.h"

namespace tpc {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  // Must write all `bytes` bytes of the tensor's little-endian data at `dst`. Called once per
  // tensor that has bytes; an empty function writes zeros.
  std::function<void(uint8_t* dst, uint64_t bytes)> fill;
};

using WriteProgress = std::function<void(uint64_t doneBytes, uint64_t totalBytes)>;

// Writes `path` atomically (temp file + rename; nothing is left behind on failure). The bytes
// are those the reference Python/Rust writer produces for the same tensors: tensors laid out by
// descending dtype (wide types first), then by name, so the order is deterministic and every
// tensor starts at a multiple of its element size, letting readers use mapped bytes in place;
// the header is padded with spaces to a multiple of 8 bytes. `progress` is called as tensor
// bytes reach the file, counting only tensor bytes.
Error writeSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {},
                       const WriteProgress& progress = {});

// The file name Checkpoint looks for in a sharded model directory.
inline constexpr const char* kSafetensorsIndexName = "model.safetensors.index.json";

// Writes `dir`/model.safetensors.index.json (atomically) mapping each tensor to its shard file
// name. The shards must already be written: they are opened to check that each holds the
// tensors mapped to it and to sum metadata.total_size.
Error writeSafetensorsIndex(const std::string& dir,
                            const std::map<std::string, std::string>& weightMap);

}  // namespace tpc
