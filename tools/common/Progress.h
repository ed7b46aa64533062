// Progress for long work on stderr: a redrawn bar on a terminal, a line every 10% otherwise
// (so logs stay readable).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tpc::cli {

class Progress {
 public:
  Progress(std::string label, uint64_t total, bool enabled = true);
  void update(uint64_t done);
  void finish();

 private:
  std::string label_;
  uint64_t total_;
  bool enabled_, tty_;
  int lastTenth_ = -1;
  int lastPercent_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace tpc::cli
