// make-model --tokenizer: a generated model that speaks text. The tokenizer decides the vocab
// size and the bos/eos ids, so whatever it encodes is a valid prompt for the model.
#include "tools/tpc/MakeModelTokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ir/AtomicFile.h"

namespace tpc::cli {

Expected<AttachedTokenizer> openTokenizerToAttach(const std::string& path, ModelSpec& spec) {
  Expected<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::load(path);
  if (!tokenizer) return std::move(tokenizer.takeError()).withContext("--tokenizer: ");
  spec.vocabSize = (*tokenizer)->vocabSize();
  const TokenizerSettings& settings = (*tokenizer)->settings();
  if (std::optional<int32_t> bos = (*tokenizer)->tokenId(settings.bosToken)) spec.bosTokenId = *bos;
  if (std::optional<int32_t> eos = (*tokenizer)->tokenId(settings.eosToken))
    spec.eosTokenIds = {*eos};
  AttachedTokenizer attached;
  std::filesystem::path file = (*tokenizer)->name();
  attached.files.push_back(file.string());
  std::filesystem::path config = file.parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::is_regular_file(config, ec)) attached.files.push_back(config.string());
  attached.tokenizer = std::move(*tokenizer);
  return attached;
}

Error copyTokenizerFiles(const AttachedTokenizer& attached, const std::string& outputDir) {
  for (const std::string& from : attached.files) {
    std::ifstream in(from, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (!in) return makeError(from, ": cannot read");
    std::string to =
        (std::filesystem::path(outputDir) / std::filesystem::path(from).filename()).string();
    if (Error e = writeFileAtomically(to, bytes.str())) return e;
  }
  return Error::success();
}

}  // namespace tpc::cli
