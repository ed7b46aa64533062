#include "tools/common/Progress.h"

#include <unistd.h>

#include <cstdio>

#include "codegen/PlanSummary.h"
#include "tools/common/Args.h"

namespace tpc::cli {

Progress::Progress(std::string label, uint64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      tty_(isatty(2) != 0),
      start_(std::chrono::steady_clock::now()) {}

void Progress::update(uint64_t done) {
  if (!enabled_ || total_ == 0) return;
  int percent = static_cast<int>(done * 100 / total_);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (tty_) {
    if (percent == lastPercent_) return;
    lastPercent_ = percent;
    int filled = percent / 4;
    std::fprintf(stderr, "\r%s [%-25s] %3d%% %s / %s  %.1fs", label_.c_str(),
                 std::string(filled, '#').c_str(), percent, formatBytes(done).c_str(),
                 formatBytes(total_).c_str(), seconds);
    std::fflush(stderr);
  } else if (percent / 10 != lastTenth_) {
    lastTenth_ = percent / 10;
    std::fprintf(stderr, "%s %3d%% %s / %s  %.1fs\n", label_.c_str(), percent,
                 formatBytes(done).c_str(), formatBytes(total_).c_str(), seconds);
  }
}

void Progress::finish() {
  if (!enabled_) return;
  update(total_);
  if (tty_) std::fputc('\n', stderr);
}

}  // namespace tpc::cli
