// One ZeroMQ socket of the control plane with errors as values: the head's ROUTER (bound,
// many peers, each known by its routing id) or a node's DEALER (connected to the head).
// Sends never block: a peer that stops reading must not freeze the one talking to it.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ir/Error.h"
#include "net/Message.h"

namespace tpc::net {

// Z85 CURVE keys. The head has a key pair and a list of node public keys it admits; a node
// has its own pair and the head's public key.
struct CurveKeys {
  std::string publicKey, secretKey;
  std::string serverPublicKey;           // nodes only
  std::vector<std::string> allowedKeys;  // head only: node public keys it admits
  bool enabled() const { return !secretKey.empty(); }
};

// Reads DIR/head.key_secret, head.key (public), node.key_secret, node.key and
// authorized_keys (one Z85 public key a line). `head` picks whose pair is loaded.
Expected<CurveKeys> readCurveKeys(const std::string& dir, bool head);
// Writes a fresh head pair and node pair into `dir` (the node key authorized).
Error writeCurveKeys(const std::string& dir);

struct Incoming {
  std::string peer;  // routing id (head side); empty on a node
  // A connection that failed the ZeroMQ handshake (not ZeroMQ, wrong or missing CURVE key);
  // `message` then holds what happened, and there is no peer to answer.
  bool handshakeFailed = false;
  std::string peerAddress;  // the TCP peer, for messages that name it
  Expected<Message> message = makeError("no message");
};

class Channel {
 public:
  // "HOST:PORT" (PORT 0: any free port, see endpoint()).
  static Expected<std::unique_ptr<Channel>> listen(const std::string& hostPort,
                                                   const CurveKeys& keys = {});
  static Expected<std::unique_ptr<Channel>> connect(const std::string& hostPort,
                                                    const CurveKeys& keys = {});
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // The bound endpoint, e.g. tcp://127.0.0.1:40123.
  std::string endpoint() const;
  int port() const;
  // Waits up to `wait` for one frame. nullopt: nothing arrived. A frame that does not decode
  // comes back with the decoding error in `message`. With `wakeFd` (a plain file descriptor),
  // the wait also ends when it is readable, and `woken` says so.
  std::optional<Incoming> receive(std::chrono::milliseconds wait, int wakeFd = -1,
                                  bool* woken = nullptr);
  Error send(const Message& m, const std::string& peer = {});
  // The same bytes to several peers without encoding again.
  Error sendEncoded(const std::vector<uint8_t>& frame, const std::string& peer = {});

 private:
  Channel(void* context, void* socket, bool router);
  // Reports failed handshakes through an inproc PAIR socket (zmq_socket_monitor).
  void watchHandshakes();
  std::optional<Incoming> readHandshakeEvent();
  void* context_;
  void* socket_;
  void* monitor_ = nullptr;
  bool router_;
  std::unique_ptr<class ZapHandler> zap_;
};

// host:port split, with the port checked; errors name `flag`.
Expected<std::pair<std::string, int>> splitHostPort(const std::string& text,
                                                    const std::string& flag);

}  // namespace tpc::net

namespace tpc::net {
// This host's address on the route to `host` (no packet is sent): what ranks here advertise
// to their peers on other nodes. "127.0.0.1" when it cannot be found.
std::string localAddressToward(const std::string& host);
}  // namespace tpc::net
