// A model's weights as one namespace of tensors, whether they sit in one model.safetensors or
// in shards listed by model.safetensors.index.json. Every shard is opened (headers only) and
// cross-checked against the index, so a tensor name always resolves to exactly one place.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "frontends/Safetensors.h"
#include "ir/Error.h"

namespace tpc {

class Checkpoint {
 public:
  // `pathOrDir` is a model directory, a single .safetensors file, or an index .json file.
  // In a directory, model.safetensors wins over the index (as in transformers); failing both, a
  // lone *.safetensors file is used, and several without an index are refused.
  static Expected<Checkpoint> open(const std::string& pathOrDir);

  Checkpoint(Checkpoint&&) noexcept = default;
  Checkpoint& operator=(Checkpoint&&) noexcept = default;

  const std::string& directory() const { return directory_; }
  // Sorted by file name, so file indexes are deterministic.
  const std::vector<SafetensorsFile>& files() const { return files_; }

  struct Entry {
    size_t file;  // index into files()
    const TensorInfo* info;
  };
  const Entry* find(std::string_view tensorName) const;
  std::vector<std::string> tensorNames() const;  // sorted

 private:
  Checkpoint() = default;
  Error indexTensors(const std::string& source);

  std::string directory_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, Entry, std::less<>> entries_;
};

// Whether an index may name `name` as a shard: a file directly in the model directory, so a
// hostile index cannot make us open ../../something or an absolute path.
bool isPlainShardFileName(std::string_view name);

}  // namespace tpc
