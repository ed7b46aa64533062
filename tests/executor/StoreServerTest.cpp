// The rendezvous store answers well-formed requests and refuses malformed ones without
// crashing and without disturbing other clients.
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "executor/comm/StoreClient.h"
#include "executor/comm/StoreProtocol.h"
#include "executor/comm/StoreServer.h"
#include "tests/executor/CommTestUtil.h"

namespace tpc {
namespace {

using std::chrono::milliseconds;

std::vector<char> bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::unique_ptr<StoreServer> startServer() {
  auto server = StoreServer::start("127.0.0.1", 0);
  EXPECT_TRUE(server) << (server ? "" : server.errorMessage());
  return server ? std::move(*server) : nullptr;
}

std::unique_ptr<StoreClient> connectClient(int port, milliseconds timeout = milliseconds(2000)) {
  auto client = StoreClient::connect("127.0.0.1", port, timeout);
  EXPECT_TRUE(client) << (client ? "" : client.errorMessage());
  return client ? std::move(*client) : nullptr;
}

// Sends raw bytes and returns everything the server sends back until it closes (or 2 s pass).
std::string rawExchange(int port, const std::string& request) {
  auto fd = connectTcp("127.0.0.1", port, deadlineAfter(milliseconds(2000)));
  EXPECT_TRUE(fd);
  if (!fd) return {};
  EXPECT_FALSE(sendAll(fd->get(), request.data(), request.size(), deadlineAfter(milliseconds(2000)),
                       "store"));
  std::string reply;
  auto deadline = deadlineAfter(milliseconds(2000));
  for (;;) {
    char c;
    Error e = recvAll(fd->get(), &c, 1, deadline, "store");
    if (e) {
      EXPECT_NE(e.message().find("closed the connection"), std::string::npos) << e.message();
      break;
    }
    reply.push_back(c);
  }
  return reply;
}

std::string badRequestReason(const std::string& reply) {
  if (reply.size() < store::kResponseHeaderBytes ||
      reply[0] != static_cast<char>(store::Status::kBadRequest)) {
    return "<not a refusal>";
  }
  return reply.substr(store::kResponseHeaderBytes);
}

TEST(StoreServer, SetGetWait) {
  auto server = startServer();
  ASSERT_TRUE(server);
  auto client = connectClient(server->port());
  ASSERT_TRUE(client);
  ASSERT_FALSE(client->trySet("a", bytes("hello")));
  auto got = client->tryGet("a");
  ASSERT_TRUE(got);
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, bytes("hello"));
  auto missing = client->tryGet("b");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());

  // A value set later by another client ends the wait.
  std::thread writer([port = server->port()] {
    std::this_thread::sleep_for(milliseconds(50));
    auto other = connectClient(port);
    if (other) {
      EXPECT_FALSE(other->trySet("b", bytes("late")));
    }
  });
  EXPECT_FALSE(client->tryWait({"a", "b"}, milliseconds(2000)));
  writer.join();
  EXPECT_EQ(client->get("b"), bytes("late"));

  auto start = std::chrono::steady_clock::now();
  Error timedOut = client->tryWait({"never"}, milliseconds(200));
  ASSERT_TRUE(timedOut);
  EXPECT_NE(timedOut.message().find("'never'"), std::string::npos) << timedOut.message();
  EXPECT_LT(test::secondsSince(start), 1.0);
  EXPECT_THROW(client->wait({"never"}, milliseconds(50)), std::exception);
}

TEST(StoreServer, LargeValueRoundTrips) {
  auto server = startServer();
  ASSERT_TRUE(server);
  auto client = connectClient(server->port());
  ASSERT_TRUE(client);
  std::vector<char> big(8 << 20);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  ASSERT_FALSE(client->trySet("big", big));
  auto got = client->tryGet("big");
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ(**got, big);
}

