// The shared memory communicator. Every collective is one phase: a rank writes its contribution
// into its slot of the phase's parity, publishes the phase number in its arrive word, waits for
// every peer's arrive word to reach the phase, then reads all slots. Two slots per rank make one
// wait per collective enough: a peer that reached phase s has finished reading phase s - 1, so
// the slot of phase s + 1 (parity of s - 1) is free once phase s is complete.
//
// Waiting spins briefly, then sleeps on the peer's arrive word (a futex on the shared mapping);
// a publisher wakes the word only when someone sleeps on it, so a run whose ranks each have a
// core never enters the kernel. Sleeps are sliced, so a waiting rank notices an abort, a dead
// or stopped peer, or its deadline within a slice. No library offers this for forked processes
// sharing an anonymous mapping (Boost.Interprocess has no futex waits with deadlines), hence our
// own.
#include "executor/comm/ShmCommunicator.h"

#include <linux/futex.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace tpc {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint32_t kMagic = 0x74706373;  // "tpcs"
constexpr size_t kLine = 64;
// A sleeping rank wakes at least this often to check for aborts, dead peers and its deadline.
constexpr milliseconds kSleepSlice{20};

struct alignas(kLine) Word {
  std::atomic<uint32_t> value{0};
};
static_assert(sizeof(Word) == kLine);
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// Point-to-point messages (pipeline stages) go through one channel per ordered pair of ranks:
// four words (chunks sent, chunks taken, a sleeper count for each) and one chunk of data. Only
// pairs that talk touch their pages.
constexpr size_t kChannelFloats = size_t{1} << 16;

// The segment, in cache lines: header, aborted-by, then per rank arrive, sleepers and pid words,
// then the data slots, then the channels.
struct Layout {
  size_t world, slotFloats;
  size_t arrive() const { return 2; }
  size_t sleepers() const { return 2 + world; }
  size_t pids() const { return 2 + 2 * world; }
  size_t dataOffsetBytes() const { return (2 + 3 * world) * kLine; }
  size_t slotBytes() const { return (slotFloats * sizeof(float) + kLine - 1) / kLine * kLine; }
  size_t channelFloats() const { return std::min(slotFloats, kChannelFloats); }
  size_t channelBytes() const {
    return 5 * kLine + (channelFloats() * sizeof(float) + kLine - 1) / kLine * kLine;
  }
  size_t channelsOffsetBytes() const { return dataOffsetBytes() + world * 2 * slotBytes(); }
  size_t totalBytes() const { return channelsOffsetBytes() + world * world * channelBytes(); }
};

struct Header {
  uint32_t magic;
  uint32_t world;
  uint64_t slotFloats;
};

// Phase numbers wrap at 2^32; the difference decides which one is later.
bool reached(uint32_t have, uint32_t want) { return static_cast<int32_t>(have - want) >= 0; }

void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

long futexWait(std::atomic<uint32_t>* word, uint32_t expected, milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000),
              static_cast<long>((timeout.count() % 1000) * 1000000)};
  return ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr,
                   0);
}

