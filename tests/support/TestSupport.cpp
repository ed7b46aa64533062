#include "tests/support/TestSupport.h"

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace tpc::test {

// The environment may point elsewhere: test binaries built here also run on the GPU machine,
// where the source tree and the binaries sit in other folders.
std::string dataDir() {
  const char* dir = std::getenv("TPC_TEST_DATA_DIR");
  return dir && *dir ? dir : TPC_TEST_DATA_DIR;
}
std::string binPath(const std::string& tool) {
  const char* dir = std::getenv("TPC_BIN_DIR");
  return std::string(dir && *dir ? dir : TPC_BIN_DIR) + "/" + tool;
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "tpc-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void writeFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool fileExists(const std::string& path) { return std::filesystem::exists(path); }

int CommandResult::lineCount() const {
  int lines = static_cast<int>(std::count(output.begin(), output.end(), '\n'));
  if (!output.empty() && output.back() != '\n') ++lines;
  return lines;
}

CommandResult runCommand(const std::string& command, int timeoutSeconds) {
  std::string full =
      "timeout -k 5 " + std::to_string(timeoutSeconds) + " sh -c '" + command + "' 2>&1";
  // Single quotes inside `command` would break the sh -c quoting above.
  if (command.find('\'') != std::string::npos)
    throw std::runtime_error("runCommand: no single quotes");
  CommandResult result;
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed");
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  int status = pclose(pipe);
  if (WIFEXITED(status))
    result.exitCode = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    result.exitCode = 128 + WTERMSIG(status);
  return result;
}

}  // namespace tpc::test
