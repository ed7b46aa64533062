#include "frontends/ModelSource.h"

#include <filesystem>

namespace tpc {

TensorLookup ModelSource::lookup() const {
  return [this](const std::string& name) -> std::optional<TensorMeta> {
    const Checkpoint::Entry* e = checkpoint.find(name);
    if (!e) return std::nullopt;
    return TensorMeta{e->info->dtype, e->info->shape};
  };
}

Expected<ModelSource> openModel(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) return makeError(path, ": no such file or directory");
  fs::path dir = fs::is_directory(path, ec) ? fs::path(path) : fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  fs::path config = dir / "config.json";
  if (!fs::exists(config, ec))
    return makeError(dir.string(),
                     ": no config.json (a model folder needs config.json and *.safetensors)");
  Expected<ModelSpec> spec = loadModelConfig(config.string());
  if (!spec) return spec.takeError();
  Expected<Checkpoint> checkpoint = Checkpoint::open(path);
  if (!checkpoint) return checkpoint.takeError();
  return ModelSource{fs::absolute(dir, ec).lexically_normal().string(), std::move(*spec),
                     std::move(*checkpoint)};
}

}  // namespace tpc