void futexWakeAll(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

int openPidFd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

// What /proc says of a peer: its state letter, or 0 when it has gone.
char processState(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return 0;
  return text[paren + 2];
}

std::chrono::microseconds defaultSpin(int world) {
  unsigned cores = std::thread::hardware_concurrency();
  // Oversubscribed, a spinning rank takes the core from the peer it waits for.
  return cores >= static_cast<unsigned>(world) ? std::chrono::microseconds(50)
                                               : std::chrono::microseconds(0);
}

class ShmCommunicator final : public Communicator {
 public:
  ShmCommunicator(int rank, std::shared_ptr<ShmSegment> segment, const ShmOptions& options)
      : rank_(rank),
        world_(segment->world()),
        segment_(std::move(segment)),
        layout_{static_cast<size_t>(world_), segment_->slotFloats()},
        timeout_(options.timeout),
        spin_(options.spin.count() >= 0 ? options.spin : defaultSpin(world_)),
        pidFds_(static_cast<size_t>(world_), -1) {
    lines_ = static_cast<Word*>(segment_->base());
  }

  ~ShmCommunicator() override {
    for (int fd : pidFds_)
      if (fd >= 0) ::close(fd);
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }

  // Publishes this rank's pid, waits for every peer's, and watches them from then on.
  Error join() {
    lines_[layout_.pids() + rank_].value.store(static_cast<uint32_t>(::getpid()));
    if (Error e = phase("rendezvous", nullptr, 0)) return e;
    for (int p = 0; p < world_; ++p) {
      if (p == rank_) continue;
      peerPids_.push_back(static_cast<pid_t>(lines_[layout_.pids() + p].value.load()));
      pidFds_[p] = openPidFd(peerPids_.back());
    }
    return Error::success();
  }

  Error allReduceSum(float* data, size_t count) override {
    const char* op = "allReduceSum";
    if (Error e = guard(op)) return e;
    for (size_t start = 0; start < count; start += layout_.slotFloats) {
      size_t n = std::min(layout_.slotFloats, count - start);
      if (Error e = phase(op, data + start, n)) return e;
      // Every rank adds the slots in rank order, so every rank gets the same bits.
      const uint32_t parity = seq_ & 1;
      std::memcpy(data + start, slot(0, parity), n * sizeof(float));
      for (int r = 1; r < world_; ++r) {
        const float* src = slot(r, parity);
        float* dst = data + start;
        for (size_t i = 0; i < n; ++i) dst[i] += src[i];
      }
    }
    return Error::success();
  }

  Error allGather(const float* in, size_t countPerRank, float* out) override {
    const char* op = "allGather";
    if (Error e = guard(op)) return e;
    for (size_t start = 0; start < countPerRank; start += layout_.slotFloats) {
      size_t n = std::min(layout_.slotFloats, countPerRank - start);
      if (Error e = phase(op, in + start, n)) return e;
      const uint32_t parity = seq_ & 1;
      // memmove: `in` may be this rank's own slot of `out`, which receives the same values.
      for (int r = 0; r < world_; ++r)
        std::memmove(out + static_cast<size_t>(r) * countPerRank + start, slot(r, parity),
                     n * sizeof(float));
    }
    return Error::success();
  }

  // Rank `root`'s bytes replace everyone's: first their size, then the bytes a slot at a time,
  // each read from the root's slot.
  Error broadcast(std::string& bytes, int root) override {
    const char* op = "broadcast";
    if (Error e = guard(op)) return e;
    if (root < 0 || root >= world_)
      return makeError("rank ", rank_, ": broadcast from rank ", root,
                       ", not a rank of a world of ", world_);
    const bool sending = rank_ == root;
    uint64_t size = bytes.size();
    if (Error e = phaseBytes(op, sending ? &size : nullptr, sizeof size)) return e;
    std::memcpy(&size, slot(root, seq_ & 1), sizeof size);
    if (!sending) bytes.resize(size);
    const size_t capacity = layout_.slotFloats * sizeof(float);
    for (size_t start = 0; start < size; start += capacity) {
      size_t n = std::min(capacity, static_cast<size_t>(size) - start);
      if (Error e = phaseBytes(op, sending ? bytes.data() + start : nullptr, n)) return e;
      if (!sending) std::memcpy(bytes.data() + start, slot(root, seq_ & 1), n);
    }
    return Error::success();
  }

  Error barrier() override {
    if (Error e = guard("barrier")) return e;
    return phase("barrier", nullptr, 0);
  }

  // One chunk in flight per channel: the sender waits until the receiver took the last one.
  Error send(const float* data, size_t count, int peer) override {
    const char* op = "send";
    if (Error e = checkPeerRank(op, peer)) return e;
    Channel c = channel(rank_, peer);
    const size_t capacity = layout_.channelFloats();
    for (size_t start = 0; start < count; start += capacity) {
      const size_t n = std::min(capacity, count - start);
      const uint32_t sent = c.sent->load(std::memory_order_acquire);
      if (Error e = waitWord(*c.taken, *c.takenSleepers, peer, sent, op, Clock::now() + timeout_))
        return fail(std::move(e));
      std::memcpy(c.data, data + start, n * sizeof(float));
      c.total->store(static_cast<uint32_t>(count), std::memory_order_relaxed);
      c.sent->store(sent + 1, std::memory_order_seq_cst);
      if (c.sentSleepers->load(std::memory_order_seq_cst) != 0) futexWakeAll(c.sent);
    }
    return Error::success();
  }

  Error recv(float* data, size_t count, int peer) override {
    const char* op = "recv";
    if (Error e = checkPeerRank(op, peer)) return e;
    Channel c = channel(peer, rank_);
    const size_t capacity = layout_.channelFloats();
    for (size_t start = 0; start < count; start += capacity) {
      const size_t n = std::min(capacity, count - start);
      const uint32_t taken = c.taken->load(std::memory_order_acquire);
      if (Error e =
              waitWord(*c.sent, *c.sentSleepers, peer, taken + 1, op, Clock::now() + timeout_))
        return fail(std::move(e));
      const uint32_t total = c.total->load(std::memory_order_relaxed);
      if (total != static_cast<uint32_t>(count))
        return fail(makeError("rank ", rank_, ": recv from rank ", peer, " expected ", count,
                              " floats but rank ", peer, " sent ", total));
      std::memcpy(data + start, c.data, n * sizeof(float));
      c.taken->store(taken + 1, std::memory_order_seq_cst);
      if (c.takenSleepers->load(std::memory_order_seq_cst) != 0) futexWakeAll(c.taken);
    }
    return Error::success();
  }

  // A channel holds one chunk: a send of at most that many floats returns once the previous
  // one was taken.
  size_t bufferedSendFloats() const override { return layout_.channelFloats(); }

  void abort() override {
    aborted_ = true;
    uint32_t none = 0;
    abortedBy().compare_exchange_strong(none, static_cast<uint32_t>(rank_ + 1));
    // Sleepers on any word wake, see the flag and fail.
    for (int r = 0; r < world_; ++r) futexWakeAll(&arrive(r));
  }

 private:
  std::atomic<uint32_t>& abortedBy() { return lines_[1].value; }
  std::atomic<uint32_t>& arrive(int r) { return lines_[layout_.arrive() + r].value; }
  std::atomic<uint32_t>& sleepers(int r) { return lines_[layout_.sleepers() + r].value; }
  float* slot(int r, uint32_t parity) {
    auto* data = static_cast<char*>(segment_->base()) + layout_.dataOffsetBytes();
    return reinterpret_cast<float*>(data +
                                    (static_cast<size_t>(r) * 2 + parity) * layout_.slotBytes());
  }

  struct Channel {
    std::atomic<uint32_t>*sent, *taken, *sentSleepers, *takenSleepers, *total;
    float* data;
  };
  Channel channel(int from, int to) {
    char* base = static_cast<char*>(segment_->base()) + layout_.channelsOffsetBytes() +
                 (static_cast<size_t>(from) * layout_.world + static_cast<size_t>(to)) *
                     layout_.channelBytes();
    auto word = [&](int i) { return &reinterpret_cast<Word*>(base)[i].value; };
    return {word(0), word(1), word(2),
            word(3), word(4), reinterpret_cast<float*>(base + 5 * kLine)};
  }

  Error checkPeerRank(const char* op, int peer) {
    if (Error e = guard(op)) return e;
    if (peer < 0 || peer >= world_ || peer == rank_)
      return makeError("rank ", rank_, ": ", op, " with rank ", peer, ", not another rank of ",
                       world_);
    return Error::success();
  }

  Error fail(Error e) {
    broken_ = e.message();
    return e;
  }

  Error guard(const char* op) {
    if (aborted_) return makeError("rank ", rank_, ": ", op, " after the communicator was aborted");
    if (broken_)
      return makeError("rank ", rank_, ": ", op, " on a communicator broken earlier: ", *broken_);
    return checkAbort(op);
  }

  // One collective phase: contribute `n` floats (none for a barrier), then wait for all peers.
  Error phase(const char* op, const float* contribution, size_t n) {
    return phaseBytes(op, contribution, n * sizeof(float));
  }

  // The same in bytes; a null `contribution` leaves this rank's slot as it is.
  Error phaseBytes(const char* op, const void* contribution, size_t bytes) {
    const uint32_t next = seq_ + 1;
    if (contribution && bytes) std::memcpy(slot(rank_, next & 1), contribution, bytes);
    arrive(rank_).store(next, std::memory_order_seq_cst);
    if (sleepers(rank_).load(std::memory_order_seq_cst) != 0) futexWakeAll(&arrive(rank_));
    seq_ = next;
    const auto deadline = Clock::now() + timeout_;
    for (int p = 0; p < world_; ++p) {
      if (p == rank_) continue;
      if (Error e = waitFor(p, next, op, deadline)) {
        broken_ = e.message();
        return e;
      }
    }
    return Error::success();
  }

  Error waitFor(int peer, uint32_t want, const char* op, Clock::time_point deadline) {
    return waitWord(arrive(peer), sleepers(peer), peer, want, op, deadline);
  }

  // Waits until `word` (written by `peer`) reaches `want`; `sleepers` counts who sleeps on it.
  Error waitWord(std::atomic<uint32_t>& word, std::atomic<uint32_t>& sleeping, int peer,
                 uint32_t want, const char* op, Clock::time_point deadline) {
    if (reached(word.load(std::memory_order_acquire), want)) return Error::success();
    if (spin_.count() > 0) {
      const auto spinEnd = Clock::now() + spin_;
      for (unsigned i = 1;; ++i) {
        if (reached(word.load(std::memory_order_acquire), want)) return Error::success();
        if ((i & 63) == 0 && Clock::now() >= spinEnd) break;
        cpuRelax();
      }
    } else {
      // Oversubscribed: hand the core to a rank that has work before going to sleep.
      for (int i = 0; i < 4; ++i) {
        std::this_thread::yield();
        if (reached(word.load(std::memory_order_acquire), want)) return Error::success();
      }
    }
    for (;;) {
      if (Error e = checkAbort(op)) return e;
      sleeping.fetch_add(1, std::memory_order_seq_cst);
      uint32_t have = word.load(std::memory_order_seq_cst);
      bool timedOut = false;
      if (!reached(have, want)) {
        auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        long rc = futexWait(&word, have, std::clamp(left, milliseconds(1), kSleepSlice));
        timedOut = rc != 0 && errno == ETIMEDOUT;
      }
      sleeping.fetch_sub(1, std::memory_order_seq_cst);
      if (reached(word.load(std::memory_order_acquire), want)) return Error::success();
      if (!timedOut) continue;
      if (Error e = checkPeer(peer, op)) return e;
      if (Clock::now() >= deadline && peerPids_.empty())
        return makeError("rank ", rank_, ": ", op, " failed: rank ", peer, " did not join within ",
                         timeout_.count(), " ms");
      if (Clock::now() >= deadline)
        return makeError("rank ", rank_, ": ", op, " failed (peer rank ", peer,
                         "): timed out after ", timeout_.count(), " ms waiting for rank ", peer);
    }
  }

  Error checkAbort(const char* op) {
    if (aborted_) return makeError("rank ", rank_, ": ", op, " failed (communicator aborted)");
    uint32_t by = abortedBy().load(std::memory_order_acquire);
    if (by != 0)
      return makeError("rank ", rank_, ": ", op, " failed (peer rank ", by - 1, "): rank ", by - 1,
                       " aborted the communicator");
    return Error::success();
  }

  // A peer that has exited or is stopped will not arrive; say so rather than time out.
  Error checkPeer(int peer, const char* op) {
    if (peerPids_.empty()) return Error::success();  // still joining: only the deadline applies
    pid_t pid = peerPids_[static_cast<size_t>(peer < rank_ ? peer : peer - 1)];
    bool exited = false;
    if (int fd = pidFds_[static_cast<size_t>(peer)]; fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      exited = ::poll(&p, 1, 0) > 0;
    }
    char state = processState(pid);
    exited |= state == 0 || state == 'Z' || state == 'X';
    if (exited)
      return makeError("rank ", rank_, ": ", op, " failed (peer rank ", peer, "): rank ", peer,
                       " exited");
    if (state == 'T' || state == 't')
      return makeError("rank ", rank_, ": ", op, " failed (peer rank ", peer, "): rank ", peer,
                       " is stopped");
    return Error::success();
  }

  const int rank_;
  const int world_;
  std::shared_ptr<ShmSegment> segment_;
  const Layout layout_;
  Word* lines_ = nullptr;
  const milliseconds timeout_;
  const std::chrono::microseconds spin_;
  std::vector<pid_t> peerPids_;
  std::vector<int> pidFds_;
  uint32_t seq_ = 0;
  std::atomic<bool> aborted_{false};
  std::optional<std::string> broken_;
};

}  // namespace

