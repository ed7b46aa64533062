#include "executor/process/NodeRun.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <utility>

#include "codegen/PlanFormat.h"
#include "executor/engine/EngineRanks.h"
#include "executor/engine/Iteration.h"
#include "kernels/cpu/Threads.h"

namespace tpc {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Agent -> rank pipe frames: u32 length, then a tag byte and its fields.
constexpr char kRequest = 'Q', kEnd = 'E', kAbort = 'A', kKeepAlive = 'K', kIteration = 'I',
               kGo = 'G';
constexpr milliseconds kKeepAliveEvery{200};

template <class T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

std::string frame(char tag, const std::string& body = {}) {
  std::string out;
  put(out, static_cast<uint32_t>(body.size() + 1));
  out += tag;
  return out + body;
}

std::string encodeRequest(uint64_t seq, const GenerationRequest& r) {
  std::string b;
  put(b, seq);
  put(b, r.maxNewTokens);
  put(b, r.sampling.temperature);
  put(b, r.sampling.topK);
  put(b, r.sampling.topP);
  put(b, r.seed);
  put(b, static_cast<uint8_t>(r.keepLogits));
  put(b, static_cast<uint32_t>(r.promptIds.size()));
  for (int32_t id : r.promptIds) put(b, id);
  put(b, static_cast<uint32_t>(r.eosIds.size()));
  for (int64_t id : r.eosIds) put(b, id);
  return frame(kRequest, b);
}

// The agent wrote these frames itself, so a short one is a bug; get() still never overreads.
struct FrameReader {
  const std::string& s;
  size_t pos = 1;
  template <class T>
  T get() {
    T v{};
    if (pos + sizeof v <= s.size()) std::memcpy(&v, s.data() + pos, sizeof v);
    pos += sizeof v;
    return v;
  }
};

std::pair<uint64_t, GenerationRequest> decodeRequest(const std::string& body) {
  FrameReader in{body};
  GenerationRequest r;
  auto seq = in.get<uint64_t>();
  r.maxNewTokens = in.get<int64_t>();
  r.sampling.temperature = in.get<float>();
  r.sampling.topK = in.get<decltype(r.sampling.topK)>();
  r.sampling.topP = in.get<float>();
  r.seed = in.get<uint64_t>();
  r.keepLogits = in.get<uint8_t>() != 0;
  uint32_t n = in.get<uint32_t>();
  for (uint32_t i = 0; i < n && in.pos < body.size(); ++i) r.promptIds.push_back(in.get<int32_t>());
  uint32_t e = in.get<uint32_t>();
  for (uint32_t i = 0; i < e && in.pos < body.size(); ++i) r.eosIds.push_back(in.get<int64_t>());
  return {seq, std::move(r)};
}

// A rank's side of its pipe: a thread reads frames into a queue, and aborts the communicator
// and the process when told to or when the agent goes quiet (frozen, or dead without the
// kernel having killed us yet).
class RankInbox {
 public:
  RankInbox(int fd, milliseconds agentTimeout, RankContext& ctx)
      : fd_(fd), agentTimeout_(agentTimeout), ctx_(ctx) {
    thread_ = std::thread([this] { readLoop(); });
    thread_.detach();  // ends with the process; it only ever exits the process itself
  }
  // The communicator to abort when the rank has to die (none before the rank connected).
  void attach(Communicator& comm) { comm_ = &comm; }
  // The next request or end (nullopt: nothing within `wait`).
  std::optional<std::string> next(milliseconds wait) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!ready_.wait_for(lock, wait, [&] { return !frames_.empty(); })) return std::nullopt;
    std::string f = std::move(frames_.front());
    frames_.pop_front();
    return f;
  }

 private:
  [[noreturn]] void die(const std::string& why) {
    if (Communicator* comm = comm_.load()) comm->abort();
    ctx_.fail(why);
    _exit(1);
  }
  void readLoop() {
    std::string buffer;
    auto lastHeard = Clock::now();
    char chunk[65536];
    while (true) {
      pollfd p{fd_, POLLIN, 0};
      int n = ::poll(&p, 1, 100);
      if (n > 0) {
        ssize_t got = ::read(fd_, chunk, sizeof chunk);
        if (got == 0) die("the node agent closed the request stream");
        if (got < 0 && errno != EINTR && errno != EAGAIN) die("reading the request stream failed");
        if (got > 0) {
          lastHeard = Clock::now();
          buffer.append(chunk, static_cast<size_t>(got));
        }
      }
      if (Clock::now() - lastHeard > agentTimeout_)
        die("the node agent went silent for more than " + std::to_string(agentTimeout_.count()) +
            " ms");
      while (buffer.size() >= 4) {
        uint32_t length;
        std::memcpy(&length, buffer.data(), 4);
        if (buffer.size() < 4 + static_cast<size_t>(length)) break;
        std::string body = buffer.substr(4, length);
        buffer.erase(0, 4 + static_cast<size_t>(length));
        if (body.empty() || body[0] == kKeepAlive) continue;
        if (body[0] == kAbort) die("aborted by the node agent: " + body.substr(1));
        std::lock_guard<std::mutex> lock(mutex_);
        frames_.push_back(std::move(body));
        ready_.notify_one();
      }
    }
  }

  int fd_;
  milliseconds agentTimeout_;
  std::atomic<Communicator*> comm_{nullptr};
  RankContext& ctx_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::string> frames_;
  std::thread thread_;
};

