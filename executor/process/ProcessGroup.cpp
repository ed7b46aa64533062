#include "executor/process/ProcessGroup.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "executor/comm/Socket.h"

namespace tpc {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// After the first failure, later ones are still collected this long before the root cause is
// chosen: the rank that died first can be noticed after the peers that failed because of it.
constexpr milliseconds kSettle{200};
// Once SIGKILL is sent, reaping cannot take longer unless a rank sits in the kernel.
constexpr milliseconds kReapBound{5000};
constexpr milliseconds kPollTick{20};
// One report line fits in a pipe's atomic write (PIPE_BUF), so lines never interleave.
constexpr size_t kMaxMessage = 1000;
constexpr size_t kMaxLine = 4096;

// Reports carry the system-wide monotonic clock, so the parent can tell which of two ranks
// failed first even when it reads both reports in one wake-up.
int64_t monotonicNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Child {
  pid_t pid = -1;
  UniqueFd pipe;          // read end of the rank's report pipe
  std::string pending;    // a partial report line
  std::string errorLine;  // the last reason the rank sent
  int64_t reportedAtNs = 0;
  Clock::time_point lastBeat;
  bool running = false;
  bool killedByUs = false;
};

struct Candidate {
  int priority;  // lower wins: -1 start-up, 0 signal or stopped, 1 failed exit, 2 silent
  int64_t whenNs;
  RankFailure failure;
};

int exitCodeOf(int code) { return code == 0 ? 0 : (code > 0 && code < 256 ? code : 255); }

[[noreturn]] void runChild(int rank, int world, int reportFd, const std::vector<Child>& siblings,
                           pid_t parent, const std::function<int(int, RankContext&)>& body,
                           milliseconds heartbeatEvery) {
  // Dies with the parent; the getppid check closes the window before prctl took effect.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(127);
  setpgid(0, 0);
  for (const Child& sibling : siblings) {
    if (sibling.pipe.valid()) ::close(sibling.pipe.get());
  }
  // The parent's handlers and mask must not make a rank immune to the parent's SIGTERM, and a
  // dead peer's socket must give EPIPE, not kill this rank with a misleading signal.
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  fcntl(reportFd, F_SETFL, fcntl(reportFd, F_GETFL) | O_NONBLOCK);
  RankContext context(rank, world, reportFd, heartbeatEvery);
  int code = 1;
  try {
    code = body(rank, context);
  } catch (const std::exception& e) {
    code = context.fail(std::string("uncaught exception: ") + e.what());
  } catch (...) {
    code = context.fail("uncaught exception");
  }
  fflush(nullptr);
  _exit(exitCodeOf(code));
}

bool isStopped(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');  // the command name may itself contain ") "
  if (paren == std::string::npos || paren + 2 >= text.size()) return false;
  char state = text[paren + 2];
  return state == 'T' || state == 't';
}

// Watches the forked ranks; owns the choice of root cause and the killing.
class Monitor {
 public:
  Monitor(std::vector<Child>& children, const ProcessGroupOptions& options)
      : children_(children), options_(options) {}

  void startupFailed(int rank, const std::string& what) {
    candidates_.push_back(
        {-1,
         monotonicNs(),
         {rank, "rank " + std::to_string(rank) + " could not be started: " + what}});
  }

  void run(ProcessGroupResult& result) {
    enum class Phase { kWatching, kSettling, kTerminating, kKilling } phase = Phase::kWatching;
    Clock::time_point phaseEnd{};
    while (anyRunning()) {
      pollReports();
      reapExited();
      if (phase == Phase::kWatching) checkHeartbeats();
      auto now = Clock::now();
      if (phase == Phase::kWatching && !candidates_.empty()) {
        bool startup = candidates_.front().priority < 0;
        // A peer that fails fast because this rank is stopped must not take the blame for it.
        for (size_t r = 0; r < children_.size(); ++r)
          if (children_[r].running && isStopped(children_[r].pid))
            record(r, 0, "rank " + std::to_string(r) + " was stopped (process stopped)");
        phase = Phase::kSettling;
        phaseEnd = startup ? now : now + kSettle;
      }
      if (phase == Phase::kSettling && now >= phaseEnd) {
        signalRunning(SIGTERM);
        signalRunning(SIGCONT);  // a stopped rank acts on SIGTERM only once continued
        phase = Phase::kTerminating;
        phaseEnd = now + options_.killGrace;
      } else if (phase == Phase::kTerminating && now >= phaseEnd) {
        signalRunning(SIGKILL);
        phase = Phase::kKilling;
        phaseEnd = now + kReapBound;
      } else if (phase == Phase::kKilling && now >= phaseEnd) {
        for (size_t r = 0; r < children_.size(); ++r) {
          if (!children_[r].running) continue;
          candidates_.push_back(
              {3,
               monotonicNs(),
               {int(r), "rank " + std::to_string(r) + " did not exit after SIGKILL"}});
        }
        break;
      }
    }
    decide(result);
  }

