#include "net/Channel.h"

#include <zmq.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "ir/AtomicFile.h"

namespace tpc::net {

// Admits CURVE clients whose public key is in the head's list (ZeroMQ's ZAP protocol, RFC 27),
// so a node without the right key cannot even finish the handshake.
class ZapHandler {
 public:
  ZapHandler(void* context, std::vector<std::string> allowed) : allowed_(std::move(allowed)) {
    socket_ = zmq_socket(context, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof linger);
    zmq_bind(socket_, "inproc://zeromq.zap.01");
    thread_ = std::thread([this] { serve(); });
  }
  ~ZapHandler() {
    stop_ = true;
    thread_.join();
    zmq_close(socket_);
  }

 private:
  void serve() {
    while (!stop_) {
      zmq_pollitem_t item{socket_, 0, ZMQ_POLLIN, 0};
      if (zmq_poll(&item, 1, 100) <= 0) continue;
      std::vector<std::string> frames;
      int more = 1;
      while (more) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, socket_, 0) < 0) {
          zmq_msg_close(&msg);
          break;
        }
        frames.emplace_back(static_cast<char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
        more = zmq_msg_more(&msg);
        zmq_msg_close(&msg);
      }
      bool allowed = false;
      if (frames.size() >= 7 && frames[5] == "CURVE" && frames[6].size() == 32) {
        char z85[41] = {};
        zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(frames[6].data()), 32);
        for (const std::string& key : allowed_) allowed = allowed || key == z85;
      }
      std::string id = frames.size() > 1 ? frames[1] : "";
      const std::string reply[] = {
          "1.0", id, allowed ? "200" : "400", allowed ? "OK" : "key not authorized", "", ""};
      for (size_t i = 0; i < 6; ++i)
        zmq_send(socket_, reply[i].data(), reply[i].size(), i + 1 < 6 ? ZMQ_SNDMORE : 0);
    }
  }
  std::vector<std::string> allowed_;
  void* socket_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

namespace {

std::string zmqError(const std::string& what) { return what + ": " + zmq_strerror(zmq_errno()); }

Expected<std::string> readKeyFile(const std::string& path) {
  std::ifstream in(path);
  std::string key;
  if (!(in >> key) || key.size() != 40)
    return makeError(path, ": expected a 40-character Z85 CURVE key");
  return key;
}

void setInt(void* socket, int option, int value) {
  zmq_setsockopt(socket, option, &value, sizeof value);
}

}  // namespace

Expected<std::pair<std::string, int>> splitHostPort(const std::string& text,
                                                    const std::string& flag) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return makeError(flag, " expects HOST:PORT, got '", text, "'");
  std::string host = text.substr(0, colon), port = text.substr(colon + 1);
  char* end = nullptr;
  long value = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || value < 0 || value > 65535)
    return makeError(flag, ": '", port, "' is not a port number (0-65535)");
  return std::make_pair(host, static_cast<int>(value));
}

Expected<CurveKeys> readCurveKeys(const std::string& dir, bool head) {
  CurveKeys keys;
  std::string me = head ? "head" : "node";
  Expected<std::string> pub = readKeyFile(dir + "/" + me + ".key");
  if (!pub) return pub.takeError();
  Expected<std::string> secret = readKeyFile(dir + "/" + me + ".key_secret");
  if (!secret) return secret.takeError();
  keys.publicKey = *pub;
  keys.secretKey = *secret;
  if (head) {
    std::ifstream in(dir + "/authorized_keys");
    if (!in) return makeError(dir, "/authorized_keys: cannot read the admitted node keys");
    for (std::string key; in >> key;) keys.allowedKeys.push_back(key);
  } else {
    Expected<std::string> server = readKeyFile(dir + "/head.key");
    if (!server) return server.takeError();
    keys.serverPublicKey = *server;
  }
  return keys;
}

Error writeCurveKeys(const std::string& dir) {
  char headPub[41], headSec[41], nodePub[41], nodeSec[41];
  if (zmq_curve_keypair(headPub, headSec) != 0 || zmq_curve_keypair(nodePub, nodeSec) != 0)
    return makeError(zmqError("cannot make CURVE keys"));
  const std::pair<const char*, std::string> files[] = {{"head.key", headPub},
                                                       {"head.key_secret", headSec},
                                                       {"node.key", nodePub},
                                                       {"node.key_secret", nodeSec},
                                                       {"authorized_keys", nodePub}};
  for (const auto& [name, key] : files)
    if (Error e = writeFileAtomically(dir + "/" + name, key + "\n")) return e;
  return Error::success();
}