// The engine's iteration messages as the node agents carry them: global rank 0 writes each
// one up its pipe to the head's agent; every other rank reads them from its inbox.
class AgentLink final : public IterationLink {
 public:
  AgentLink(int upFd, RankInbox& inbox, std::function<void()> heartbeat)
      : upFd_(upFd), inbox_(inbox), heartbeat_(std::move(heartbeat)) {}

  Error send(std::string message) override {
    // A blocking pipe: a busy agent holds rank 0 back, and a dead one is noticed by the inbox.
    std::string f = frame(kIteration, message);
    size_t at = 0;
    while (at < f.size()) {
      ssize_t n = ::write(upFd_, f.data() + at, f.size() - at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        return makeError("cannot hand an iteration to the node agent: ", std::strerror(errno));
      at += static_cast<size_t>(n);
    }
    return Error::success();
  }

  Expected<std::string> receive() override {
    while (true) {
      std::optional<std::string> f = inbox_.next(milliseconds(100));
      heartbeat_();
      if (!f) continue;
      if ((*f)[0] == kIteration) return f->substr(1);
      if ((*f)[0] == kEnd) {
        Iteration stop;
        stop.kind = Iteration::Kind::Stop;
        return stop.encode();
      }
      return makeError("the node agent sent a request frame to a rank following the engine");
    }
  }

 private:
  int upFd_;
  RankInbox& inbox_;
  std::function<void()> heartbeat_;
};

Expected<std::unique_ptr<Communicator>> makeCommunicator(const NodeRunOptions& o, uint32_t rank,
                                                         int world, int localRank) {
  if (o.backend.kind == "cuda") {
    int device = o.backend.device >= 0 ? o.backend.device : localRank;
    return createNcclCommunicator(static_cast<int>(rank), world, o.ncclId, device, o.rankTimeout);
  }
  GlooOptions gloo = o.gloo;
  gloo.serveStore = false;
  gloo.timeout = o.rankTimeout;
  return createGlooCommunicator(static_cast<int>(rank), world, gloo);
}

// Weight bytes travel as two floats each (high and low 24 bits): exact up to 2^48 bytes.
Expected<std::vector<uint64_t>> gatherWeightBytes(Communicator& comm, uint64_t bytes) {
  float mine[2] = {static_cast<float>(bytes >> 24), static_cast<float>(bytes & 0xffffff)};
  std::vector<float> all(2 * static_cast<size_t>(comm.world()));
  if (Error e = comm.allGather(mine, 2, all.data())) return e;
  std::vector<uint64_t> out;
  out.reserve(static_cast<size_t>(comm.world()));
  for (int r = 0; r < comm.world(); ++r)
    out.push_back((static_cast<uint64_t>(all[2 * r]) << 24) +
                  static_cast<uint64_t>(all[2 * r + 1]));
  return out;
}

}  // namespace

