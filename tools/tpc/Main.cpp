// tpc: the compiler's command line. `tpc COMMAND --help` explains each command.
#include <cstdio>
#include <cstring>
#include <string>

#include "tools/tpc/Commands.h"

namespace tpc::cli {

int fail(const std::string& message, int code) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return code;
}

}  // namespace tpc::cli

namespace {

const char* kUsage =
    "usage: tpc COMMAND [options]\n"
    "\n"
    "tpc compiles a Hugging Face checkpoint into a tensor-parallel plan for tpexec.\n"
    "\n"
    "commands:\n"
    "  chat-template TOKENIZER --messages F a conversation through the tokenizer's chat template\n"
    "  compile MODEL --world N -o plan.fb   shard a model for N ranks and write the plan\n"
    "  dump PLAN [--rank R] [--format F]     show what each rank of a plan does\n"
    "  inspect MODEL                         architecture, parameters and bytes of a checkpoint\n"
    "  make-model --arch A --preset P -o D   write a random-weight model of a known shape\n"
    "  tokenize TOKENIZER [--decode]         text to token ids and back, one JSON value a line\n"
    "\n"
    "Run `tpc COMMAND --help` for the options of a command.\n";

}  // namespace

int runTpc(int argc, char** argv) {
  using namespace tpc::cli;
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::puts("tpc 0.1.0");
    return 0;
  }
  std::string command = argv[1];
  if (command == "chat-template") return runChatTemplate(argc, argv);
  if (command == "compile") return runCompile(argc, argv);
  if (command == "dump") return runDump(argc, argv);
  if (command == "inspect") return runInspect(argc, argv);
  if (command == "make-model") return runMakeModel(argc, argv);
  if (command == "tokenize") return runTokenize(argc, argv);
  return fail("unknown command '" + command +
                  "' (commands: chat-template, compile, dump, inspect, make-model, tokenize; see "
                  "tpc --help)",
              2);
}

int main(int argc, char** argv) {
  // Library code reports failures as values; anything thrown is a bug or out-of-memory, and
  // still ends with one line and a non-zero exit rather than an abort.
  try {
    return runTpc(argc, argv);
  } catch (const std::exception& e) {
    return tpc::cli::fail(std::string("internal: ") + e.what());
  } catch (...) {
    return tpc::cli::fail("internal: unknown exception");
  }
}