TEST(StoreServer, RefusesBadFramesAndKeepsServingOthers) {
  auto server = startServer();
  ASSERT_TRUE(server);
  auto good = connectClient(server->port());
  ASSERT_TRUE(good);
  ASSERT_FALSE(good->trySet("k", bytes("v")));

  EXPECT_EQ(badRequestReason(rawExchange(server->port(), "GET / HTTP/1.1\r\n\r\n")), "bad magic");
  std::string oversized =
      store::encodeRequestHeader(store::Op::kSet, 1, store::kMaxValueBytes + 1) + "k";
  EXPECT_NE(badRequestReason(rawExchange(server->port(), oversized)).find("over the cap"),
            std::string::npos);
  std::string hugeKey = store::encodeRequestHeader(store::Op::kGet, 0xffffffffu, 0);
  EXPECT_NE(badRequestReason(rawExchange(server->port(), hugeKey)).find("key length"),
            std::string::npos);
  std::string emptyKey = store::encodeRequestHeader(store::Op::kGet, 0, 0);
  EXPECT_NE(badRequestReason(rawExchange(server->port(), emptyKey)).find("key length"),
            std::string::npos);
  std::string badOp = store::encodeRequestHeader(store::Op::kSet, 1, 0);
  badOp[4] = 9;
  EXPECT_EQ(badRequestReason(rawExchange(server->port(), badOp + "k")), "unknown op 9");
  std::string getWithValue = store::encodeRequestHeader(store::Op::kGet, 1, 3) + "kabc";
  EXPECT_EQ(badRequestReason(rawExchange(server->port(), getWithValue)), "get with a value");
  // A valid frame followed by garbage: the first is answered, then the connection refused.
  std::string validThenJunk =
      store::encodeRequestHeader(store::Op::kGet, 1, 0) + "k" + "junk!junk!junk";
  std::string reply = rawExchange(server->port(), validThenJunk);
  ASSERT_GE(reply.size(), store::kResponseHeaderBytes + 1);
  EXPECT_EQ(reply[0], static_cast<char>(store::Status::kOk));
  EXPECT_EQ(badRequestReason(reply.substr(store::kResponseHeaderBytes + 1)), "bad magic");

  // Truncated frames and random bytes on many connections at once.
  std::vector<UniqueFd> dangling;
  for (int i = 0; i < 50; ++i) {
    auto fd = connectTcp("127.0.0.1", server->port(), deadlineAfter(milliseconds(2000)));
    ASSERT_TRUE(fd);
    std::string junk = i % 2 ? store::encodeRequestHeader(store::Op::kSet, 5, 100).substr(0, 7)
                             : std::string(64, static_cast<char>(i * 37));
    ASSERT_FALSE(
        sendAll(fd->get(), junk.data(), junk.size(), deadlineAfter(milliseconds(1000)), "store"));
    if (i % 3 == 0) dangling.push_back(std::move(*fd));  // the rest close right away
  }
  EXPECT_GE(server->refusedFrames(), 7u);

  // The well-behaved client's connection and data are untouched.
  auto got = good->tryGet("k");
  ASSERT_TRUE(got && got->has_value()) << (got ? "missing" : got.errorMessage());
  EXPECT_EQ(**got, bytes("v"));
  ASSERT_FALSE(good->trySet("k2", bytes("v2")));
  EXPECT_EQ(good->get("k2"), bytes("v2"));
}

TEST(StoreClient, RefusesAnOversizedReply) {
  // A fake server that answers any request with a header announcing 4 GB.
  auto listening = listenTcp("127.0.0.1", 0);
  ASSERT_TRUE(listening);
  int port = localPort(listening->get());
  std::thread fake([fd = listening->get()] {
    int conn = ::accept(fd, nullptr, nullptr);
    if (conn < 0) return;
    char header[store::kRequestHeaderBytes + 1];
    [[maybe_unused]] Error in =
        recvAll(conn, header, sizeof(header), deadlineAfter(milliseconds(2000)), "client");
    std::string reply = store::encodeResponseHeader(store::Status::kOk, 0xffffffffu);
    [[maybe_unused]] Error out =
        sendAll(conn, reply.data(), reply.size(), deadlineAfter(milliseconds(2000)), "client");
    ::close(conn);
  });
  auto client = connectClient(port);
  ASSERT_TRUE(client);
  auto got = client->tryGet("k");
  fake.join();
  ASSERT_FALSE(got);
  EXPECT_NE(got.errorMessage().find("over the cap"), std::string::npos) << got.errorMessage();
  // The stream is out of step now; the client says so instead of reading garbage.
  auto again = client->tryGet("k");
  ASSERT_FALSE(again);
  EXPECT_NE(again.errorMessage().find("lost earlier"), std::string::npos);
}

TEST(StoreClient, ConnectGivesUpAtItsDeadline) {
  // A port that was just free: nothing listens on it.
  int port;
  {
    auto probe = listenTcp("127.0.0.1", 0);
    ASSERT_TRUE(probe);
    port = localPort(probe->get());
  }
  auto start = std::chrono::steady_clock::now();
  auto client = StoreClient::connect("127.0.0.1", port, milliseconds(300));
  ASSERT_FALSE(client);
  EXPECT_NE(client.errorMessage().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << client.errorMessage();
  EXPECT_LT(test::secondsSince(start), 1.5);
}

}  // namespace
}  // namespace tpc