int NodeRanks::rankBody(const LoadedPlan& plan, int localRank, RankContext& ctx) {
  // Only this rank's read end stays open, so the agent closing its pipe is an EOF here.
  for (int r = 0; r < static_cast<int>(toRank_.size()); ++r) {
    ::close(toRank_[r]);
    if (r != localRank) ::close(fromAgent_[r]);
  }
  ::close(readyRead_);
  const plan::Plan& p = plan.plan();
  const uint32_t rank = options_.firstRank + static_cast<uint32_t>(localRank);
  if (upRead_ >= 0) ::close(upRead_);
  if (upWrite_ >= 0 && rank != 0) ::close(upWrite_);
  const int world = static_cast<int>(p.world());
  cpu::shareKernelThreads(static_cast<int>(options_.localWorld));

  // Never freed: its reading thread is detached and may still take a frame while the rank
  // returns, so the inbox lives as long as the process.
  RankInbox& inbox = *new RankInbox(fromAgent_[localRank], options_.agentTimeout, ctx);
  std::unique_ptr<Communicator> comm;
  auto failWith = [&](const std::string& message) {
    if (comm) comm->abort();
    return ctx.fail(message);
  };
  // Ranks started before every node is there wait for the agent's go, then meet their peers.
  auto connect = [&]() -> Expected<Communicator*> {
    if (options_.waitForGo)
      while (true) {
        std::optional<std::string> f = inbox.next(milliseconds(100));
        ctx.heartbeat();
        if (!f) continue;
        if ((*f)[0] == kGo) break;
        return makeError("the node agent ended the run before it started");
      }
    Expected<std::unique_ptr<Communicator>> made =
        makeCommunicator(options_, rank, world, localRank);
    if (!made) return made.takeError();
    comm = std::move(*made);
    inbox.attach(*comm);
    ctx.heartbeat();
    return comm.get();
  };
  BackendOptions backendOptions = options_.backend;
  backendOptions.onProgress = [&] { ctx.heartbeat(); };
  if (options_.weightSourceFor) backendOptions.weightSource = options_.weightSourceFor(rank);
  if (options_.runsEngine) {
    if (rank == 0 && !options_.driver) return failWith("rank 0 runs the engine without a driver");
    EngineRankOptions engineOptions;
    engineOptions.backend = backendOptions;
    engineOptions.backend.onProgress = nullptr;
    engineOptions.engine = options_.engine;
    auto beat = [&] { ctx.heartbeat(); };
    AgentLink link(upWrite_, inbox, beat);
    // Ready once the weights are in; the engine waits for every rank of every node.
    auto allLoaded = [&]() -> Error {
      [[maybe_unused]] ssize_t ready = ::write(readyWrite_, "R", 1);
      return comm->barrier();
    };
    Error failed =
        rank == 0 ? hostEngine(plan, connect, link, allLoaded, engineOptions, options_.driver, beat)
                  : followEngine(plan, rank, connect, link, allLoaded, engineOptions, beat);
    if (failed) return failWith(failed.message());
    return 0;
  }
  if (Expected<Communicator*> connected = connect(); !connected)
    return ctx.fail(connected.errorMessage());
  Expected<std::unique_ptr<Backend>> backend = createBackend(plan, rank, *comm, backendOptions);
  if (!backend) return failWith(backend.errorMessage());
  Expected<std::vector<uint64_t>> weightBytes =
      gatherWeightBytes(*comm, (*backend)->residentWeightBytes());
  if (!weightBytes) return failWith(weightBytes.errorMessage());
  NodeRunInfo info{world, (*backend)->name(), std::move(*weightBytes)};
  [[maybe_unused]] ssize_t n = ::write(readyWrite_, "R", 1);

  const int64_t vocab = planIntAttr(p.model(), "vocab_size");
  while (true) {
    std::optional<std::string> f = inbox.next(milliseconds(100));
    ctx.heartbeat();
    if (!f) continue;
    if ((*f)[0] == kEnd) return 0;
    auto [seq, request] = decodeRequest(*f);
    Expected<GenerationResult> result =
        generate(**backend, request, vocab, p.limits()->max_context(), [&] { ctx.heartbeat(); });
    if (!result) return failWith("request " + std::to_string(seq) + ": " + result.errorMessage());
    if (rank == 0 && options_.report) {
      if (Error e = options_.report(seq, request, *result, info)) return failWith(e.message());
    }
  }
}

Expected<std::unique_ptr<NodeRanks>> NodeRanks::start(const LoadedPlan& plan,
                                                      NodeRunOptions options) {
  std::unique_ptr<NodeRanks> node(new NodeRanks());
  node->options_ = std::move(options);
  uint32_t local = node->options_.localWorld;
  for (uint32_t r = 0; r < local; ++r) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
      return makeError("cannot create a pipe for local rank ", r, ": ", std::strerror(errno));
    ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
    node->fromAgent_.push_back(fds[0]);
    node->toRank_.push_back(fds[1]);
  }
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC | O_NONBLOCK) != 0)
    return makeError("cannot create the ready pipe: ", std::strerror(errno));
  node->readyRead_ = ready[0];
  node->readyWrite_ = ready[1];
  if (node->options_.runsEngine && node->options_.firstRank == 0) {
    int up[2];
    if (::pipe2(up, O_CLOEXEC) != 0)
      return makeError("cannot create the iteration pipe: ", std::strerror(errno));
    ::fcntl(up[0], F_SETFL, ::fcntl(up[0], F_GETFL) | O_NONBLOCK);
    node->upRead_ = up[0];
    node->upWrite_ = up[1];
  }
  node->pending_.resize(local);
  ProcessGroupOptions group;
  group.heartbeatTimeout = node->options_.rankTimeout;
  NodeRanks* self = node.get();
  node->thread_ = std::thread([self, &plan, local, group] {
    self->result_ = runLocalRanksDetailed(
        static_cast<int>(local),
        [&](int rank, RankContext& ctx) { return self->rankBody(plan, rank, ctx); }, group);
    // The process group counts from 0 on every node; users know ranks by their global number.
    auto globalize = [&](RankFailure& f) {
      std::string local = "rank " + std::to_string(f.rank);
      if (f.rank < 0) return;
      f.rank += static_cast<int>(self->options_.firstRank);
      if (f.message.rfind(local, 0) == 0)
        f.message.replace(0, local.size(), "rank " + std::to_string(f.rank));
    };
    if (self->result_.failure) globalize(*self->result_.failure);
    for (RankFailure& f : self->result_.otherFailures) globalize(f);
    self->finished_ = true;
  });
  // The ranks have their copies; the agent keeps only its write ends and the ready read end.
  // (They are closed once the thread has forked every rank, which pump() cannot know, so the
  // read ends stay open until the destructor; they cost nothing.)
  return node;
}

