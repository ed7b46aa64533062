// Hostile or mistaken peers are refused with a clear error on both sides, and the head keeps
// serving the real workers: garbage bytes, oversized frames, unknown message types, a wrong
// protocol version, a wrong plan, a second worker claiming a taken id.
#include <gtest/gtest.h>
#include <zmq.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "net/Message.h"
#include "net/Wire.h"
#include "tests/net/Cluster.h"

namespace tpc {
namespace {

using std::chrono::seconds;

// A bare DEALER that speaks whatever bytes a test gives it.
class RawPeer {
 public:
  explicit RawPeer(int port) : context_(zmq_ctx_new()), socket_(zmq_socket(context_, ZMQ_DEALER)) {
    int linger = 0;
    zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(socket_, ("tcp://127.0.0.1:" + std::to_string(port)).c_str());
  }
  ~RawPeer() {
    zmq_close(socket_);
    zmq_ctx_term(context_);
  }
  void send(const std::vector<uint8_t>& bytes, bool more = false) {
    zmq_send(socket_, bytes.data(), bytes.size(), more ? ZMQ_SNDMORE : 0);
  }
  void send(const net::Message& m) { send(net::encode(m)); }
  // The reason of the Refused reply, or "" when no reply came within 5 s.
  std::string refusal() {
    zmq_pollitem_t item{socket_, 0, ZMQ_POLLIN, 0};
    while (zmq_poll(&item, 1, 5000) > 0) {
      std::vector<uint8_t> buffer(1 << 16);
      int n = zmq_recv(socket_, buffer.data(), buffer.size(), 0);
      if (n < 0) return "";
      Expected<net::Message> m = net::decode(buffer.data(), static_cast<size_t>(n));
      if (m && m->type == net::MsgType::Refused) return m->reason;
    }
    return "";
  }