Channel::Channel(void* context, void* socket, bool router)
    : context_(context), socket_(socket), router_(router) {}

Channel::~Channel() {
  if (monitor_) {
    zmq_socket_monitor(socket_, nullptr, 0);
    zmq_close(monitor_);
  }
  zmq_close(socket_);
  zap_.reset();
  zmq_ctx_term(context_);
}

Expected<std::unique_ptr<Channel>> Channel::listen(const std::string& hostPort,
                                                   const CurveKeys& keys) {
  Expected<std::pair<std::string, int>> where = splitHostPort(hostPort, "--listen");
  if (!where) return where.takeError();
  void* context = zmq_ctx_new();
  void* socket = zmq_socket(context, ZMQ_ROUTER);
  std::unique_ptr<Channel> channel(new Channel(context, socket, true));
  int64_t maxFrame = kMaxFrameBytes;
  zmq_setsockopt(socket, ZMQ_MAXMSGSIZE, &maxFrame, sizeof maxFrame);
  setInt(socket, ZMQ_LINGER, 0);
  setInt(socket, ZMQ_ROUTER_MANDATORY, 1);
  if (keys.enabled()) {
    channel->zap_ = std::make_unique<ZapHandler>(context, keys.allowedKeys);
    setInt(socket, ZMQ_CURVE_SERVER, 1);
    zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, keys.secretKey.data(), 40);
  }
  channel->watchHandshakes();
  std::string host = where->first == "*" ? "0.0.0.0" : where->first;
  std::string endpoint = "tcp://" + host + ":" + std::to_string(where->second);
  if (zmq_bind(socket, endpoint.c_str()) != 0)
    return makeError(zmqError("--listen " + hostPort + ": cannot listen"));
  return channel;
}

Expected<std::unique_ptr<Channel>> Channel::connect(const std::string& hostPort,
                                                    const CurveKeys& keys) {
  Expected<std::pair<std::string, int>> where = splitHostPort(hostPort, "--join");
  if (!where) return where.takeError();
  if (where->second == 0) return makeError("--join ", hostPort, ": port 0 names no head");
  void* context = zmq_ctx_new();
  void* socket = zmq_socket(context, ZMQ_DEALER);
  std::unique_ptr<Channel> channel(new Channel(context, socket, false));
  int64_t maxFrame = kMaxFrameBytes;
  zmq_setsockopt(socket, ZMQ_MAXMSGSIZE, &maxFrame, sizeof maxFrame);
  setInt(socket, ZMQ_LINGER, 0);
  if (keys.enabled()) {
    zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, keys.serverPublicKey.data(), 40);
    zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, keys.publicKey.data(), 40);
    zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, keys.secretKey.data(), 40);
  }
  channel->watchHandshakes();
  std::string endpoint = "tcp://" + where->first + ":" + std::to_string(where->second);
  if (zmq_connect(socket, endpoint.c_str()) != 0)
    return makeError(zmqError("--join " + hostPort + ": cannot connect"));
  return channel;
}

