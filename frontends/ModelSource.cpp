#include "frontends/ModelSource.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

namespace tpc {

TensorLookup ModelSource::lookup() const {
  return [this](const std::string& name) -> std::optional<TensorMeta> {
    const Checkpoint::Entry* e = checkpoint.find(name);
    if (!e) return std::nullopt;
    return TensorMeta{e->info->dtype, e->info->shape};
  };
}

namespace {

// generation_config.json often names more end-of-sequence ids than config.json (Llama-3
// instruct: end_of_text, eom and eot); generation stops at any of them.
Error mergeGenerationEos(const std::filesystem::path& file, ModelSpec& spec) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return Error::success();
  std::ifstream in(file);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return makeError(file.string(), ": not a JSON object");
  auto add = [&](const nlohmann::json& v) {
    if (v.is_number_integer() && std::find(spec.eosTokenIds.begin(), spec.eosTokenIds.end(),
                                           v.get<int64_t>()) == spec.eosTokenIds.end())
      spec.eosTokenIds.push_back(v.get<int64_t>());
  };
  if (auto it = j.find("eos_token_id"); it != j.end()) {
    if (it->is_array())
      for (const auto& v : *it) add(v);
    else
      add(*it);
  }
  return Error::success();
}

}  // namespace

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
  if (Error e = mergeGenerationEos(dir / "generation_config.json", *spec)) return e;
  Expected<Checkpoint> checkpoint = Checkpoint::open(path);
  if (!checkpoint) return checkpoint.takeError();
  return ModelSource{fs::absolute(dir, ec).lexically_normal().string(), std::move(*spec),
                     std::move(*checkpoint)};
}

}  // namespace tpc
