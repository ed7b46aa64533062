// A small blocking HTTP client for the server tests, on Boost.Beast like the server; every read
// is bounded (the socket's receive timeout), so a server that hangs fails the test instead.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace tpc::test {

struct HttpReply {
  int status = 0;  // 0: no answer (the connection closed or timed out)
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string header(const std::string& name) const;
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

using Headers = std::vector<std::pair<std::string, std::string>>;

HttpReply httpRequest(int port, const std::string& method, const std::string& target,
                      const std::string& body = {}, const Headers& headers = {});
inline HttpReply postJson(int port, const std::string& target, const nlohmann::json& body,
                          const Headers& headers = {}) {
  return httpRequest(port, "POST", target, body.dump(), headers);
}

// Raw bytes to the server; whatever comes back until it closes the connection or `seconds`
// pass with nothing new.
std::string rawExchange(int port, const std::string& bytes, int seconds = 10);

// One Server-Sent Events response, read event by event.
class SseStream {
 public:
  SseStream(int port, const std::string& target, const nlohmann::json& body);
  ~SseStream();
  int status() const { return status_; }
  const std::string& errorBody() const { return errorBody_; }
  // The next event's data; nullopt when the stream ended.
  std::optional<std::string> next();
  std::vector<std::string> rest();  // every event up to the end
  void disconnect();                // drops the connection mid-stream

  struct Impl;

 private:
  Impl* impl_;
  int status_ = 0;
  std::string errorBody_;
};

}  // namespace tpc::test
