#include <cstdio>
#include <memory>
#include <optional>

#include <filesystem>

#include "codegen/PlanSummary.h"
#include "frontends/Presets.h"
#include "frontends/RandomModel.h"
#include "ir/AtomicFile.h"
#include "tools/common/Args.h"
#include "tools/common/Progress.h"
#include "tools/tpc/Commands.h"
#include "tools/tpc/MakeModelTokenizer.h"

namespace tpc::cli {

int runMakeModel(int argc, char** argv) {
  std::string arch, preset, dtypeName = "bf16", output, tokenizerPath;
  int64_t seed = 0, shardMiB = 5 * 1024;
  bool force = false, list = false, quiet = false, configOnly = false;
  ArgParser args(
      "tpc make-model",
      "Writes config.json and safetensors with random weights under Hugging Face tensor\n"
      "names, for a known architecture and size. Transformers loads the result.");
  args.option("--arch", &arch, "A", "llama, mistral, qwen2, qwen3, qwen3_moe or mixtral");
  args.option("--preset", &preset, "P",
              "tiny, small, or a real shape such as llama3-8b (see --list)");
  args.choice("--dtype", &dtypeName, {"bf16", "f16", "f32"}, "weight dtype (default bf16)");
  args.option("--seed", &seed, "S", "random seed (default 0); the same seed writes the same bytes");
  args.option("-o", &output, "DIR", "folder to create");
  args.option("--shard-size", &shardMiB, "MIB",
              "split into model-0000i-of-0000N.safetensors above this size (default 5120)");
  args.option("--tokenizer", &tokenizerPath, "PATH",
              "copy this tokenizer.json (and its tokenizer_config.json) into DIR; the model's\n"
              "vocab size and bos/eos ids follow it");
  args.flag("--force", &force, "replace DIR if it exists");
  args.flag("--list", &list, "list the presets of every architecture and exit");
  args.flag("--config-only", &configOnly, "write only config.json (no weights)");
  args.flag("--quiet", &quiet, "no progress output");
  args.epilog("example:\n  tpc make-model --arch llama --preset llama3-8b -o models/llama3-8b");
  if (Error e = args.parse(argc, argv, 2)) return fail(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  if (list) {
    for (Family f : {Family::Llama, Family::Mistral, Family::Qwen2, Family::Qwen3, Family::Qwen3Moe,
                     Family::Mixtral})
      for (const Preset& p : presets(f))
        std::printf("%-10s %-16s %s\n", std::string(familyName(f)).c_str(), p.name.c_str(),
                    p.description.c_str());
    return 0;
  }
  if (arch.empty()) return fail("--arch is required (see tpc make-model --help)", 2);
  if (preset.empty()) return fail("--preset is required (see tpc make-model --list)", 2);
  if (output.empty()) return fail("-o DIR is required", 2);
  if (shardMiB < 1) return fail("--shard-size must be at least 1", 2);
  Expected<Family> family = parseFamily(arch);
  if (!family) return fail("--arch: " + family.errorMessage(), 2);
  Expected<ModelSpec> spec = makePresetSpec(*family, preset, *parseIrDType(dtypeName));
  if (!spec) return fail("--preset: " + spec.errorMessage(), 2);
  std::optional<AttachedTokenizer> tokenizer;
  if (!tokenizerPath.empty()) {
    Expected<AttachedTokenizer> attached = openTokenizerToAttach(tokenizerPath, *spec);
    if (!attached) return fail(attached.errorMessage());
    tokenizer = std::move(*attached);
  }

  if (configOnly) {
    std::error_code ec;
    std::filesystem::create_directories(output, ec);
    if (Error e = writeFileAtomically(output + "/config.json", writeModelConfig(*spec)))
      return fail(e.message());
    if (tokenizer)
      if (Error e = copyTokenizerFiles(*tokenizer, output)) return fail(e.message());
    if (!quiet)
      std::printf("wrote %s/config.json: %s %s, %lld parameters\n", output.c_str(),
                  std::string(familyName(spec->family)).c_str(), preset.c_str(),
                  (long long)parameterCount(*spec));
    return 0;
  }
  RandomModelOptions options;
  options.seed = static_cast<uint64_t>(seed);
  options.shardBytes = static_cast<uint64_t>(shardMiB) << 20;
  options.replaceExisting = force;
  std::unique_ptr<Progress> bar;
  options.progress = [&](uint64_t done, uint64_t total) {
    if (!bar) bar = std::make_unique<Progress>("writing " + output, total, !quiet);
    bar->update(done);
  };
  Expected<RandomModelResult> result = writeRandomModel(*spec, output, options);
  if (!result) {
    if (result.errorMessage().find("exists and is not empty") != std::string::npos)
      return fail(output + " exists and is not empty (use --force to replace it)");
    return fail(result.errorMessage());
  }
  if (bar) bar->finish();
  if (tokenizer)
    if (Error e = copyTokenizerFiles(*tokenizer, output)) return fail(e.message());
  if (!quiet)
    std::printf("wrote %s: %s %s, %s parameters, %s in %zu file(s)\n", output.c_str(),
                std::string(familyName(spec->family)).c_str(), preset.c_str(),
                std::to_string(parameterCount(*spec)).c_str(), formatBytes(result->bytes).c_str(),
                result->files);
  return 0;
}

}  // namespace tpc::cli