NodeRanks::~NodeRanks() {
  if (!finished_) abort("the node is shutting down");
  for (int fd : toRank_) ::close(fd);  // EOF: any rank still reading aborts
  if (thread_.joinable()) thread_.join();
  for (int fd : fromAgent_) ::close(fd);
  ::close(readyRead_);
  ::close(readyWrite_);
  if (upRead_ >= 0) ::close(upRead_);
  if (upWrite_ >= 0) ::close(upWrite_);
}

void NodeRanks::queue(const std::string& f, bool skipLocalRankZero) {
  for (size_t r = skipLocalRankZero ? 1 : 0; r < pending_.size(); ++r) pending_[r] += f;
  flush();
}

void NodeRanks::forward(const std::string& iteration) {
  queue(frame(kIteration, iteration));
  // After Stop the ranks return on their own: nothing more goes down their pipes.
  if (Iteration::isStop(iteration)) ended_ = true;
}

std::vector<std::string> NodeRanks::takeIterations() {
  readIterations();
  return std::exchange(iterations_, {});
}

void NodeRanks::readIterations() {
  if (upRead_ < 0) return;
  char chunk[65536];
  ssize_t got;
  while ((got = ::read(upRead_, chunk, sizeof chunk)) > 0)
    upBuffer_.append(chunk, static_cast<size_t>(got));
  while (upBuffer_.size() >= 4) {
    uint32_t length;
    std::memcpy(&length, upBuffer_.data(), 4);
    if (upBuffer_.size() < 4 + static_cast<size_t>(length)) break;
    // Rank 0 already has it; the node's other ranks get the frame as it came.
    queue(upBuffer_.substr(0, 4 + static_cast<size_t>(length)), true);
    if (length > 0 && upBuffer_[4] == kIteration) {
      iterations_.push_back(upBuffer_.substr(5, length - 1));
      if (Iteration::isStop(iterations_.back())) ended_ = true;
    }
    upBuffer_.erase(0, 4 + static_cast<size_t>(length));
  }
}

void NodeRanks::submit(uint64_t seq, const GenerationRequest& request) {
  queue(encodeRequest(seq, request));
}

void NodeRanks::go() { queue(frame(kGo)); }

void NodeRanks::end() {
  if (!ended_) queue(frame(kEnd));
  ended_ = true;
}

void NodeRanks::abort(const std::string& reason) {
  // Ahead of anything queued: an abort must not wait behind requests.
  std::string f = frame(kAbort, reason);
  for (size_t r = 0; r < toRank_.size(); ++r) {
    pending_[r].clear();
    [[maybe_unused]] ssize_t n = ::write(toRank_[r], f.data(), f.size());
  }
}

void NodeRanks::pump() {
  auto now = Clock::now();
  if (now - lastKeepAlive_ >= kKeepAliveEvery) {
    lastKeepAlive_ = now;
    // Only into an empty queue: a rank that is behind hears from us anyway.
    for (std::string& p : pending_)
      if (p.empty()) p = frame(kKeepAlive);
  }
  readIterations();
  flush();
  char buffer[64];
  ssize_t n;
  while ((n = ::read(readyRead_, buffer, sizeof buffer)) > 0) ready_ += static_cast<uint32_t>(n);
}

void NodeRanks::flush() {
  for (size_t r = 0; r < toRank_.size(); ++r) {
    std::string& p = pending_[r];
    while (!p.empty()) {
      ssize_t n = ::write(toRank_[r], p.data(), p.size());
      if (n <= 0) break;  // full (the rank is busy or stopped) or gone: retry next time
      p.erase(0, static_cast<size_t>(n));
    }
  }
}

}  // namespace tpc
