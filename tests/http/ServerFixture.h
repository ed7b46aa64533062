// An HTTP server on its own thread over the echo engine (the test double), bound to a free port.
#pragma once

#include <gtest/gtest.h>
#include <atomic>

#include <memory>
#include <thread>

#include "frontends/Tokenizer.h"
#include "net/http/Server.h"
#include "tests/http/EchoEngine.h"
#include "tests/http/HttpTestClient.h"

namespace tpc::test {

class RunningServer {
 public:
  RunningServer(EchoEngine::Options engineOptions, http::ServerOptions options,
                std::unique_ptr<Tokenizer> tokenizer = nullptr)
      : engine_(std::make_unique<EchoEngine>(engineOptions)), tokenizer_(std::move(tokenizer)) {
    options.port = 0;
    if (options.modelName.empty()) options.modelName = "echo";
    Expected<std::unique_ptr<http::HttpServer>> s =
        http::HttpServer::create(*engine_, tokenizer_.get(), options);
    if (!s) {
      ADD_FAILURE() << s.errorMessage();
      return;
    }
    server_ = std::move(*s);
    port_ = server_->port();
    thread_ = std::thread([this] {
      result_ = server_->run();
      returned_ = true;  // after result_, so a reader that sees it sees the result
    });
  }
  ~RunningServer() {
    if (server_) {
      server_->stop();
      thread_.join();
    }
  }
  int port() const { return port_; }
  EchoEngine& engine() { return *engine_; }
  // Waits for run() to return by itself (the engine failed); false after `seconds`.
  bool waitForExit(int seconds) {
    // The server stops listening a moment before run() returns its result: wait for both.
    for (int i = 0; i < seconds * 100 && !(exited() && returned_); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return exited() && returned_;
  }
  bool exited() { return httpRequest(port_, "GET", "/health").status == 0; }
  const Error& result() const { return result_; }

 private:
  std::unique_ptr<EchoEngine> engine_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<http::HttpServer> server_;
  std::thread thread_;
  std::atomic<bool> returned_{false};
  Error result_ = Error::success();
  int port_ = 0;
};

// A metric's value in /metrics text (the first sample of that name); -1 when absent.
inline double metricValue(const std::string& text, const std::string& name) {
  size_t at = 0;
  while ((at = text.find(name, at)) != std::string::npos) {
    bool lineStart = at == 0 || text[at - 1] == '\n';
    size_t end = text.find('\n', at);
    std::string line = text.substr(at, end - at);
    at += name.size();
    if (!lineStart ||
        (line.size() > name.size() && line[name.size()] != ' ' && line[name.size()] != '{'))
      continue;
    return std::stod(line.substr(line.rfind(' ') + 1));
  }
  return -1;
}

}  // namespace tpc::test