void Channel::watchHandshakes() {
  std::string address =
      "inproc://tpc-handshakes-" + std::to_string(reinterpret_cast<uintptr_t>(this));
  if (zmq_socket_monitor(socket_, address.c_str(),
                         ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                             ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0)
    return;  // without the monitor, failed handshakes only go unreported
  monitor_ = zmq_socket(context_, ZMQ_PAIR);
  setInt(monitor_, ZMQ_LINGER, 0);
  if (zmq_connect(monitor_, address.c_str()) != 0) {
    zmq_close(monitor_);
    monitor_ = nullptr;
  }
}

std::optional<Incoming> Channel::readHandshakeEvent() {
  std::vector<std::string> frames;
  int more = 1;
  while (more) {
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, monitor_, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&msg);
      break;
    }
    frames.emplace_back(static_cast<char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
    more = zmq_msg_more(&msg);
    zmq_msg_close(&msg);
  }
  if (frames.empty() || frames[0].size() < 6) return std::nullopt;
  uint16_t event;
  uint32_t value;
  std::memcpy(&event, frames[0].data(), 2);
  std::memcpy(&value, frames[0].data() + 2, 4);
  Incoming in;
  in.handshakeFailed = true;
  // Which event a node sees for one refused handshake depends on which side notices first
  // (the head may drop the connection before the node reads the head's greeting), so on the
  // node every failure starts alike and names both likely causes; the event only adds detail.
  std::string what;
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
    what = router_
               ? "a node's CURVE key is not authorized (status " + std::to_string(value) + ")"
               : "the head refused this node's CURVE key (status " + std::to_string(value) + ")";
  else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
           value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
    what = router_ ? "a peer's security mechanism does not match (CURVE on one side only)"
                   : "the security mechanisms do not match (CURVE on one side only)";
  else
    what = (router_ ? std::string("a connection failed the ZeroMQ handshake (not a tpc node, or "
                                  "the wrong CURVE keys;")
                    : std::string("the head ended it (ZeroMQ")) +
           " event " + std::to_string(event) + ", code " + std::to_string(value) + ")";
  if (!router_)
    what = "the ZeroMQ handshake with the head failed: " + what +
           "; check --curve-keys on both sides (a CURVE key the head does not accept, CURVE on "
           "one side only, or not a tpc head)";
  in.message = makeError(what);
  return in;
}

std::string Channel::endpoint() const {
  char buffer[256] = {};
  size_t size = sizeof buffer;
  zmq_getsockopt(socket_, ZMQ_LAST_ENDPOINT, buffer, &size);
  return buffer;
}

int Channel::port() const {
  std::string e = endpoint();
  return std::atoi(e.substr(e.rfind(':') + 1).c_str());
}

std::optional<Incoming> Channel::receive(std::chrono::milliseconds wait, int wakeFd, bool* woken) {
  zmq_pollitem_t items[3] = {
      {socket_, 0, ZMQ_POLLIN, 0}, {monitor_, 0, ZMQ_POLLIN, 0}, {nullptr, wakeFd, ZMQ_POLLIN, 0}};
  int count = 1;
  if (monitor_) count = 2;
  if (wakeFd >= 0) {
    if (!monitor_) items[1] = items[2];
    ++count;
  }
  if (zmq_poll(items, count, static_cast<long>(wait.count())) <= 0) return std::nullopt;
  if (wakeFd >= 0 && woken && (items[count - 1].revents & ZMQ_POLLIN)) *woken = true;
  if (!(items[0].revents & ZMQ_POLLIN) && !(monitor_ && (items[1].revents & ZMQ_POLLIN)))
    return std::nullopt;
  if (monitor_ && (items[1].revents & ZMQ_POLLIN)) {
    if (std::optional<Incoming> event = readHandshakeEvent()) return event;
    if (!(items[0].revents & ZMQ_POLLIN)) return std::nullopt;
  }
  Incoming in;
  std::vector<std::string> frames;
  int more = 1;
  while (more) {
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, socket_, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&msg);
      break;
    }
    if (in.peerAddress.empty()) {
      const char* address = zmq_msg_gets(&msg, "Peer-Address");
      if (address) in.peerAddress = address;
    }
    frames.emplace_back(static_cast<char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
    more = zmq_msg_more(&msg);
    zmq_msg_close(&msg);
  }
  if (frames.empty()) return std::nullopt;
  if (router_) {
    in.peer = frames.front();
    frames.erase(frames.begin());
  }
  if (frames.size() != 1) {
    in.message = makeError("expected one frame per message, got ", frames.size());
    return in;
  }
  const std::string& f = frames.front();
  in.message = decode(reinterpret_cast<const uint8_t*>(f.data()), f.size());
  return in;
}

Error Channel::send(const Message& m, const std::string& peer) {
  return sendEncoded(encode(m), peer);
}

Error Channel::sendEncoded(const std::vector<uint8_t>& frame, const std::string& peer) {
  if (router_ && zmq_send(socket_, peer.data(), peer.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
    return makeError(zmqError("cannot send to a peer"));
  if (zmq_send(socket_, frame.data(), frame.size(), ZMQ_DONTWAIT) < 0)
    return makeError(zmqError(router_ ? "cannot send to a peer" : "cannot send to the head"));
  return Error::success();
}

}  // namespace tpc::net
