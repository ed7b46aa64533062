// Helpers shared by every test suite: scratch folders, file I/O, and running the built tools
// the way a user does (exit code and output captured, with a time limit so nothing hangs).
#pragma once

#include <string>

namespace tpc::test {

// tests/data in the source tree ($TPC_TEST_DATA_DIR overrides).
std::string dataDir();
// build/bin/<tool> ($TPC_BIN_DIR overrides the folder).
std::string binPath(const std::string& tool);

// A fresh folder under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void writeFile(const std::string& path, const std::string& bytes);
std::string readFile(const std::string& path);
bool fileExists(const std::string& path);

struct CommandResult {
  int exitCode = -1;   // 124 when the time limit killed it, 128+N when signal N ended it
  std::string output;  // stdout and stderr together
  int lineCount() const;
};
// Runs `command` through /bin/sh with a time limit.
CommandResult runCommand(const std::string& command, int timeoutSeconds = 120);

}  // namespace tpc::test
