// tpc chat-template: the prompt a tokenizer's chat template makes of a conversation, written
// to stdout exactly (nothing added), as transformers' apply_chat_template(tokenize=False) would.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "frontends/ChatTemplate.h"
#include "frontends/Tokenizer.h"
#include "frontends/jinja/Template.h"
#include "tools/common/Args.h"
#include "tools/tpc/Commands.h"

namespace tpc::cli {
namespace {

Expected<nlohmann::ordered_json> readJsonArray(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return makeError(flag, " ", path, ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text.str(), nullptr, false);
  if (j.is_discarded()) return makeError(flag, " ", path, ": not valid JSON");
  if (!j.is_array()) return makeError(flag, " ", path, ": expected a JSON array");
  return j;
}

}  // namespace

int runChatTemplate(int argc, char** argv) {
  std::string dir, messagesPath, toolsPath;
  bool addGenerationPrompt = false;
  int64_t repeat = 0;
  ArgParser args("tpc chat-template",
                 "Renders a conversation through the tokenizer's own chat template\n"
                 "(tokenizer_config.json's chat_template, or chat_template.jinja) and writes\n"
                 "the prompt to stdout exactly.");
  args.positional("TOKENIZER", &dir, "the folder holding tokenizer_config.json");
  args.option("--messages", &messagesPath, "FILE",
              "a JSON array of OpenAI-style messages (content a string or a list of "
              "{\"type\": \"text\", \"text\": ...} parts)");
  args.option("--tools", &toolsPath, "FILE", "a JSON array of tool definitions");
  args.flag("--add-generation-prompt", &addGenerationPrompt,
            "end with the header of the assistant's answer");
  args.option("--repeat", &repeat, "N",
              "render N times and print the microseconds per rendering to stderr (benchmark)");
  args.epilog(
      "example:\n"
      "  tpc chat-template models/qwen3 --messages chat.json --add-generation-prompt");
  if (Error e = args.parse(argc, argv, 2)) return fail(e.message(), 2);
  if (args.helpRequested()) return std::fputs(args.help().c_str(), stdout), 0;
  if (messagesPath.empty()) return fail("--messages FILE is required", 2);
  if (repeat < 0) return fail("--repeat must be positive", 2);
  Expected<TokenizerSettings> settings = Tokenizer::loadSettings(dir);
  if (!settings) return fail(settings.errorMessage());
  Expected<nlohmann::ordered_json> messages = readJsonArray(messagesPath, "--messages");
  if (!messages) return fail(messages.errorMessage());
  nlohmann::ordered_json tools = nullptr;
  if (!toolsPath.empty()) {
    Expected<nlohmann::ordered_json> t = readJsonArray(toolsPath, "--tools");
    if (!t) return fail(t.errorMessage());
    tools = std::move(*t);
  }
  Expected<std::string> prompt =
      renderConversation(*settings, *messages, tools, addGenerationPrompt);
  if (!prompt) return fail(dir + ": " + prompt.errorMessage());
  if (repeat > 0) {
    auto parseStart = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < repeat; ++i)
      if (!jinja::Template::parse(settings->chatTemplate))
        return fail("parsing failed while repeating");
    double parseUs =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - parseStart)
            .count();
    auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < repeat; ++i)
      if (!renderConversation(*settings, *messages, tools, addGenerationPrompt))
        return fail("rendering failed while repeating");
    double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr,
                 "%.2f us per conversation (%lld renderings of the parsed template); parsing the "
                 "template: %.2f us\n",
                 us / static_cast<double>(repeat), static_cast<long long>(repeat),
                 parseUs / static_cast<double>(repeat));
  }
  std::fwrite(prompt->data(), 1, prompt->size(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace tpc::cli