 private:
  void* context_;
  void* socket_;
};

std::vector<uint8_t> header(uint16_t version, uint16_t type) {
  net::ByteWriter w;
  w.u32(net::kMagic);
  w.u16(version);
  w.u16(type);
  return std::move(w.bytes());
}

net::Message hello(int64_t workerId) {
  net::Message m;
  m.type = net::MsgType::Hello;
  m.workerId = workerId;
  m.localWorld = 1;
  m.backend = "cpu";
  return m;
}

void sendRawTcp(int port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) [[maybe_unused]]
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
  ::close(fd);
}

TEST(MultiNodeHostile, BadPeersAreRefusedAndTheRunGoesOn) {
  test::TempDir dir;
  std::string model = dir.file("model"), other = dir.file("other");
  for (const std::string& m : {model, other})
    ASSERT_EQ(test::runCommand(test::binPath("tpc") + " make-model --arch qwen3 --preset tiny " +
                               (m == other ? "--seed 5 " : "") + "--quiet -o " + m)
                  .exitCode,
              0);
  std::string plan = dir.file("w4.fb"), otherPlan = dir.file("other.fb");
  ASSERT_EQ(
      test::runCommand(test::binPath("tpc") + " compile " + model + " --world 4 --quiet -o " + plan)
          .exitCode,
      0);
  ASSERT_EQ(test::runCommand(test::binPath("tpc") + " compile " + other + " --world 4 --quiet -o " +
                             otherPlan)
                .exitCode,
            0);
  std::string request = "--prompt-ids 4,5,6 --max-new-tokens 6 --ignore-eos";
  test::CommandResult local =
      test::runCommand(test::tpexecPath() + " " + plan + " " + request + " --json");
  ASSERT_EQ(local.exitCode, 0) << local.output;

  test::Cluster c = test::startHead(dir, plan, 2, "--local-world 2 --json " + request);
  ASSERT_GT(c.port, 0) << c.head->err();

  // Bytes that are not ZeroMQ at all: the connection is dropped, nothing else happens.
  std::string noise(65536, '\0');
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>(i * 2654435761u >> 13);
  sendRawTcp(c.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  sendRawTcp(c.port, noise);

  RawPeer peer(c.port);
  peer.send({'h', 'e', 'l', 'l', 'o'});
  EXPECT_NE(peer.refusal().find("not a tpc control-plane message"), std::string::npos);
  peer.send(header(7, 1));
  EXPECT_NE(peer.refusal().find("protocol version 7 is not supported"), std::string::npos);
  peer.send(header(net::kProtocolVersion, 999));
  EXPECT_NE(peer.refusal().find("unknown message type 999"), std::string::npos);
  net::Message fetch;
  fetch.type = net::MsgType::FetchPlan;
  peer.send(fetch);
  EXPECT_NE(peer.refusal().find("FetchPlan message before Hello"), std::string::npos);
  peer.send({1, 2}, true);
  peer.send({3});
  EXPECT_NE(peer.refusal().find("one frame per message"), std::string::npos);
  net::Message wrongPlan = hello(-1);
  wrongPlan.planHash = 12345;
  peer.send(wrongPlan);
  EXPECT_NE(peer.refusal().find("plan hash mismatch"), std::string::npos);
  EXPECT_NE(
      [&] {
        peer.send(hello(7));
        return peer.refusal();
      }()
          .find("worker id 7 is out of range"),
      std::string::npos);
  net::Message tooWide = hello(-1);
  tooWide.localWorld = 3;
  peer.send(tooWide);
  EXPECT_NE(peer.refusal().find("local world 3 does not fit"), std::string::npos);
  {
    // Over ZMQ_MAXMSGSIZE: ZeroMQ drops the connection before the head sees a byte of it.
    RawPeer big(c.port);
    big.send(std::vector<uint8_t>(net::kMaxFrameBytes + 1, 7));
    EXPECT_EQ(big.refusal(), "");
  }

  // A real worker joins as id 0; a second one claiming id 0, and one with another plan, are
  // refused and say why.
  test::Spawned& first = test::startWorker(c, dir, "--worker-id 0");
  ASSERT_TRUE(c.head->waitForText("accepted worker 0", seconds(20))) << c.head->err();
  test::Spawned& twin = test::startWorker(c, dir, "--worker-id 0");
  EXPECT_EQ(twin.waitExit(seconds(10)), 1) << twin.log();
  EXPECT_NE(twin.log().find("refused this node: worker id 0 is already taken"), std::string::npos)
      << twin.log();
  test::Spawned& stranger = test::startWorker(c, dir, otherPlan);
  EXPECT_EQ(stranger.waitExit(seconds(10)), 1) << stranger.log();
  EXPECT_NE(stranger.log().find("plan hash mismatch"), std::string::npos) << stranger.log();
  peer.send(hello(0));
  EXPECT_NE(peer.refusal().find("worker id 0 is already taken"), std::string::npos);

  // The head is still serving: the last worker joins and the run gives the local result.
  test::Spawned& second = test::startWorker(c, dir, "--worker-id 1 " + plan);
  EXPECT_EQ(c.head->waitExit(seconds(60)), 0) << c.head->err();
  EXPECT_EQ(first.waitExit(seconds(10)), 0) << first.log();
  EXPECT_EQ(second.waitExit(seconds(10)), 0) << second.log();
  nlohmann::json want = nlohmann::json::parse(local.output);
  nlohmann::json got = nlohmann::json::parse(c.head->log(), nullptr, false);
  ASSERT_FALSE(got.is_discarded()) << c.head->log();
  EXPECT_EQ(got["generated_ids"], want["generated_ids"]);
  std::string err = c.head->err();
  for (const char* reason : {"not a tpc control-plane message", "protocol version 7",
                             "unknown message type 999", "already taken", "plan hash mismatch"})
    EXPECT_NE(err.find(reason), std::string::npos) << reason << "\n" << err;
  EXPECT_NE(err.find("refused a peer from 127.0.0.1"), std::string::npos) << err;
  EXPECT_NE(err.find("dropped a connection: a connection failed the ZeroMQ handshake"),
            std::string::npos)
      << err;
}

}  // namespace
}  // namespace tpc
