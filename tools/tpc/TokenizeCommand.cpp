// tpc tokenize: text to ids (or back) through a Hugging Face tokenizer.json, one JSON value per
// line so any text, newlines included, fits on a line.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "frontends/Tokenizer.h"
#include "tools/common/Args.h"
#include "tools/tpc/Commands.h"

namespace tpc::cli {
namespace {

// One input line to one output line; errors name the line.
// `textBytes` grows by the size of the text (not of its JSON form), for --timings.
Expected<std::string> encodeLine(Tokenizer& tokenizer, const std::string& line, bool addSpecial,
                                 uint64_t& textBytes) {
  nlohmann::json text = nlohmann::json::parse(line, nullptr, false);
  if (text.is_discarded() || !text.is_string())
    return makeError("expected a JSON string such as \"Hello\\n\"");
  textBytes += text.get_ref<const std::string&>().size();
  Expected<std::vector<int32_t>> ids =
      tokenizer.encode(text.get_ref<const std::string&>(), addSpecial);
  if (!ids) return ids.takeError();
  return nlohmann::json(*ids).dump();
}

Expected<std::string> decodeLine(const Tokenizer& tokenizer, const std::string& line,
                                 bool skipSpecial, uint64_t& textBytes) {
  nlohmann::json array = nlohmann::json::parse(line, nullptr, false);
  if (array.is_discarded() || !array.is_array())
    return makeError("expected a JSON array of token ids such as [9906, 11]");
  std::vector<int32_t> ids;
  for (const nlohmann::json& id : array) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      return makeError("expected a JSON array of token ids such as [9906, 11]");
    ids.push_back(id.get<int32_t>());
  }
  Expected<std::string> text = tokenizer.decode(ids, {skipSpecial});
  if (!text) return text.takeError();
  textBytes += text->size();
  return nlohmann::json(*text).dump();
}

}  // namespace

int runTokenize(int argc, char** argv) {
  std::string path;
  bool decode = false, addSpecial = false, skipSpecial = false, timings = false;
  ArgParser args("tpc tokenize",
                 "Reads stdin line by line. Each line is one JSON string; prints the token ids\n"
                 "of each as one JSON array per line. With --decode, reads JSON arrays of ids\n"
                 "and prints JSON strings.");
  args.positional("TOKENIZER", &path, "a tokenizer.json or a folder holding one");
  args.flag("--decode", &decode, "ids to text instead of text to ids");
  args.flag("--add-special", &addSpecial,
            "add the tokenizer's special tokens (e.g. a leading <s>) when encoding");
  args.flag("--skip-special", &skipSpecial, "leave special tokens out when decoding");
  args.flag("--timings", &timings,
            "print to stderr how long loading took and the throughput over stdin's text");
  args.epilog(
      "examples:\n"
      "  echo '\"Hello, world!\"' | tpc tokenize models/llama3\n"
      "  echo '[9906, 11, 1917, 0]' | tpc tokenize models/llama3 --decode");
  if (Error e = args.parse(argc, argv, 2)) return fail(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  if (addSpecial && decode) return fail("--add-special applies to encoding, not --decode", 2);
  if (skipSpecial && !decode) return fail("--skip-special applies to --decode only", 2);
  auto start = std::chrono::steady_clock::now();
  Expected<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::load(path);
  if (!tokenizer) return fail(tokenizer.errorMessage());
  auto loaded = std::chrono::steady_clock::now();
  uint64_t textBytes = 0;

  std::ios::sync_with_stdio(false);
  std::string line, out;
  for (int64_t number = 1; std::getline(std::cin, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    Expected<std::string> result = decode ? decodeLine(**tokenizer, line, skipSpecial, textBytes)
                                          : encodeLine(**tokenizer, line, addSpecial, textBytes);
    if (!result) {
      std::fflush(stdout);
      return fail("stdin line " + std::to_string(number) + ": " + result.errorMessage());
    }
    out += *result;
    out += '\n';
    if (out.size() > (1 << 16)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
  if (timings) {
    auto done = std::chrono::steady_clock::now();
    double loadMs = std::chrono::duration<double, std::milli>(loaded - start).count();
    double workSeconds = std::chrono::duration<double>(done - loaded).count();
    // The time covers reading and writing the JSON lines too, not only the tokenizer.
    std::fprintf(stderr, "load %.1f ms, %llu bytes of text in %.3f s: %.2f MB/s\n", loadMs,
                 static_cast<unsigned long long>(textBytes), workSeconds,
                 workSeconds > 0 ? static_cast<double>(textBytes) / workSeconds / 1e6 : 0.0);
  }
  return 0;
}

}  // namespace tpc::cli
