#include "frontends/RandomModel.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "frontends/GraphBuilder.h"
#include "frontends/SafetensorsWriter.h"
#include "ir/AtomicFile.h"
#include "ir/Float16.h"

namespace tpc {
namespace {

namespace fs = std::filesystem;

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t hashName(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ (seed * 0x9e3779b97f4a7c15ull);
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Values that keep activations O(1) at any depth: linear weights uniform with variance
// 1/fan_in, norms near 1, embeddings and biases nonzero (so every weight matters in tests).
struct InitRule {
  float center, halfWidth;
};

InitRule initFor(const ExpectedTensor& t) {
  const std::string& n = t.name;
  auto endsWith = [&](std::string_view suffix) {
    return n.size() >= suffix.size() &&
           n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (endsWith("norm.weight")) return {1.0f, 0.1f};
  if (endsWith(".bias")) return {0.0f, 0.1f};
  if (n == "model.embed_tokens.weight") return {0.0f, 1.0f};
  float fanIn = t.shape.size() == 2 ? static_cast<float>(t.shape[1]) : 1.0f;
  return {0.0f, std::sqrt(3.0f / fanIn)};
}

void fillRandom(uint8_t* dst, uint64_t bytes, DType dtype, InitRule rule, uint64_t seed) {
  uint64_t state = seed;
  size_t width = dtype == DType::F32 ? 4 : 2;
  for (uint64_t i = 0; i < bytes / width; ++i) {
    double u = static_cast<double>(splitmix(state) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
    float v = rule.center + rule.halfWidth * static_cast<float>(u);
    if (dtype == DType::F32) {
      std::memcpy(dst + 4 * i, &v, 4);
    } else {
      uint16_t h = dtype == DType::BF16 ? f32ToBf16(v) : f32ToF16(v);
      std::memcpy(dst + 2 * i, &h, 2);
    }
  }
}

uint64_t elementCount(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

Expected<RandomModelResult> writeInto(const ModelSpec& spec, const fs::path& dir,
                                      const RandomModelOptions& options) {
  std::vector<std::vector<TensorToWrite>> shards(1);
  uint64_t shardBytes = 0, total = 0;
  for (const ExpectedTensor& t : expectedTensors(spec)) {
    uint64_t bytes = *byteSize(spec.dtype, elementCount(t.shape));
    if (shardBytes > 0 && shardBytes + bytes > options.shardBytes) {
      shards.emplace_back();
      shardBytes = 0;
    }
    shardBytes += bytes;
    total += bytes;
    uint64_t seed = hashName(t.name, options.seed);
    DType dtype = spec.dtype;
    InitRule rule = initFor(t);
    shards.back().push_back({t.name, dtype, t.shape, [=](uint8_t* dst, uint64_t n) {
                               fillRandom(dst, n, dtype, rule, seed);
                             }});
  }
  if (Error e = writeFileAtomically((dir / "config.json").string(), writeModelConfig(spec)))
    return e;
  uint64_t written = 0;
  std::map<std::string, std::string> weightMap;
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    if (shards.size() == 1)
      std::snprintf(name, sizeof name, "model.safetensors");
    else
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    uint64_t base = written;
    WriteProgress progress;
    if (options.progress)
      progress = [&](uint64_t done, uint64_t) { options.progress(base + done, total); };
    if (Error e = writeSafetensors((dir / name).string(), shards[i], {{"format", "pt"}}, progress))
      return e;
    for (const TensorToWrite& t : shards[i]) {
      weightMap[t.name] = name;
      written += *byteSize(t.dtype, elementCount(t.shape));
    }
  }
  if (shards.size() > 1)
    if (Error e = writeSafetensorsIndex(dir.string(), weightMap)) return e;
  return RandomModelResult{total, shards.size() + (shards.size() > 1 ? 1 : 0)};
}

}  // namespace

Expected<RandomModelResult> writeRandomModel(const ModelSpec& spec, const std::string& dirName,
                                             const RandomModelOptions& options) {
  if (Error e = validateModelSpec(spec, "model spec")) return e;
  std::error_code ec;
  fs::path target = fs::absolute(dirName, ec).lexically_normal();
  if (fs::exists(target, ec) && !fs::is_empty(target, ec) && !options.replaceExisting)
    return makeError(dirName, " exists and is not empty (replace it explicitly)");
  fs::path staging =
      target.parent_path() / (target.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(staging, ec);
  if (!fs::create_directories(staging, ec))
    return makeError("cannot create ", staging.string(), ": ", ec.message());
  Expected<RandomModelResult> result = writeInto(spec, staging, options);
  if (result) {
    fs::remove_all(target, ec);
    fs::rename(staging, target, ec);
    if (ec) result = makeError("cannot move the model into ", target.string(), ": ", ec.message());
  }
  if (!result) fs::remove_all(staging, ec);
  return result;
}

}  // namespace tpc
