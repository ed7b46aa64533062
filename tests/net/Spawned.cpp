#include "tests/net/Spawned.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/TestSupport.h"

namespace tpc::test {

Spawned::Spawned(const std::string& command, const std::string& logPath, const std::string& errPath)
    : logPath_(logPath), errPath_(errPath.empty() ? logPath : errPath) {
  // Emptied before the fork: a reader must never see what an earlier process left there.
  writeFile(logPath_, "");
  writeFile(errPath_, "");
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    int fd = ::open(logPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int errFd =
        errPath_ == logPath_ ? fd : ::open(errPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(errFd, 2);
    execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
}

Spawned::~Spawned() {
  if (pid_ > 0 && !reaped_) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    waitExit(std::chrono::seconds(5));
  }
}

std::string Spawned::log() const { return fileExists(logPath_) ? readFile(logPath_) : ""; }
std::string Spawned::err() const { return fileExists(errPath_) ? readFile(errPath_) : ""; }

bool Spawned::running() {
  if (reaped_) return false;
  return waitExit(std::chrono::milliseconds(0)) == -1;
}

bool Spawned::waitForText(const std::string& text, std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (err().find(text) != std::string::npos) return true;
    if (!running()) return err().find(text) != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

int Spawned::waitExit(std::chrono::milliseconds timeout) {
  if (reaped_) return exitCode_;
  auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      exitCode_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exitCode_;
    }
    if (std::chrono::steady_clock::now() >= until) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Spawned::signal(int sig) const { ::kill(pid_, sig); }

std::vector<pid_t> childrenOf(pid_t pid) {
  // Ranks are forked from a thread, so every task's list counts.
  std::vector<pid_t> out;
  std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  std::error_code ec;  // the process may be gone already
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    std::ifstream in(task.path() / "children");
    for (pid_t child; in >> child;) out.push_back(child);
  }
  return out;
}

bool isAlive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return false;
  return text[paren + 2] != 'Z' && text[paren + 2] != 'X';
}

int headPort(const std::string& headLog) {
  size_t at = headLog.find("listening on tcp://");
  if (at == std::string::npos) return -1;
  size_t colon = headLog.find(':', at + 19);
  return colon == std::string::npos ? -1 : std::atoi(headLog.c_str() + colon + 1);
}

}  // namespace tpc::test
