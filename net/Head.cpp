#include "net/Head.h"

#include <algorithm>

#include "net/Wire.h"

namespace tpc::net {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct HeadServer::Node {
  enum class Phase { Joined, PlanReady, Assigned, Loaded, Started, Ready, Done };
  std::string peer, address;
  int64_t workerId = -1;
  size_t arrival = 0;
  uint32_t localWorld = 0, firstRank = 0;
  bool assigned = false;
  Phase phase = Phase::Joined;
  Clock::time_point lastHeard;
};

HeadServer::~HeadServer() = default;

Expected<std::unique_ptr<HeadServer>> HeadServer::listen(std::vector<uint8_t> planBytes,
                                                         HeadOptions options, WeightReader weights,
                                                         LogLine log) {
  std::unique_ptr<HeadServer> head(new HeadServer());
  head->options_ = std::move(options);
  head->plan_ = std::move(planBytes);
  head->planHash_ = fnv1a64(head->plan_.data(), head->plan_.size());
  head->weights_ = std::move(weights);
  head->log_ = std::move(log);
  Expected<std::unique_ptr<Channel>> channel =
      Channel::listen(head->options_.listen, head->options_.keys);
  if (!channel) return channel.takeError();
  head->channel_ = std::move(*channel);
  return head;
}

std::string HeadServer::nameOf(const Node& n) const {
  std::string id = n.workerId >= 0 ? std::to_string(n.workerId) : "#" + std::to_string(n.arrival);
  std::string s = "worker " + id + " (" + (n.address.empty() ? "?" : n.address) + ", ";
  if (!n.assigned) return s + "no ranks yet)";
  uint32_t last = n.firstRank + n.localWorld - 1;
  return s +
         (n.localWorld == 1 ? "rank " + std::to_string(n.firstRank)
                            : "ranks " + std::to_string(n.firstRank) + "-" + std::to_string(last)) +
         ")";
}

std::string HeadServer::describeNodes() const {
  std::string s;
  for (const auto& n : nodes_) s += (s.empty() ? "" : "; ") + nameOf(*n);
  return s;
}

HeadServer::Node* HeadServer::find(const std::string& peer) {
  for (auto& n : nodes_)
    if (n->peer == peer) return n.get();
  return nullptr;
}

template <class Pred>
bool HeadServer::every(Pred pred) const {
  return static_cast<int>(nodes_.size()) == options_.workers &&
         std::all_of(nodes_.begin(), nodes_.end(), [&](const auto& n) { return pred(*n); });
}

bool HeadServer::allJoined() const {
  return every([](const Node& n) { return n.phase >= Node::Phase::PlanReady; });
}
std::string HeadServer::missing() const {
  int joined = 0;
  std::string waiting;
  for (const auto& n : nodes_) {
    if (n->phase >= Node::Phase::PlanReady) {
      ++joined;
      continue;
    }
    waiting += (waiting.empty() ? "" : ", ") + nameOf(*n);
  }
  const int never = options_.workers - static_cast<int>(nodes_.size());
  std::string s =
      std::to_string(joined) + " of " + std::to_string(options_.workers) + " worker(s) joined";
  if (!waiting.empty()) s += "; still fetching the plan: " + waiting;
  if (never > 0) s += "; " + std::to_string(never) + " never connected";
  return s;
}

bool HeadServer::allLoaded() const {
  return every([](const Node& n) { return n.phase >= Node::Phase::Loaded; });
}
bool HeadServer::allReady() const {
  return every([](const Node& n) { return n.phase >= Node::Phase::Ready; });
}
bool HeadServer::allDone() const {
  return every([](const Node& n) { return n.phase == Node::Phase::Done; });
}

void HeadServer::refuse(const std::string& peer, const std::string& address,
                        const std::string& why) {
  log_("refused a peer" + (address.empty() ? std::string() : " from " + address) + ": " + why);
  Message m;
  m.type = MsgType::Refused;
  m.reason = why;
  [[maybe_unused]] Error ignored = channel_->send(m, peer);  // it may be gone already
}

Error HeadServer::welcome(const std::string& peer, const std::string& address,
                          const Message& hello) {
  if (hello.backend != options_.backend) {
    refuse(peer, address,
           "backend " + hello.backend + " does not match the head's " + options_.backend);
    return Error::success();
  }
  if (hello.planHash != 0 && hello.planHash != planHash_) {
    refuse(peer, address, "its plan file differs from the head's (plan hash mismatch)");
    return Error::success();
  }
  if (hello.workerId >= options_.workers) {
    refuse(peer, address,
           "worker id " + std::to_string(hello.workerId) + " is out of range (the head expects " +
               std::to_string(options_.workers) + " workers: ids 0-" +
               std::to_string(options_.workers - 1) + ")");
    return Error::success();
  }
  for (const auto& n : nodes_) {
    if (hello.workerId >= 0 && n->workerId == hello.workerId) {
      refuse(peer, address,
             "worker id " + std::to_string(hello.workerId) + " is already taken by the node at " +
                 n->address);
      return Error::success();
    }
  }
  if (static_cast<int>(nodes_.size()) >= options_.workers) {
    refuse(peer, address,
           "the head already has all " + std::to_string(options_.workers) + " of its workers");
    return Error::success();
  }
  uint32_t taken = options_.localWorld;
  for (const auto& n : nodes_) taken += n->localWorld;
  uint32_t left = options_.world - taken;
  bool last = static_cast<int>(nodes_.size()) + 1 == options_.workers;
  if (hello.localWorld == 0 || hello.localWorld > left || (last && hello.localWorld != left)) {
    refuse(peer, address,
           "local world " + std::to_string(hello.localWorld) +
               " does not fit: the plan's world is " + std::to_string(options_.world) + " and " +
               std::to_string(left) + " ranks are left for " +
               std::to_string(options_.workers - static_cast<int>(nodes_.size())) + " worker(s)");
    return Error::success();
  }
  auto node = std::make_unique<Node>();
  node->peer = peer;
  node->address = address;
  node->workerId = hello.workerId;
  node->arrival = nodes_.size();
  node->localWorld = hello.localWorld;
  node->lastHeard = Clock::now();
  Message ok;
  ok.type = MsgType::Accepted;
  ok.planSize = plan_.size();
  ok.planHash = planHash_;
  ok.heartbeatMs = static_cast<uint32_t>(options_.heartbeat.count());
  ok.timeoutMs = static_cast<uint32_t>(options_.timeout.count());
  if (Error e = channel_->send(ok, peer)) return e;
  log_("accepted " + nameOf(*node) + ", local world " + std::to_string(hello.localWorld));
  nodes_.push_back(std::move(node));
  return Error::success();
}

Error HeadServer::serve(Node& node, const Message& m) {
  Message reply;
  switch (m.type) {
    case MsgType::Heartbeat:
      return Error::success();
    case MsgType::FetchPlan: {
      if (m.offset > plan_.size() || m.length > kChunkBytes)
        return makeError(nameOf(node), " asked for plan bytes outside the plan");
      uint64_t n = std::min<uint64_t>(m.length, plan_.size() - m.offset);
      reply.type = MsgType::PlanData;
      reply.offset = m.offset;
      reply.data.assign(plan_.begin() + static_cast<ptrdiff_t>(m.offset),
                        plan_.begin() + static_cast<ptrdiff_t>(m.offset + n));
      return channel_->send(reply, node.peer);
    }
    case MsgType::PlanReady:
      if (node.phase != Node::Phase::Joined)
        return makeError(nameOf(node), " sent PlanReady twice");
      node.phase = Node::Phase::PlanReady;
      return Error::success();
    case MsgType::FetchWeight: {
      // Exactly its own slices: a node never gets another rank's weights.
      if (!node.assigned || m.rank < node.firstRank || m.rank >= node.firstRank + node.localWorld ||
          m.length > kChunkBytes)
        return makeError(nameOf(node), " asked for weights of rank ", m.rank,
                         ", which is not one of its ranks");
      Expected<std::vector<uint8_t>> bytes =
          weights_(m.rank, m.weight, m.slice, m.offset, m.length);
      if (!bytes) return makeError("serving weights to ", nameOf(node), ": ", bytes.errorMessage());
      reply.type = MsgType::WeightData;
      reply.rank = m.rank;
      reply.weight = m.weight;
      reply.slice = m.slice;
      reply.offset = m.offset;
      reply.data = std::move(*bytes);
      return channel_->send(reply, node.peer);
    }
    case MsgType::Loaded:
      if (node.phase != Node::Phase::Assigned)
        return makeError(nameOf(node), " sent Loaded out of turn");
      node.phase = Node::Phase::Loaded;
      return Error::success();
    case MsgType::Ready:
      if (node.phase != Node::Phase::Started)
        return makeError(nameOf(node), " sent Ready out of turn");
      node.phase = Node::Phase::Ready;
      return Error::success();
    case MsgType::Done:
      node.phase = Node::Phase::Done;
      return Error::success();
    case MsgType::Failed:
      return makeError(nameOf(node), " failed: ", m.reason);
    default:
      return makeError(nameOf(node), " sent an unexpected ", msgTypeName(m.type), " message");
  }
}

void HeadServer::handle(Incoming& in) {
  if (in.handshakeFailed) {
    log_("dropped a connection: " + in.message.errorMessage());
    return;
  }
  Node* node = find(in.peer);
  if (!in.message) {
    // A member that sends garbage is broken; a stranger is just refused.
    if (node && !failure_)
      failure_ = makeError(nameOf(*node), " sent a bad message: ", in.message.errorMessage());
    else
      refuse(in.peer, in.peerAddress, in.message.errorMessage());
    return;
  }
  const Message& m = *in.message;
  if (!node) {
    if (m.type != MsgType::Hello) {
      refuse(in.peer, in.peerAddress,
             std::string("a ") + msgTypeName(m.type) + " message before Hello");
      return;
    }
    if (Error e = welcome(in.peer, in.peerAddress, m); e && !failure_) failure_ = std::move(e);
    return;
  }
  node->lastHeard = Clock::now();
  if (m.type == MsgType::Hello) {
    refuse(in.peer, in.peerAddress, "a second Hello from a node that already joined");
    return;
  }
  if (Error e = serve(*node, m); e && !failure_) failure_ = std::move(e);
}

Error HeadServer::pump(milliseconds wait, int wakeFd) {
  auto until = Clock::now() + wait;
  do {
    auto left = std::chrono::ceil<milliseconds>(until - Clock::now());
    bool woken = false;
    std::optional<Incoming> in = channel_->receive(std::max(left, milliseconds(0)), wakeFd, &woken);
    if (failure_) return std::move(failure_);
    // Back to the caller after each message: it may be what the caller waits for.
    if (in) handle(*in);
    if (in || woken) break;
  } while (Clock::now() < until);
  if (failure_) return std::move(failure_);
  auto now = Clock::now();
  if (now - lastBeat_ >= options_.heartbeat) {
    lastBeat_ = now;
    Message beat;
    beat.type = MsgType::Heartbeat;
    std::vector<uint8_t> frame = encode(beat);
    for (const auto& n : nodes_) [[maybe_unused]] Error e = channel_->sendEncoded(frame, n->peer);
  }
  for (const auto& n : nodes_) {
    auto silent = std::chrono::duration_cast<milliseconds>(now - n->lastHeard);
    if (n->phase != Node::Phase::Done && silent > options_.timeout)
      return makeError(nameOf(*n), " went silent for ", silent.count(),
                       " ms (killed, frozen or cut off)");
  }
  return Error::success();
}

void HeadServer::assign(uint32_t storePort, const std::string& storePrefix,
                        const std::vector<uint8_t>& commId) {
  std::vector<Node*> order;
  for (auto& n : nodes_) order.push_back(n.get());
  auto key = [&](const Node* n) {
    return n->workerId >= 0 ? n->workerId : options_.workers + static_cast<int64_t>(n->arrival);
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](const Node* a, const Node* b) { return key(a) < key(b); });
  uint32_t next = options_.localWorld;
  for (Node* n : order) {
    n->firstRank = next;
    n->assigned = true;
    next += n->localWorld;
    n->phase = Node::Phase::Assigned;
    Message m;
    m.type = MsgType::Assign;
    m.world = options_.world;
    m.firstRank = n->firstRank;
    m.localWorld = n->localWorld;
    m.storePort = storePort;
    m.storePrefix = storePrefix;
    m.backend = options_.backend;
    m.commId = commId;
    m.pool = options_.pool;
    if (Error e = channel_->send(m, n->peer); e && !failure_)
      failure_ = makeError(nameOf(*n), ": ", e.message());
  }
}

void HeadServer::startAll() {
  for (auto& n : nodes_) n->phase = Node::Phase::Started;
  Message m;
  m.type = MsgType::Start;
  broadcast(m);
}

void HeadServer::broadcast(const Message& m) {
  std::vector<uint8_t> frame = encode(m);
  for (const auto& n : nodes_)
    if (Error e = channel_->sendEncoded(frame, n->peer); e && !failure_)
      failure_ = makeError(nameOf(*n), ": ", e.message());
}

void HeadServer::abortAll(const std::string& reason) {
  Message m;
  m.type = MsgType::Abort;
  m.reason = reason;
  std::vector<uint8_t> frame = encode(m);
  for (const auto& n : nodes_) [[maybe_unused]] Error e = channel_->sendEncoded(frame, n->peer);
}

}  // namespace tpc::net