ShmSegment::~ShmSegment() { ::munmap(base_, bytes_); }

Expected<std::shared_ptr<ShmSegment>> ShmSegment::create(int world, size_t slotFloats) {
  if (world < 1) return makeError("shared memory: cannot serve a world of ", world, " ranks");
  if (slotFloats == 0) return makeError("shared memory: slots must hold at least one float");
  Layout layout{static_cast<size_t>(world), slotFloats};
  // MAP_SHARED | MAP_ANONYMOUS: the forked ranks share it, and it vanishes with the last of them.
  void* base = ::mmap(nullptr, layout.totalBytes(), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED)
    return makeError("shared memory: cannot map ", layout.totalBytes(),
                     " bytes: ", std::strerror(errno));
  auto* lines = static_cast<Word*>(base);
  for (size_t i = 0; i < layout.dataOffsetBytes() / kLine; ++i) new (&lines[i]) Word();
  for (size_t c = 0; c < layout.world * layout.world; ++c) {
    auto* words = reinterpret_cast<Word*>(static_cast<char*>(base) + layout.channelsOffsetBytes() +
                                          c * layout.channelBytes());
    for (int i = 0; i < 5; ++i) new (&words[i]) Word();
  }
  auto* header = reinterpret_cast<Header*>(&lines[0]);
  header->magic = kMagic;
  header->world = static_cast<uint32_t>(world);
  header->slotFloats = slotFloats;
  return std::shared_ptr<ShmSegment>(new ShmSegment(base, layout.totalBytes(), world, slotFloats));
}

Expected<std::unique_ptr<Communicator>> createShmCommunicator(int rank,
                                                              std::shared_ptr<ShmSegment> segment,
                                                              const ShmOptions& options) {
  if (!segment) return makeError("rank ", rank, ": no shared memory segment");
  const int world = segment->world();
  if (rank < 0 || rank >= world)
    return makeError("rank ", rank, ": not a rank of a world of ", world);
  if (options.timeout.count() <= 0)
    return makeError("rank ", rank, ": the shared memory timeout must be positive, got ",
                     options.timeout.count(), " ms");
  if (reinterpret_cast<const Header*>(segment->base())->magic != kMagic)
    return makeError("rank ", rank, ": the shared memory segment is not initialised");
  auto comm = std::make_unique<ShmCommunicator>(rank, std::move(segment), options);
  if (Error e = comm->join()) return e;
  return std::unique_ptr<Communicator>(std::move(comm));
}

}  // namespace tpc