 private:
  bool anyRunning() const {
    return std::any_of(children_.begin(), children_.end(),
                       [](const Child& c) { return c.running; });
  }

  void pollReports() {
    std::vector<pollfd> fds;
    std::vector<Child*> owners;
    for (Child& c : children_) {
      if (!c.pipe.valid()) continue;
      fds.push_back({c.pipe.get(), POLLIN, 0});
      owners.push_back(&c);
    }
    int ready = ::poll(fds.data(), fds.size(), static_cast<int>(kPollTick.count()));
    if (ready <= 0) return;  // timeout, or EINTR: the caller's loop polls again
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents) drain(*owners[i]);
    }
  }

  void drain(Child& c) {
    char buffer[4096];
    while (c.pipe.valid()) {
      ssize_t n = ::read(c.pipe.get(), buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return;  // EAGAIN: nothing more for now
      if (n == 0) {
        c.pipe.reset();
        return;
      }
      c.pending.append(buffer, static_cast<size_t>(n));
      size_t start = 0;
      for (size_t end; (end = c.pending.find('\n', start)) != std::string::npos; start = end + 1) {
        handleLine(c, c.pending.substr(start, end - start));
      }
      c.pending.erase(0, start);
      if (c.pending.size() > kMaxLine) c.pending.clear();  // a broken reporter; keep going
    }
  }

  static void handleLine(Child& c, const std::string& line) {
    c.lastBeat = Clock::now();  // any report is a sign of life
    if (line.size() < 2 || line[0] != 'E') return;
    size_t space = line.find(' ');
    if (space == std::string::npos) return;
    c.reportedAtNs = std::strtoll(line.c_str() + 1, nullptr, 10);
    c.errorLine = line.substr(space + 1);
  }

  void reapExited() {
    for (size_t r = 0; r < children_.size(); ++r) {
      Child& c = children_[r];
      if (!c.running) continue;
      siginfo_t info{};
      // WNOWAIT keeps the zombie, so its pid (and group id) cannot be reused while we kill
      // what it may have left in its process group.
      if (waitid(P_PID, c.pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        if (errno == EINTR) continue;
        c.running = false;  // ECHILD: someone else reaped it (SIGCHLD ignored?)
        record(r, 1, "rank " + std::to_string(r) + " vanished (reaped elsewhere)");
        continue;
      }
      if (info.si_pid != c.pid) continue;
      drain(c);
      ::kill(-c.pid, SIGKILL);
      int status = 0;
      while (waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
      }
      c.running = false;
      if (c.killedByUs || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) continue;
      std::string what = "rank " + std::to_string(r);
      int priority = 1;
      if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        what += " was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
        priority = 0;
      } else {
        what += " exited with code " + std::to_string(WEXITSTATUS(status));
      }
      if (!c.errorLine.empty()) what += ": " + c.errorLine;
      record(r, priority, what, c.reportedAtNs);
    }
  }

  void checkHeartbeats() {
    if (options_.heartbeatTimeout.count() <= 0) return;
    auto now = Clock::now();
    Child* late = nullptr;
    for (Child& c : children_) {
      if (c.running && now - c.lastBeat > options_.heartbeatTimeout) late = &c;
    }
    if (!late) return;
    // Ranks blocked on a stopped (or hung) peer go quiet too; blame the stopped one, else the
    // one silent longest.
    Child* culprit = nullptr;
    bool stopped = false;
    for (Child& c : children_) {
      if (c.running && isStopped(c.pid)) {
        culprit = &c;
        stopped = true;
        break;
      }
      if (c.running && (!culprit || c.lastBeat < culprit->lastBeat)) culprit = &c;
    }
    size_t rank = static_cast<size_t>(culprit - children_.data());
    auto silentMs = std::chrono::duration_cast<milliseconds>(now - culprit->lastBeat).count();
    record(rank, stopped ? 0 : 2,
           "rank " + std::to_string(rank) + " made no progress for " + std::to_string(silentMs) +
               " ms" + (stopped ? " (process stopped)" : ""));
  }

  void record(size_t rank, int priority, std::string message, int64_t whenNs = 0) {
    candidates_.push_back(
        {priority, whenNs ? whenNs : monotonicNs(), {static_cast<int>(rank), std::move(message)}});
  }

  void signalRunning(int sig) {
    for (Child& c : children_) {
      if (!c.running) continue;
      c.killedByUs = true;
      ::kill(-c.pid, sig);  // the rank and anything it started
      ::kill(c.pid, sig);   // in case its process group was never set up
    }
  }

  void decide(ProcessGroupResult& result) {
    if (candidates_.empty()) return;
    std::stable_sort(
        candidates_.begin(), candidates_.end(), [](const Candidate& a, const Candidate& b) {
          return a.priority != b.priority ? a.priority < b.priority : a.whenNs < b.whenNs;
        });
    result.failure = candidates_.front().failure;
    for (size_t i = 1; i < candidates_.size(); ++i) {
      result.otherFailures.push_back(candidates_[i].failure);
    }
  }

  std::vector<Child>& children_;
  const ProcessGroupOptions& options_;
  std::vector<Candidate> candidates_;
};

}  // namespace

