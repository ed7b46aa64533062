#pragma once

#include <memory>
#include <string>
#include <vector>

#include "frontends/ModelSpec.h"
#include "frontends/Tokenizer.h"

namespace tpc::cli {

struct AttachedTokenizer {
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<std::string> files;  // tokenizer.json, and tokenizer_config.json when there is one
};

// Loads the tokenizer at `path` and makes `spec` agree with it: vocab size, bos and eos ids.
Expected<AttachedTokenizer> openTokenizerToAttach(const std::string& path, ModelSpec& spec);
// Copies the tokenizer files into the model folder.
Error copyTokenizerFiles(const AttachedTokenizer& attached, const std::string& outputDir);

}  // namespace tpc::cli
