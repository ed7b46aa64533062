// The tpc subcommands. Each parses its flags, calls the libraries, prints, and returns the
// process exit code: 0 success, 1 failure, 2 bad usage.
#pragma once

#include <string>

namespace tpc::cli {

int runChatTemplate(int argc, char** argv);
int runCompile(int argc, char** argv);
int runDump(int argc, char** argv);
int runInspect(int argc, char** argv);
int runMakeModel(int argc, char** argv);
int runTokenize(int argc, char** argv);

// Prints "error: <message>" on stderr and returns `code`.
int fail(const std::string& message, int code = 1);

}  // namespace tpc::cli