RankContext::RankContext(int rank, int world, int reportFd, milliseconds heartbeatEvery)
    : rank_(rank), world_(world), reportFd_(reportFd), heartbeatEvery_(heartbeatEvery) {}

void RankContext::heartbeat() {
  auto now = Clock::now();
  if (now - lastBeat_ < heartbeatEvery_) return;
  lastBeat_ = now;
  // Non-blocking: if the pipe is full the parent has plenty of recent beats to read.
  [[maybe_unused]] ssize_t n = ::write(reportFd_, "H\n", 2);
}

int RankContext::fail(const std::string& message) {
  std::string text = message.substr(0, kMaxMessage);
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\r', ' ');
  send("E" + std::to_string(monotonicNs()) + " " + text + "\n");
  return 1;
}

void RankContext::send(const std::string& line) {
  // The parent drains continuously; a full pipe clears within milliseconds unless the parent
  // is gone, and then this rank is about to be killed anyway.
  for (int attempt = 0; attempt < 100; ++attempt) {
    ssize_t n = ::write(reportFd_, line.data(), line.size());
    if (n >= 0 || (errno != EAGAIN && errno != EINTR)) return;
    std::this_thread::sleep_for(milliseconds(1));
  }
}

ProcessGroupResult runLocalRanksDetailed(int world,
                                         const std::function<int(int, RankContext&)>& body,
                                         const ProcessGroupOptions& options) {
  ProcessGroupResult result;
  if (world < 1) {
    result.failure = RankFailure{-1, "cannot run a world of " + std::to_string(world) + " ranks"};
    return result;
  }
  milliseconds beatEvery =
      options.heartbeatTimeout.count() > 0
          ? std::clamp(options.heartbeatTimeout / 10, milliseconds(1), milliseconds(100))
          : milliseconds(100);
  std::vector<Child> children(static_cast<size_t>(world));
  Monitor monitor(children, options);
  // Buffered output would otherwise be written once by the parent and again by every child.
  fflush(nullptr);
  pid_t parent = getpid();
  for (int r = 0; r < world; ++r) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
      monitor.startupFailed(r, std::string("pipe: ") + strerror(errno));
      break;
    }
    pid_t pid = fork();
    if (pid == 0) {
      ::close(fds[0]);
      runChild(r, world, fds[1], children, parent, body, beatEvery);
    }
    ::close(fds[1]);
    if (pid < 0) {
      ::close(fds[0]);
      monitor.startupFailed(r, std::string("fork: ") + strerror(errno));
      break;
    }
    setpgid(pid, pid);  // also done by the child; whichever runs first wins the race
    Child& c = children[static_cast<size_t>(r)];
    c.pid = pid;
    c.pipe.reset(fds[0]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    c.lastBeat = Clock::now();
    c.running = true;
    result.pids.push_back(pid);
  }
  monitor.run(result);
  return result;
}

Error runLocalRanks(int world, const std::function<int(int, RankContext&)>& body,
                    const ProcessGroupOptions& options) {
  ProcessGroupResult result = runLocalRanksDetailed(world, body, options);
  if (result.failure) return Error::failure(result.failure->message);
  return Error::success();
}

}  // namespace tpc
